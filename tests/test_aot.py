"""`python -m resnet_jax.bench aot`: the trainer's programs compiled for TPU slices (libtpu, the
`aot` extra) and a GPU (where the CUDA plugin is installed) on this CPU, with no device."""
import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from conftest import REPO
from resnet_jax.bench import hlo_kernels, targets


def _installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    return False


HAS_LIBTPU = _installed('libtpu')
# CI does not install the CUDA plugin (docs/performance.md says why); where it lies in a folder
# of its own (pip install --target DIR 'jax[cuda12]'), name it here to run the GPU test.
CUDA_PLUGIN_DIR = os.environ.get('RESNET_JAX_CUDA_PLUGIN_DIR')
HAS_CUDA_PLUGIN = _installed('jax_plugins.xla_cuda12') or bool(CUDA_PLUGIN_DIR)
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu: pip install -e '.[aot]'")


def aot(directory, config: str, target: str, *flags: str):
  """(the finished command, its JSON figures or None)."""
  written = directory / 'aot.json'
  env = dict(os.environ)
  if CUDA_PLUGIN_DIR and target.startswith('gpu:'):
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [CUDA_PLUGIN_DIR, env.get('PYTHONPATH')]))
  result = subprocess.run(
      [sys.executable, '-m', 'resnet_jax.bench', 'aot', f'--config={config}',
       f'--target={target}', f'--json={written}', *flags],
      cwd=REPO, capture_output=True, text=True, timeout=1200, env=env)
  return result, json.loads(written.read_text()) if written.exists() else None


def programs_of(figures: dict) -> dict:
  return {program['name']: program for program in figures['programs']}


@pytest.fixture(scope='module')
def cifar_smoke_on_v5e(tmp_path_factory):
  return aot(tmp_path_factory.mktemp('cifar'), 'experiments/cifar10.py:smoke', 'tpu:v5e:2x2')


@pytest.mark.slow  # XLA's TPU compiler: 1-3 minutes on 2 busy cores.
@needs_libtpu
def test_the_cifar_smoke_net_compiles_for_a_tpu_and_fits(cifar_smoke_on_v5e):
  result, figures = cifar_smoke_on_v5e
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith('COMPILED, NOT RUN: experiments/cifar10.py:smoke (resnet8')
  assert '4 x TPU v5 lite on 1 host(s), mesh replica 1 x data 4' in result.stdout
  programs = programs_of(figures)
  assert set(programs) == {'train', 'eval'}
  train = programs['train']
  assert all(program['fits'] for program in programs.values())
  # Per device: resnet8's ~12.2M multiply-adds an image, x2 flops, x3 for the backward pass,
  # on 32 / 4 images (what XLA counts beside them, BN and the optimizer, is small).
  assert 0.4e9 < train['flops'] < 0.8e9
  assert train['kernels']['conv/matmul'] >= 20  # 7 convs forward, ~2 each backward.
  assert train['kernels']['collective'] >= 1  # The gradients' all-reduce over `data`.
  assert train['calls_per_run'] == 30
  assert 0 < train['floor_seconds'] < 0.1


@pytest.mark.slow  # XLA's TPU compiler: 1-3 minutes on 2 busy cores.
@needs_libtpu
def test_four_replicas_over_two_groups_compile_for_four_hosts(tmp_path):
  result, figures = aot(tmp_path, 'experiments/cifar10.py:smoke', 'tpu:v5e:4x4',
                        '--config.num_replicas=4', '--config.mesh.replica=2', '--programs=train')
  assert result.returncode == 0, result.stderr[-3000:]
  assert '16 x TPU v5 lite on 4 host(s), mesh replica 2 x data 8' in result.stdout
  [train] = figures['programs']
  assert train['fits'] and train['kernels']['conv/matmul'] >= 2 * 20  # Two nets a group.


