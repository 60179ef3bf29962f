"""Stop requests (SIGTERM from Cloud TPU spot VMs, SLURM, `kill`; SIGINT from Ctrl-C), seen at
step boundaries, so that the run saves a checkpoint before it exits."""
import logging
import signal
import threading
import weakref

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionWatcher:
  """Tells the loop when every host should save and stop.

  One process: SIGTERM or SIGINT sets a flag, read at the next step boundary; a second
  SIGINT interrupts at once. Several: JAX's coordination service spreads the notice and
  picks one step on which all hosts agree. Once the watcher is gone (the loop ended), the
  signals act as they did before it.
  """

  def __init__(self):
    self.multihost = jax.process_count() > 1
    self._requested = threading.Event()
    self._calls = 0
    if not self.multihost and threading.current_thread() is threading.main_thread():
      for signum in SIGNALS:
        previous = signal.getsignal(signum) or signal.SIG_DFL  # None: set outside Python.
        signal.signal(signum, _handler(weakref.ref(self), previous))

  def _on_signal(self, signum: int) -> bool:
    """Records a stop request; False when it should act as before (a second Ctrl-C)."""
    if signum == signal.SIGINT and self._requested.is_set():
      return False
    logging.warning('Received %s: saving a checkpoint at the next step boundary, then stopping%s.',
                    signal.Signals(signum).name,
                    ' (Ctrl-C again stops without saving)' if signum == signal.SIGINT else '')
    self._requested.set()
    return True

  def should_stop(self) -> bool:
    """Call once per dispatch, on every host, in the same order."""
    self._calls += 1
    if self.multihost:
      return multihost_utils.reached_preemption_sync_point(self._calls)
    return self._requested.is_set()


def _handler(watcher: weakref.ref, previous):
  def on_signal(signum, frame):
    alive = watcher()
    if alive is not None and alive._on_signal(signum):  # pylint: disable=protected-access
      return
    signal.signal(signum, previous)
    if callable(previous):
      previous(signum, frame)
    elif previous == signal.SIG_DFL:
      signal.raise_signal(signum)
  return on_signal
