"""The one input interface the trainer sees, and the choice between its two kinds:
CIFAR-scale data sets held whole on the devices (feeds/on_device.py), and ImageNet streamed
from the hosts (feeds/streamed.py)."""
from typing import Any, Protocol

import jax
import ml_collections

from resnet_jax import models
from resnet_jax.data.origin import DataOrigin


class Feed(Protocol):
  """What the training loop asks of its input."""
  streamed: bool
  num_classes: int
  image_shape: tuple[int, int, int]
  eval_split: str
  origin: DataOrigin  # What was read.
  shardings: Any  # Of train_inputs(), for jit's in_shardings.

  def train_inputs(self) -> Any:
    """The global arrays the next dispatch's steps read their batches from."""

  def train_batch(self, data_keys, inputs, step, index) -> tuple[jax.Array, jax.Array]:
    """Traced in jit: (normalized images, labels) of the `index`-th step of a dispatch."""

  def data_state(self) -> Any:
    """What a checkpoint must hold to read the same batches after a restart, or None."""

  def restore_data_state(self, state) -> None:
    """Continues from a state that data_state() returned (streamed feeds only)."""

  def log_extras(self) -> dict:
    """Input counters for the next train log record (e.g. unreadable files skipped)."""


def open_feed(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Feed:
  """The input of `config.model`: the nets of Section 4.2 train on CIFAR-scale data sets held
  on the devices; the ImageNet nets of Table 1 on images streamed from the hosts."""
  if models.parse(config.model).dataset == 'imagenet':
    from resnet_jax.feeds import streamed  # Imports grain.
    return streamed.StreamFeed(config, mesh)
  from resnet_jax.feeds import on_device
  return on_device.OnDeviceFeed(config, mesh)
