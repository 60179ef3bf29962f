"""The training loop: sharded jit over a device mesh and orbax checkpoints, fed by one of
two inputs behind one interface (feeds/): CIFAR-scale data sets held on the devices, or
ImageNet images streamed from the hosts.

`num_replicas` > 1 trains that many copies of the net at once (seeds `seed`, `seed + 1`,
...) on a leading replica axis that the mesh's `replica` axis splits over groups of devices,
each group running its nets with ordinary convolutions (replicas.py), so small nets fill an
accelerator or a pod; each replica follows exactly the data order, augmentation and init of
its own seed.
"""
import contextlib
import dataclasses
import functools
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax import linen as nn
from jax import lax
from jax.experimental import multihost_utils

from resnet_jax import feeds, models, optim, replicas, sharding
from resnet_jax.config import checks
from resnet_jax.data.cifar import augment
from resnet_jax.data.errors import DataError
from resnet_jax.errors import OutOfTime, Preempted
from resnet_jax.feeds import streamed_eval
from resnet_jax.run import checkpoints, console, record, time_budget, workdir_lock
from resnet_jax.run.metric_logging import MetricLogger
from resnet_jax.run.nonfinite import NonFiniteGuard
from resnet_jax.run.preemption import PreemptionWatcher
from resnet_jax.train_state import EvalMetrics, TrainMetrics, eval_step, init_state, train_step


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """The configured net, with as many outputs as the data set has classes."""
  return models.create(config.model, num_classes=num_classes, shortcut=config.shortcut,
                       dtype=config.dtype, bn_group_size=config.bn_group_size,
                       scan_blocks=config.scan_blocks)


def replica_seeds(config: ml_collections.ConfigDict) -> list[int]:
  """The seed of each replica trained at once (one unless `num_replicas` > 1)."""
  return [config.seed + replica for replica in range(config.num_replicas)]


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a run builds before its first step; the loop and the benchmark share it."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  feed: feeds.Feed
  model: nn.Module
  optimizer: optax.GradientTransformation
  init: Callable[[jax.Array], Any]  # Seed keys -> the initial train state of every replica.
  abstract_state: Any
  state_shardings: Any


def build(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None,
          devices=None, open_feed: Callable[..., feeds.Feed] = feeds.open_feed) -> Setup:
  """Checks `config`, opens its input on the mesh and builds the model and optimizer.

  `mesh`: the one checks.validate(config) returned, where the caller checked it
  already. `devices` (default: jax's) and `open_feed` let bench/aot.py build the same programs
  for a TPU or GPU description, from the input's shapes alone."""
  if mesh is None:
    mesh = checks.validate(config, devices)
  checks.warn(config)
  feed = open_feed(config, mesh)
  model = build_model(config, feed.num_classes)
  optimizer = optim.make_optimizer(config.optimizer, config.batch_size)
  init_one = functools.partial(init_state, model, optimizer, image_shape=feed.image_shape)
  init = _per_replica(config, mesh, init_one, in_axes=(0,))
  abstract_state = jax.eval_shape(init, _seed_keys(config))
  return Setup(config, mesh, feed, model, optimizer, init, abstract_state,
               state_shardings=sharding.state_sharding(mesh, abstract_state,
                                                       config.num_replicas))


def initial_state(setup: Setup):
  """The initial train state and empty train metrics, placed on the mesh."""
  state = jax.jit(lambda key_data: setup.init(jax.random.wrap_key_data(key_data)),
                  out_shardings=setup.state_shardings)(_seed_key_data(setup.config))
  metrics = jax.jit(functools.partial(_empty_metrics, setup.config.num_replicas),
                    out_shardings=sharding.replicated(setup.mesh))()
  return state, metrics


