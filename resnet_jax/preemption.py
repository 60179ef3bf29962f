"""Preemption notices (SIGTERM from Cloud TPU spot VMs, SLURM, `kill`), seen at step boundaries."""
import logging
import signal
import threading

import jax
from jax.experimental import multihost_utils


class PreemptionWatcher:
  """Tells the loop when every host should save and stop.

  One process: SIGTERM sets a flag, read at the next step boundary. Several: JAX's
  coordination service spreads the notice and picks one step on which all hosts agree.
  """

  def __init__(self):
    self.multihost = jax.process_count() > 1
    self._requested = threading.Event()
    self._calls = 0
    if not self.multihost and threading.current_thread() is threading.main_thread():
      signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum, frame):
    logging.warning('Received signal %d: saving a checkpoint at the next step boundary.', signum)
    self._requested.set()

  def should_stop(self) -> bool:
    """Call once per dispatch, on every host, in the same order."""
    self._calls += 1
    if self.multihost:
      return multihost_utils.reached_preemption_sync_point(self._calls)
    return self._requested.is_set()
