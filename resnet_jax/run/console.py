"""What a run prints: the config in one line, the net's size, steps/s and ETA, and the libraries'
chatter kept out of the console (the parameter table goes to a file in the workdir)."""
import contextlib
import errno
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Callable

import jax
import jaxlib.utils
import ml_collections
from absl import logging as absl_logging
from clu import parameter_overview
from etils import epath

from resnet_jax.data.origin import DataOrigin
from resnet_jax.run.metric_logging import METRICS_FILE

PARAMETERS_FILE = 'parameters.txt'
# A console line this soon after the first step, so that steps/s and the ETA show within
# seconds rather than at the first log step (minutes away on a CPU).
EARLY_REPORT_S = 10.0
RECORD_RATE_EVERY_S = 60.0  # How often a run updates its measured steps/s for later plans.
# Log lines a run's console does without: orbax reports every save at INFO, and warns twice
# that a checkpoint opened for reading is read only; TFDS warns about each empty version folder
# it looks in; JAX says at INFO which backends it could not load (libtpu on a CPU).
_QUIET_WARNINGS = ('Given directory is read only', 'read_only=True, setting save_interval_steps',
                   'has no dataset_info.json')
# XLA's C++ log shows FATAL alone: at ERROR it says what is no error of the run, e.g. its
# 'Very slow compile? If you want to file a bug...' banner and 'The operation took 2m28s' after
# two minutes of compiling (a fixed threshold, no flag: xla/service/slow_operation_alarm.cc). A
# failed compile or step still raises its error in Python. TF_CPP_MIN_LOG_LEVEL=0 shows it all
# (jax itself sets it to 1 as it loads, unless it is set).
XLA_MIN_LOG_LEVEL = 3  # absl's severities: 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL.


def quiet_libraries() -> None:
  """Keeps the libraries' INFO chatter and known harmless warnings off the console, XLA's C++
  log below FATAL too (unless TF_CPP_MIN_LOG_LEVEL=0), and absl's long line prefix (level,
  date, thread, source line) off every line."""
  if os.environ.get('TF_CPP_MIN_LOG_LEVEL') != '0':
    jaxlib.utils.absl_set_min_log_level(XLA_MIN_LOG_LEVEL)  # What jax_logging_level sets.
  logging.getLogger('absl').addFilter(_worth_showing)
  absl_logging.get_absl_handler().setFormatter(ConsoleFormatter())
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)
  _import_tensorflow_quietly()


class ConsoleFormatter(logging.Formatter):
  """A log line as a researcher reads it: the time, then the message; a warning or an error
  says so first."""

  LEVEL_WORDS = {logging.WARNING: 'Warning: ', logging.ERROR: 'Error: ',
                 logging.CRITICAL: 'Error: '}

  def __init__(self):
    super().__init__('%(asctime)s %(level_word)s%(message)s', datefmt='%H:%M:%S')

  def format(self, record: logging.LogRecord) -> str:
    record.level_word = self.LEVEL_WORDS.get(record.levelno, '')
    return super().format(record)


def _import_tensorflow_quietly() -> None:
  """Imports TensorFlow, where installed, with the process's stderr closed: its import prints
  a oneDNN notice twice from C++, which TF_CPP_MIN_LOG_LEVEL no longer silences (TF 2.21).
  The metrics' TensorBoard writer imports it anyway."""
  if importlib.util.find_spec('tensorflow') is None:
    return
  sys.stderr.flush()
  saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    pass  # The sources and writers that need it say so.
  finally:
    os.dup2(saved_stderr, 2)
    os.close(saved_stderr)
    os.close(devnull)


def _worth_showing(record: logging.LogRecord) -> bool:
  if record.levelno >= logging.ERROR:
    # orbax's save threads log a full disk with their tracebacks; the trainer says it in one
    # line, with the space a save needs (checkpoints.disk_full, exit status 44).
    return not ('/orbax/' in record.pathname and _is_disk_full(record))
  if '/orbax/' in record.pathname and record.levelno < logging.WARNING:
    return False
  message = record.getMessage()
  if record.levelno == logging.WARNING:
    if message in _SHOWN_WARNINGS:  # Once per process: a capstone builds every net twice.
      return False
    _SHOWN_WARNINGS.add(message)
  return not any(text in message for text in _QUIET_WARNINGS)


_SHOWN_WARNINGS = set()