def make_train_fn(setup: Setup):
  """A jitted function running `steps_per_dispatch` steps of every replica on the batches
  of the feed's train inputs: (state, metrics, inputs, reset_metrics) -> (state, metrics,
  nonfinite_steps).

  Train metrics accumulate beside the state (reset when `reset_metrics`), so a checkpoint
  carries the running averages and a resumed run logs exactly what an uninterrupted
  one would. `nonfinite_steps` counts the steps with a NaN/Inf loss or gradient.
  """
  config = setup.config
  batch_sharding = sharding.batch_sharding(setup.mesh)

  def one_step(data_keys, inputs, carry, index):
    state, metrics = carry
    images, labels = setup.feed.train_batch(data_keys, inputs, state.step, index)
    images = lax.with_sharding_constraint(images, batch_sharding)
    labels = lax.with_sharding_constraint(labels, batch_sharding)
    state, step_metrics = train_step(state, images, labels, model=setup.model,
                                     optimizer=setup.optimizer)
    return (state, metrics.merge(TrainMetrics.from_step(**step_metrics))), None

  def run_replica(seed_key, state, metrics, inputs, reset_metrics):
    metrics = jax.tree.map(lambda x: jnp.where(reset_metrics, jnp.zeros_like(x), x), metrics)
    skipped_before = metrics.skipped_steps.total
    data_keys = jax.random.split(jax.random.fold_in(seed_key, 1))  # Shuffle, augment.
    step_fn = functools.partial(one_step, data_keys, inputs)
    if config.steps_per_dispatch == 1:
      # XLA:CPU runs conv gradients inside a while loop ~10-20x slower than outside one.
      state, metrics = step_fn((state, metrics), 0)[0]
    else:
      (state, metrics), _ = lax.scan(step_fn, (state, metrics),
                                     jnp.arange(config.steps_per_dispatch))
    return state, metrics, metrics.skipped_steps.total - skipped_before

  run_replicas = _per_replica(config, setup.mesh, run_replica, in_axes=(0, 0, 0, None, None))

  def run(seed_key_data, state, metrics, inputs, reset_metrics):
    state, metrics, nonfinite = run_replicas(jax.random.wrap_key_data(seed_key_data), state,
                                             metrics, inputs, reset_metrics)
    return state, metrics, jnp.sum(nonfinite)

  replicated = sharding.replicated(setup.mesh)
  program = jax.jit(run, donate_argnums=(1, 2),
                    in_shardings=(replicated, setup.state_shardings, replicated,
                                  setup.feed.shardings, replicated),
                    out_shardings=(setup.state_shardings, replicated, replicated))
  return SeededProgram(program, _seed_key_data(config))


@dataclasses.dataclass(frozen=True)
class SeededProgram:
  """A jitted (seed key data, *args) -> ... called and lowered as a function of *args.

  The seeds are an argument of the program, not constants in it: every seed of a net runs the
  same compiled program (one compile, one entry in the persistent compilation cache).
  """
  program: Any
  seed_key_data: np.ndarray

  def __call__(self, *args):
    return self.program(self.seed_key_data, *args)

  def lower(self, *args):
    return self.program.lower(self.seed_key_data, *args)

  def compile(self, *args) -> 'SeededProgram':
    """The program compiled ahead of time for `args`, called as this one is."""
    return SeededProgram(self.lower(*args).compile(), self.seed_key_data)


def make_evaluator(setup: Setup) -> Callable[[Any], list[dict]]:
  """state -> the eval metrics of every replica, one dict each: the on-device eval split,
  or the streamed validation images' center crops."""
  config = setup.config
  if setup.feed.streamed:
    source = setup.feed.source
    scorer = streamed_eval.make_scorer(setup.model, source.mean, source.std)
    return functools.partial(streamed_eval.evaluate, scorer, setup.mesh, source, 'center',
                             config.eval_batch_size)
  eval_fn = make_eval_fn(setup)
  return lambda state: _computed(eval_fn(state, setup.feed.data), config.num_replicas)


def make_eval_fn(setup: Setup):
  """A jitted function evaluating every replica on the whole (padded, masked) on-device eval
  split: (state, data) -> EvalMetrics."""
  batch_sharding = sharding.batch_sharding(setup.mesh)

  def run_replica(state, dataset):
    def one_batch(metrics, batch):
      images, labels, mask = (lax.with_sharding_constraint(x, batch_sharding) for x in batch)
      images = augment.normalize(images, dataset.mean)
      return metrics.merge(eval_step(state, images, labels, mask, model=setup.model)), None

    batches = (dataset.eval_images, dataset.eval_labels, dataset.eval_mask)
    metrics, _ = lax.scan(one_batch, EvalMetrics.empty(), batches)
    return metrics

  run = _per_replica(setup.config, setup.mesh, run_replica, in_axes=(0, None))
  return jax.jit(run, in_shardings=(setup.state_shardings, setup.feed.shardings),
                 out_shardings=sharding.replicated(setup.mesh))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       deadline: time_budget.Deadline | None = None) -> dict:
  """Trains `config.model` for `config.num_train_steps`, resuming from `workdir`, which no
  other trainer may use meanwhile.

  Returns the last logged metrics by split (a list of one dict per replica when
  `num_replicas` > 1). With a `deadline` (a study's), or else a `time_budget` ('6h'), stops
  with a checkpoint once it is passed.
  """
  deadline = deadline or time_budget.Deadline(time_budget.parse_budget(config.get('time_budget')))
  workdir = epath.Path(workdir)
  mesh = checks.validate(config)
  found = workdir_lock.as_found(workdir)
  checks.check_workdir(workdir)
  with workdir_lock.held(workdir, found):
    setup = build(config, mesh)
    checkpoint_bytes = checks.checkpoint_bytes(setup.abstract_state)
    checks.check_workdir(workdir, checkpoint_bytes * (config.keep_checkpoints + 1))
    try:
      return _resume_and_train(setup, workdir, checkpoint_bytes, deadline)
    except Exception as error:  # Also a failed async save, raised from orbax's threads.
      if checkpoints.is_disk_full(error):
        raise checkpoints.disk_full(workdir, checkpoint_bytes) from None
      raise


