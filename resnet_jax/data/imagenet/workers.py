"""The grain worker processes of the streamed input, kept from outliving or outshouting the run:
they ignore the stop signals that a terminal, SLURM or `timeout` sends to the whole process
group (the run's own handler saves, then stops them), they exit when the run dies, and their
shared-memory segments and the semaphores of their queues carry the run's identity, so that a
later run frees what a killed one left in /dev/shm."""
import contextlib
import functools
import itertools
import logging
import os
import secrets
import signal
import threading
import re
from multiprocessing import (connection, parent_process, process, resource_tracker,
                             shared_memory)
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SHARED_MEMORY = Path('/dev/shm')
SEGMENT_PREFIX = 'psm_resnet_jax_'  # psm_: the prefix of Python's own segment names.
# /dev/shm/sem.<name> holds the named POSIX semaphore /<name>; mp: Python's own prefix.
SEMAPHORE_PREFIX = 'sem.mp_resnet_jax_'
_RUN_ID = re.compile(r'(\d+)_(\d+)(?:[_-]|$)')  # What follows either prefix.

_ITERATORS = itertools.count()
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_signals_held(defer_handlers: bool = False):
  """Blocks SIGINT and SIGTERM in this thread while grain may start workers: the threads it
  starts, the worker processes they spawn and so their Python start-up inherit the mask
  (multiprocessing's resource tracker starts the same way). The run still hears them: another
  of its threads takes the signal and Python runs the handler in the main thread.

  `defer_handlers`, on the main thread: until the block ends, the handlers only record the
  signals, and then run, once each. The mask alone does not keep Python from running a handler
  in the main thread at its next bytecode, and an exception it raises there while grain's
  threads start workers closes them half-started: grain's finalizer fails to join one, and the
  child fails to open the semaphores its parent already freed, each with a traceback."""
  # Started first: starting it unblocks these signals in the thread that does so.
  resource_tracker.ensure_running()
  with _handlers_deferred() if defer_handlers else contextlib.nullcontext():
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
      yield
    finally:
      signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _handlers_deferred():
  if threading.current_thread() is not threading.main_thread():
    yield  # Python runs handlers in the main thread only.
    return
  received = []
  handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
  handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}
  for signum in handlers:
    signal.signal(signum, lambda signum, frame: received.append(signum))
  try:
    yield
  finally:
    for signum, handler in handlers.items():
      signal.signal(signum, handler)
    for signum in dict.fromkeys(received):
      signal.raise_signal(signum)


def worker_init(tag: str | None, worker_index: int, worker_count: int) -> None:
  """grain's worker_init_fn: ignore the stop signals, name new segments and semaphores with
  `tag` (iterator_tag() in the parent), and exit if the parent dies."""
  del worker_index, worker_count
  for signum in STOP_SIGNALS:
    signal.signal(signum, signal.SIG_IGN)
  if tag is not None:
    # Python draws the name of every SharedMemory(create=True) from this module function.
    # pylint: disable-next=protected-access
    shared_memory._make_filename = functools.partial(_segment_name, tag)
    _name_semaphores(tag)
    leave_segments_untracked()
  threading.Thread(target=_exit_with_parent, daemon=True).start()


def name_semaphores_after_this_run() -> None:
  """Names the semaphores this process creates from now on (those of grain's worker queues,
  files in /dev/shm until the run frees them) after this_run_id(), so that a later run frees
  those a killed one left."""
  run_id = this_run_id()
  if run_id is not None:
    _name_semaphores(run_id)


@functools.cache
def leave_segments_untracked() -> None:
  """Keeps multiprocessing's resource tracker out of the segments named after a run: the run
  frees them itself (free_segments) or the next one does (free_segments_of_dead_runs). Python
  before 3.13 registers a segment with the tracker in every process that opens it, and a stop
  signal that cuts an unlink between removing the file and unregistering it made the tracker
  warn at exit about "leaked shared_memory objects" that were already gone."""
  for name in ('register', 'unregister'):
    setattr(resource_tracker, name, _unless_a_runs_segment(getattr(resource_tracker, name)))


def _unless_a_runs_segment(track):
  @functools.wraps(track)
  def tracked(name: str, rtype: str) -> None:
    if not (rtype == 'shared_memory' and name.lstrip('/').startswith(SEGMENT_PREFIX)):
      track(name, rtype)
  return tracked


def _name_semaphores(run_tag: str) -> None:
  # multiprocessing names a semaphore '<semprefix>-<random>' (synchronize.SemLock._make_name).
  # pylint: disable-next=protected-access
  process.current_process()._config['semprefix'] = (
      f'/{SEMAPHORE_PREFIX.removeprefix("sem.")}{run_tag}')


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
  """Removes the shared-memory segments and semaphores whose run is no longer alive (killed
  before it could free them) and returns how many; a live run's are never touched."""
  freed, size = 0, 0
  for prefix in (SEGMENT_PREFIX, SEMAPHORE_PREFIX):
    for path in directory.glob(f'{prefix}*'):
      run = _RUN_ID.match(path.name[len(prefix):])
      if not run or _start_ticks(int(run[1])) == int(run[2]):
        continue
      with contextlib.suppress(OSError):  # Gone already, or another user's.
        size += path.stat().st_size
        path.unlink()
        freed += 1
  if freed:
    _log.warning('Freed %d shared-memory segments and semaphores (%.1f MiB) that killed runs '
                 'left in %s.', freed, size / 2**20, directory)
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
