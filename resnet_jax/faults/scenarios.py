"""Fault scenarios: each injects one fault into tiny runs of the real command line in fresh
workdirs and returns outcome records: what was injected, what had to hold, whether it did.

Every run is the tiny ResNet-8 of TINY_FLAGS for STEPS steps on fake CPU devices, reading
a folder of PNG images; the uninterrupted reference run is made once per Lab and only
ever copied, never rerun.
"""
import contextlib
import dataclasses
import errno
import itertools
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

from resnet_jax import errors
from resnet_jax.faults import damage, runs
from resnet_jax.faults.runs import Finished, Running
from resnet_jax.run import checkpoints

STEPS = 12
# Logging every step lets a fault wait for any step; saves come every 2 steps (TINY_FLAGS).
# The lr drops twice, so a resumed run must also find its place in the schedule.
RUN_FLAGS = (f'--config.num_train_steps={STEPS}', '--config.log_every_steps=1',
             '--config.optimizer.lr_boundaries=(5,9)')
NAN_LEARNING_RATES = (1e6, 1e8)  # Log-uniform; ResNet-8 diverges to NaN within a few steps.
# A finished run continued to twice its steps at such a rate, with no drop before the end:
# a change of what is trained, which the run must be told to accept.
NAN_FLAGS = (f'--config.num_train_steps={2 * STEPS}',
             f'--config.optimizer.lr_boundaries=({2 * STEPS - 1},)',
             '--config.allow_config_change=true')


@dataclasses.dataclass(frozen=True)
class Outcome:
  """One fault injected once, and what came of it."""
  fault: str  # The row of the table.
  injected: str  # What exactly was done this time.
  checked: str  # What had to hold.
  passed: bool
  detail: str  # The failed checks and the log's end; or, when it passed, what was seen.


class Lab:
  """Fresh workdirs under `root`, one JAX compilation cache for every run, and the
  uninterrupted reference run the scenarios compare with (made on first use, which
  fills the cache before any run is killed).

  Every run reads one folder of PNG images made here, whose files and folders are
  recorded first: `data_untouched` checks them after whatever the lab's runs went through.
  """

  def __init__(self, root):
    self.root = Path(root)
    self.root.mkdir(parents=True, exist_ok=True)
    self.compilation_cache = self.root / 'compilation_cache'
    self.data = self.root / 'images'
    self.decoded_cache = self.root / 'decoded_images'
    _write_images(self.data)
    self.data_before = _data_state(self.data)
    self.started: list[Running] = []
    self._numbers = itertools.count()
    self._reference = None

  def workdir(self, name: str) -> Path:
    """A path for a new workdir (not created)."""
    number = next(self._numbers)
    while any(self.root.glob(f'{number:03d}-*')):  # A root used before.
      number = next(self._numbers)
    return self.root / f'{number:03d}-{name}'

  def start(self, workdir, *flags, devices: int = 1) -> Running:
    data_flags = ('--config.data.source=folder', f'--config.data.path={self.data}',
                  f'--config.data.cache_dir={self.decoded_cache}')
    running = Running(runs.start_main(workdir, *data_flags, *RUN_FLAGS, *flags, devices=devices,
                                      compilation_cache=self.compilation_cache))
    self.started.append(running)
    return running

  def run(self, workdir, *flags, devices: int = 1) -> Finished:
    return self.start(workdir, *flags, devices=devices).finish()

  def reference(self) -> Path:
    """The workdir of the uninterrupted run of STEPS steps."""
    if self._reference is None:
      workdir = self.workdir('reference')
      finished = self.run(workdir)
      if finished.returncode != 0:
        raise RuntimeError(f'The reference run failed (status {finished.returncode}):\n'
                           f'{finished.tail()}')
      self._reference = (workdir, checkpoints.load_latest_arrays(workdir),
                         runs.metric_records(workdir))
    return self._reference[0]

  def expected(self) -> tuple[tuple[int, list], list[dict]]:
    """The reference run's (step, [train state, train metrics]) and metrics records."""
    self.reference()
    return self._reference[1:]

  def copy_of_reference(self, name: str) -> Path:
    """A new workdir holding a copy of the finished reference run."""
    workdir = self.workdir(name)
    shutil.copytree(self.reference(), workdir)
    return workdir


