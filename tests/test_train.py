"""The trainer: the paper's schedule, sharding, multi-host, resume and its logs."""
import re

import cifar10
import jax
import numpy as np
import pandas as pd
import pytest

from conftest import with_tensorflow
from resnet_jax import optim
from resnet_jax.faults.runs import (Running, assert_same_records, assert_same_training,
                                    assert_trees_close, final_state, kill_after_save,
                                    metric_records, run_main, run_processes, start_main)


def test_learning_rate_hits_the_papers_values_at_32k_and_48k():
  schedule = optim.learning_rate_schedule(cifar10.get_config('resnet56').optimizer, 128)
  for step, lr in [(0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01), (48_000, 0.001),
                   (63_999, 0.001)]:
    assert float(schedule(step)) == pytest.approx(lr), step


def test_resnet110_warms_up_at_001_for_400_steps():
  schedule = optim.learning_rate_schedule(cifar10.get_config('resnet110').optimizer, 128)
  for step, lr in [(0, 0.01), (399, 0.01), (400, 0.1), (32_000, 0.01), (48_000, 0.001)]:
    assert float(schedule(step)) == pytest.approx(lr), step


def test_linear_scaling_rule_scales_the_base_learning_rate():
  config = cifar10.get_config('resnet20').optimizer
  config.scale_with_batch_size = True
  assert float(optim.learning_rate_schedule(config, 512)(0)) == pytest.approx(0.4)


def run_keeping_console(workdir, *flags, **options) -> None:
  """run_main, with what the run printed kept beside its workdir (console_of)."""
  console_of(workdir).write_text(run_main(workdir, *flags, **options))


def console_of(workdir):
  return workdir.with_suffix('.console')


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """The smoke config end to end, as a user with TensorFlow installed runs it."""
  workdir = tmp_path_factory.mktemp('smoke')
  with with_tensorflow():
    run_keeping_console(workdir, '--config.log_every_steps=10', '--config.eval_every_steps=30',
                        '--config.checkpoint_every_steps=30', '--config.batch_size=32',
                        '--config.optimizer.learning_rate=0.1')
  return workdir


def test_smoke_run_loss_decreases_and_reports_train_and_test_error(smoke_run):
  metrics = pd.read_json(smoke_run / 'metrics.jsonl', lines=True)
  assert {'step', 'split', 'loss', 'error', 'learning_rate', 'steps_per_sec'} <= set(metrics)
  train = metrics[metrics.split == 'train'].set_index('step')
  assert list(train.index) == [10, 20, 30]
  assert train.loss[30] < train.loss[20] < train.loss[10]
  test = metrics[metrics.split == 'test']
  assert list(test.step) == [30] and 0 <= float(test.error.iloc[0]) < 0.9
  assert (smoke_run / 'config.json').exists()
  assert list(smoke_run.glob('events.out.tfevents.*')), 'no TensorBoard summaries'


def test_smoke_run_console_shows_the_running_train_loss_and_error(smoke_run):
  metrics = pd.read_json(smoke_run / 'metrics.jsonl', lines=True)
  train = metrics[metrics.split == 'train'].set_index('step')
  # Each line starts with the time alone, not absl's prefix (I1202 ... 140098 console.py:183]).
  lines = re.findall(r'^\d\d:\d\d:\d\d step (\d+)/30: train loss ([\d.]+), error ([\d.]+)%; '
                     r'[\d.]+ steps/s, ETA', console_of(smoke_run).read_text(), re.MULTILINE)
  assert [int(step) for step, _, _ in lines] == [10, 20, 30]
  for step, loss, error in lines:  # The averages since the previous line, as in the metrics.
    assert float(loss) == pytest.approx(train.loss[int(step)], abs=1e-3)
    assert float(error) == pytest.approx(100 * train.error[int(step)], abs=1e-2)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  """8 steps on one device, uninterrupted: what every other topology must reproduce."""
  workdir = tmp_path_factory.mktemp('reference')
  run_main(workdir, '--config.num_train_steps=8')
  return workdir


def test_eight_devices_train_the_same_net_as_one(tmp_path, reference_run):
  run_main(tmp_path, '--config.num_train_steps=8', devices=8)
  assert_same_training(tmp_path, reference_run)


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, reference_run):
  run_main(tmp_path, '--config.num_train_steps=4')
  assert final_state(tmp_path)[0] == 4
  output = run_main(tmp_path, '--config.num_train_steps=8')
  assert 'Resumed' in output and 'at step 4' in output
  assert_same_training(tmp_path, reference_run, exact=True)