@pytest.mark.slow  # XLA's TPU compiler: 1-3 minutes on 2 busy cores.
@needs_libtpu
def test_the_imagenet_smoke_net_compiles_its_streamed_step_and_test_views(tmp_path):
  result, figures = aot(tmp_path, 'experiments/imagenet.py:smoke', 'tpu:v5e:2x2',
                        '--programs=train,10crop,multiscale')
  assert result.returncode == 0, result.stderr[-3000:]
  programs = programs_of(figures)
  assert set(programs) == {'train', 'eval 10crop', 'eval multiscale'}
  assert '10 view(s) 32x32' in programs['eval 10crop']['note']
  assert '1 view(s) 48x96' in programs['eval multiscale']['note']  # The largest bucket.
  assert all(program['fits'] for program in programs.values())


@needs_libtpu
def test_a_wrong_topology_is_one_line_and_exit_2(tmp_path):
  result, _ = aot(tmp_path, 'experiments/cifar10.py:smoke', 'tpu:v5e:3x3')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'tpu:v5e:3x3: cannot describe it (INVALID_ARGUMENT: Topology layout "v5e:3x3" is not '
      'divisible by the given (or default) chips_per_host_bounds "2x2x1"); see '
      'resnet_jax/bench/targets.py for the target forms.']


@pytest.mark.skipif(HAS_CUDA_PLUGIN, reason='the CUDA plugin is installed')
def test_a_gpu_target_without_the_cuda_plugin_names_its_install(tmp_path):
  result, _ = aot(tmp_path, 'experiments/cifar10.py:smoke', 'gpu:h200')
  assert result.returncode == 2
  [line] = result.stderr.strip().splitlines()
  assert line.startswith("gpu:h200 needs the CUDA plugin, which is not installed: pip install "
                         "'jax[cuda12]==")


@pytest.mark.skipif(not HAS_CUDA_PLUGIN, reason="the CUDA plugin: pip install 'jax[cuda12]'")
def test_the_cifar_smoke_net_compiles_for_an_h200(tmp_path):
  result, figures = aot(tmp_path, 'experiments/cifar10.py:smoke', 'gpu:h200', '--programs=train')
  assert result.returncode == 0, result.stderr[-3000:]
  [train] = figures['programs']
  assert train['fits'] and train['bytes_accessed'] is None  # No cost analysis on a GPU.
  assert train['kernels']['conv/matmul'] >= 20  # cuDNN convs, forward and backward.
  assert train['floor_seconds'] > sum(train['kernels'].values()) * 3e-6  # Launches included.


@pytest.mark.parametrize('name, topology', [
    ('tpu:v4-8', 'v4:2x2x1'), ('tpu:v4-32', 'v4:2x2x4'), ('tpu:v4-128', 'v4:4x4x4'),
    ('tpu:v5litepod-8', 'v5e:2x4'), ('tpu:v5litepod-16', 'v5e:4x4'), ('tpu:v6e:8x8', 'v6e:8x8')])
def test_pod_types_name_their_topology(name, topology):
  assert targets.parse(name).topology == topology


def test_v4_is_described_as_megacore_and_a_described_gpu_keeps_its_figures():
  assert targets.parse('tpu:v4:2x2x2').topology_options['chip_config_name'] == 'megacore'
  chip = targets.parse('gpu:a100:sms=108,memory_gb=80,bandwidth_tb_s=2.04,tflops_bf16=312,'
                       'tflops_f32=156,cc=8.0').chip
  assert (chip.sms, chip.memory_bytes, chip.flops_f32) == (108, 80e9, 156e12)
  assert 'core_count: 108' in targets.gpu_target_config(chip)


def test_kernels_in_a_loop_count_once_a_trip():
  def three_convs(images, kernel):
    def layer(images, _):
      return jnp.tanh(lax.conv_general_dilated(images, kernel, (1, 1), 'SAME',
                                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))), None
    return lax.scan(layer, images, None, length=3)[0]

  compiled = jax.jit(three_convs).lower(jnp.zeros((2, 8, 8, 4)), jnp.zeros((3, 3, 4, 4))).compile()
  assert hlo_kernels.count(compiled.as_text())['conv/matmul'] == 3