def _write_images(folder: Path) -> None:
  """train/<class>/*.png and test/<class>/*.png shaped like the synthetic data of
  TINY_FLAGS: 128 train and 40 test images of 10 classes."""
  from PIL import Image
  pixels = np.random.default_rng(0).integers(0, 256, (168, 32, 32, 3), dtype=np.uint8)
  for index, image in enumerate(pixels):
    split, label = ('train', index % 10) if index < 128 else ('test', (index - 128) % 10)
    path = folder / split / f'class{label}' / f'{index:03d}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _data_state(folder: Path) -> dict:
  """Every file's sha256, size and mtime, and every folder's listing and mtime."""
  state = {}
  for path in sorted([folder, *folder.rglob('*')]):
    stat = path.stat()
    if path.is_dir():
      state[path] = (sorted(p.name for p in path.iterdir()), stat.st_mtime_ns)
    else:
      state[path] = (damage.sha256(path), stat.st_size, stat.st_mtime_ns)
  return state


class _Checks:
  """Collects what failed while a scenario checks what had to hold."""

  def __init__(self):
    self.failures: list[str] = []

  def require(self, holds, failure: str) -> bool:
    if not holds:
      self.failures.append(failure)
    return bool(holds)

  def require_no_traceback(self, log: Finished, failure: str) -> bool:
    """A traceback in `log` fails with its first lines, which the log an outcome shows (often
    a later run's) would not hold."""
    at = log.output.find('Traceback')
    return self.require(at < 0, f'{failure}:\n{log.output[at:at + 2000]}')

  def outcome(self, fault: str, injected: str, checked: str, seen: str,
              log: Finished | None = None) -> Outcome:
    if not self.failures:
      return Outcome(fault, injected, checked, True, seen)
    detail = '; '.join(self.failures)
    if log is not None:
      detail += f'\nLast lines of the log (exit status {log.returncode}):\n{log.tail()}'
    return Outcome(fault, injected, checked, False, detail)


def _progress(step: int) -> str:
  """The line train._Progress logs at a logged step."""
  return rf'\bstep {step}/{STEPS}:'


def _partial_saves(workdir: Path) -> list[Path]:
  directory = workdir / checkpoints.CHECKPOINT_DIR
  return sorted(directory.glob(f'*{checkpoints.PARTIAL_MARK}*')) if directory.exists() else []


def _complete_steps(workdir: Path) -> list[int]:
  directory = workdir / checkpoints.CHECKPOINT_DIR
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _latest_step(workdir: Path) -> int | None:
  return max(_complete_steps(workdir), default=None)


def _require_resumed_at(checks: _Checks, log: Finished, step: int | None) -> None:
  if step is None:
    checks.require('Resumed from' not in log.output, 'resumed although no checkpoint was complete')
  else:
    checks.require(re.search(rf'Resumed from \S+ at step {step}\.', log.output),
                   f'did not log "Resumed from ... at step {step}."')


def _warning_lines(log: Finished) -> list[str]:
  """The messages of absl's WARNING lines, found anywhere in a line: orbax's threads can
  print a traceback's pieces before a log record on the same line."""
  return re.findall(r'\b\d\d:\d\d:\d\d Warning: (.*)', log.output)


def _require_same_as_reference(checks: _Checks, lab: Lab, workdir: Path) -> None:
  """The final checkpoint (train state and train metrics) and metrics.jsonl (less its
  wall-clock fields) must equal the reference run's exactly."""
  (expected_step, expected_arrays), expected_records = lab.expected()
  try:
    step, arrays = checkpoints.load_latest_arrays(workdir)
  except (FileNotFoundError, ValueError) as error:
    checks.require(False, f'the final checkpoint does not load: {error}')
    return
  if checks.require(step == expected_step, f'the run ended at step {step}, not {expected_step}'):
    difference = runs.first_difference(arrays, expected_arrays)
    checks.require(difference is None, 'the final train state or train metrics differ from '
                   f'the uninterrupted run: {difference}')
  records = runs.metric_records(workdir)
  mismatch = next((f'{mine} != {theirs}' for mine, theirs in
                   itertools.zip_longest(records, expected_records) if mine != theirs), None)
  checks.require(mismatch is None, f'metrics.jsonl differs from the uninterrupted run: {mismatch}')


SAME_AS_REFERENCE = 'the end equals the uninterrupted run bit for bit'


# kill -9 ------------------------------------------------------------------------------

KILL_FAULTS = ('kill -9 during a checkpoint save', 'kill -9 a random time after a step',
               'kill -9 at a random time after the start')
KILL_CHECKED = ('the next start that got as far as training warned "partial checkpoint" '
                'with the path of every unfinished save and resumed from the newest complete '
                f'one; after the last kill the run finished (exit 0) and {SAME_AS_REFERENCE}')