def _resume_and_train(setup: Setup, workdir: epath.Path, checkpoint_bytes: int,
                      deadline: time_budget.Deadline) -> dict:
  config = setup.config
  ckpt = checkpoints.Checkpoints(
      workdir, every_steps=config.checkpoint_every_steps, keep=config.keep_checkpoints,
      fingerprint=checkpoints.model_fingerprint(config.model, setup.abstract_state.params),
      overwrite=config.overwrite, bytes_per_save=checkpoint_bytes)
  with contextlib.closing(ckpt):
    record.check_resume(workdir, config, trained_step=ckpt.latest_step())
    state, train_metrics = ckpt.restore_latest(
        initial_state(setup),
        restore_data_state=setup.feed.restore_data_state if setup.feed.streamed else None)
    start_step = int(jnp.max(state.step))
    with contextlib.closing(MetricLogger(workdir, resume_step=start_step)) as logger:
      finished = start_step >= config.num_train_steps
      if not finished:
        record.record_segment(workdir, config, start_step, setup.feed.origin)
        logging.info('%s', console.describe_run(config, state.params, workdir,
                                                setup.feed.origin))
      else:  # What it was trained with, not the values given now, which change nothing.
        trained_with, not_applied = record.finished_run_config(workdir, config)
        logging.info('%s', console.describe_run(trained_with, state.params, workdir,
                                                setup.feed.origin))
        logging.info('%s', console.finished_message(workdir, start_step, not_applied))
      return _train_loop(setup, ckpt, logger, state, train_metrics, start_step, deadline)


def _train_loop(setup: Setup, ckpt: checkpoints.Checkpoints, logger: MetricLogger, state,
                train_metrics, step: int, deadline: time_budget.Deadline) -> dict:
  config = setup.config
  train_fn, evaluate = make_train_fn(setup), make_evaluator(setup)
  schedule = optim.learning_rate_schedule(config.optimizer, config.batch_size)
  source = f'training run: {logger.workdir}'
  progress = console.Progress(
      step, config.num_train_steps, config.eval_every_steps,
      record_rate=functools.partial(time_budget.record_rate, time_budget.rate_key(config),
                                    source=source),
      record_evaluation=functools.partial(time_budget.record_evaluation, config, source=source))
  preemption = PreemptionWatcher()
  guard = NonFiniteGuard(config.on_nonfinite, ckpt, schedule, config.steps_per_dispatch)
  results = {}

  def save(step: int) -> None:
    guard.check_now()
    ckpt.save(step, (state, train_metrics), data_state=setup.feed.data_state())

  def log_evaluation(step: int) -> None:
    try:
      with progress.evaluating():
        rows = evaluate(state)
    except DataError:  # An unreadable val image: keep the steps trained so far.
      if ckpt.latest_step() != step:
        save(step)
      raise
    split = setup.feed.eval_split
    logging.info('step %d: %s', step, console.metrics_line(split, rows, _logged_seeds(config)))
    results[split] = _write(logger, config, step, split, rows)

  if _evaluation_missing(logger, setup.feed.eval_split, config, step):
    log_evaluation(step)  # Saved, then stopped or killed before its evaluation.
  reset = step % config.log_every_steps == 0  # The checkpointed averages were logged.
  while step < config.num_train_steps:
    state, train_metrics, nonfinite_steps = train_fn(state, train_metrics,
                                                     setup.feed.train_inputs(), reset)
    step += config.steps_per_dispatch
    guard.after_dispatch(step, nonfinite_steps)
    progress.tick(step)
    last = step == config.num_train_steps
    reset = step % config.log_every_steps == 0 or last
    if reset:
      results['train'] = _log_train_metrics(setup, logger, progress, schedule, train_metrics,
                                            step)
    stop, out_of_time = preemption.should_stop(), deadline.passed(hosts_in_step=reset)
    # Saved before the evaluation: a stop then costs no steps, and a rerun evaluates first.
    if stop or out_of_time or last or ckpt.is_due(step):
      save(step)
    if not last:
      _raise_if_asked_to_stop(config, step, stop, out_of_time)
    if _evaluation_due(config, step):
      log_evaluation(step)
  return results