def _is_disk_full(record: logging.LogRecord) -> bool:
  error = record.exc_info[1] if record.exc_info else None
  return ((isinstance(error, OSError) and error.errno == errno.ENOSPC)
          or os.strerror(errno.ENOSPC) in record.getMessage())


def describe_run(config: ml_collections.ConfigDict, params, workdir: epath.Path,
                 data_read: DataOrigin) -> str:
  """One line for the config and the data read, one for the net's size and where the run's
  files go; writes the full parameter table to WORKDIR/parameters.txt (process 0)."""
  optimizer = config.optimizer
  boundaries = ', '.join(f'{b:,}' for b in optimizer.lr_boundaries)
  schedule = f'x{optimizer.lr_decay:g} at {boundaries}' if boundaries else 'constant'
  seeds = (f'seed {config.seed}' if config.num_replicas == 1 else
           f'seeds {config.seed}-{config.seed + config.num_replicas - 1}')
  devices = jax.devices()
  warmup = (f', {optimizer.warmup_learning_rate} for the first {optimizer.warmup_steps} steps'
            if optimizer.warmup_steps else '')
  config_line = (
      f'{config.model} (shortcut {config.shortcut}, {config.dtype}) on '
      f'{_data(config.data.name, data_read)}, '
      f'batch {config.batch_size}, {config.num_train_steps:,} steps, lr {optimizer.learning_rate} '
      f'({schedule}{warmup}), weight decay '
      f'{optimizer.weight_decay:g}, {seeds}, {len(devices)} {devices[0].platform.upper()} '
      f'device(s)')
  # With several replicas, every parameter has a leading replica axis.
  num_parameters = parameter_overview.count_parameters(params) // config.num_replicas
  table = workdir / PARAMETERS_FILE
  if jax.process_index() == 0:
    table.write_text(parameter_overview.get_parameter_overview(params, include_stats=False))
  size_line = (f'{num_parameters / 1e6:.2f}M parameters (table: {table}); checkpoints every '
               f'{config.checkpoint_every_steps:,} steps to {workdir / "checkpoints"}, metrics '
               f'to {workdir / METRICS_FILE}')
  return f'{config_line}\n{size_line}'


def _data(name: str, data_read: DataOrigin) -> str:
  """The data a run reads: the source its config resolved to, and where."""
  if data_read.source == 'synthetic':
    return 'synthetic images'
  return f'{name} ({data_read.describe()})'


def finished_message(workdir: epath.Path, step: int,
                     not_applied: dict[str, str] | None = None) -> str:
  """What a finished run started again says: that it is done, its last errors, its files, and
  the values given that differ from those it was trained with (`not_applied`, 'old -> new'
  by key), which nothing trains with."""
  errors = _last_errors(workdir / METRICS_FILE)
  summary = ', '.join(f'{split} error {100 * error:.2f}%' for split, error in errors.items())
  ignored = ''.join(f'\n  {key}: {change}' for key, change in (not_applied or {}).items())
  return (f'This run finished at step {step:,}{": " + summary if summary else ""}. Its metrics '
          f'are in {workdir / METRICS_FILE}, its checkpoints in {workdir / "checkpoints"}. '
          f'Nothing to train: raise --config.num_train_steps to train on, or pick a new '
          f'--workdir for a new run.'
          + (f' Not applied, as nothing is trained (it was trained with the value left of '
             f'each arrow):{ignored}' if ignored else ''))


def _last_errors(metrics_file: epath.Path) -> dict[str, float]:
  if not metrics_file.exists():
    return {}
  last = {}
  for line in metrics_file.read_text().splitlines():
    record = json.loads(line)
    if 'error' in record:
      last[record['split']] = record['error']
  return last