def _kill_during_save(running: Running, workdir: Path, rng: random.Random) -> str | None:
  """SIGKILL a random 0-30 ms after a save starts (orbax writes each save to
  `<step>.orbax-checkpoint-tmp` and renames it when complete; a tiny save takes ~150 ms)."""
  leftovers = {(p.name, p.stat().st_ino) for p in _partial_saves(workdir)}
  while running.process.poll() is None:
    try:
      started = [p for p in _partial_saves(workdir) if (p.name, p.stat().st_ino) not in leftovers]
    except FileNotFoundError:  # Renamed between the listing and the stat.
      started = []
    if started:
      delay = rng.uniform(0, 0.03)
      time.sleep(delay)
      running.process.kill()
      running.process.wait()
      left = 'left it partial' if started[0].exists() else 'the save had finished'
      return f'SIGKILL {1000 * delay:.0f} ms after {started[0].name} appeared ({left})'
    time.sleep(0.001)
  return None


def _kill_after_step(running: Running, workdir: Path, rng: random.Random) -> str | None:
  """SIGKILL 0-200 ms after a random step after the one it resumes from is logged."""
  step, delay = rng.randint((_latest_step(workdir) or 0) + 1, STEPS - 1), rng.uniform(0, 0.2)
  if running.wait_for(_progress(step)) is None:
    return None
  time.sleep(delay)
  running.process.kill()
  return f'SIGKILL {1000 * delay:.0f} ms after step {step} was logged'


def _kill_at_time(running: Running, workdir: Path, rng: random.Random) -> str | None:
  """SIGKILL 0.5-6 s after the start: during imports, data loading, restore, compilation
  (from the cache) or the first steps."""
  del workdir
  delay = rng.uniform(0.5, 6.0)
  try:
    running.process.wait(delay)
    return None
  except subprocess.TimeoutExpired:
    running.process.kill()
  return f'SIGKILL {delay:.2f} s after the start'


def _where(log: Finished) -> str:
  steps = re.findall(_progress(r'(\d+)'), log.output)
  return f'the log had reached step {steps[-1]}' if steps else 'no step logged yet'


@dataclasses.dataclass
class _Start:
  """One start of the killed run: what it found on disk, and its log."""
  partial_saves: list[Path]
  latest_step: int | None
  log: Finished | None = None

  def reached_training(self) -> bool:
    return self.log.returncode == 0 or re.search(_progress(r'\d+'), self.log.output) is not None

  def check(self, checks: _Checks) -> None:
    warnings = _warning_lines(self.log)
    for path in self.partial_saves:
      checks.require(any('partial checkpoint' in line and str(path) in line for line in warnings),
                     f'no "partial checkpoint" warning naming {path}')
    _require_resumed_at(checks, self.log, self.latest_step)


def kill_9(lab: Lab, rng: random.Random, rounds: int = 3) -> list[Outcome]:
  """SIGKILL one run `rounds` times at random moments (cycling through: during a save,
  after a random step, at a random time after the start), restarting it each time; then
  it runs to the end and must equal the uninterrupted run exactly. One outcome per kill."""
  lab.reference()  # Compiles and caches every program first: no kill lands in a cache write.
  workdir = lab.workdir('kill-9')
  moments = (_kill_during_save, _kill_after_step, _kill_at_time)
  starts, kills, final = [], [], None
  while len(kills) < rounds and final is None:
    start = _Start(_partial_saves(workdir), _latest_step(workdir))
    running = lab.start(workdir)
    fault = len(kills) % len(moments)
    if start.latest_step == STEPS:  # No step or save left to kill it in: only its start-up.
      fault = KILL_FAULTS.index('kill -9 at a random time after the start')
    injected = moments[fault](running, workdir, rng)
    start.log = running.finish()
    starts.append(start)
    if start.log.returncode == -signal.SIGKILL:
      kills.append((KILL_FAULTS[fault], f'{injected}, {_where(start.log)}', len(starts) - 1))
    else:  # It ended by itself before the moment came.
      final = start
  if final is None:
    final = _Start(_partial_saves(workdir), _latest_step(workdir))
    final.log = lab.run(workdir)
    starts.append(final)
  end = _Checks()
  end.require(final.log.returncode == 0, f'the last start exited with {final.log.returncode}')
  _require_same_as_reference(end, lab, workdir)
  outcomes = []
  for fault, injected, killed in kills:
    checks = _Checks()
    # Judged by the next start that got as far as training.
    judge = next((start for start in starts[killed + 1:] if start.reached_training()), final)
    judge.check(checks)
    checks.failures += end.failures
    seen = (f'the next start warned about {len(judge.partial_saves)} partial save(s) and '
            f'resumed from {judge.latest_step or "scratch"}; equal at the end')
    outcomes.append(checks.outcome(fault, injected, KILL_CHECKED, seen, judge.log))
  if len(kills) < rounds:
    outcomes.append(Outcome(KILL_FAULTS[len(kills) % len(moments)], 'none: the run finished '
                            'before the moment came', KILL_CHECKED, False,
                            f'only {len(kills)} of {rounds} kills landed'))
  return outcomes


