"""Bad configs and workdirs are refused before anything is compiled, in the user's terms."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import cifar10
import pytest

from resnet_jax import errors, sharding, train
from resnet_jax.config import checks

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(**overrides):
  config = cifar10.get_config('smoke')
  for key, value in overrides.items():
    *parents, leaf = key.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


@pytest.mark.parametrize('overrides, message', [
    ({'model': 'resnett20'}, "Unknown model 'resnett20'. Did you mean resnet20"),
    ({'model': 'resnet21'}, "'resnet21': depth must be 6n+2 for CIFAR nets"),
    ({'model': 'resnet50'}, "model='resnet50' is an ImageNet net (Table 1, 224x224 crops), but "
                            'this config holds a CIFAR-scale data set'),
    ({'batch_size': 0}, 'batch_size=0 must be a positive whole number'),
    ({'eval_batch_size': -500}, 'eval_batch_size=-500 must be a positive whole number'),
    ({'keep_checkpoints': 0}, 'keep_checkpoints=0 must be a positive whole number'),
    ({'optimizer.lr_boundaries': (25, 20)}, 'lr_boundaries=(25, 20) must be positive steps in '
                                            'increasing order'),
    ({'optimizer.lr_boundaries': (20, 20)}, 'must be positive steps in increasing order'),
    ({'optimizer.lr_boundaries': (0, 20)}, 'must be positive steps in increasing order'),
    ({'optimizer.warmup_steps': 20}, 'warmup_steps=20 must end before the first lr boundary (20)'),
    ({'optimizer.warmup_steps': -1}, 'warmup_steps=-1 must be 0 (no warm-up)'),
    ({'steps_per_dispatch': 4},
     'num_train_steps=30 must be a positive multiple of steps_per_dispatch=4'),
    ({'log_every_steps': 0}, 'log_every_steps=0 must be a positive multiple'),
    ({'steps_per_dispatch': 5, 'checkpoint_every_steps': 12},
     'checkpoint_every_steps=12 must be a positive multiple of steps_per_dispatch=5'),
    ({'on_nonfinite': 'ignore'}, "on_nonfinite='ignore' is not one of ('stop', 'skip')"),
    ({'dtype': 'float16'}, "dtype='float16' is not one of ('float32', 'bfloat16')"),
    ({'shortcut': 'D'}, "shortcut='D' is not one of ('A', 'B', 'C')"),
    ({'bn_group_size': 5}, 'bn_group_size=5 must divide batch_size=32'),
    ({'bn_group_size': -1}, 'bn_group_size=-1 must be 0 (BN over the whole batch)'),
    ({'num_replicas': 0}, 'num_replicas=0 must be a positive whole number'),
    ({'mesh.data': 3}, 'needs 3 devices, but 1 are visible'),
])
def test_invalid_config_is_refused_with_its_message(overrides, message):
  with pytest.raises(errors.ConfigError) as error:
    checks.validate(_config(**overrides))
  assert message in str(error.value)


def test_replicas_must_share_evenly_over_the_replica_groups(monkeypatch):
  mesh = types.SimpleNamespace(shape={'replica': 4, 'data': 2})
  monkeypatch.setattr(sharding, 'make_mesh', lambda sizes, devices=None: mesh)
  checks.validate(_config(num_replicas=8))
  with pytest.raises(errors.ConfigError, match=r'num_replicas=6 nets cannot be shared evenly by '
                                               r'the 4 replica groups of the mesh'):
    checks.validate(_config(num_replicas=6))


def test_eval_batch_must_divide_over_the_data_axis(monkeypatch):
  mesh = types.SimpleNamespace(shape={'replica': 1, 'data': 3})
  monkeypatch.setattr(sharding, 'make_mesh', lambda sizes, devices=None: mesh)
  with pytest.raises(errors.ConfigError, match="eval_batch_size=512 does not divide over the 3 "
                     "devices of the mesh's 'data' axis; use a multiple of 3"):
    checks.validate(_config(batch_size=33))


def test_valid_configs_pass():
  checks.validate(cifar10.get_config('smoke'))
  checks.validate(cifar10.get_config('resnet110'))


def test_a_schedule_past_the_last_step_is_warned_about_by_warn_alone(caplog):
  config = _config(num_train_steps=10)
  config.optimizer.lr_boundaries = (5, 20)
  checks.validate(config)
  assert not caplog.records
  checks.warn(config)
  assert [record.getMessage() for record in caplog.records] == [
      'optimizer.lr_boundaries=(5, 20) reaches past the last step (num_train_steps=10): the '
      'learning rate never drops there.']


def test_a_run_checks_its_config_and_builds_its_mesh_once(tmp_path, monkeypatch):
  calls = []
  for module, name in ((checks, 'validate'), (sharding, 'make_mesh')):
    monkeypatch.setattr(module, name, _counted(calls, name, getattr(module, name)))

  def built(*args):
    raise StopIteration(args)
  monkeypatch.setattr(train, '_resume_and_train', built)  # Stops before compiling.
  with pytest.raises(StopIteration):
    train.train_and_evaluate(_config(**{'data.source': 'synthetic'}), str(tmp_path))
  assert sorted(calls) == ['make_mesh', 'validate']


def _counted(calls: list, name: str, function):
  def call(*args):
    calls.append(name)
    return function(*args)
  return call


def test_workdir_under_a_file_is_refused(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(errors.WorkdirError, match='Cannot write to --workdir=.*file/run'):
    checks.check_workdir(tmp_path / 'file' / 'run', 0)


def test_full_disk_is_refused_and_existing_files_are_untouched(tmp_path, monkeypatch):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n')
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(shutil, 'disk_usage', lambda _: usage._replace(free=5 * 2**20))
  with pytest.raises(errors.WorkdirError, match='has 5 MiB free, but the checkpoints of this run '
                     'need about 10 MiB'):
    checks.check_workdir(tmp_path, 10 * 2**20)
  assert os.listdir(tmp_path) == ['metrics.jsonl']


def test_checkpoint_bytes_counts_every_array():
  import jax
  import jax.numpy as jnp
  tree = {'a': jax.ShapeDtypeStruct((10, 3), jnp.float32), 'b': jax.ShapeDtypeStruct((), jnp.int32)}
  assert checks.checkpoint_bytes(tree) == 124


def _main(workdir, config, *flags, env=None):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': str(REPO),
         'XLA_FLAGS': '--xla_force_host_platform_device_count=2', **(env or {})}
  return subprocess.run(
      [sys.executable, '-m', 'resnet_jax.main', f'--config={config}', f'--workdir={workdir}',
       *flags], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('config, flag, message', [
    ('experiments/cifar10.py:smoke', '--config.modle=resnet20',
     "Config error: --config.modle=resnet20: the config has no key 'modle'. "
     'Did you mean "model" instead of "modle"?'),
    ('experiments/cifar10.py:smoke', '--config.model=resnet50',
     "model='resnet50' is an ImageNet net (Table 1, 224x224 crops), but this config holds a "
     'CIFAR-scale data set; train it with experiments/imagenet.py:resnet50'),
    ('experiments/cifar10.py:smoke', '--config.batch_size=7',
     "batch_size=7 does not divide over the 2 devices of the mesh's 'data' axis; use a "
     'multiple of 2.'),
    ('experiments/cifar10.py:resnet21', None,
     "Config error: 'resnet21': depth must be 6n+2 for CIFAR nets"),
    ('experiments/cifar10.py:smoke,foo', None,
     "Config error: Unknown or repeated config variants ['foo'] in 'smoke,foo'"),
    ('experiments/cifar100.py', None, "Config error: cannot load --config=experiments/cifar100.py: "
                                      "[Errno 2] No such file or directory"),
])
def test_command_line_reports_config_errors_in_one_line_and_runs_nothing(tmp_path, config, flag,
                                                                         message):
  result = _main(tmp_path / 'run', config, *[flag] if flag else [])
  assert result.returncode == errors.ConfigError.exit_code
  assert message in result.stderr and 'Traceback' not in result.stderr
  assert not (tmp_path / 'run').exists()  # No checkpoint, no metrics, not even the workdir.


def _without(tmp_path, *packages) -> dict:
  """Environment variables under which `packages` fail to import, as where not installed."""
  for package in packages:
    (tmp_path / 'absent' / package).mkdir(parents=True)
    (tmp_path / 'absent' / package / '__init__.py').write_text(
        f'raise ImportError("No module named {package!r}")\n')
  return {'PYTHONPATH': f'{tmp_path / "absent"}{os.pathsep}{REPO}'}


@pytest.mark.parametrize('module, missing', [('main', '--config'), ('evaluate', '--workdir'),
                                             ('reproduce', '--config')])
def test_a_command_without_its_required_flags_names_them_in_one_line(module, missing):
  result = subprocess.run([sys.executable, '-m', f'resnet_jax.{module}'], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == errors.ConfigError.exit_code
  assert result.stderr.splitlines()[0] == (
      f'Config error: {missing} is required (`python -m resnet_jax.{module} --help` lists the '
      'flags).')


def test_a_run_time_error_is_its_message_alone(tmp_path):
  result = _main(tmp_path / 'run', 'experiments/cifar10.py:smoke', '--config.batch_size=7')
  assert result.returncode == errors.ConfigError.exit_code
  # The message starts its line: no absl log prefix (E1202 06:10:08.123 ... commands.py:35]).
  assert re.search(r'^batch_size=7 does not divide', result.stderr, re.MULTILINE), result.stderr


def test_a_gs_workdir_without_gcsfs_says_what_to_install(tmp_path):
  # Without TensorFlow (as on a TPU VM), etils reaches GCS through gcsfs.
  env = {**_without(tmp_path, 'gcsfs'), 'EPATH_USE_TF': 'false'}
  result = _main('gs://bucket/run', 'experiments/cifar10.py:smoke',
                 '--config.data.source=synthetic', env=env)
  assert result.returncode == errors.MissingPackageError.exit_code == 2
  assert "pip install '.[gcs]'" in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.parametrize('config', ['experiments/cifar10.py:smoke', 'experiments/imagenet.py:smoke'])
def test_tfds_data_without_tfds_says_what_to_install(tmp_path, config):
  result = _main(tmp_path / 'run', config, '--config.data.source=tfds',
                 env=_without(tmp_path, 'tensorflow_datasets'))
  assert result.returncode == errors.MissingPackageError.exit_code
  assert 'needs TensorFlow Datasets' in result.stderr and 'Traceback' not in result.stderr
