"""Bad configs and workdirs are refused before anything is compiled, in the user's terms."""
import os
import pathlib
import shutil
import subprocess
import sys

import cifar10
import pytest

from resnet_jax import config_checks, errors

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
    ({'model': 'resnet21'}, 'depth must be 6n+2 for CIFAR nets'),
    ({'batch_size': 0}, 'batch_size=0 must be a positive whole number'),
    ({'optimizer.lr_boundaries': (25, 20)}, 'must be positive steps in increasing order'),
    ({'optimizer.lr_boundaries': (20, 30)}, 'reaches past the last step (num_train_steps=30)'),
    ({'optimizer.warmup_steps': 20}, 'must end before the first lr boundary (20)'),
    ({'steps_per_dispatch': 4}, 'num_train_steps=30 must be a positive multiple of steps_per_dispatch=4'),
    ({'log_every_steps': 0}, 'log_every_steps=0 must be a positive multiple'),
    ({'on_nonfinite': 'ignore'}, "on_nonfinite='ignore' is not one of ('stop', 'skip')"),
    ({'dtype': 'float16'}, "dtype='float16' is not one of"),
    ({'num_replicas': 0}, 'num_replicas=0 must be a positive whole number'),
    ({'mesh.data': 3}, 'needs 3 devices, but 1 are visible'),
])
def test_invalid_config_is_refused_with_its_message(overrides, message):
  with pytest.raises(errors.ConfigError) as error:
    config_checks.validate(_config(**overrides))
  assert message in str(error.value)


def test_valid_configs_pass():
  config_checks.validate(cifar10.get_config('smoke'))
  config_checks.validate(cifar10.get_config('resnet110'))


def test_workdir_under_a_file_is_refused(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(errors.WorkdirError, match='Cannot write to --workdir=.*file/run'):
    config_checks.check_workdir(tmp_path / 'file' / 'run', 0)


def test_full_disk_is_refused_and_existing_files_are_untouched(tmp_path, monkeypatch):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n')
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(shutil, 'disk_usage', lambda _: usage._replace(free=5 * 2**20))
  with pytest.raises(errors.WorkdirError, match='has 5 MiB free, but the checkpoints of this run '
                     'need about 10 MiB'):
    config_checks.check_workdir(tmp_path, 10 * 2**20)
  assert os.listdir(tmp_path) == ['metrics.jsonl']


def test_checkpoint_bytes_counts_every_array():
  import jax
  import jax.numpy as jnp
  tree = {'a': jax.ShapeDtypeStruct((10, 3), jnp.float32), 'b': jax.ShapeDtypeStruct((), jnp.int32)}
  assert config_checks.checkpoint_bytes(tree) == 124


def _main(tmp_path, *flags):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO),
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  return subprocess.run(
      [sys.executable, '-m', 'resnet_jax.main', f'--config={REPO}/experiments/cifar10.py:smoke',
       f'--workdir={tmp_path}', *flags], cwd=REPO, env=env, capture_output=True, text=True,
      timeout=300)


@pytest.mark.parametrize('flag, message', [
    ('--config.modle=resnet20', "--config.modle=resnet20: the config has no key 'modle'. "
                                'Did you mean "model" instead of "modle"?'),
    ('--config.model=resnet50x', "Unknown model 'resnet50x'. Did you mean resnet50"),
    ('--config.batch_size=7', "batch_size=7 does not divide over the 2 devices of the mesh's "
                              "'data' axis; use a multiple of 2."),
])
def test_command_line_reports_config_errors_in_one_line_and_runs_nothing(tmp_path, flag, message):
  result = _main(tmp_path / 'run', flag)
  assert result.returncode == errors.ConfigError.exit_code
  assert message in result.stderr and 'Traceback' not in result.stderr
  assert not (tmp_path / 'run' / 'checkpoints').exists()