# SIGTERM ------------------------------------------------------------------------------

def sigterm(lab: Lab, rng: random.Random) -> list[Outcome]:
  """SIGTERM after a random step: a checkpoint at the stop step, exit status 42, and the
  rerun resumes there and ends equal to the uninterrupted run."""
  lab.reference()
  workdir, checks = lab.workdir('sigterm'), _Checks()
  step, delay = rng.randint(1, STEPS - 3), rng.uniform(0, 0.2)
  injected = f'SIGTERM {1000 * delay:.0f} ms after step {step} was logged'
  running = lab.start(workdir)
  signalled = running.wait_for(_progress(step)) is not None
  if signalled:
    time.sleep(delay)
    running.process.send_signal(signal.SIGTERM)
  stopped = running.finish()
  checked = (f'exit status {errors.Preempted.exit_code}, "saved a checkpoint at step N" with N '
             'the newest checkpoint and the last metrics record; the rerun resumed at N and '
             f'{SAME_AS_REFERENCE}')
  if not (checks.require(signalled, f'the run ended before step {step}') and
          checks.require(stopped.returncode == errors.Preempted.exit_code,
                         f'exit status {stopped.returncode}, not {errors.Preempted.exit_code}')):
    return [checks.outcome('SIGTERM (preemption)', injected, checked, '', stopped)]
  saved = re.search(r'saved a checkpoint at step (\d+)', stopped.output)
  saved = int(saved[1]) if checks.require(saved, 'no "saved a checkpoint at step N"') else None
  checks.require(saved is not None and saved < STEPS and _latest_step(workdir) == saved,
                 f'stopped at step {saved}, newest checkpoint {_latest_step(workdir)}')
  checks.require(runs.metric_records(workdir)[-1]['step'] == saved,
                 'the last metrics record is not of the stop step')
  resumed = lab.run(workdir)
  checks.require(resumed.returncode == 0, f'the rerun exited with {resumed.returncode}')
  _require_resumed_at(checks, resumed, saved)
  _require_same_as_reference(checks, lab, workdir)
  return [checks.outcome('SIGTERM (preemption)', f'{injected}: stopped at step {saved}', checked,
                         f'checkpoint at step {saved}, resumed there, equal at the end',
                         resumed)]


# Damaged checkpoints ------------------------------------------------------------------

DAMAGE_TARGETS = ('the largest array file', 'every file', 'one random file')


def damaged_checkpoint(lab: Lab, rng: random.Random, how: str = 'garble',
                       target: str = DAMAGE_TARGETS[0]) -> list[Outcome]:
  """Truncates or garbles (`how`) `target` of the newest checkpoint of a finished run,
  then reruns it.

  The damaged step must be reported unreadable, moved intact to corrupt_checkpoints/,
  and the run resumed from the step before; only a random file that the restore never
  reads (orbax's commit markers, say) may go unnoticed, and then the restored arrays
  matched the checksums saved with them.
  """
  workdir, checks = lab.copy_of_reference(f'{how}-checkpoint'), _Checks()
  steps = _complete_steps(workdir)
  step_dir = workdir / checkpoints.CHECKPOINT_DIR / str(steps[-1])
  files = sorted(p for p in step_dir.rglob('*') if p.is_file())
  if target == DAMAGE_TARGETS[0]:
    files = damage.array_files(step_dir)[:1]
  elif target == DAMAGE_TARGETS[2]:
    files = [rng.choice(files)]
  done = [damage.DAMAGE[how](path, rng) for path in files]
  injected = (f'{how}: {done[0]} (checkpoints/{step_dir.name}/'
              f'{files[0].relative_to(step_dir)})' if len(done) == 1 else
              f'{how}: all {len(done)} files of checkpoints/{step_dir.name}')
  damaged = damage.file_digests(step_dir)
  rerun = lab.run(workdir)
  checks.require(rerun.returncode == 0, f'the rerun exited with {rerun.returncode}')
  kept = workdir / checkpoints.CORRUPT_DIR / step_dir.name
  reported = any(f'step {step_dir.name} ' in line and 'is unreadable' in line
                 for line in _warning_lines(rerun))
  if reported or target != DAMAGE_TARGETS[2]:
    checks.require(reported, f'no warning that checkpoint {step_dir.name} "is unreadable"')
    checks.require(kept.is_dir() and damage.file_digests(kept) == damaged,
                   f'{kept} does not hold the damaged checkpoint byte for byte')
    _require_resumed_at(checks, rerun, steps[-2])
    seen = f'reported, moved to {checkpoints.CORRUPT_DIR}/{step_dir.name}, resumed at {steps[-2]}'
  else:
    _require_resumed_at(checks, rerun, steps[-1])
    seen = 'not read by the restore: resumed from the damaged step, its arrays matched'
  _require_same_as_reference(checks, lab, workdir)
  checked = ('a WARNING "is unreadable", the step moved byte for byte to corrupt_checkpoints/, '
             'resumed from the step before (a random file the restore never reads may go '
             f'unnoticed), and {SAME_AS_REFERENCE}')
  return [checks.outcome(f'{how} the newest checkpoint ({target})', injected, checked, seen,
                         rerun)]


