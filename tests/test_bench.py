"""The train-step benchmark and the PyTorch reference it times ours against."""
import json
import os
import re
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO
from resnet_jax import models, optim
from resnet_jax.bench import __main__ as bench_main
from resnet_jax.bench import train_step
from resnet_jax.data.synthetic import synthetic_splits
from resnet_jax.models.complexity import count_parameters

COLUMNS = ('model', 'framework', 'dtype', 'batch', 'compile s', 'step ms', 'images/s',
           'eval images/s', 'peak memory', 'schedule h')


def test_train_benchmark_prints_every_column(capsys):
  train_step.main(['--models', 'resnet8', '--batch-size', '8', '--steps', '2',
                   '--num-train', '64', '--num-eval', '20'])
  out = capsys.readouterr().out
  assert re.search(r'jax 0\.\d+.*jaxlib .*flax ', out)
  assert 'devices: jax: cpu' in out
  header = next(line for line in out.splitlines() if line.startswith('model'))
  assert re.split(r'\s{2,}', header.strip()) == list(COLUMNS)
  row = next(line for line in out.splitlines() if line.startswith('resnet8'))
  assert re.fullmatch(r'resnet8\s+jax\s+float32\s+8\s+[\d.]+\s+[\d.]+\s+\d+\s+\d+\s+'
                      r'[\d,]+ MiB RSS\s+[\d.]+', row.strip()), row


@pytest.mark.slow
def test_replica_benchmark_times_one_program_against_as_many_processes(monkeypatch, capsys):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  train_step.main(['--models', 'resnet8', '--batch-size', '8', '--steps', '2', '--num-train',
                   '64', '--num-eval', '0', '--num-replicas', '2', '--mesh-replica', '2'])
  out = capsys.readouterr().out
  assert 'devices: jax: cpu x2' in out
  program, processes = [re.split(r'\s{2,}', line.strip()) for line in out.splitlines()
                        if line.startswith('resnet8')]
  assert program[1] == 'jax (2 replicas on 2 groups, loop)'
  assert processes[1] == 'jax (2 processes)'
  assert program[7] == processes[7] == '-'  # --num-eval 0: no evaluation timed.
  assert processes[8].endswith('MiB RSS (sum)')
  for row in (program, processes):  # images/s counts both nets: 2 x batch 8 per step.
    assert float(row[6]) == pytest.approx(2 * 8 / (float(row[5]) / 1000), rel=0.02, abs=1)


def test_mesh_replica_must_divide_the_replicas():
  with pytest.raises(SystemExit):
    train_step.main(['--models', 'resnet8', '--num-replicas', '3', '--mesh-replica', '2'])


def test_main_dispatches_data_to_the_data_benchmark(monkeypatch):
  from resnet_jax.bench import data
  calls = []
  monkeypatch.setattr(data, 'main', calls.append)
  bench_main.main(['data', '--limit', '10'])
  assert calls == [['--limit', '10']]


def test_main_names_the_commands_when_given_an_unknown_one(capsys):
  with pytest.raises(SystemExit, match='2'):
    bench_main.main(['trian'])
  assert 'use one of train, compile, data' in capsys.readouterr().err


