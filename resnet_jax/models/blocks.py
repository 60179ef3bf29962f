"""Residual and plain blocks, and stacks of identical blocks (unrolled or scanned)."""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models.layers import Shortcut, conv

_SCAN_SUFFIX = '_scan'


class BasicBlock(nn.Module):
  """Two 3x3 convs (Figure 2 / Figure 5 left); a plain block when `residual` is False."""
  features: int
  norm: Callable[..., nn.Module]
  stride: int = 1
  residual: bool = True
  shortcut: str = 'A'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = conv(self.features, 3, self.stride, self.dtype)(x)
    y = nn.relu(self.norm(name='bn1')(y))  # BN right after each conv, before ReLU (3.4).
    y = conv(self.features, 3, 1, self.dtype)(y)
    y = self.norm(name='bn2')(y)
    if self.residual:
      y = y + Shortcut(self.features, self.stride, self.shortcut, self.norm, self.dtype)(x)
    return nn.relu(y)  # The second nonlinearity comes after the addition (Figure 2).


class BottleneckBlock(nn.Module):
  """1x1, 3x3, 1x1 convs (Figure 5 right), v1: the stride sits in the first 1x1 conv."""
  features: int
  norm: Callable[..., nn.Module]
  stride: int = 1
  residual: bool = True
  shortcut: str = 'B'
  dtype: Any = jnp.float32
  expansion: int = 4

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm(name='bn1')(conv(self.features, 1, self.stride, self.dtype)(x)))
    y = nn.relu(self.norm(name='bn2')(conv(self.features, 3, 1, self.dtype)(y)))
    out_features = self.features * self.expansion
    y = self.norm(name='bn3')(conv(out_features, 1, 1, self.dtype)(y))
    if self.residual:
      y = y + Shortcut(out_features, self.stride, self.shortcut, self.norm, self.dtype)(x)
    return nn.relu(y)


class _ScanStep(nn.Module):
  """Adapts a block x -> y to nn.scan's (carry, xs) -> (carry, ys) signature."""
  make_block: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, _):
    return self.make_block(name='block')(x), None


def repeat_block(x, make_block: Callable[..., nn.Module], count: int, *, first_index: int,
                 prefix: str, scan: bool):
  """Applies `count` identical blocks named `{prefix}_block{i}`.

  With `scan`, the blocks become one `nn.scan` whose parameters are stacked on a
  leading axis, so compile time does not grow with depth; `unroll_scanned` maps its
  variables back to the unrolled names.
  """
  if count <= 0:
    return x
  if scan:
    scanned = nn.scan(_ScanStep, variable_axes={'params': 0, 'batch_stats': 0, 'intermediates': 0},
                      split_rngs={'params': True}, length=count)
    name = f'{prefix}_block{first_index}{_SCAN_SUFFIX}'
    x, _ = scanned(make_block, name=name)(x, None)
    return x
  for index in range(first_index, first_index + count):
    x = make_block(name=f'{prefix}_block{index}')(x)
  return x


def unroll_scanned(tree: dict) -> dict:
  """Turns the stacked variables of scanned blocks into per-block entries.

  `{prefix}_block{k}_scan/block/...` with leading axis n becomes
  `{prefix}_block{k}`, ..., `{prefix}_block{k+n-1}`: the tree an unrolled net has.
  """
  unrolled = {}
  for key, value in tree.items():
    if not key.endswith(_SCAN_SUFFIX):
      unrolled[key] = unroll_scanned(value) if isinstance(value, dict) else value
      continue
    prefix, first_index = key[:-len(_SCAN_SUFFIX)].rsplit('_block', 1)
    stacked = value['block']
    count = jax.tree.leaves(stacked)[0].shape[0]
    for offset in range(count):
      name = f'{prefix}_block{int(first_index) + offset}'
      unrolled[name] = jax.tree.map(lambda leaf, i=offset: leaf[i], stacked)
  return unrolled