# NaN / Inf ----------------------------------------------------------------------------

def _learning_rate(rng: random.Random) -> float:
  low, high = (math.log10(lr) for lr in NAN_LEARNING_RATES)
  return float(f'{10 ** rng.uniform(low, high):.3g}')


def _nonfinite(arrays) -> list[str]:
  """The paths of the floating-point arrays in `arrays` holding NaN or Inf."""
  leaves = jax.tree_util.tree_flatten_with_path(arrays)[0]
  return [jax.tree_util.keystr(path) for path, leaf in leaves
          if np.issubdtype(np.asarray(leaf).dtype, np.floating) and not np.isfinite(leaf).all()]


def nonfinite_stop(lab: Lab, rng: random.Random) -> list[Outcome]:
  """A finished run continued with a huge learning rate: it must stop with exit status 43
  and its message, save nothing after the divergence and keep the good checkpoints."""
  workdir, checks = lab.copy_of_reference('nan-stop'), _Checks()
  learning_rate = _learning_rate(rng)
  before = {step: damage.file_digests(workdir / checkpoints.CHECKPOINT_DIR / str(step))
            for step in _complete_steps(workdir)}
  stopped = lab.run(workdir, *NAN_FLAGS, f'--config.optimizer.learning_rate={learning_rate}')
  injected = f'learning rate {learning_rate:g} from step {STEPS} on'
  checked = (f'exit status {errors.NonFiniteError.exit_code}, "NaN/Inf at step" and "last good '
             'checkpoint is step G" in the log; G is the newest checkpoint, before the NaN, '
             'all finite; the checkpoints from before are byte-identical')
  if not checks.require(stopped.returncode == errors.NonFiniteError.exit_code,
                        f'exit status {stopped.returncode}, not {errors.NonFiniteError.exit_code}'):
    return [checks.outcome('NaN/Inf loss, on_nonfinite=stop', injected, checked, '', stopped)]
  at = re.search(r'NaN/Inf at steps? (?:\d+ to )?(\d+)', stopped.output)
  good = re.search(r'last good checkpoint is step (\d+)', stopped.output)
  seen = ''
  if checks.require(at and good, 'the message lacks "NaN/Inf at step" or "last good checkpoint '
                    'is step"'):
    at, good = int(at[1]), int(good[1])
    seen = f'NaN at step {at}; stopped; good checkpoint {good} kept'
    checks.require(good < at and _latest_step(workdir) == good,
                   f'NaN at step {at}, last good checkpoint {good}, newest on disk '
                   f'{_latest_step(workdir)}')
    step, arrays = checkpoints.load_latest_arrays(workdir)
    checks.require(not _nonfinite(arrays),
                   f'checkpoint {step} holds NaN/Inf: {_nonfinite(arrays)[:3]}')
  for step, digests in before.items():
    step_dir = workdir / checkpoints.CHECKPOINT_DIR / str(step)
    checks.require(not step_dir.exists() or damage.file_digests(step_dir) == digests,
                   f'checkpoint {step} changed')
  return [checks.outcome('NaN/Inf loss, on_nonfinite=stop', injected, checked, seen, stopped)]


