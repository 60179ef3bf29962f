"""What a new user meets first: the shipped configs, Ctrl-C, the launchers' copies of the
package, the console of a run and a finished run started again."""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap

import cifar10
import jax
import jax.numpy as jnp
import pandas as pd
import pytest
from etils import epath

from conftest import CIFAR_ARCHIVE as CHECKOUT_ARCHIVE, REPO
from resnet_jax import analysis, models
from resnet_jax.data.origin import DataOrigin
from resnet_jax.faults.runs import TINY_FLAGS
from resnet_jax.run import console
from resnet_jax.run.preemption import PreemptionWatcher


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
      from resnet_jax.config import checks
      from resnet_jax.paper import study
      checks.validate(cifar10.get_config('smoke'))
      for run in study.planned_runs(degradation.get_config('smoke')).values():
        checks.validate(run)
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


def test_console_shows_the_config_and_size_and_files_the_parameter_table(tmp_path):
  config = cifar10.get_config('resnet20')
  model = models.create('resnet20')
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
  data_read = DataOrigin('tfds', '/data/cifar10/3.0.2', 'cifar10/3.0.2')
  config_line, size_line = console.describe_run(config, params, epath.Path(tmp_path),
                                                data_read).split('\n')
  assert config_line.startswith('resnet20 (shortcut A, float32) on cifar10 (tfds '
                                '/data/cifar10/3.0.2), batch 128, 64,000 steps, lr 0.1 (x0.1 at '
                                '32,000, 48,000)')
  assert size_line.startswith(f'0.27M parameters (table: {tmp_path / "parameters.txt"})')
  assert 'stage3_block2/Conv_1/kernel' in (tmp_path / 'parameters.txt').read_text()
  config.optimizer.lr_boundaries = ()
  constant = console.describe_run(config, params, epath.Path(tmp_path), data_read)
  assert 'steps, lr 0.1 (constant), weight decay' in constant


