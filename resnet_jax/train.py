"""The training loop: sharded jit over a device mesh, on-device data, orbax checkpoints."""
import functools
import logging
import time

import jax
import jax.numpy as jnp
import ml_collections
from clu import parameter_overview
from etils import epath
from jax import lax

from resnet_jax import checkpoints, config_checks, data, device_data, models, optim, sharding
from resnet_jax.data import augment
from resnet_jax.metric_logging import MetricLogger
from resnet_jax.errors import ConfigError, Preempted
from resnet_jax.nonfinite import NonFiniteGuard
from resnet_jax.preemption import PreemptionWatcher
from resnet_jax.train_state import EvalMetrics, TrainMetrics, TrainState, eval_step, init_state, train_step


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """The configured net, with as many outputs as the data set has classes."""
  return models.create(config.model, num_classes=num_classes, shortcut=config.shortcut,
                       dtype=config.dtype, bn_group_size=config.bn_group_size,
                       scan_blocks=config.scan_blocks)


def make_train_fn(config, model, optimizer, mesh, state_shardings, data_shardings):
  """A jitted function running `steps_per_dispatch` steps on on-device batches.

  Train metrics accumulate beside the state (reset when `reset_metrics`), so a checkpoint
  carries the running averages and a resumed run logs exactly what an uninterrupted
  one would. Also returns how many of the steps had a NaN/Inf loss or gradient.
  """
  shuffle_key, augment_key = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1))
  batch_sharding = sharding.batch_sharding(mesh)

  def one_step(dataset, carry, _):
    state, metrics = carry
    images, labels = augment.train_batch(
        shuffle_key, augment_key, state.step, dataset.train_images, dataset.train_labels,
        dataset.mean, config.batch_size, config.data.augment)
    images = lax.with_sharding_constraint(images, batch_sharding)
    labels = lax.with_sharding_constraint(labels, batch_sharding)
    state, step_metrics = train_step(state, images, labels, model=model, optimizer=optimizer)
    metrics = metrics.merge(TrainMetrics.from_step(**step_metrics))
    return (state, metrics), None

  def run(state, metrics, dataset, reset_metrics):
    metrics = jax.tree.map(lambda x: jnp.where(reset_metrics, jnp.zeros_like(x), x), metrics)
    skipped_before = metrics.skipped_steps.total
    step_fn = functools.partial(one_step, dataset)
    if config.steps_per_dispatch == 1:
      # XLA:CPU runs conv gradients inside a while loop ~10-20x slower than outside one.
      state, metrics = step_fn((state, metrics), None)[0]
    else:
      (state, metrics), _ = lax.scan(step_fn, (state, metrics), None,
                                     length=config.steps_per_dispatch)
    return state, metrics, metrics.skipped_steps.total - skipped_before

  replicated = sharding.replicated(mesh)
  return jax.jit(run, donate_argnums=(0, 1),
                 in_shardings=(state_shardings, replicated, data_shardings, replicated),
                 out_shardings=(state_shardings, replicated, replicated))