def nonfinite_skip(lab: Lab, rng: random.Random) -> list[Outcome]:
  """The same divergence with on_nonfinite=skip: the run finishes with finite parameters
  and counts the skipped steps."""
  workdir, checks = lab.copy_of_reference('nan-skip'), _Checks()
  learning_rate = _learning_rate(rng)
  finished = lab.run(workdir, *NAN_FLAGS, f'--config.optimizer.learning_rate={learning_rate}',
                     '--config.on_nonfinite=skip')
  checks.require(finished.returncode == 0, f'exit status {finished.returncode}, not 0')
  skipped = sum(r.get('skipped_steps', 0) for r in runs.metric_records(workdir)
                if r['split'] == 'train')
  checks.require(skipped > 0, 'no train record of metrics.jsonl counts skipped_steps')
  checks.require('Skipped' in ''.join(_warning_lines(finished)), 'no warning about skipped steps')
  if finished.returncode == 0:
    step, arrays = checkpoints.load_latest_arrays(workdir)
    checks.require(step == 2 * STEPS, f'ended at step {step}')
    checks.require(not _nonfinite(arrays), f'NaN/Inf in the final state: {_nonfinite(arrays)[:3]}')
  return [checks.outcome(
      'NaN/Inf loss, on_nonfinite=skip', f'learning rate {learning_rate:g} from step {STEPS} on',
      'exit 0 at the last step, every array of the final checkpoint finite, skipped_steps > 0 '
      'in metrics.jsonl and a warning', f'{skipped:g} steps skipped', finished)]


# Invalid configs ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Invalid:
  name: str
  flags: tuple[str, ...]
  exit_code: int
  fragments: tuple[str, ...]  # The message must name these.
  devices: int = 1
  named: str = ''  # How the report says what the message names; the fragments by default.


INVALID_CONFIGS = (
    _Invalid('depth not 6n+2', ('--config.model=resnet21',), errors.ConfigError.exit_code,
             ('resnet21', '6n+2')),
    _Invalid('misspelt model', ('--config.model=resnett20',), errors.ConfigError.exit_code,
             ('resnett20', 'resnet20')),
    _Invalid('batch not divisible by 2 devices', ('--config.batch_size=7',),
             errors.ConfigError.exit_code, ('batch_size', '7'), devices=2),
    _Invalid('lr boundaries out of order', ('--config.optimizer.lr_boundaries=(20,10)',),
             errors.ConfigError.exit_code, ('lr_boundaries',)),
    _Invalid('unknown config key', ('--config.modle=resnet20',), errors.ConfigError.exit_code,
             ('modle', 'model')),
)


def invalid_configs(lab: Lab, rng: random.Random) -> list[Outcome]:
  """Each invalid config (and a workdir under a regular file) through the command line:
  its exit status and message, no traceback, and nothing written."""
  del rng
  not_a_folder = lab.workdir('not-a-folder')
  not_a_folder.write_text('a regular file\n')
  cases = [(case, lab.workdir('invalid')) for case in INVALID_CONFIGS]
  cases.append((_Invalid('workdir under a regular file', (), errors.WorkdirError.exit_code,
                         (str(not_a_folder),), named='the workdir'), not_a_folder / 'run'))
  outcomes = []
  for case, workdir in cases:
    checks = _Checks()
    finished = lab.run(workdir, *case.flags, devices=case.devices)
    checks.require(finished.returncode == case.exit_code,
                   f'exit status {finished.returncode}, not {case.exit_code}')
    missing = [fragment for fragment in case.fragments if fragment not in finished.output]
    checks.require(not missing, f'the output does not name {missing}')
    checks.require_no_traceback(finished, 'a traceback instead of a message')
    checks.require(not workdir.exists(), f'{workdir} was created')
    message = next((line for line in finished.output.splitlines()
                    if case.fragments[0] in line), '')
    if re.match(r'[IWEF]\d{4} ', message):  # absl's prefix: level, date, time, thread, file.
      message = message[message.find(']') + 1:]
    outcomes.append(checks.outcome(
        f'invalid config: {case.name}',
        ' '.join(case.flags) or '--workdir=FILE/run with FILE a regular file',
        f'exit status {case.exit_code}, the message names {case.named or list(case.fragments)}'
        ', no traceback, the workdir not created', message.strip()[:200], finished))
  return outcomes


# Another model's workdir --------------------------------------------------------------

