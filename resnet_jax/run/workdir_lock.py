"""One trainer per workdir: an flock on WORKDIR/.lock, which the OS releases when its holder
exits or dies, so that a restart after kill -9 or a preemption is never blocked by it. A run
refused before it wrote anything leaves the workdir as it found it."""
import contextlib
import dataclasses
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from typing import IO

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from resnet_jax.errors import WorkdirInUse

LOCK_FILE = '.lock'  # Names its last holder; rewritten by every run.


@dataclasses.dataclass(frozen=True)
class Found:
  """A workdir before a run: the names it held, and the folders the run creates for it."""
  names: frozenset[str] | None  # None: not a local folder, left alone.
  created: tuple[epath.Path, ...] = ()  # Innermost first.


def as_found(workdir: epath.Path) -> Found:
  """What `workdir` holds before a run creates or writes it."""
  if '://' in os.fspath(workdir):
    return Found(None)
  created = []
  for folder in (workdir, *workdir.parents):
    if folder.exists():
      break
    created.append(folder)
  if created:
    return Found(frozenset(), tuple(created))
  return Found(frozenset(os.listdir(workdir)) if workdir.is_dir() else None)


@contextlib.contextmanager
def held(workdir: epath.Path, found: Found | None = None) -> Iterator[None]:
  """Holds the lock of `workdir` (which exists) while the block runs; raises WorkdirInUse,
  naming the holder's pid and host, when another process holds it. Process 0 holds it for
  all the processes of a run; a cloud-storage workdir (gs://...) has none.

  `found`: as_found(workdir) before the run made it. If the block raises while the workdir
  holds nothing new but the lock file and empty folders (bad data, a full disk), these go, and
  so do the workdir and its parents where the run made them."""
  lock, holder = None, None
  if '://' not in os.fspath(workdir) and jax.process_index() == 0:
    lock, holder = _acquire(workdir / LOCK_FILE)
  if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.int32(holder is not None)):
    holder = holder or 'its lock is held, says process 0'
  if holder is not None:
    raise WorkdirInUse(
        f'--workdir={workdir} is in use by another trainer ({holder}); two runs in one workdir '
        'would mix their checkpoints and metrics. Wait for it to end or stop it, or pick '
        'another --workdir. Nothing was changed.')
  try:
    yield
  except BaseException:
    if lock is not None and found is not None and found.names is not None:
      with contextlib.suppress(OSError):  # Left as it is: the run's own error is the news.
        _remove_if_nothing_new(workdir, found)
    raise
  finally:
    if lock is not None:
      lock.close()


def _remove_if_nothing_new(workdir: epath.Path, found: Found) -> None:
  """Removes what the run added while it is only the lock file and empty folders; the lock
  file goes while it is still held, so no other run can take the removed file's lock."""
  new = [workdir / name for name in set(os.listdir(workdir)) - found.names]
  if not all(path.name == LOCK_FILE or path.is_dir() and not any(path.iterdir())
             for path in new):
    return
  for path in new:
    if path.is_dir():
      path.rmdir()
    else:
      path.unlink()
  for folder in found.created:
    folder.rmdir()


def _acquire(path: epath.Path) -> tuple[IO[str] | None, str | None]:
  """(the open, locked file, None), or (None, who holds the lock)."""
  lock = open(path, 'a+', encoding='utf-8')  # pylint: disable=consider-using-with
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    lock.seek(0)
    holder = lock.read().strip() or 'a process that is just starting'
    lock.close()
    return None, holder
  if not _still_named(lock, path):  # A refused run removed it (held()): lock the new one.
    lock.close()
    return _acquire(path)
  lock.truncate(0)
  lock.write(f'pid {os.getpid()} on {socket.gethostname()}, since '
             f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
  lock.flush()
  return lock, None


def _still_named(lock: IO[str], path: epath.Path) -> bool:
  try:
    return os.path.samestat(os.fstat(lock.fileno()), os.stat(path))
  except FileNotFoundError:
    return False
