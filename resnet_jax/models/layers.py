"""Building blocks shared by the CIFAR and ImageNet nets: convs, BatchNorm, shortcuts."""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# He et al. 2015 ("Delving deep into rectifiers"), as cited in Section 3.4: zero-mean
# Gaussian with std sqrt(2/n), n = k*k*out_channels as in the paper's Torch code.
he_normal = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

SHORTCUT_OPTIONS = ('A', 'B', 'C')


def at_least_float32(dtype) -> jnp.dtype:
  """Where sums need float32 (bfloat16 nets), or float64 (float64 nets, in numerics tests)."""
  return jnp.promote_types(dtype, jnp.float32)


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
                 kernel_init=he_normal, dtype=dtype, param_dtype=jnp.float32, name=name,
                 conv_general_dilated=_conv_general_dilated)


def _conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                          rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                          precision=None):
  """nn.Conv's convolution, with a weight gradient that XLA:CPU computes 3x faster."""
  plain = (lhs_dilation in (None, (1, 1)) and rhs_dilation in (None, (1, 1))
           and feature_group_count == 1 and precision is None)
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision)
  return _conv(lhs, rhs, tuple(window_strides), tuple(map(tuple, padding)))


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, kernel, strides, padding):
  return _lax_conv(x, kernel, strides, padding)


def _conv_forward(x, kernel, strides, padding):
  # On CPU, keep the conv input as one buffer: otherwise XLA recomputes it (BN, ReLU and
  # the residual sums before it) inside every consumer of the backward pass.
  x = lax.platform_dependent(x, cpu=lax.optimization_barrier, default=lambda x: x)
  return _lax_conv(x, kernel, strides, padding), (x, kernel)


def _conv_backward(strides, padding, residuals, output_grad):
  x, kernel = residuals
  input_grad = jax.vjp(lambda x: _lax_conv(x, kernel, strides, padding), x)[1](output_grad)[0]

  def lax_kernel_grad(x, output_grad):
    return jax.vjp(lambda k: _lax_conv(x, k, strides, padding), kernel)[1](output_grad)[0]

  def tap_kernel_grad(x, output_grad):
    return _kernel_grad_by_taps(x, output_grad, kernel.shape, strides, padding)

  # XLA:CPU lowers the kernel gradient to a conv over [C, H, W, N] transposes of both
  # operands, with an HxW window: slow transposes and a slow conv. One matmul per kernel
  # tap, contracting over batch and space, does the same sums without them (docs/performance.md).
  kernel_grad = lax.platform_dependent(x, output_grad, cpu=tap_kernel_grad,
                                       default=lax_kernel_grad)
  return input_grad, kernel_grad


def _kernel_grad_by_taps(x, output_grad, kernel_shape, strides, padding):
  """dL/dkernel[i, j] = sum over (n, h, w) of x_padded[n, s*h + i, s*w + j]^T output_grad[n, h, w]."""
  kernel_h, kernel_w, in_features, out_features = kernel_shape
  _, out_h, out_w, _ = output_grad.shape
  padded = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  grads = output_grad.reshape(-1, out_features)
  taps = []
  for i in range(kernel_h):
    for j in range(kernel_w):
      tap = lax.slice(padded, (0, i, j, 0),
                      (padded.shape[0], i + strides[0] * (out_h - 1) + 1,
                       j + strides[1] * (out_w - 1) + 1, in_features), (1, *strides, 1))
      # 2-D operands contracted on axis 0: XLA:CPU then calls a matmul without transposing.
      taps.append(lax.dot_general(tap.reshape(-1, in_features), grads, (((0,), (0,)), ((), ())),
                                  preferred_element_type=at_least_float32(x.dtype)))
  return jnp.stack(taps).reshape(kernel_shape).astype(x.dtype)


_conv.defvjp(_conv_forward, _conv_backward)


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

    groups = self._split_groups(x).astype(at_least_float32(x.dtype))
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
