"""Table 1 computed: each ImageNet net's layers, parameters and multiply-adds, beside the
paper's FLOPs. Shapes only, no training and no arrays: a few seconds a net on a CPU."""
import jax
import jax.numpy as jnp
import pandas as pd

from resnet_jax import models
from resnet_jax.analysis.paper import TABLE1_FLOPS
from resnet_jax.models.complexity import count_multiply_adds, count_parameters

IMAGE_SHAPE = (224, 224, 3)  # Table 1 counts a 224x224 crop.


def table1(nets=tuple(TABLE1_FLOPS)) -> pd.DataFrame:
  """One row per net: net, layers, parameters, multiply_adds and paper_flops (NaN where the
  paper gives none)."""
  rows = []
  for net in nets:
    model = models.create(net)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE)))
    rows.append({'net': net, 'layers': models.parse(net).depth,
                 'parameters': count_parameters(variables['params']),
                 'multiply_adds': count_multiply_adds(model, IMAGE_SHAPE),
                 'paper_flops': TABLE1_FLOPS.get(net, float('nan'))})
  return pd.DataFrame(rows)
