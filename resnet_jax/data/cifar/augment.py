"""On-device CIFAR batches: shuffling, the paper's augmentation and normalization (4.2).

Everything here is pure jax so it runs inside the jitted train step, on data that
already sits on the accelerator. A batch is a function of (key, step) alone, so
any step's batch can be recomputed after a restart.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

CIFAR_PAD = 4  # "4 pixels are padded on each side" (Section 4.2).


def per_pixel_mean(images: np.ndarray) -> np.ndarray:
  """The per-pixel mean of uint8 images [N, H, W, C], as float32 [H, W, C]."""
  return images.mean(axis=0, dtype=np.float64).astype(np.float32)


def normalize(images: jax.Array, mean: jax.Array) -> jax.Array:
  """Subtracts the per-pixel mean (Section 4.2); uint8 in, float32 out."""
  return images.astype(jnp.float32) - mean


def batch_indices(key: jax.Array, step: jax.Array, batch_size: int,
                  num_examples: int) -> jax.Array:
  """Indices of the examples in `step`'s batch: a fresh permutation each epoch,
  drawn from (key, epoch); the last incomplete batch of an epoch is dropped."""
  steps_per_epoch = num_examples // batch_size
  epoch, position = step // steps_per_epoch, step % steps_per_epoch
  permutation = jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)
  return lax.dynamic_slice_in_dim(permutation, position * batch_size, batch_size)


def random_crop_and_flip(key: jax.Array, images: jax.Array, pad: int = CIFAR_PAD) -> jax.Array:
  """Zero-pads by `pad`, takes a random crop of the original size and flips half the
  images horizontally, each image independently."""
  batch, height, width, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1)
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def crop(image, offset):
    return lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (batch, 1, 1, 1))
  return jnp.where(flip, cropped[:, :, ::-1, :], cropped)


def train_batch(shuffle_key: jax.Array, augment_key: jax.Array, step: jax.Array,
                images: jax.Array, labels: jax.Array, mean: jax.Array, batch_size: int,
                augment: bool = True) -> tuple[jax.Array, jax.Array]:
  """The normalized, augmented batch for `step`, gathered from on-device arrays."""
  indices = batch_indices(shuffle_key, step, batch_size, images.shape[0])
  batch = normalize(images[indices], mean)
  if augment:
    # Mean subtraction comes first, so the zero padding is zero in normalized space,
    # as in the paper's Torch code.
    batch = random_crop_and_flip(jax.random.fold_in(augment_key, step), batch)
  return batch, labels[indices]