def _log_train_metrics(setup: Setup, logger: MetricLogger, progress: console.Progress,
                       schedule, train_metrics, step: int):
  """Logs the train metrics averaged since the last log, with the learning rate and speed."""
  config = setup.config
  rows = _computed(train_metrics, config.num_replicas)
  rates = progress.report(step, console.metrics_line('train', rows, _logged_seeds(config)))
  extra = {'learning_rate': float(schedule(step - 1)), **rates, **setup.feed.log_extras()}
  results = _write(logger, config, step, 'train', rows, extra)
  _warn_about_skipped_steps(results, step)
  return results


def _raise_if_asked_to_stop(config, step: int, stop: bool, out_of_time: bool) -> None:
  """After the save of `step`: a preemption notice or a spent time budget ends the run."""
  if stop:
    raise Preempted(step)
  if out_of_time:
    raise OutOfTime(f'Time budget spent: saved a checkpoint at step {step} of '
                    f'{config.num_train_steps}; rerun the same command to continue.')


def _evaluation_due(config: ml_collections.ConfigDict, step: int) -> bool:
  return step % config.eval_every_steps == 0 or step == config.num_train_steps


def _evaluation_missing(logger: MetricLogger, split: str, config: ml_collections.ConfigDict,
                        step: int) -> bool:
  """Whether the run resumes at a step whose evaluation it did not log, on every process."""
  missing = step > 0 and _evaluation_due(config, step) and not logger.has_record(step, split)
  if jax.process_count() > 1:  # Only process 0 reads the log.
    missing = bool(multihost_utils.broadcast_one_to_all(np.int32(missing)))
  return missing


def _per_replica(config: ml_collections.ConfigDict, mesh, fn: Callable, in_axes) -> Callable:
  # Configs saved before replica_batching existed ran what `auto` picks now.
  return replicas.per_replica(fn, mesh, config.num_replicas, in_axes,
                              config.get('replica_batching', 'auto'))


def _seed_keys(config: ml_collections.ConfigDict) -> jax.Array:
  seeds = replica_seeds(config)
  if config.num_replicas == 1:
    return jax.random.key(seeds[0])
  return jax.vmap(jax.random.key)(jnp.asarray(seeds))


def _seed_key_data(config: ml_collections.ConfigDict) -> np.ndarray:
  # On the host (every process passes the same replicated value to the programs), even where
  # the caller traces (bench aot's eval_shape of initial_state).
  with jax.ensure_compile_time_eval():
    return np.asarray(jax.random.key_data(_seed_keys(config)))


def _empty_metrics(num_replicas: int) -> TrainMetrics:
  metrics = TrainMetrics.empty()
  if num_replicas == 1:
    return metrics
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_replicas,) + x.shape), metrics)


def _computed(metrics, num_replicas: int) -> list[dict]:
  """The values of clu metrics (with a leading replica axis when several), one dict each."""
  if num_replicas == 1:
    return [metrics.compute()]
  values = jax.vmap(lambda replica: replica.compute())(metrics)
  return [jax.tree.map(lambda v, r=r: v[r], values) for r in range(num_replicas)]


def _logged_seeds(config) -> list[int] | None:
  """The seed each replica's records and console lines name; None for a single run."""
  return None if config.num_replicas == 1 else replica_seeds(config)


def _write(logger: MetricLogger, config, step: int, split: str, rows: list[dict], extra=None):
  """Writes each replica's metrics; returns them (a list when there are several replicas)."""
  rows = [{**{name: float(v) for name, v in row.items()}, **(extra or {})} for row in rows]
  for seed, row in zip(_logged_seeds(config) or [None], rows):
    logger.write(step, split, row, seed=seed)
  return rows[0] if config.num_replicas == 1 else rows


def _warn_about_skipped_steps(results, step: int) -> None:
  skipped = sum(row['skipped_steps'] for row in (results if isinstance(results, list) else [results]))
  if skipped:
    logging.warning('Skipped %d steps with a NaN/Inf loss or gradient before step %d.',
                    skipped, step)
