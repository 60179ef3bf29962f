"""The grain worker processes of the streamed input, kept from outliving or outshouting the run:
they ignore the stop signals that a terminal, SLURM or `timeout` sends to the whole process
group (the run's own handler saves, then stops them), they exit when the run dies, and their
shared-memory segments carry the run's identity, so that a later run frees what a killed one
left in /dev/shm."""
import contextlib
import functools
import itertools
import logging
import os
import secrets
import signal
import threading
from multiprocessing import connection, parent_process, resource_tracker, shared_memory
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHARED_MEMORY = Path('/dev/shm')
SEGMENT_PREFIX = 'psm_resnet_jax_'  # psm_: the prefix of Python's own segment names.

_ITERATORS = itertools.count()
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_signals_held():
  """Blocks SIGINT and SIGTERM in this thread while grain may start workers: the threads it
  starts, the worker processes they spawn and so their Python start-up inherit the mask
  (multiprocessing's resource tracker starts the same way). The run still hears them: another
  of its threads takes the signal and Python runs the handler in the main thread."""
  # Started first: starting it unblocks these signals in the thread that does so.
  resource_tracker.ensure_running()
  previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
  try:
    yield
  finally:
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def worker_init(tag: str | None, worker_index: int, worker_count: int) -> None:
  """grain's worker_init_fn: ignore the stop signals, name new segments with `tag`
  (iterator_tag() in the parent), and exit if the parent dies."""
  del worker_index, worker_count
  for signum in STOP_SIGNALS:
    signal.signal(signum, signal.SIG_IGN)
  if tag is not None:
    # Python draws the name of every SharedMemory(create=True) from this module function.
    # pylint: disable-next=protected-access
    shared_memory._make_filename = functools.partial(_segment_name, tag)
  threading.Thread(target=_exit_with_parent, daemon=True).start()


def iterator_tag() -> str | None:
  """A new tag for the segments of one iterator's workers: this_run_id() and a serial number."""
  run_id = this_run_id()
  return None if run_id is None else f'{run_id}_{next(_ITERATORS)}'


def free_segments(tag: str | None, directory: Path = SHARED_MEMORY) -> None:
  """Frees the segments tagged `tag` once its workers have stopped: those still in flight, and
  those of batches that a reference cycle or a traceback keeps until the process ends."""
  for path in directory.glob(f'{SEGMENT_PREFIX}{tag}_*') if tag else ():
    with contextlib.suppress(FileNotFoundError):  # Freed meanwhile.
      segment = shared_memory.SharedMemory(path.name)
      segment.close()
      segment.unlink()  # Also tells the resource tracker, which would warn at exit.


def this_run_id() -> str | None:
  """'<pid>_<start time>' of this process (None where /proc is missing): a live process with
  that pid and start time is this run, so its segments are never taken for a dead run's."""
  ticks = _start_ticks(os.getpid())
  return None if ticks is None else f'{os.getpid()}_{ticks}'


def free_segments_of_dead_runs(directory: Path = SHARED_MEMORY) -> int:
  """Removes the shared-memory segments whose run is no longer alive (killed before it could
  free them) and returns how many; a live run's segments are never touched."""
  freed, size = 0, 0
  for path in directory.glob(f'{SEGMENT_PREFIX}*'):
    pid, ticks = (path.name[len(SEGMENT_PREFIX):].split('_') + ['', ''])[:2]
    if not (pid.isdigit() and ticks.isdigit()) or _start_ticks(int(pid)) == int(ticks):
      continue
    with contextlib.suppress(OSError):  # Gone already, or another user's.
      size += path.stat().st_size
      path.unlink()
      freed += 1
  if freed:
    _log.warning('Freed %d shared-memory segments (%.1f MiB) that killed runs left in %s.',
                 freed, size / 2**20, directory)
  return freed


def _segment_name(tag: str) -> str:
  return f'/{SEGMENT_PREFIX}{tag}_{secrets.token_hex(8)}'


def _start_ticks(pid: int) -> int | None:
  """The start time of process `pid` in clock ticks after boot, or None if there is none."""
  try:
    stat = Path(f'/proc/{pid}/stat').read_text()
  except OSError:
    return None
  return int(stat.rsplit(')', 1)[1].split()[19])  # Field 22; the name may hold spaces.


def _exit_with_parent() -> None:
  connection.wait([parent_process().sentinel])
  os._exit(1)  # Its segments are freed by the next run (free_segments_of_dead_runs).
