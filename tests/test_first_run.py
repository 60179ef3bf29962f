"""What a new user meets first: the shipped configs, Ctrl-C, the launchers' copies of the
package, the console of a run and a finished run started again."""
import signal

import pytest

from resnet_jax.preemption import PreemptionWatcher


def test_ctrl_c_asks_for_a_save_and_a_second_one_interrupts():
  watcher = PreemptionWatcher()
  signal.raise_signal(signal.SIGINT)
  assert watcher.should_stop()
  with pytest.raises(KeyboardInterrupt):
    signal.raise_signal(signal.SIGINT)


def test_ctrl_c_interrupts_as_before_once_the_loop_is_over():
  watcher = PreemptionWatcher()
  del watcher
  with pytest.raises(KeyboardInterrupt):
    signal.raise_signal(signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
