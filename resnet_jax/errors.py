"""Errors that end a run with a message in the user's terms and a distinct exit status.

`main` prints the message (no traceback) and exits with `exit_code`, so launchers and
schedulers can tell a preemption (rerun to resume) from a bad config (fix it first).
"""


class RunError(Exception):
  """A run stopped for a reason the message explains."""
  exit_code = 1


class ConfigError(RunError, ValueError):
  """The config asks for something impossible; nothing was compiled or written."""
  exit_code = 2


class MissingPackageError(ConfigError):
  """The run needs an optional package that is not installed; the message names its install."""


class WorkdirError(RunError):
  """The workdir cannot take this run (not writable, full, or holds another model's run)."""
  exit_code = 3


class WorkdirInUse(RunError):
  """Another live process trains in the workdir; nothing was read or written."""
  exit_code = 2


class Preempted(RunError):
  """Training stopped on a preemption notice after saving a checkpoint."""
  exit_code = 42  # Launchers rerun the same command to resume (docs/running_at_scale.md).

  def __init__(self, step: int):
    super().__init__(f'Preempted: saved a checkpoint at step {step}; rerun the same command '
                     'to resume.')
    self.step = step


class Terminated(RunError):
  """SIGTERM outside the training loop (starting, evaluating): nothing new to save."""
  exit_code = Preempted.exit_code  # A rerun resumes where the last checkpoint left off.

  def __init__(self):
    super().__init__('Stopped by SIGTERM outside training (nothing new to save); rerun the '
                     'same command to resume.')


class OutOfTime(RunError):
  """Training stopped when its time budget was spent, after saving a checkpoint."""
  exit_code = 45  # Rerun the same command, with more time, to continue.


class NonFiniteError(RunError):
  """The loss or the gradients became NaN or Inf; the last good checkpoint is kept."""
  exit_code = 43


class DiskFull(RunError):
  """The workdir's disk filled up during a save; the checkpoints before it are intact."""
  exit_code = 44  # Free space, then rerun the same command to resume.
