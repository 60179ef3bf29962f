"""The plan of `python -m resnet_jax.reproduce`: every training run of its parts, the steps each
has done and has left, and the time they will take, training and evaluations, as a trainer's
ETA counts it: from the step rates measured on these devices before (time_budget.measured_rate)
or from steps timed after a warm-up, each with its range and source; the largest nets' from a
cheaper net's rate, scaled by multiply-adds; evaluations at their measured duration, else from
their forward passes."""
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable

import jax
import ml_collections
from etils import epath

from resnet_jax import analysis, models, train
from resnet_jax.models.complexity import count_multiply_adds
from resnet_jax.paper import study
from resnet_jax.run import console, time_budget

# A run whose step takes more than this many times the multiply-adds of the cheapest run of
# its dataset is not timed (a step of ResNet-152 or ResNet-1202 takes minutes on a CPU): its
# estimate is the cheapest run's, scaled by the ratio of their multiply-adds.
TIMED_WORK_RATIO = 4
# A compile this long gets a line of ours: XLA's own alarm after as long (2 minutes) stays off
# the console (run/console.py).
SLOW_COMPILE_S = 120
# An evaluation never timed is estimated from its forward passes: a train step's forward and
# backward passes do about 3 forward passes' work an image.
FORWARD_PASSES_A_TRAIN_IMAGE = 3
CIFAR_TEST_IMAGES = 10_000
IMAGENET_VAL_IMAGES = 50_000  # ILSVRC 2012's validation set, on which Table 2 reports.


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


def planned_runs(studies: dict[str, ml_collections.ConfigDict],
                 workdir: epath.Path) -> list[PlannedRun]:
  """Every program of the study configs `studies` (by part), each in WORKDIR/PART/NAME."""
  return [PlannedRun(part, name, run, workdir / part / name)
          for part, config in studies.items()
          for name, run in study.planned_runs(config).items()]


def time_steps(config: ml_collections.ConfigDict, steps: int, name: str = 'the net',
               say: Callable[[str], None] = print) -> time_budget.StepRate:
  """Times `steps` dispatches of the trainer's own train function for `config`, one by one
  after a warm-up dispatch (which compiles; one line on it through `say` if it took over
  SLOW_COMPILE_S), on its real input and mesh; keeps their median rate among the measured
  ones. Nothing else is written."""
  setup = train.build(config)
  state, metrics = train.initial_state(setup)
  train_fn = train.make_train_fn(setup)
  started = time.perf_counter()
  state, metrics, _ = jax.block_until_ready(
      train_fn(state, metrics, setup.feed.train_inputs(), True))
  compiling = time.perf_counter() - started
  if compiling > SLOW_COMPILE_S:
    say(f'  compiling {name} took {time_budget.describe(compiling)} (its first step included)')
  rates = []
  for _ in range(steps):
    started = time.perf_counter()
    state, metrics, _ = jax.block_until_ready(
        train_fn(state, metrics, setup.feed.train_inputs(), False))
    rates.append(config.steps_per_dispatch / (time.perf_counter() - started))
  median = statistics.median(rates)
  time_budget.record_rate(time_budget.rate_key(config), median,
                          source=f'plan timing: {time_budget.now()}')
  return time_budget.StepRate(median, min(rates), max(rates),
                              f'{steps} timed step{"s" * (steps > 1)} after a warm-up')


