"""The ImageNet nets of Table 1: plain/residual 18 and 34, bottleneck 50/101/152."""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from resnet_jax.models.blocks import BasicBlock, BottleneckBlock, repeat_block
from resnet_jax.models.layers import at_least_float32, check_shortcut, conv, norm_layer

STAGE_SIZES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
               152: (3, 8, 36, 3)}
BOTTLENECK_DEPTHS = (50, 101, 152)


class ImageNetNet(nn.Module):
  """A Table 1 net: 7x7/2 conv, 3x3/2 max pool, four stages (conv2_x..conv5_x) of
  basic or bottleneck blocks with 64..512 filters, global average pool, dense."""
  depth: int
  residual: bool = True
  shortcut: str = 'B'
  num_classes: int = 1000
  widths: Sequence[int] = (64, 128, 256, 512)
  dtype: Any = jnp.float32
  bn_group_size: int = 0
  scan_blocks: bool = False

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.depth not in STAGE_SIZES:
      raise ValueError(f'ImageNet nets have depth {tuple(STAGE_SIZES)}, got {self.depth}; '
                       'CIFAR nets are 6n+2 layers (resnet20, resnet56, ...).')
    check_shortcut(self.shortcut)
    norm = norm_layer(train, self.bn_group_size, self.dtype)
    block_cls = BottleneckBlock if self.depth in BOTTLENECK_DEPTHS else BasicBlock
    x = images.astype(self.dtype)
    x = conv(self.widths[0], 7, 2, self.dtype, name='stem_conv')(x)
    x = nn.relu(norm(name='stem_bn')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (width, count) in enumerate(zip(self.widths, STAGE_SIZES[self.depth])):
      make_block = functools.partial(block_cls, width, norm, residual=self.residual,
                                     shortcut=self.shortcut, dtype=self.dtype)
      prefix = f'stage{stage + 1}'
      # conv3_1, conv4_1 and conv5_1 downsample with stride 2 (Table 1).
      x = make_block(stride=1 if stage == 0 else 2, name=f'{prefix}_block0')(x)
      x = repeat_block(x, make_block, count - 1, first_index=1, prefix=prefix,
                       scan=self.scan_blocks)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name='classifier')(x).astype(at_least_float32(self.dtype))
