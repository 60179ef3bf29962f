"""One place that turns a model name ('resnet56', 'plain20', 'resnet50') into a net."""
import dataclasses
import difflib
import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from resnet_jax.models.cifar import CifarNet, blocks_per_stage
from resnet_jax.models.imagenet import STAGE_SIZES, ImageNetNet

FAMILIES = ('plain', 'resnet')
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)  # Table 6.
IMAGENET_DEPTHS = tuple(STAGE_SIZES)
_NAME = re.compile(r'(plain|resnet)(\d+)')


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What a registry name means: the net's family, depth and input."""
  name: str
  residual: bool
  depth: int
  dataset: str  # 'cifar' or 'imagenet'

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (32, 32, 3) if self.dataset == 'cifar' else (224, 224, 3)

  @property
  def default_num_classes(self) -> int:
    return 10 if self.dataset == 'cifar' else 1000

  @property
  def default_shortcut(self) -> str:
    # Option A for the CIFAR nets (4.2); option B, the paper's choice for 50/101/152 and
    # the totals users know, for every ImageNet name.
    return 'A' if self.dataset == 'cifar' else 'B'


def names() -> tuple[str, ...]:
  """The paper's nets; any other 6n+2 depth is accepted for CIFAR nets too."""
  cifar = [f'{family}{depth}' for family in FAMILIES for depth in CIFAR_DEPTHS]
  imagenet = [f'{family}{depth}' for family in FAMILIES for depth in IMAGENET_DEPTHS]
  return tuple(cifar + imagenet)


def parse(name: str) -> ModelSpec:
  """Resolves a registry name, raising a ValueError that lists the valid names."""
  match = _NAME.fullmatch(name.strip().lower().replace('-', '').replace('_', ''))
  if not match:
    raise ValueError(_unknown(name))
  family, depth = match.group(1), int(match.group(2))
  if depth in IMAGENET_DEPTHS:
    return ModelSpec(name, family == 'resnet', depth, 'imagenet')
  try:
    blocks_per_stage(depth)
  except ValueError:
    raise ValueError(
        f'{name!r}: depth must be 6n+2 for CIFAR nets (20, 32, 44, 56, 110, 1202, ...) or one '
        f'of {IMAGENET_DEPTHS} for ImageNet nets, got {depth}.{_did_you_mean(name)}') from None
  return ModelSpec(name, family == 'resnet', depth, 'cifar')


def create(name: str, *, num_classes: int | None = None, shortcut: str | None = None,
           dtype: Any = jnp.float32, bn_group_size: int = 0,
           scan_blocks: bool = False) -> nn.Module:
  """Builds the named net, e.g. `create('resnet56')` or `create('plain34', shortcut='A')`.

  Names are `plain<depth>` or `resnet<depth>`: CIFAR nets for any 6n+2 depth
  (20, 32, 44, 56, 110, 1202 in the paper), ImageNet nets for 18, 34, 50, 101, 152.
  """
  spec = parse(name)
  net_cls = CifarNet if spec.dataset == 'cifar' else ImageNetNet
  return net_cls(depth=spec.depth, residual=spec.residual,
                 shortcut=shortcut or spec.default_shortcut,
                 num_classes=num_classes or spec.default_num_classes,
                 dtype=jnp.dtype(dtype), bn_group_size=bn_group_size, scan_blocks=scan_blocks)


def _did_you_mean(name: str) -> str:
  close = difflib.get_close_matches(name, names(), n=3)
  return f" Did you mean {', '.join(close)}?" if close else ''


def _unknown(name: str) -> str:
  return (f'Unknown model {name!r}.{_did_you_mean(name)} Valid names: {", ".join(names())} '
          '(plain<d>/resnet<d> for any CIFAR depth d = 6n+2).')