def make_eval_fn(model, mesh, state_shardings, data_shardings):
  """A jitted function evaluating the whole (padded, masked) eval split."""
  batch_sharding = sharding.batch_sharding(mesh)

  def run(state, dataset):
    def one_batch(metrics, batch):
      images, labels, mask = (lax.with_sharding_constraint(x, batch_sharding) for x in batch)
      images = augment.normalize(images, dataset.mean)
      return metrics.merge(eval_step(state, images, labels, mask, model=model)), None

    batches = (dataset.eval_images, dataset.eval_labels, dataset.eval_mask)
    metrics, _ = lax.scan(one_batch, EvalMetrics.empty(), batches)
    return metrics

  return jax.jit(run, in_shardings=(state_shardings, data_shardings),
                 out_shardings=sharding.replicated(mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config.model` for `config.num_train_steps`, resuming from `workdir`.

  Returns the last logged train and eval metrics.
  """
  workdir = epath.Path(workdir)
  config_checks.validate(config)
  mesh = sharding.make_mesh(config.mesh.to_dict())
  splits = data.load_dataset(config.data)
  if config.batch_size > len(splits.train_images):
    raise ConfigError(f'batch_size={config.batch_size} is larger than the {len(splits.train_images)} '
                     'training images; lower it or raise data.train_fraction.')
  model = build_model(config, splits.num_classes)
  optimizer = optim.make_optimizer(config.optimizer, config.batch_size)
  dataset = device_data.to_device(splits, mesh, config.eval_batch_size)
  data_shardings = jax.tree.map(lambda _: sharding.replicated(mesh), dataset)

  init = functools.partial(init_state, model, optimizer, image_shape=splits.train_images.shape[1:])
  abstract_state = jax.eval_shape(init, jax.random.key(0))
  config_checks.check_workdir(
      workdir, config_checks.checkpoint_bytes(abstract_state) * (config.keep_checkpoints + 1))
  ckpt = checkpoints.Checkpoints(
      workdir, every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints,
      fingerprint=checkpoints.model_fingerprint(config.model, abstract_state.params),
      overwrite=config.overwrite)
  state_shardings = sharding.state_sharding(mesh, abstract_state)
  replicated = sharding.replicated(mesh)
  state = jax.jit(init, out_shardings=state_shardings)(jax.random.key(config.seed))
  train_metrics = jax.jit(TrainMetrics.empty, out_shardings=replicated)()
  state, train_metrics = ckpt.restore_latest((state, train_metrics))
  start_step = int(state.step)

  logger = MetricLogger(workdir, resume_step=start_step)
  logger.write_config(config.to_json_best_effort(indent=2))
  if jax.process_index() == 0 and start_step == 0:
    parameter_overview.log_parameter_overview(state.params)

  train_fn = make_train_fn(config, model, optimizer, mesh, state_shardings, data_shardings)
  eval_fn = make_eval_fn(model, mesh, state_shardings, data_shardings)
  schedule = optim.learning_rate_schedule(config.optimizer, config.batch_size)
  results = {}
  progress = _Progress(start_step, config.num_train_steps)
  progress_hooks = logger.progress_hooks(config.num_train_steps)
  preemption = PreemptionWatcher()
  guard = NonFiniteGuard(config.on_nonfinite, ckpt, schedule, config.steps_per_dispatch)
  step = start_step
  reset = step % config.log_every_steps == 0  # The checkpointed averages were logged.
  try:
    while step < config.num_train_steps:
      state, train_metrics, nonfinite_steps = train_fn(state, train_metrics, dataset, reset)
      step += config.steps_per_dispatch
      guard.after_dispatch(step, nonfinite_steps)
      for hook in progress_hooks:
        hook(step)
      reset = step % config.log_every_steps == 0 or step == config.num_train_steps
      if reset:
        results['train'] = {**_as_floats(train_metrics.compute()),
                            'learning_rate': float(schedule(step - 1)), **progress.report(step)}
        logger.write(step, 'train', results['train'])
        if results['train']['skipped_steps']:
          logging.warning('Skipped %d steps with a NaN/Inf loss or gradient before step %d.',
                          results['train']['skipped_steps'], step)
      if step % config.eval_every_steps == 0 or step == config.num_train_steps:
        results[splits.eval_split] = _as_floats(eval_fn(state, dataset).compute())
        logger.write(step, splits.eval_split, results[splits.eval_split])
        logging.info('step %d: %s error %.2f%%', step, splits.eval_split,
                     100 * results[splits.eval_split]['error'])
      stop = preemption.should_stop()
      if stop or step == config.num_train_steps or ckpt.is_due(step):
        guard.check_now()
        ckpt.save(step, (state, train_metrics))
      if stop and step < config.num_train_steps:
        raise Preempted(step)
  finally:
    ckpt.close()
    logger.close()
  return results


def _as_floats(metrics: dict) -> dict:
  return {name: float(value) for name, value in metrics.items()}


class _Progress:
  """Steps/s since the last report and the ETA of the remaining steps."""

  def __init__(self, step: int, total_steps: int):
    self.step, self.time, self.total_steps = step, time.perf_counter(), total_steps

  def report(self, step: int) -> dict:
    now = time.perf_counter()
    steps_per_sec = (step - self.step) / max(now - self.time, 1e-9)
    eta = (self.total_steps - step) / max(steps_per_sec, 1e-9)
    self.step, self.time = step, now
    logging.info('step %d/%d: %.2f steps/s, ETA %s', step, self.total_steps, steps_per_sec,
                 time.strftime('%H:%M:%S', time.gmtime(eta)))
    return {'steps_per_sec': steps_per_sec, 'eta_seconds': eta}