def _bench(*args):
  return subprocess.run([sys.executable, '-m', 'resnet_jax.bench', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def test_bench_help_exits_zero_naming_the_commands():
  result = _bench('--help')
  assert result.returncode == 0, result.stderr
  assert all(f'  {command} ' in result.stdout for command in ('train', 'compile', 'data'))


@pytest.mark.parametrize('flags', [train_step._train_flags, train_step.compile_main])
def test_every_flag_of_bench_train_and_compile_has_help(flags, capsys):
  with pytest.raises(SystemExit):
    flags(['--help'])
  lines = capsys.readouterr().out.split('options:\n')[1].splitlines()
  for line, following in zip(lines, lines[1:] + ['']):
    if line.startswith('  -'):  # Its help follows on the line, or on the next one, indented.
      assert re.search(r'\S {2,}\S', line.strip()) or following.startswith(' ' * 20), line


def test_bench_data_says_what_it_times_and_reports_each_step():
  result = _bench('data', '--limit', '20', '--workers', '1')
  assert result.returncode == 0, result.stderr
  said = [line.split('] ', 1)[1] for line in result.stderr.splitlines() if line.startswith('[')]
  assert said[0].startswith('Timing the decoder on a subset of ')
  steps = [line.split(':')[0] for line in said if 'images/s' in line]
  assert steps == [line.split('  ')[0] for line in result.stdout.splitlines()[4:]]


@pytest.mark.slow  # Compiles resnet20: 85 s on 2 busy cores.
def test_bench_train_on_a_cpu_says_what_it_times_and_reports_each_model():
  # No --models: on a CPU resnet20 alone (the paper's deeper nets compile for many minutes).
  result = _bench('train', '--batch-size', '8', '--steps', '1', '--num-train', '8',
                  '--num-eval', '8')
  assert result.returncode == 0, result.stderr
  announce, *progress = [line for line in result.stderr.splitlines() if line.startswith('[')]
  assert re.match(r'\[ *[\d.]+ min\] Timing resnet20, batch 8', announce), result.stderr
  assert [line.split('] ')[1].split(':')[0] for line in progress] == ['resnet20']
  assert [line.split()[0] for line in result.stdout.splitlines()
          if line.startswith(('resnet', 'plain'))] == ['resnet20']
  assert 'On a CPU the default is resnet20 alone' in result.stdout


def test_unknown_model_is_rejected_with_the_registry_message():
  with pytest.raises(SystemExit):
    train_step.main(['--models', 'resnet21'])


@pytest.fixture(scope='module')
def torch_resnet():
  pytest.importorskip('torch', reason='PyTorch is not installed: the reference tests need it')
  return train_step.load_torch_reference()


@pytest.mark.parametrize('name', ['resnet8', 'plain14', 'resnet20'])
def test_torch_reference_has_our_parameter_count_and_logits_shape(torch_resnet, name):
  import torch
  variables = jax.eval_shape(lambda: models.create(name).init(jax.random.key(0),
                                                              jnp.zeros((1, 32, 32, 3))))
  net = torch_resnet.create(name)
  assert torch_resnet.parameter_count(net) == count_parameters(variables['params'])
  assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_torch_reference_matches_our_bn_and_option_a_shortcuts_on_shared_weights(torch_resnet):
  import torch
  model = models.create('resnet8')
  variables = flax.core.unfreeze(model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3))))
  images = np.array(jax.random.normal(jax.random.key(1), (4, 32, 32, 3)))
  net = torch_resnet.create('resnet8')
  torch_resnet.load_flax_variables(net, variables)
  torch_images = torch.as_tensor(images).permute(0, 3, 1, 2)

  logits, updates = model.apply(variables, images, train=True, mutable=['batch_stats'])
  net.train()
  with torch.no_grad():
    torch_logits = net(torch_images)
  np.testing.assert_allclose(torch_logits.numpy(), logits, rtol=1e-4, atol=1e-4)
  # The stride-2 block: option-A shortcut, and BN running averages with the unbiased variance.
  bn = updates['batch_stats']['stage2_block0']['bn1']
  np.testing.assert_allclose(net.blocks.stage2_block0.bn1.running_mean.numpy(), bn['mean'],
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(net.blocks.stage2_block0.bn1.running_var.numpy(), bn['var'],
                             rtol=1e-4, atol=1e-5)

  variables['batch_stats'] = updates['batch_stats']
  net.eval()
  with torch.no_grad():
    np.testing.assert_allclose(net(torch_images).numpy(),
                               model.apply(variables, images, train=False), rtol=1e-4, atol=1e-4)


def test_torch_training_step_runs_and_reports_times(torch_resnet):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 32)
  result = torch_resnet.time_training('resnet8', images, labels, batch_size=8, steps=2,
                                      device='cpu')
  assert len(result['step_seconds']) == 2 and min(result['step_seconds']) > 0
  assert result['device'].startswith('cpu')


def test_torch_reference_schedule_is_the_trainers(torch_resnet):
  config = optim.default_config(lr_boundaries=(32_000, 48_000), base_batch_size=128)
  schedule = optim.learning_rate_schedule(config, batch_size=128)
  for step in (0, 31_999, 32_000, 47_999, 48_000, 63_999):
    assert torch_resnet.learning_rate(step, (32_000, 48_000)) == pytest.approx(
        float(schedule(step)), rel=1e-6), step


def test_torch_reference_trains_evaluates_and_stops_at_its_time_limit(torch_resnet, tmp_path):
  splits = synthetic_splits(num_train=256, num_eval=64, image_size=32, num_classes=10, seed=0)
  full, stopped = tmp_path / 'full.jsonl', tmp_path / 'stopped.jsonl'
  last = torch_resnet.train('resnet8', splits, steps=3, boundaries=(2,), output=str(full),
                            eval_every=2)
  lines = [json.loads(line) for line in full.read_text().splitlines()]
  assert [line['step'] for line in lines] == [2, 3] and lines[-1] == last
  # 64 images: the error is a whole number of them, as the trainer's evaluation counts it.
  assert all(round(line['test_error'] * 64 / 100, 6).is_integer() for line in lines)
  torch_resnet.train('resnet8', splits, steps=50, boundaries=(25,), output=str(stopped),
                     eval_every=10, time_limit=0)
  assert [json.loads(line)['step'] for line in stopped.read_text().splitlines()] == [1]
