"""Figure 7's statistic: the std of each conv layer's response over a set of images.

A layer's response is its BatchNorm output, before the ReLU and before the shortcut is added
(Section 4.2, "Analysis of Layer Responses"). We read the paper's "std of layer responses" as:
per channel, the std over all images and spatial positions; then the mean over channels.
"""
import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax import models
from resnet_jax.models.layers import BatchNorm, Shortcut


def layer_response_stds(model: nn.Module, variables, images, batch_size: int) -> np.ndarray:
  """The response std of every conv layer of `model` on `images` (the net's inputs, already
  normalized), in forward order; for the CIFAR nets these are exactly the 3x3 layers (the
  stem and both convs of every block). Shortcut projections are left out.

  Statistics are merged over batches of `batch_size` images, so any number of images fits.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be a positive number of images, got {batch_size}.')
  if not len(images):
    raise ValueError('layer_response_stds needs at least one image, got none.')
  batch_moments = jax.jit(functools.partial(_batch_moments, model))
  pooled = None
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    means, variances = jax.device_get(batch_moments(variables, batch))
    moments = (len(batch), [np.asarray(m, np.float64) for m in means],
               [np.asarray(v, np.float64) for v in variances])
    pooled = moments if pooled is None else _pool(pooled, moments)
  _, _, variances = pooled
  return np.array([np.sqrt(variance).mean() for variance in variances])


def _batch_moments(model, variables, images):
  """Per layer, the per-channel mean and variance over the batch's images and positions."""
  _, state = model.apply(variables, images, train=False, capture_intermediates=_is_layer_response,
                         mutable=['intermediates'])
  responses = [response.astype(jnp.float32)
               for response in _in_forward_order(models.unroll_scanned(state['intermediates']))]
  axes = (0, 1, 2)
  return ([response.mean(axes) for response in responses],
          [response.var(axes) for response in responses])


def _pool(first, second):
  """(count, means, variances) of the union of two sets of images (Chan et al.'s update)."""
  (count_a, means_a, variances_a), (count_b, means_b, variances_b) = first, second
  weight = count_b / (count_a + count_b)
  deltas = [b - a for a, b in zip(means_a, means_b)]
  means = [a + weight * delta for a, delta in zip(means_a, deltas)]
  variances = [(1 - weight) * a + weight * b + weight * (1 - weight) * delta ** 2
               for a, b, delta in zip(variances_a, variances_b, deltas)]
  return count_a + count_b, means, variances


def _is_layer_response(module: nn.Module, method_name: str) -> bool:
  return (method_name == '__call__' and isinstance(module, BatchNorm)
          and not isinstance(module.parent, Shortcut))


def _in_forward_order(tree):
  # Flax records intermediates in call order; jax.tree.leaves would sort the keys instead
  # (stage1_block10 before stage1_block2).
  if isinstance(tree, Mapping):
    for value in tree.values():
      yield from _in_forward_order(value)
  elif isinstance(tree, (tuple, list)):
    for value in tree:
      yield from _in_forward_order(value)
  else:
    yield tree