def test_two_processes_train_the_same_net_as_one(tmp_path, reference_run):
  """Two local processes with 2 devices each, started through launch/local.sh."""
  outputs = run_processes(tmp_path, '--config.num_train_steps=8', devices=2,
                          through_launcher=True)
  assert 'JAX process 1/2' in outputs[1]
  assert_same_training(tmp_path, reference_run)


# mesh replica=4, data=2: the 4 seeds' nets on 4 groups of 2 devices, each batch split over 2.
# 2 steps: replicas and their own runs agree to ~1e-6 there. The replica-sharded programs sum
# in another order, and from step 3 on the training of these tiny nets amplifies that rounding
# to ~1e-3 by step 4 (measured, cause not pinned down), beyond any float tolerance.
REPLICA_FLAGS = ('--config.num_train_steps=2', '--config.num_replicas=4',
                 '--config.mesh.replica=4', '--config.mesh.data=2', '--config.log_every_steps=1',
                 '--config.checkpoint_every_steps=1', '--config.eval_every_steps=2')


@pytest.fixture(scope='module')
def replica_run(tmp_path_factory):
  """Seeds 0-3 trained at once on 8 devices, replica-sharded, uninterrupted."""
  workdir = tmp_path_factory.mktemp('replicas')
  run_keeping_console(workdir, *REPLICA_FLAGS, devices=8)
  return workdir


@pytest.mark.slow  # replica_run: 8 devices, over 2 minutes on 2 busy cores.
def test_replica_console_lines_name_each_errors_seed(replica_run):
  console = console_of(replica_run).read_text()
  seeds = r'; '.join(rf'loss [\d.]+, error [\d.]+% \(seed {seed}\)' for seed in range(4))
  assert re.search(rf'step 2/2: train {seeds}; [\d.]+ steps/s', console), console[-3000:]
  assert re.search(rf'step 2: test {seeds}$', console, re.MULTILINE), console[-3000:]


@pytest.mark.slow  # replica_run: 8 devices, over 2 minutes on 2 busy cores.
def test_replica_sharded_seeds_train_like_separate_runs(tmp_path, replica_run):
  """Each replica ends with the parameters, BN statistics and metrics of its own run."""
  single_runs = []
  for seed in range(4):
    run_main(tmp_path / f'seed{seed}', *REPLICA_FLAGS[:1], *REPLICA_FLAGS[4:],
             f'--config.seed={seed}')
    single_runs.append(tmp_path / f'seed{seed}')
  step, replicas = final_state(replica_run)
  records = metric_records(replica_run)
  for replica, single_run in enumerate(single_runs):
    expected_step, expected = final_state(single_run)
    assert step == expected_step == 2
    assert_trees_close(jax.tree.map(lambda x, r=replica: x[r], replicas), expected,
                       rtol=1e-4, atol=1e-5)
    assert_same_records([r for r in records if r['seed'] == replica], metric_records(single_run))
  first, second = (jax.tree.map(lambda x, r=r: x[r], replicas['batch_stats']) for r in (0, 1))
  assert not np.allclose(jax.tree.leaves(first)[0], jax.tree.leaves(second)[0])


@pytest.mark.slow  # replica_run: 8 devices, over 2 minutes on 2 busy cores.
def test_replica_sharded_run_resumes_exactly_after_a_kill(tmp_path, replica_run):
  kill_after_save(Running(start_main(tmp_path, *REPLICA_FLAGS, devices=8)), tmp_path, step=1)
  output = run_main(tmp_path, *REPLICA_FLAGS, devices=8)
  assert 'Resumed' in output
  assert_same_training(tmp_path, replica_run, exact=True)


@pytest.mark.slow  # replica_run: 8 devices, over 2 minutes on 2 busy cores.
def test_replica_axis_across_two_processes_trains_like_one(tmp_path, replica_run):
  """Replicas 0-1 on one process's 4 devices, 2-3 on the other's: as on one process, at step 1
  (by step 2 the rounding of the other topology grows past float tolerance, as above)."""
  run_processes(tmp_path, *REPLICA_FLAGS, devices=4)
  at_step_1 = [[r for r in metric_records(run) if r['step'] == 1] for run in (tmp_path, replica_run)]
  assert_same_records(*at_step_1)
  assert_trees_close(final_state(tmp_path, step=1), final_state(replica_run, step=1),
                     rtol=1e-4, atol=1e-5)
  assert final_state(tmp_path)[0] == 2
