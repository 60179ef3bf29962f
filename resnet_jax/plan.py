"""The plan of `python -m resnet_jax.reproduce`: every training run of its parts, the steps each
has done and has left, and the wall time they will take, estimated from a few timed steps of
each net on this machine."""
import dataclasses
import time

import jax
import ml_collections
from etils import epath

from resnet_jax import analysis, study, time_budget, train


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

  def seconds(self, steps_left: int) -> float:
    return 0.0 if steps_left <= 0 else self.first_step + (steps_left - 1) * self.step


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
  """An Estimate of every run with steps left, by name (none when `steps` is 0)."""
  if steps <= 0:
    return {}
  return {run.name: time_steps(run.config, steps) for run in runs
          if run.steps_done() < run.steps}


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
             estimates: dict[str, Estimate], timed_steps: int,
             compiled: dict[str, str] | None = None) -> str:
  """The plan as printed: each part (`parts`: title by name, in order) with its runs, steps
  and estimated wall time (and `compiled`'s word on each run), the skipped parts with why,
  and the total."""
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
        wall = f'~{time_budget.describe(seconds)} (estimate)'
      else:
        unestimated += 1
        wall = 'not estimated'
      on_target = f'; {compiled[run.name]}' if run.name in (compiled or {}) else ''
      lines.append(f'    {run.name}: {run.steps:,} steps ({done:,} done): {wall}{on_target}')
  timed = f'{timed_steps} timed step{"s" if timed_steps > 1 else ""}'
  how = (f'an estimate from {timed} of each net on this hardware, training '
         'only (evaluation and checkpoints not included)' if estimates else
         'nothing estimated (--config.estimate_steps=0)' if unestimated else 'nothing to train')
  lines.append(f'Total: ~{time_budget.describe(total)} of training: {how}.')
  return '\n'.join(lines)