def _files_lost(before: dict, workdir: Path) -> list[Path]:
  """The files of `before` (relative path -> digest) found nowhere under `workdir` with
  the same relative path ending and bytes."""
  after = damage.file_digests(workdir)
  return [path for path, digest in before.items()
          if not any(digest == theirs and moved.parts[-len(path.parts):] == path.parts
                     for moved, theirs in after.items())]


def other_models_workdir(lab: Lab, rng: random.Random) -> list[Outcome]:
  """A resnet14 started on a resnet8 run's workdir is refused with nothing changed; with
  config.overwrite it trains and the old run is kept intact under the workdir."""
  del rng
  workdir, checks = lab.copy_of_reference('other-model'), _Checks()
  before = damage.file_digests(workdir)
  refused = lab.run(workdir, '--config.model=resnet14')
  checks.require(refused.returncode == errors.WorkdirError.exit_code,
                 f'exit status {refused.returncode}, not {errors.WorkdirError.exit_code}')
  checks.require('holds a resnet8 run, but the config asks for resnet14' in refused.output,
                 'no "holds a resnet8 run, but the config asks for resnet14" message')
  checks.require(damage.file_digests(workdir) == before, 'the refused run changed the workdir')
  log = refused if checks.failures else None
  replaced = lab.run(workdir, '--config.model=resnet14', '--config.overwrite=true',
                     '--config.num_train_steps=2', '--config.optimizer.lr_boundaries=()')
  checks.require(replaced.returncode == 0, f'with overwrite, exit status {replaced.returncode}')
  lost = _files_lost(before, workdir)
  checks.require(not lost, f'files of the old run lost or changed: {[str(p) for p in lost[:5]]}')
  checks.require(_latest_step(workdir) == 2, 'with overwrite, no resnet14 checkpoint at step 2')
  return [checks.outcome(
      "another model's workdir", '--config.model=resnet14 on a resnet8 workdir, then again '
      'with --config.overwrite=true', f'exit status {errors.WorkdirError.exit_code} with "holds '
      'a resnet8 run" and every file byte-identical; with overwrite, exit 0 and every file of the '
      'old run still under the workdir, byte-identical',
      f'refused; with overwrite the {len(before)} files of the old run kept', log or replaced)]


# One trainer per workdir, a full disk -------------------------------------------------------

@contextlib.contextmanager
def _paused(running: Running):
  """The run stopped (SIGSTOP) while the block runs: it holds its place, its lock and its files."""
  os.kill(running.process.pid, signal.SIGSTOP)
  try:
    yield
  finally:
    os.kill(running.process.pid, signal.SIGCONT)


def second_trainer(lab: Lab, rng: random.Random) -> list[Outcome]:
  """A second trainer started on the workdir of one that trains (paused after a random step,
  so it surely still holds the workdir) must exit 2 at once naming the first one; the first
  then ends like the uninterrupted run, its metrics not mixed with anything."""
  lab.reference()
  workdir, checks = lab.workdir('two-trainers'), _Checks()
  step = rng.randint(1, STEPS - 1)
  first = lab.start(workdir)
  if not checks.require(first.wait_for(_progress(step)), f'the first run ended before step {step}'):
    return [checks.outcome(TWO_TRAINERS, '', '', '', first.finish())]
  with _paused(first):
    second = lab.run(workdir)
  holder = f'pid {first.process.pid} on {socket.gethostname()}'
  checks.require(second.returncode == errors.WorkdirInUse.exit_code,
                 f'the second exited with {second.returncode}, not {errors.WorkdirInUse.exit_code}')
  checks.require(holder in second.output, f'the second did not name the first ({holder})')
  checks.require_no_traceback(second, 'the second printed a traceback')
  finished = first.finish()
  checks.require(finished.returncode == 0, f'the first exited with {finished.returncode}')
  _require_same_as_reference(checks, lab, workdir)
  return [checks.outcome(
      TWO_TRAINERS, f'a second trainer started on the workdir while the first was paused after '
      f'step {step}', f'the second exits {errors.WorkdirInUse.exit_code} without a traceback, '
      f'naming the first ("{holder}"); the first finishes and {SAME_AS_REFERENCE}',
      'refused, naming the first; the first equal at the end', second if checks.failures else None)]


TWO_TRAINERS = 'two trainers on one workdir'
DISK_MIB = 20  # The tmpfs the disk-full run writes to.


