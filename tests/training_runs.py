"""Helpers that run tiny trainings through the real entry points, for the tests."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np

from resnet_jax import checkpoints

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_FLAGS = ('--config.data.source=synthetic', '--config.batch_size=16',
              '--config.data.synthetic.num_train=128',
              '--config.data.train_fraction=1.0', '--config.data.synthetic.num_eval=40',
              '--config.eval_batch_size=16', '--config.log_every_steps=2',
              '--config.eval_every_steps=4', '--config.checkpoint_every_steps=2',
              # A small lr keeps float rounding differences between topologies small.
              '--config.optimizer.learning_rate=0.01')


def run_main(workdir, *flags, devices: int = 1, config: str = 'smoke',
             through_launcher: bool = False, wait: bool = True):
  """Runs `python -m resnet_jax.main` (or `launch/local.sh`) on `devices` fake CPU
  devices in a subprocess; returns its output, or the process when not `wait`."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  config_arg = f'{REPO}/experiments/cifar10.py:{config}'
  if through_launcher:
    command = ['bash', str(REPO / 'launch' / 'local.sh'), '--python', sys.executable,
               config_arg, str(workdir)]
  else:
    command = [sys.executable, '-m', 'resnet_jax.main', f'--config={config_arg}',
               f'--workdir={workdir}']
  args = [*command, *TINY_FLAGS, *flags]
  process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  if not wait:
    return process
  output, _ = process.communicate(timeout=600)
  assert process.returncode == 0, output[-4000:]
  return output


def metric_records(workdir, drop=('time', 'steps_per_sec', 'eta_seconds')) -> list[dict]:
  """The run's metrics.jsonl without the wall-clock fields."""
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def final_state(workdir):
  step, (state, _) = checkpoints.load_latest_arrays(workdir)
  return step, state


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  flat_a, flat_b = (jax.tree_util.tree_flatten_with_path(tree)[0] for tree in (a, b))
  assert [path for path, _ in flat_a] == [path for path, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))