def test_a_finished_run_says_where_its_results_are(tmp_path):
  records = [{'step': 30, 'split': 'train', 'error': 0.5},
             {'step': 30, 'split': 'test', 'error': 0.25}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  message = console.finished_message(epath.Path(tmp_path), 30)
  assert message.startswith('This run finished at step 30: train error 50.00%, test error 25.00%.')
  assert str(tmp_path / 'metrics.jsonl') in message and '--config.num_train_steps' in message


def test_progress_has_one_eta_format_and_reports_from_the_first_step(caplog):
  assert [console.duration(s) for s in (42, 185, 53_160)] == ['42s', '3m05s', '14h46m']
  progress = console.Progress(0, 64_000, eval_every_steps=1000)
  with caplog.at_level(logging.INFO):
    progress.tick(1)
    reported = progress.report(100, 'train loss 2.302, error 90.00%')
  first, at_100 = [record.getMessage() for record in caplog.records]
  assert first.startswith('step 1/64000: first step done in ')
  assert re.fullmatch(r'step 100/64000: train loss 2.302, error 90.00%; [\d.]+ steps/s, '
                      r'ETA (\d+h\d\dm|\d+m\d\ds|\d+s)', at_100)
  assert reported['eta_seconds'] == pytest.approx(63_900 / reported['steps_per_sec'])


def test_the_eta_counts_the_evaluations_to_come(monkeypatch):
  clock = iter([0.0, 10.0, 20.0, 50.0, 60.0])  # Start, step 10, eval 20-50 s, step 20.
  monkeypatch.setattr(console.time, 'perf_counter', lambda: next(clock))
  progress = console.Progress(0, 100, eval_every_steps=10)
  progress.tick(10)
  with progress.evaluating():
    pass
  reported = progress.report(20, 'train')
  # 10 steps in 20 s of training (the 30 s eval left out); 80 steps and 9 evals of 30 s to go.
  assert reported['steps_per_sec'] == pytest.approx(0.5)
  assert reported['eta_seconds'] == pytest.approx(80 / 0.5 + 9 * 30)


def test_a_run_keeps_the_step_rate_of_its_segment_for_later_plans(monkeypatch):
  # Start, step 10 (compiled), step 20 at 20 s, 90 s (a minute on: recorded), 100 s, 130 s.
  clock = iter([0.0, 10.0, 20.0, 90.0, 100.0, 130.0])
  monkeypatch.setattr(console.time, 'perf_counter', lambda: next(clock))
  recorded = []
  progress = console.Progress(0, 60, eval_every_steps=100, record_rate=recorded.append)
  progress.tick(10)
  progress.report(20, 'train')  # 10 steps in 10 s, 20 s after the start: not recorded yet.
  progress.report(40, 'train')  # 30 steps in 80 s.
  progress.report(50, 'train')
  progress.report(60, 'train')  # The last step: 50 steps in 120 s.
  assert recorded == [pytest.approx(30 / 80), pytest.approx(50 / 120)]


def test_a_run_keeps_the_duration_of_each_evaluation_but_its_first(monkeypatch):
  clock = iter([0.0, 10.0, 40.0, 50.0, 70.0])  # Start; an eval 10-40 s (compiling), 50-70 s.
  monkeypatch.setattr(console.time, 'perf_counter', lambda: next(clock))
  recorded = []
  progress = console.Progress(0, 100, eval_every_steps=10, record_evaluation=recorded.append)
  for _ in range(2):
    with progress.evaluating():
      pass
  assert recorded == [20.0]
  assert [console.evaluations_from(step, 100, 10) for step in (1, 20, 95, 101)] == [10, 9, 1, 0]
  assert console.evaluations_from(1, 105, 10) == 11  # Every 10 steps and at the last.


@pytest.mark.parametrize('path, level, message, shown', [
    ('/site-packages/orbax/checkpoint/x.py', logging.INFO, 'Saving step 30', False),
    ('/site-packages/orbax/checkpoint/x.py', logging.WARNING, 'Given directory is read only: x',
     False),
    ('/site-packages/orbax/checkpoint/x.py', logging.WARNING,
     'CheckpointManagerOptions.read_only=True, setting save_interval_steps=0.', False),
    ('/site-packages/orbax/checkpoint/x.py', logging.WARNING, 'Disk is full', True),
    ('/site-packages/tensorflow_datasets/f.py', logging.WARNING,
     'Variant folder /d/cifar10/3.0.2 has no dataset_info.json', False),
    ('/work/main/resnet_jax/train.py', logging.INFO, 'step 1/30', True),
    # A full disk: the trainer says so in one line; orbax's threads' tracebacks stay off.
    ('/site-packages/orbax/checkpoint/_src/futures/future.py', logging.ERROR,
     '_SignalingThread.run() raised an exception: [Errno 28] No space left on device', False),
    ('/site-packages/orbax/checkpoint/_src/futures/future.py', logging.ERROR,
     '_SignalingThread.run() raised an exception: [Errno 13] Permission denied', True),
    ('/work/main/resnet_jax/train.py', logging.ERROR, 'No space left on device', True),
])
def test_library_chatter_stays_off_the_console(path, level, message, shown):
  record = logging.LogRecord('absl', level, path, 1, message, None, None)
  assert console._worth_showing(record) is shown  # pylint: disable=protected-access


def test_xlas_cpp_log_stays_off_a_commands_console(tmp_path):
  # A folder XLA cannot dump to: XLA logs that at ERROR, the level of its 'Very slow compile?'
  # alarm, which takes 2 minutes of compiling to provoke.
  (tmp_path / 'a_file').write_text('')
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'cache'),
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={tmp_path}/a_file/dump")
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  bare = subprocess.run([sys.executable, '-c', 'import jax; jax.jit(lambda x: x + 1)(1)'],
                        env=env, capture_output=True, text=True, check=True)
  assert 'dump.cc' in bare.stderr  # Where nothing quiets it, XLA's log reaches the console.
  run = subprocess.run([sys.executable, '-m', 'resnet_jax.main',
                        '--config=experiments/cifar10.py:smoke', f'--workdir={tmp_path / "run"}',
                        *TINY_FLAGS, '--config.model=resnet8', '--config.num_train_steps=1'],
                       cwd=REPO, env=env, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  assert 'step 1: test loss' in run.stderr and 'dump.cc' not in run.stderr, run.stderr


def test_a_library_log_line_stays_out_of_the_tests_progress_output(tmp_path):
  (tmp_path / 'test_late_log.py').write_text(textwrap.dedent('''\
      import logging, threading, time

      def test_leaves_a_thread_that_logs_after_the_session():
        def log_late():
          time.sleep(1)
          logging.getLogger('grain.stand_in').warning('a library line')
        threading.Thread(target=log_late).start()
      '''))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / 'tests'), str(REPO)]))
  session = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'conftest', '-p',
                            'no:cacheprovider', 'test_late_log.py'], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
  assert session.returncode == 0, session.stdout
  assert '1 passed' in session.stdout
  assert 'a library line' not in session.stdout + session.stderr


def test_a_warning_shows_once_per_process():
  def shown(batch_size):
    record = logging.LogRecord('absl', logging.WARNING, '/resnet_jax/evaluate.py', 1,
                               'eval.batch_size=%d holds 16.0x the pixels', (batch_size,), None)
    return console._worth_showing(record)  # pylint: disable=protected-access
  assert [shown(116), shown(116), shown(132)] == [True, False, True]


@pytest.mark.parametrize('steps, warned', [(30, True), (64_000, False)])
def test_a_verdict_from_too_few_steps_says_so(steps, warned):
  table = pd.DataFrame({'family': ['plain', 'plain'], 'depth': [8, 14],
                        'model': ['plain8', 'plain14'], 'step': [steps, steps],
                        'train_error_mean': [80.0, 85.0]})
  sentences = analysis.verdict(table)
  assert sentences[-1].endswith('degradation present') is not warned
  assert sentences[0].startswith('No verdict: they trained 30 steps, the paper 64,000') is warned
  assert len(sentences) == 1 + warned
