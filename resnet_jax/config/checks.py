"""Checks of a run's config and workdir, before any data is read or anything compiled.

Every error names the config key, the value and the fix, in the user's terms.
"""
import logging
import os
import shutil
import tempfile

import jax
import ml_collections
import numpy as np
from etils import epath

from resnet_jax import models, replicas, sharding
from resnet_jax.errors import ConfigError, WorkdirError

INTERVALS = ('num_train_steps', 'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps')
CHOICES = {'dtype': ('float32', 'bfloat16'), 'shortcut': ('A', 'B', 'C'),
           'on_nonfinite': ('stop', 'skip'), 'replica_batching': replicas.BATCHINGS}


def validate(config: ml_collections.ConfigDict, devices=None) -> jax.sharding.Mesh:
  """Raises ConfigError for the first thing in `config` a run cannot do on `devices` (default:
  jax's); returns the mesh of config.mesh over them, which takes its batches and replicas."""
  _check_model(config)
  for key, allowed in CHOICES.items():
    if key in config and config[key] not in allowed:  # Older config.json files lack newer keys.
      raise ConfigError(f'{key}={config[key]!r} is not one of {allowed}; set --config.{key} '
                        'to one of them.')
  for key in ('batch_size', 'eval_batch_size', 'num_replicas', 'keep_checkpoints',
              'steps_per_dispatch'):
    _check_positive(config, key)
  _check_bn_group_size(config.bn_group_size, config.batch_size)
  _check_intervals(config)
  _check_schedule(config.optimizer, config.num_train_steps)
  return _mesh_taking_the_batches(config, devices)


def warn(config: ml_collections.ConfigDict) -> None:
  """Logs what a valid `config` may not mean to do (fine for a short trial of a recipe)."""
  boundaries = tuple(config.optimizer.lr_boundaries)
  if boundaries and boundaries[-1] >= config.num_train_steps:
    logging.warning('optimizer.lr_boundaries=%s reaches past the last step (num_train_steps=%d):'
                    ' the learning rate never drops there.', boundaries, config.num_train_steps)


def checkpoint_bytes(abstract_state) -> int:
  """Bytes of one checkpoint of `abstract_state` (a pytree of shapes and dtypes)."""
  return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree.leaves(abstract_state))


def check_workdir(workdir: epath.PathLike, required_bytes: int = 0) -> None:
  """Creates `workdir` if needed; raises WorkdirError if it cannot be written or has
  less than `required_bytes` free. Existing files are never touched."""
  if '://' in os.fspath(workdir):
    return  # Cloud storage (gs://...): no local disk to check.
  workdir = epath.Path(workdir)
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix='.write_probe_'):
      pass
  except OSError as error:
    raise WorkdirError(f'Cannot write to --workdir={workdir} ({error.strerror or error}); '
                       'pick a directory you can write to.') from None
  free = shutil.disk_usage(workdir).free
  if free < required_bytes:
    raise WorkdirError(
        f'--workdir={workdir} has {_mebibytes(free)} free, but the checkpoints of this run need '
        f'about {_mebibytes(required_bytes)}; free some space, pick another disk or lower '
        '--config.keep_checkpoints.')


def _check_model(config) -> None:
  try:
    spec = models.parse(config.model)
  except ValueError as error:
    raise ConfigError(f'model: {error}') from None
  streamed_data = 'crop_size' in config.data  # The ImageNet input's keys, not CIFAR's.
  if spec.dataset == 'imagenet' and not streamed_data:
    raise ConfigError(
        f'model={config.model!r} is an ImageNet net (Table 1, 224x224 crops), but this config '
        f'holds a CIFAR-scale data set; train it with experiments/imagenet.py:{config.model}, '
        'or pick a CIFAR net of depth 6n+2 (resnet20, resnet56, ...).')
  if spec.dataset == 'cifar' and streamed_data:
    raise ConfigError(
        f'model={config.model!r} is a CIFAR net (Section 4.2, 32x32 images), but this config '
        f'streams ImageNet; train it with experiments/cifar10.py:{config.model}, or pick an '
        'ImageNet net (plain18, plain34, resnet18/34/50/101/152).')
  if spec.dataset == 'imagenet' and config.num_replicas != 1:
    raise ConfigError(
        f'num_replicas={config.num_replicas}: the ImageNet nets train one net per run on '
        'streamed images (one input iterator); train seeds as separate runs (--config.seed), '
        'or use num_replicas with the CIFAR nets, whose data sets sit on the devices.')


def _is_whole(value, minimum: int) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_bn_group_size(group_size: int, batch_size: int) -> None:
  if not _is_whole(group_size, 0):
    raise ConfigError(f'bn_group_size={group_size!r} must be 0 (BN over the whole batch) or a '
                      'positive group size.')
  if group_size and batch_size % group_size:
    raise ConfigError(f'bn_group_size={group_size} must divide batch_size={batch_size}; pick a '
                      'divisor of it, or 0 for BN over the whole batch.')


def _check_positive(config, key: str) -> None:
  value = config[key]
  if not _is_whole(value, 1):
    raise ConfigError(f'{key}={value!r} must be a positive whole number.')


def _check_intervals(config) -> None:
  """Logging, eval and checkpoint steps must fall on dispatch boundaries."""
  per_dispatch = config.steps_per_dispatch
  for key in INTERVALS:
    value = config[key]
    if not _is_whole(value, 1) or value % per_dispatch:
      raise ConfigError(f'{key}={value} must be a positive multiple of steps_per_dispatch='
                        f'{per_dispatch}; round it to a multiple or lower steps_per_dispatch.')


def _check_schedule(optimizer: ml_collections.ConfigDict, num_train_steps: int) -> None:
  boundaries = list(optimizer.lr_boundaries)
  if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
    raise ConfigError(f'optimizer.lr_boundaries={tuple(boundaries)} must be positive steps in '
                      'increasing order, e.g. (32000, 48000).')
  if optimizer.warmup_steps < 0:
    raise ConfigError(f'optimizer.warmup_steps={optimizer.warmup_steps} must be 0 (no warm-up) '
                      'or a positive number of steps.')
  if boundaries and optimizer.warmup_steps >= boundaries[0]:
    raise ConfigError(f'optimizer.warmup_steps={optimizer.warmup_steps} must end before the first '
                      f'lr boundary ({boundaries[0]}).')


def _mesh_taking_the_batches(config, devices) -> jax.sharding.Mesh:
  mesh = sharding.make_mesh(config.mesh.to_dict(), devices)
  sharding.check_replicas_divide(config.num_replicas, mesh)
  for key in ('batch_size', 'eval_batch_size'):
    sharding.check_batch_divides(config[key], mesh, key)
  return mesh


def _mebibytes(count: int) -> str:
  return f'{count / 2**20:,.0f} MiB'