def duration(seconds: float) -> str:
  """E.g. '14h46m', '3m05s', '42s': the one format of every ETA."""
  seconds = round(seconds)
  hours, minutes = divmod(seconds // 60, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{seconds % 60:02d}s' if minutes else f'{seconds}s'


def metrics_line(split: str, rows: list[dict], seeds: list[int] | None = None) -> str:
  """E.g. 'train loss 1.234, error 45.67%'; with several replicas, each one's values name
  its seed: 'test loss 0.41, error 8.50% (seed 0); loss 0.43, error 8.71% (seed 1)'."""
  values = [f'loss {row["loss"]:.3f}, error {100 * row["error"]:.2f}%' for row in rows]
  if seeds is not None:
    values = [f'{value} (seed {seed})' for value, seed in zip(values, seeds)]
  return f'{split} ' + '; '.join(values)


class Progress:
  """Steps/s and the ETA: on the console after the first step (its time includes the
  compilation), once more EARLY_REPORT_S later, then at each log step, with the running train
  metrics; the values also go to the metrics. The ETA counts the evaluations still to come at
  the last one's measured duration; steps/s leaves evaluation time out. With `record_rate`,
  passes it the steps/s of the whole segment (compilation and evaluations left out) every
  RECORD_RATE_EVERY_S at a log step, and at the last step; with `record_evaluation`, the
  seconds of each evaluation but the segment's first (which compiles)."""

  def __init__(self, step: int, total_steps: int, eval_every_steps: int,
               record_rate: Callable[[float], None] = lambda steps_per_sec: None,
               record_evaluation: Callable[[float], None] = lambda seconds: None):
    self.total_steps = total_steps
    self.record_rate = record_rate
    self.record_evaluation = record_evaluation
    self._evaluations = 0
    self._trained = [0, 0.0]  # Steps and seconds of training since the first step.
    self.eval_every_steps = eval_every_steps
    self.start = self.time = self._recorded = time.perf_counter()
    self.step = step
    self._first_step_done = False
    self._early_report_due = True
    self._eval_seconds = None  # The last evaluation's duration, once there was one.
    self._eval_seconds_since_report = 0.0

  def tick(self, step: int) -> None:
    """Call after every dispatch."""
    now = time.perf_counter()
    if not self._first_step_done:
      self._first_step_done = True
      logging.info('step %d/%d: first step done in %s (compilation included); steps/s and '
                   'ETA follow.', step, self.total_steps, duration(now - self.start))
      self.step, self.time = step, now  # Rates leave the compilation out.
    elif self._early_report_due and now - self.time >= EARLY_REPORT_S:
      self._early_report_due = False
      logging.info('step %d/%d: %s', step, self.total_steps, _rate_text(*self._rate(step, now)))

  @contextlib.contextmanager
  def evaluating(self):
    """Times the evaluation it wraps, for the ETA."""
    started = time.perf_counter()
    yield
    self._eval_seconds = time.perf_counter() - started
    self._eval_seconds_since_report += self._eval_seconds
    self._evaluations += 1
    if self._evaluations > 1:
      self.record_evaluation(self._eval_seconds)

  def report(self, step: int, train_line: str) -> dict:
    """Logs `train_line` (metrics_line), steps/s since the last report and the ETA, at a log
    step before its evaluation; returns steps/s and the ETA."""
    now = time.perf_counter()
    steps_per_sec, eta = self._rate(step, now)
    self._record(step, now, steps_per_sec)
    self.step, self.time = step, now
    self._eval_seconds_since_report = 0.0
    self._early_report_due = False
    logging.info('step %d/%d: %s; %s', step, self.total_steps, train_line,
                 _rate_text(steps_per_sec, eta))
    return {'steps_per_sec': steps_per_sec, 'eta_seconds': eta}

  def _record(self, step: int, now: float, steps_per_sec: float) -> None:
    self._trained[0] += step - self.step
    self._trained[1] += (step - self.step) / max(steps_per_sec, 1e-9)
    if step == self.total_steps or now - self._recorded >= RECORD_RATE_EVERY_S:
      self._recorded = now
      self.record_rate(self._trained[0] / max(self._trained[1], 1e-9))

  def _rate(self, step: int, now: float) -> tuple[float, float]:
    training_seconds = now - self.time - self._eval_seconds_since_report
    steps_per_sec = (step - self.step) / max(training_seconds, 1e-9)
    eta = (self.total_steps - step) / max(steps_per_sec, 1e-9)
    evaluations = evaluations_from(step, self.total_steps, self.eval_every_steps)
    return steps_per_sec, eta + evaluations * (self._eval_seconds or 0.0)


def evaluations_from(step: int, total_steps: int, eval_every_steps: int) -> int:
  """A run's evaluations at steps `step`..total_steps: every eval_every_steps and at the last."""
  if step > total_steps:
    return 0
  return (total_steps // eval_every_steps - (step - 1) // eval_every_steps
          + (total_steps % eval_every_steps != 0))


def _rate_text(steps_per_sec: float, eta: float) -> str:
  return f'{steps_per_sec:.2f} steps/s, ETA {duration(eta)}'
