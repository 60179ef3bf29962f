"""The CIFAR-10 nets of Section 4.2: 6n+2 layers, plain or residual."""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from resnet_jax.models.blocks import BasicBlock, repeat_block
from resnet_jax.models.layers import at_least_float32, check_shortcut, conv, norm_layer

IMAGENET_DEPTHS = (18, 34, 50, 101, 152)


def blocks_per_stage(depth: int) -> int:
  """n for a 6n+2-layer CIFAR net, with an error that explains the rule."""
  if depth < 8 or (depth - 2) % 6:
    hint = (f'; did you mean an ImageNet net like resnet{depth}?'
            if depth in IMAGENET_DEPTHS else '')
    raise ValueError(f'depth must be 6n+2 for CIFAR nets (20, 32, 44, 56, 110, 1202, ...), '
                     f'got {depth}{hint}')
  return (depth - 2) // 6


class CifarNet(nn.Module):
  """A 6n+2-layer CIFAR net: 3x3 conv, three stages of 2n 3x3 convs on 32/16/8 maps
  with 16/32/64 filters, global average pooling and a dense layer (Section 4.2).

  `residual=False` gives the plain counterpart; option A shortcuts keep both nets'
  parameter trees identical.
  """
  depth: int
  residual: bool = True
  shortcut: str = 'A'
  num_classes: int = 10
  widths: Sequence[int] = (16, 32, 64)
  dtype: Any = jnp.float32
  bn_group_size: int = 0
  scan_blocks: bool = False

  @nn.compact
  def __call__(self, images, train: bool = False):
    n = blocks_per_stage(self.depth)
    check_shortcut(self.shortcut)
    norm = norm_layer(train, self.bn_group_size, self.dtype)
    x = images.astype(self.dtype)
    x = nn.relu(norm(name='stem_bn')(conv(self.widths[0], 3, 1, self.dtype, name='stem_conv')(x)))
    for stage, width in enumerate(self.widths):
      make_block = functools.partial(BasicBlock, width, norm, residual=self.residual,
                                     shortcut=self.shortcut, dtype=self.dtype)
      prefix = f'stage{stage + 1}'
      # Subsampling is done by the first conv of stages 2 and 3, with stride 2 (4.2).
      x = make_block(stride=1 if stage == 0 else 2, name=f'{prefix}_block0')(x)
      x = repeat_block(x, make_block, n - 1, first_index=1, prefix=prefix, scan=self.scan_blocks)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name='classifier')(x).astype(at_least_float32(self.dtype))