def disk_full(lab: Lab, rng: random.Random) -> list[Outcome]:
  """A run on a 20 MiB tmpfs whose free space is taken (by another file) after a random save:
  its next save fails; it must exit 44 with one message naming the workdir, keep the earlier
  checkpoints, and, once the space is freed, resume and end like the uninterrupted run."""
  lab.reference()
  checks, disk = _Checks(), lab.workdir('small-disk')
  disk.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={DISK_MIB}m', 'tmpfs', str(disk)],
                           capture_output=True, text=True)
  checked = (f'exit status {errors.DiskFull.exit_code}, one message naming the workdir and the '
             'MiB a checkpoint needs, no traceback; the earlier checkpoints load; after the '
             f'space is freed the rerun resumes from the newest and {SAME_AS_REFERENCE}')
  if not checks.require(mounted.returncode == 0, f'cannot mount a tmpfs: {mounted.stderr}'):
    return [checks.outcome(DISK_FULL, 'none', checked, '')]
  try:
    return [_fill_the_disk(lab, rng, disk / 'run', disk / 'filler', checks, checked)]
  finally:
    subprocess.run(['umount', str(disk)], check=False)


DISK_FULL = f'disk full during a save ({DISK_MIB} MiB tmpfs)'


def _fill_the_disk(lab: Lab, rng: random.Random, workdir: Path, filler: Path, checks: _Checks,
                   checked: str) -> Outcome:
  step = 2 * rng.randint(1, STEPS // 2 - 1)
  # Every save kept: deleting an old one would make room again.
  running = lab.start(workdir, f'--config.keep_checkpoints={STEPS}')
  saved = workdir / checkpoints.CHECKPOINT_DIR / str(step)
  while not saved.exists() and running.process.poll() is None:
    time.sleep(0.001)
  with _paused(running):
    _fill(filler)
  full = running.finish()
  injected = f'the free space taken right after the save of step {step}'
  checks.require(full.returncode == errors.DiskFull.exit_code,
                 f'exit status {full.returncode}, not {errors.DiskFull.exit_code}')
  checks.require(f'--workdir={workdir}' in full.output and 'MiB' in full.output,
                 'no message naming the workdir and the space needed')
  checks.require_no_traceback(full, 'a traceback was printed')
  kept = _complete_steps(workdir)
  for complete in kept:
    try:
      checkpoints.load_latest_arrays(workdir, complete)
    except (FileNotFoundError, ValueError) as error:
      checks.require(False, f'checkpoint {complete} does not load: {error}')
  filler.unlink()
  resumed = lab.run(workdir, f'--config.keep_checkpoints={STEPS}')
  checks.require(resumed.returncode == 0, f'the rerun exited with {resumed.returncode}')
  _require_resumed_at(checks, resumed, max(kept, default=None))
  _require_same_as_reference(checks, lab, workdir)
  return checks.outcome(DISK_FULL, injected, checked,
                        f'exit {full.returncode} with one message; checkpoints {kept} intact; '
                        'resumed, equal at the end', resumed if checks.failures else full)


def _fill(path: Path) -> None:
  """Writes zeros to `path` until its disk is full."""
  with path.open('wb', buffering=0) as file:
    try:
      while True:
        file.write(bytes(2**16))
    except OSError as error:
      if error.errno != errno.ENOSPC:
        raise


# The data ------------------------------------------------------------------------------

def data_untouched(lab: Lab, rng: random.Random) -> list[Outcome]:
  """After every run of the lab so far (at least the reference), killed, stopped, diverged
  or refused, every file and folder of the data they read is as it was."""
  del rng
  lab.reference()
  checks = _Checks()
  after = _data_state(lab.data)
  changed = sorted(str(p) for p in lab.data_before.keys() | after.keys()
                   if lab.data_before.get(p) != after.get(p))
  checks.require(not changed, f'the data changed: {changed[:5]}')
  checks.require(any(lab.decoded_cache.rglob('*.npz')), f'no decoded cache in {lab.decoded_cache}')
  codes = [running.process.returncode for running in lab.started]
  ended = {name: codes.count(code) for name, code in
           (('SIGKILL', -signal.SIGKILL), ('SIGTERM', errors.Preempted.exit_code),
            ('NaN', errors.NonFiniteError.exit_code))}
  return [checks.outcome(
      'the data folder read by every run', f'{len(codes)} runs read {len(after)} PNG files and '
      f'folders (data.source=folder): {ended["SIGKILL"]} killed with SIGKILL, {ended["SIGTERM"]} '
      f'stopped by SIGTERM, {ended["NaN"]} by NaN, the rest finished or refused',
      'sha256, size and mtime of every data file and the listing and mtime of every data '
      'folder unchanged; the decoded cache written under data.cache_dir only',
      'the data unchanged')]
