"""The data set placed on the accelerator once, for training and evaluation in jit."""
import flax
import jax
import numpy as np

from resnet_jax import sharding
from resnet_jax.data import ArraySplits
from resnet_jax.data.augment import per_pixel_mean


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
      mean=per_pixel_mean(splits.train_images), eval_images=eval_images,
      eval_labels=eval_labels, eval_mask=eval_mask)
  return jax.tree.map(lambda array: sharding.put_replicated(mesh, array), host)
