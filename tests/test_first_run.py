"""What a new user meets first: the shipped configs, Ctrl-C, the launchers' copies of the
package, the console of a run and a finished run started again."""
import os
import signal
import subprocess
import sys
import textwrap

import cifar10
import pytest

from conftest import CIFAR_ARCHIVE as CHECKOUT_ARCHIVE, REPO
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


def test_smoke_variants_divide_over_eight_devices():
  script = textwrap.dedent('''
      import cifar10, degradation
      from resnet_jax import config_checks, study
      config_checks.validate(cifar10.get_config('smoke'))
      for run in study.planned_runs(degradation.get_config('smoke')).values():
        config_checks.validate(run)
      print('ok')
      ''')
  result = subprocess.run(
      [sys.executable, '-c', script], cwd=REPO / 'experiments', capture_output=True, text=True,
      env={**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
           'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(REPO)}, timeout=120)
  assert result.stdout.strip() == 'ok', result.stderr[-2000:]


def test_the_shipped_archive_path_resolves_against_the_checkout():
  assert cifar10.get_config('resnet20').data.path == str(CHECKOUT_ARCHIVE)
  assert cifar10.get_config('smoke,jpeg').data.source == 'archive'
