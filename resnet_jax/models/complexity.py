"""Parameter and multiply-add counts, the paper's measures of a net's size (Table 1, 6)."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from clu import parameter_overview


def count_parameters(params) -> int:
  """The number of trainable parameters (BN running statistics excluded)."""
  return parameter_overview.count_parameters(params)


def count_multiply_adds(model: nn.Module, image_shape: tuple[int, ...]) -> int:
  """Multiply-adds of one forward pass on one image, from a walk over convs and
  dense layers (what Table 1 calls FLOPs; BN, ReLU, pooling and additions are left out)."""
  if getattr(model, 'scan_blocks', False):
    model = model.clone(scan_blocks=False)  # A scanned block is traced once, not n times.
  total = 0

  def count(next_fun, args, kwargs, context):
    nonlocal total
    outputs = next_fun(*args, **kwargs)
    module = context.module
    if context.method_name == '__call__' and isinstance(module, (nn.Conv, nn.Dense)):
      inputs = args[0]
      # Every output element takes (kernel volume x input channels) multiply-adds.
      kernel_volume = math.prod(getattr(module, 'kernel_size', ()))
      total += math.prod(outputs.shape[1:]) * kernel_volume * inputs.shape[-1]
    return outputs

  def forward():
    with nn.intercept_methods(count):
      return model.init(jax.random.key(0), jnp.zeros((1,) + tuple(image_shape)))

  jax.eval_shape(forward)
  return total
