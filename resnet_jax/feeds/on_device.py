"""The on-device input of the CIFAR nets: a whole data set placed on the accelerator once,
batches gathered, augmented and normalized inside the jitted step (data/cifar/augment.py)."""
import flax
import jax
import ml_collections
import numpy as np

from resnet_jax import data, sharding
from resnet_jax.data import ArraySplits
from resnet_jax.data.cifar import augment
from resnet_jax.errors import ConfigError


@flax.struct.dataclass
class DeviceData:
  """uint8 images and labels on every device; eval split padded into fixed batches."""
  train_images: jax.Array  # [N, H, W, C] uint8
  train_labels: jax.Array  # [N] int32
  mean: jax.Array          # [H, W, C] float32, per-pixel mean of the train images
  eval_images: jax.Array   # [num_batches, batch, H, W, C] uint8
  eval_labels: jax.Array   # [num_batches, batch] int32
  eval_mask: jax.Array     # [num_batches, batch] bool, False on padding


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
  """Splits an eval set into full batches, padding the last one and masking the padding,
  so that every eval image counts exactly once."""
  count = len(images)
  num_batches = -(-count // batch_size)
  padding = num_batches * batch_size - count
  pad = lambda array: np.concatenate([array, np.zeros((padding,) + array.shape[1:], array.dtype)])
  mask = np.arange(num_batches * batch_size) < count
  reshape = lambda array: array.reshape((num_batches, batch_size) + array.shape[1:])
  return reshape(pad(images)), reshape(pad(labels)), reshape(mask)


def to_device(splits: ArraySplits, mesh, eval_batch_size: int) -> DeviceData:
  """Places the splits on every device of `mesh` (every process passes the same splits)."""
  eval_images, eval_labels, eval_mask = eval_batches(
      splits.eval_images, splits.eval_labels.astype(np.int32), eval_batch_size)
  host = DeviceData(
      train_images=splits.train_images, train_labels=splits.train_labels.astype(np.int32),
      mean=augment.per_pixel_mean(splits.train_images), eval_images=eval_images,
      eval_labels=eval_labels, eval_mask=eval_mask)
  return jax.tree.map(lambda array: sharding.put_replicated(mesh, array), host)


class OnDeviceFeed:
  """The trainer's input for whole data sets (feeds.Feed): the same on-device arrays every
  dispatch, and a batch that is a function of (key, step) alone (Section 4.2 augmentation)."""
  streamed = False

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.splits = data.load_dataset(config.data)
    if config.batch_size > len(self.splits.train_images):
      raise ConfigError(f'batch_size={config.batch_size} is larger than the '
                        f'{len(self.splits.train_images)} training images; lower it or raise '
                        'data.train_fraction.')
    self.batch_size, self.augment = config.batch_size, config.data.augment
    self.data = to_device(self.splits, mesh, config.eval_batch_size)
    self.shardings = jax.tree.map(lambda _: sharding.replicated(mesh), self.data)
    self.num_classes = self.splits.num_classes
    self.image_shape = self.splits.train_images.shape[1:]
    self.eval_split = self.splits.eval_split
    self.origin = self.splits.origin

  def train_inputs(self) -> DeviceData:
    return self.data

  def train_batch(self, data_keys, inputs: DeviceData, step, index):
    del index  # Every step of a dispatch reads the same arrays.
    return augment.train_batch(*data_keys, step, inputs.train_images, inputs.train_labels,
                               inputs.mean, self.batch_size, self.augment)

  def data_state(self):
    return None  # A batch depends on (seed, step) alone: nothing to checkpoint.

  def log_extras(self) -> dict:
    return {}
