"""One trainer per workdir: an flock on WORKDIR/.lock, which the OS releases when its holder
exits or dies, so that a restart after kill -9 or a preemption is never blocked by it."""
import contextlib
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


@contextlib.contextmanager
def held(workdir: epath.Path) -> Iterator[None]:
  """Holds the lock of `workdir` (which exists) while the block runs; raises WorkdirInUse,
  naming the holder's pid and host, when another process holds it. Process 0 holds it for
  all the processes of a run; a cloud-storage workdir (gs://...) has none."""
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
  finally:
    if lock is not None:
      lock.close()


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
  lock.truncate(0)
  lock.write(f'pid {os.getpid()} on {socket.gethostname()}, since '
             f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
  lock.flush()
  return lock, None