def estimate(runs: list[PlannedRun], timed_steps: int = 0, say: Callable[[str], None] = print,
             known: dict[str, time_budget.StepRate] | None = None
             ) -> dict[str, time_budget.StepRate]:
  """The StepRate of every run with steps left, by name, that one was measured for (a training
  run, `bench train` or an earlier plan, on these devices; `known`, an earlier call's result,
  in place of reading them again); with `timed_steps`, the others are timed now, saying which.
  A run without a rate that does more than TIMED_WORK_RATIO times the multiply-adds a step of
  its data set's cheapest run with a rate gets that rate, scaled."""
  rates, unmeasured = {}, {}  # Runs without a rate by rate_key: the seeds of a net share one.
  for run in runs:
    if run.steps_done() < run.steps:
      key = time_budget.rate_key(run.config)
      rate = time_budget.measured_rate(key) if known is None else known.get(run.name)
      if rate:
        rates[run.name] = rate
      else:
        unmeasured.setdefault(key, []).append(run)
  alikes = list(unmeasured.values())
  if timed_steps:  # The cheapest first, so that the largest nets are scaled, not timed.
    alikes.sort(key=lambda alike: step_multiply_adds(alike[0].config))
  for index, alike in enumerate(alikes, start=1):
    rate = _scaled_rate(alike[0], runs, rates)
    if not rate and timed_steps:
      say(f'Timing {alike[0].name} ({index} of {len(alikes)} nets without a measured rate): '
          f'compiling, then {timed_steps} steps...')
      rate = time_steps(alike[0].config, timed_steps, alike[0].name, say)
    if rate:
      rates.update({run.name: rate for run in alike})
  return rates


def _scaled_rate(run: PlannedRun, runs: list[PlannedRun],
                 rates: dict[str, time_budget.StepRate]) -> time_budget.StepRate | None:
  """The rate of the cheapest run of `run`'s data set with one, scaled by their multiply-adds
  a step, if `run` does more than TIMED_WORK_RATIO times its work (timing a step of ResNet-152
  or ResNet-1202 takes minutes on a CPU); else None."""
  dataset = models.parse(run.config.model).dataset
  with_rate = [other for other in runs if other.name in rates
               and models.parse(other.config.model).dataset == dataset]
  if not with_rate:
    return None
  cheapest = min(with_rate, key=lambda other: step_multiply_adds(other.config))
  ratio = step_multiply_adds(run.config) / step_multiply_adds(cheapest.config)
  if ratio <= TIMED_WORK_RATIO:
    return None
  rate = rates[cheapest.name]
  return time_budget.StepRate(
      rate.median / ratio, rate.slowest / ratio, rate.fastest / ratio,
      f"{cheapest.name}'s rate ({rate.source}) scaled by multiply-adds ({ratio:.1f}x)")


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


def eval_rates(runs: list[PlannedRun]) -> dict[str, time_budget.StepRate]:
  """The evaluations/s measured for every run with steps left that had one measured (a
  training run's evaluations after its first), by name."""
  rates = {}
  for run in (run for run in runs if run.steps_done() < run.steps):
    rate = time_budget.measured_rate(time_budget.eval_key(run.config))
    if rate:
      rates[run.name] = rate
  return rates


def eval_images(config: ml_collections.ConfigDict) -> int | None:
  """The images an evaluation of `config` reads, as far as the config says: its synthetic
  images, CIFAR's held-out validation set or test split, a folder's val/ images or ImageNet's
  validation set; None for a folder not there yet."""
  data = config.data
  if data.source == 'synthetic':
    return data.synthetic.num_eval
  if models.parse(config.model).dataset == 'cifar':
    return data.get('validation_size') or CIFAR_TEST_IMAGES
  if data.source == 'folder':
    val = epath.Path(data.path) / 'val' if data.path else None
    return len(list(val.glob('*/*'))) if val and val.exists() else None
  return IMAGENET_VAL_IMAGES


def _evaluations(run: PlannedRun, rate: time_budget.StepRate,
                 eval_rate: time_budget.StepRate | None
                 ) -> tuple[tuple[float, float, float], str] | None:
  """Seconds (median, fastest, slowest) of the evaluations `run` has left, and where they come
  from: `eval_rate`, the measured evaluations/s, else their forward passes at the train step
  `rate`; None if neither says."""
  count = console.evaluations_from(run.steps_done() + 1, run.steps, run.config.eval_every_steps)
  if eval_rate:
    return eval_rate.seconds(count), (f'{count} evaluations as long as measured '
                                      f'({eval_rate.source})')
  images = eval_images(run.config)
  if images is None:
    return None
  steps = count * images / (FORWARD_PASSES_A_TRAIN_IMAGE * run.config.batch_size)
  return rate.seconds(steps), (f'{count} evaluations of {images:,} images, estimated from '
                               'their forward passes')


