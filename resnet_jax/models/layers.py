"""Building blocks shared by the CIFAR and ImageNet nets: convs, BatchNorm, shortcuts."""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

# He et al. 2015 ("Delving deep into rectifiers"), as cited in Section 3.4: zero-mean
# Gaussian with std sqrt(2/n), n = k*k*out_channels as in the paper's Torch code.
he_normal = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

SHORTCUT_OPTIONS = ('A', 'B', 'C')


def check_shortcut(option: str) -> None:
  if option not in SHORTCUT_OPTIONS:
    raise ValueError(f'shortcut must be one of {SHORTCUT_OPTIONS} (Section 3.3), got {option!r}')


def conv(features: int, kernel: int, stride: int = 1, dtype: Any = jnp.float32,
         name: str | None = None) -> nn.Conv:
  """A bias-free conv with symmetric padding kernel//2 on every side.

  XLA's 'SAME' pads stride-2 convs asymmetrically (0 before, 1 after); the paper's
  Torch nets pad 1 on both sides, which shifts the sampling grid by one pixel.
  """
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False,
                 kernel_init=he_normal, dtype=dtype, param_dtype=jnp.float32, name=name)


class BatchNorm(nn.Module):
  """BatchNorm with PyTorch/Torch semantics, over the batch or groups of it.

  `group_size=0` normalizes over the whole (global) batch; `group_size=k` over each
  run of k consecutive examples, as the paper's multi-GPU Torch runs did per GPU.
  Running statistics use momentum 0.1 in Torch's convention (0.9 here) and the
  unbiased variance, like torch.nn.BatchNorm2d.
  """
  use_running_average: bool
  group_size: int = 0
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = jnp.float32
  scale_init: Any = nn.initializers.ones

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    if self.use_running_average:
      multiplier = scale * lax.rsqrt(running_var.value + self.epsilon)
      offset = bias - running_mean.value * multiplier
      return (x * multiplier.astype(x.dtype) + offset.astype(x.dtype)).astype(self.dtype)

    groups = self._split_groups(x).astype(jnp.float32)
    axes = tuple(range(1, groups.ndim - 1))
    mean = groups.mean(axes, keepdims=True)
    var = jnp.square(groups - mean).mean(axes, keepdims=True)
    if not self.is_initializing():
      count = groups[0, ..., 0].size
      unbiased_var = var * count / max(count - 1, 1)
      m = self.momentum
      running_mean.value = m * running_mean.value + (1 - m) * mean.reshape(-1, features).mean(0)
      running_var.value = m * running_var.value + (1 - m) * unbiased_var.reshape(-1, features).mean(0)
    multiplier = scale * lax.rsqrt(var + self.epsilon)
    offset = bias - mean * multiplier
    normalized = groups * multiplier + offset
    return normalized.reshape(x.shape).astype(self.dtype)

  def _split_groups(self, x):
    batch = x.shape[0]
    size = self.group_size or batch
    if batch % size:
      raise ValueError(f'bn_group_size={size} must divide the batch of {batch}; '
                       'pick a divisor of the per-step batch or 0 for the whole batch.')
    return x.reshape((batch // size, size) + x.shape[1:])


class Shortcut(nn.Module):
  """The identity or projection path of a residual block (Section 3.3, options A/B/C)."""
  features: int
  stride: int
  option: str
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    shape_changes = self.stride != 1 or x.shape[-1] != self.features
    if self.option == 'C' or (self.option == 'B' and shape_changes):
      x = conv(self.features, 1, self.stride, self.dtype, name='projection')(x)
      return self.norm(name='projection_bn')(x)
    if not shape_changes:
      return x
    # Option A: subsample by the stride and pad the new channels with zeros, so the
    # shortcut adds no parameters (Section 3.3; the paper's CIFAR choice, Section 4.2).
    x = x[:, ::self.stride, ::self.stride, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, self.features - x.shape[-1])))


def norm_layer(train: bool, group_size: int, dtype: Any):
  """A BatchNorm factory bound to the train/eval mode, grouping and dtype."""
  return functools.partial(BatchNorm, use_running_average=not train,
                           group_size=group_size, dtype=dtype)
