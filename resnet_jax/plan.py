"""The plan of `python -m resnet_jax.reproduce`: every training run of its parts, the steps each
has done and has left, and the wall time they will take, estimated from a few timed steps of
each net on this machine (of a cheaper net, scaled by multiply-adds, for the largest nets)."""
import dataclasses
import functools
import time

import jax
import ml_collections
from etils import epath

from resnet_jax import analysis, models, study, time_budget, train
from resnet_jax.models.complexity import count_multiply_adds

# A run whose step takes more than this many times the multiply-adds of the cheapest run of
# its dataset is not timed (a step of ResNet-152 or ResNet-1202 takes minutes on a CPU): its
# estimate is the cheapest run's, scaled by the ratio of their multiply-adds.
TIMED_WORK_RATIO = 4


@dataclasses.dataclass(frozen=True)
class PlannedRun:
  """One program a study trains: its part, folder name, trainer config and workdir."""
  part: str
  name: str
  config: ml_collections.ConfigDict
  workdir: epath.Path

  @property
  def steps(self) -> int:
    return self.config.num_train_steps

  def steps_done(self) -> int:
    """The step of its latest checkpoint (0 before the first)."""
    return analysis.latest_checkpoint_step(self.workdir) or 0


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Seconds of a run's first step (mostly compiling) and of each step after it."""
  first_step: float
  step: float
  scaled_from: str = ''  # The run whose timed steps were scaled by multiply-adds; '': timed.

  def seconds(self, steps_left: int) -> float:
    return 0.0 if steps_left <= 0 else self.first_step + (steps_left - 1) * self.step

  def scaled(self, factor: float, timed_run: str) -> 'Estimate':
    """This estimate of `timed_run` for a run doing `factor` times its multiply-adds a step:
    every step's compute scaled, the first step's compiling taken as the timed run's."""
    return Estimate(self.first_step + (factor - 1) * self.step, factor * self.step, timed_run)


def planned_runs(studies: dict[str, ml_collections.ConfigDict],
                 workdir: epath.Path) -> list[PlannedRun]:
  """Every program of the study configs `studies` (by part), each in WORKDIR/PART/NAME."""
  return [PlannedRun(part, name, run, workdir / part / name)
          for part, config in studies.items()
          for name, run in study.planned_runs(config).items()]


def time_steps(config: ml_collections.ConfigDict, steps: int) -> Estimate:
  """Times the first and the next `steps` dispatches of the trainer's own train function for
  `config`, on its real input and mesh; nothing is written."""
  setup = train.build(config)
  state, metrics = train.initial_state(setup)
  train_fn = train.make_train_fn(setup)
  per_dispatch = config.steps_per_dispatch
  started = time.perf_counter()
  state, metrics, _ = jax.block_until_ready(
      train_fn(state, metrics, setup.feed.train_inputs(), True))
  first = time.perf_counter() - started
  started = time.perf_counter()
  for _ in range(steps):
    state, metrics, _ = jax.block_until_ready(
        train_fn(state, metrics, setup.feed.train_inputs(), False))
  return Estimate(first, (time.perf_counter() - started) / (steps * per_dispatch))


def estimate(runs: list[PlannedRun], steps: int) -> dict[str, Estimate]:
  """An Estimate of every run with steps left, by name (none when `steps` is 0): from
  `steps` timed steps of the run, or for a run of more than TIMED_WORK_RATIO times the
  multiply-adds a step of its dataset's cheapest run, that run's scaled."""
  if steps <= 0:
    return {}
  left = [run for run in runs if run.steps_done() < run.steps]
  work = {run.name: step_multiply_adds(run.config) for run in left}
  estimates = {}
  for dataset in {models.parse(run.config.model).dataset for run in left}:
    group = [run for run in left if models.parse(run.config.model).dataset == dataset]
    cheapest = min(group, key=lambda run: work[run.name])
    timed = estimates[cheapest.name] = time_steps(cheapest.config, steps)
    for run in (run for run in group if run is not cheapest):
      ratio = work[run.name] / work[cheapest.name]
      estimates[run.name] = (timed.scaled(ratio, cheapest.name) if ratio > TIMED_WORK_RATIO
                             else time_steps(run.config, steps))
  return estimates


def step_multiply_adds(config: ml_collections.ConfigDict) -> int:
  """Multiply-adds of the forward passes of one train step of `config`: its net's per image
  (as Table 1 counts them) times the batch and the seeds trained at once."""
  spec = models.parse(config.model)
  crop = config.data.crop_size if spec.dataset == 'imagenet' else spec.image_shape[0]
  per_image = _net_multiply_adds(config.model, config.shortcut, (crop, crop, 3))
  return per_image * config.batch_size * config.get('num_replicas', 1)


@functools.cache
def _net_multiply_adds(net: str, shortcut: str, image_shape: tuple[int, int, int]) -> int:
  return count_multiply_adds(models.create(net, shortcut=shortcut), image_shape)


def describe(parts: dict[str, str], skipped: dict[str, str], runs: list[PlannedRun],
             estimates: dict[str, Estimate], timed_steps: int) -> str:
  """The plan as printed: each part (`parts`: title by name, in order) with its runs, steps
  and estimated wall time, the skipped parts with why, and the total."""
  devices = jax.devices()
  lines = [f'Plan on {len(devices)} {devices[0].device_kind} device(s):']
  total, unestimated = 0.0, 0
  for part, title in parts.items():
    if part in skipped:
      lines.append(f'  {part}: {title}: skipped, {skipped[part]}')
      continue
    lines.append(f'  {part}: {title}')
    for run in (run for run in runs if run.part == part):
      done, left = run.steps_done(), run.steps - run.steps_done()
      if not left:
        wall = 'finished'
      elif run.name in estimates:
        seconds = estimates[run.name].seconds(left)
        total += seconds
        wall = f'~{time_budget.describe(seconds)} ({_how_estimated(estimates[run.name])})'
      else:
        unestimated += 1
        wall = 'not estimated'
      lines.append(f'    {run.name}: {run.steps:,} steps ({done:,} done): {wall}')
  timed = f'{timed_steps} timed step{"s" if timed_steps > 1 else ""}'
  how = (f'an estimate from {timed} of each net on this hardware, training '
         'only (evaluation and checkpoints not included; the largest nets scaled from a cheaper '
         'net\'s timed steps by multiply-adds, as marked)' if estimates else
         'nothing estimated (--config.estimate_steps=0)' if unestimated else 'nothing to train')
  lines.append(f'Total: ~{time_budget.describe(total)} of training: {how}.')
  return '\n'.join(lines)


def _how_estimated(estimate: Estimate) -> str:
  if estimate.scaled_from:
    return f'estimate: {estimate.scaled_from}\'s timed steps scaled by multiply-adds'
  return 'estimate'