def compile_for(runs: list[PlannedRun], target: str) -> dict[str, str]:
  """By run name: whether each run with steps left fits on `target` (bench/aot.py's forms)
  and the floor of its schedule there, from its programs compiled, not run."""
  from resnet_jax.bench import aot, targets
  described = targets.parse(target)
  compiled = {}
  for run in (run for run in runs if run.steps_done() < run.steps):
    _, programs = aot.compile_run(run.config, described, ('train', 'eval', 'center'))
    fits = all(program.memory['total'] <= described.usable_bytes for program in programs)
    floor = aot.run_floor(programs, described, run.config)
    compiled[run.name] = (f'{"fits" if fits else "DOES NOT FIT"} on {target}, floor '
                          f'{aot.duration(floor)} (compiled, not run)')
  return compiled


def describe(parts: dict[str, str], skipped: dict[str, str], runs: list[PlannedRun],
             rates: dict[str, time_budget.StepRate], evals: dict[str, time_budget.StepRate],
             compiled: dict[str, str] | None = None) -> str:
  """The plan as printed: each part (`parts`: title by name, in order) with its runs, steps
  and estimated time (training at `rates`, evaluations at `evals` or from their forward
  passes) with its range and sources (and `compiled`'s word on each run), the skipped parts
  with why, and the total."""
  devices = jax.devices()
  lines = [f'Plan on {len(devices)} {devices[0].device_kind} device(s), estimated from the step '
           f'rates measured on them ({time_budget.step_rates_file()}):']
  total, unestimated, no_evals = [0.0, 0.0, 0.0], [], []
  for part, title in parts.items():
    if part in skipped:
      lines.append(f'  {part}: {title}: skipped, {skipped[part]}')
      continue
    lines.append(f'  {part}: {title}')
    for run in (run for run in runs if run.part == part):
      done, left = run.steps_done(), run.steps - run.steps_done()
      if not left:
        wall = 'finished'
      elif run.name in rates:
        seconds = rates[run.name].seconds(left)
        evaluations = _evaluations(run, rates[run.name], evals.get(run.name))
        if evaluations:
          seconds = [sum(pair) for pair in zip(seconds, evaluations[0])]
        else:
          no_evals.append(run.name)
        total = [sum(pair) for pair in zip(total, seconds)]
        wall = (f'{_duration_range(*seconds)} ({rates[run.name].describe()}; '
                f'{evaluations[1] if evaluations else "evaluations not estimated"})')
      else:
        unestimated.append(run.name)
        wall = 'no measured rate'
      on_target = f'; {compiled[run.name]}' if run.name in (compiled or {}) else ''
      lines.append(f'    {run.name}: {run.steps:,} steps ({done:,} done): {wall}{on_target}')
  lines.append(f'Total: {_duration_range(*total)} of training and evaluations, compilation not '
               'included, as a trainer\'s ETA counts them.' if rates else
               'Total: nothing estimated.' if unestimated else 'Total: nothing to train.')
  if no_evals:
    lines.append(f'Evaluations not estimated for {", ".join(no_evals)}: their images are not '
                 'there yet (none of their evaluations was timed either).')
  if unestimated:
    lines.append(f'Not estimated: {", ".join(unestimated)}: no rate measured on these devices '
                 'yet. A training run keeps its rate for later plans; so does `python -m '
                 'resnet_jax.bench train --models=NET`, and --dry_run --config.estimate_steps=5 '
                 'times them now (compiling each net: minutes on a CPU).')
  return '\n'.join(lines)


def _duration_range(median: float, fastest: float, slowest: float) -> str:
  """E.g. '~23 h 15 min (19 h 02 min to 28 h 10 min)'."""
  if time_budget.describe(fastest) == time_budget.describe(slowest):
    return f'~{time_budget.describe(median)}'
  return (f'~{time_budget.describe(median)} ({time_budget.describe(fastest)} to '
          f'{time_budget.describe(slowest)})')
