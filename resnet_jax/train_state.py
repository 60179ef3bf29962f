"""The train state and the pure, jittable train and eval steps."""
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from clu import metrics


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; the model and optimizer stay outside."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


@flax.struct.dataclass
class SkippedSteps(metrics.Average):
  """How many steps had a NaN/Inf loss or gradient since the last reset."""

  @classmethod
  def from_model_output(cls, finite: jax.Array, **_) -> 'SkippedSteps':
    return super().from_model_output(jnp.logical_not(finite).astype(jnp.float32))

  def compute(self) -> jax.Array:
    return self.total


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  """Running averages over the finite steps since the last log, and the skipped steps."""
  loss: metrics.Average.from_output('loss')
  error: metrics.Average.from_output('error')
  skipped_steps: SkippedSteps

  @classmethod
  def from_step(cls, loss: jax.Array, error: jax.Array, finite: jax.Array) -> 'TrainMetrics':
    """One step's metrics; a skipped step counts in `skipped_steps` only."""
    return cls.single_from_model_output(loss=loss[None], error=error[None], finite=finite,
                                        mask=finite[None])


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output('loss')
  error: metrics.Average.from_output('error')


def init_state(model: nn.Module, optimizer: optax.GradientTransformation, key: jax.Array,
               image_shape: tuple[int, ...]) -> TrainState:
  """Initial parameters (He init), BN statistics and optimizer state."""
  variables = model.init(key, jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables['batch_stats'], opt_state=optimizer.init(params))


def _loss_and_errors(logits, labels):
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  error = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return loss, error


def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def train_step(state: TrainState, images: jax.Array, labels: jax.Array, *, model: nn.Module,
               optimizer: optax.GradientTransformation) -> tuple[TrainState, dict]:
  """One SGD step on a batch; returns the new state and the batch's loss, error and
  whether everything was finite. A step with a NaN/Inf loss, gradient or BatchNorm
  statistic changes nothing but the step counter, so the state stays usable."""

  def loss_fn(params):
    logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                  images, train=True, mutable=['batch_stats'])
    loss, error = _loss_and_errors(logits, labels)
    return loss.mean(), (error.mean(), updates['batch_stats'])

  (loss, (error, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  finite = _all_finite((loss, grads, batch_stats))
  updated = (optax.apply_updates(state.params, updates), batch_stats, opt_state)
  kept = (state.params, state.batch_stats, state.opt_state)
  params, batch_stats, opt_state = jax.tree.map(
      lambda new, old: jnp.where(finite, new, old), updated, kept)
  new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state)
  return new_state, {'loss': loss, 'error': error, 'finite': finite}


def eval_step(state: TrainState, images: jax.Array, labels: jax.Array, mask: jax.Array, *,
              model: nn.Module) -> EvalMetrics:
  """Loss and error of a (possibly padded) eval batch; `mask` marks the real images."""
  logits = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, images,
                       train=False)
  loss, error = _loss_and_errors(logits, labels)
  return EvalMetrics.single_from_model_output(loss=loss, error=error, mask=mask)
