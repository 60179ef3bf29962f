"""The optimizer and learning-rate schedule of Section 4.2, built from the config."""
import flax.traverse_util
import ml_collections
import optax


def default_config(lr_boundaries: tuple[int, ...], base_batch_size: int) -> ml_collections.ConfigDict:
  """The paper's SGD (Sections 3.4 and 4.2): lr 0.1 divided by 10 at each boundary,
  momentum 0.9, weight decay 1e-4 on every parameter, as in its Torch code."""
  return ml_collections.ConfigDict(dict(
      learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=1e-4,
      decay_norm_params=True, lr_boundaries=tuple(lr_boundaries), lr_decay=0.1,
      warmup_steps=0, warmup_learning_rate=0.01, scale_with_batch_size=False,
      base_batch_size=base_batch_size))


def learning_rate_schedule(config: ml_collections.ConfigDict, batch_size: int) -> optax.Schedule:
  """Step-wise lr: optional constant warm-up, then the base lr divided at each boundary.

  The paper's ResNet-110 warms up at 0.01 for about 400 iterations, then returns to
  0.1 (Section 4.2); `scale_with_batch_size` applies the linear scaling rule.
  """
  base = config.learning_rate
  if config.scale_with_batch_size:
    base *= batch_size / config.base_batch_size
  boundaries = {int(step): config.lr_decay for step in config.lr_boundaries}
  if not config.warmup_steps:
    return optax.piecewise_constant_schedule(base, boundaries)
  warmup = optax.constant_schedule(config.warmup_learning_rate)
  after = optax.piecewise_constant_schedule(
      base, {step - config.warmup_steps: scale for step, scale in boundaries.items()})
  return optax.join_schedules([warmup, after], [config.warmup_steps])


def make_optimizer(config: ml_collections.ConfigDict, batch_size: int) -> optax.GradientTransformation:
  """SGD with momentum and L2 weight decay added to the gradient, as torch.optim.SGD."""
  schedule = learning_rate_schedule(config, batch_size)
  decay_mask = None if config.decay_norm_params else _not_norm_params
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=decay_mask),
      optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))


def _not_norm_params(params):
  """True for every parameter except BatchNorm scales and biases."""
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {path: not any(part.endswith('bn') for part in path[:-1]) for path in flat})
