"""The accelerators `python -m resnet_jax.bench aot` compiles for, described without one: a TPU
slice by its topology name (libtpu describes its chips), a GPU by the figures XLA's GPU compiler
reads (a GpuTargetConfig), each with the published peak figures its floor is computed from.

TARGET is `tpu:GENERATION:TOPOLOGY` (`tpu:v5e:4x4`, `tpu:v4:2x2x2`: libtpu's topology names),
a pod launcher's accelerator type (`tpu:v4-32`, `tpu:v5litepod-16`), `gpu:h100` or `gpu:h200`,
or `gpu:NAME:KEY=VALUE,...` for another GPU (keys: GPU_FIELDS; e.g.
`gpu:a100:sms=108,memory_gb=80,bandwidth_tb_s=2.04,tflops_bf16=312,tflops_f32=156,cc=8.0`).
"""
import dataclasses
import math
import os

from resnet_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Chip:
  """Published figures of one device (a TPU chip or a GPU), each from `source`."""
  kind: str
  memory_bytes: float
  bandwidth: float  # HBM bytes/s.
  flops_bf16: float  # Dense peak, per second.
  flops_f32: float  # Dense peak of float32 convolutions at XLA's default precision.
  source: str
  sms: int = 0  # GPUs: streaming multiprocessors (XLA's cost model reads them).
  compute_capability: str = ''
  usable_fraction: float = 1.0  # Of memory_bytes that the runtime lets the program use.


@dataclasses.dataclass(frozen=True)
class Target:
  """What to compile for: a platform, a topology description's arguments and its chip."""
  name: str
  platform: str  # 'tpu' or 'cuda'.
  chip: Chip
  topology: str  # libtpu's topology name, or '1x1x1' for one GPU.
  topology_options: dict = dataclasses.field(default_factory=dict)

  @property
  def usable_bytes(self) -> float:
    return self.chip.memory_bytes * self.chip.usable_fraction


def _tpu_chip(kind: str, page: str, tflops: float, gib: int, gb_per_second: int) -> Chip:
  # On a TPU a float32 convolution runs at XLA's default precision: one bfloat16 MXU pass.
  return Chip(kind, gib * 2**30, gb_per_second * 1e9, tflops * 1e12, tflops * 1e12,
              f'cloud.google.com/tpu/docs/{page} ({tflops:g} TFLOP/s bf16, {gib} GiB HBM, '
              f'{gb_per_second:,} GB/s); float32 convolutions at default precision run as one '
              'bfloat16 MXU pass')


TPU_CHIPS = {'v4': _tpu_chip('TPU v4', 'v4', 275, 32, 1200),
             'v5e': _tpu_chip('TPU v5 lite', 'v5e', 197, 16, 819),
             'v5p': _tpu_chip('TPU v5', 'v5p', 459, 95, 2765),
             'v6e': _tpu_chip('TPU v6 lite', 'v6e', 918, 32, 1640)}
# jax's GPU client takes 75% of the memory at start (XLA_PYTHON_CLIENT_MEM_FRACTION, JAX docs:
# "GPU memory allocation"). Float32 convolutions run as TF32 at XLA's default precision.
_GPU_USABLE = float(os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION', 0.75))
GPU_CHIPS = {
    'h100': Chip('NVIDIA H100 SXM', 80e9, 3.35e12, 989e12, 494.5e12,
                 'NVIDIA H100 datasheet, SXM (989 TFLOP/s bf16 and 494.5 TF32, dense: half the '
                 'sparse figures; 80 GB HBM3, 3.35 TB/s)', sms=132, compute_capability='9.0',
                 usable_fraction=_GPU_USABLE),
    'h200': Chip('NVIDIA H200 SXM', 141e9, 4.8e12, 989e12, 494.5e12,
                 'NVIDIA H200 datasheet, SXM (989 TFLOP/s bf16 and 494.5 TF32, dense: half the '
                 'sparse figures; 141 GB HBM3e, 4.8 TB/s)', sms=132, compute_capability='9.0',
                 usable_fraction=_GPU_USABLE),
}
GPU_FIELDS = ('sms', 'memory_gb', 'bandwidth_tb_s', 'tflops_bf16', 'tflops_f32', 'cc')
# Chips a pod launcher's accelerator type counts: v4 names count TensorCores (2 a chip).
_CORES_PER_CHIP = {'v4': 2, 'v5p': 2, 'v5litepod': 1, 'v5e': 1, 'v6e': 1}
_GENERATION = {'v5litepod': 'v5e'}


def parse(name: str) -> Target:
  """The Target a TARGET string names; ConfigError with the accepted forms otherwise."""
  platform, _, rest = name.partition(':')
  if platform == 'tpu' and rest:
    return _tpu_target(name, rest)
  if platform == 'gpu' and rest:
    return _gpu_target(name, rest)
  raise ConfigError(f'Unknown target {name!r}; use tpu:GENERATION:TOPOLOGY (e.g. tpu:v5e:4x4, '
                    'tpu:v4:2x2x2), a pod type (tpu:v4-32), gpu:h100, gpu:h200 or '
                    f'gpu:NAME:{"=..,".join(GPU_FIELDS)}=.. (python -m resnet_jax.bench aot '
                    '--help).')


def _tpu_target(name: str, rest: str) -> Target:
  generation, _, topology = rest.partition(':')
  if not topology and '-' in generation:  # A pod launcher's accelerator type: v4-32.
    generation, topology = _topology_of(name, *generation.split('-', 1))
  if generation not in TPU_CHIPS or not topology:
    raise ConfigError(f'Unknown TPU target {name!r}; use tpu:GENERATION:TOPOLOGY with a '
                      f'generation of {sorted(TPU_CHIPS)} (e.g. tpu:v5e:4x4) or a pod type such '
                      'as tpu:v4-32 or tpu:v5litepod-16.')
  dims = tuple(int(size) for size in topology.split('x') if size.isdigit())
  if len(dims) != len(topology.split('x')) or len(dims) not in (2, 3):
    raise ConfigError(f'TPU topology {topology!r} of {name!r} is not AxB or AxBxC.')
  # A host holds up to 2x2x1 chips; smaller slices are one host.
  host = tuple(min(size, 2) for size in dims[:2]) + (1,)
  options = {'chips_per_host_bounds': host}
  if generation in ('v4', 'v5p'):
    # Real v4 and v5p VMs run each chip's two TensorCores as one device (megacore).
    options.update(chip_config_name='megacore', wrap=(False, False, False))
  return Target(name, 'tpu', TPU_CHIPS[generation], f'{generation}:{topology}', options)


def _topology_of(name: str, generation: str, count: str) -> tuple[str, str]:
  """(generation, topology) of a pod type such as v4-32 (32 TensorCores: 16 chips, 2x2x4)."""
  if generation not in _CORES_PER_CHIP or not count.isdigit():
    raise ConfigError(f'Unknown TPU pod type in {name!r}; e.g. tpu:v4-32, tpu:v5litepod-16.')
  chips = int(count) // _CORES_PER_CHIP[generation]
  generation = _GENERATION.get(generation, generation)
  if generation in ('v4', 'v5p'):  # 3-D: 2x2x1 (one host), 2x2x2, 2x2x4, 2x4x4, 4x4x4, ...
    dims = [1, 2, 2]
    while math.prod(dims) < chips:
      dims = sorted([2 * dims[0]] + dims[1:])
    return generation, 'x'.join(map(str, sorted(dims, key=lambda size: size == 1)))
  # 2-D: 1x1, 2x2, 2x4, 4x4, 4x8, 8x8, ...
  side = 2 ** (int(math.log2(max(chips, 1))) // 2)
  return generation, f'{side}x{chips // side}'


def _gpu_target(name: str, rest: str) -> Target:
  kind, _, fields = rest.partition(':')
  if not fields:
    if kind not in GPU_CHIPS:
      raise ConfigError(f'Unknown GPU {kind!r} in {name!r}; use gpu:h100, gpu:h200, or describe '
                        f'it: gpu:NAME:{",".join(f + "=.." for f in GPU_FIELDS)}.')
    return Target(name, 'cuda', GPU_CHIPS[kind], '1x1x1')
  values = dict(field.split('=', 1) for field in fields.split(',') if '=' in field)
  missing = [field for field in GPU_FIELDS if field not in values]
  try:
    figures = {key: float(value) for key, value in values.items() if key != 'cc'}
  except ValueError:
    figures = None
  if missing or figures is None or set(values) - set(GPU_FIELDS):
    raise ConfigError(f'{name!r} must give every one of {", ".join(GPU_FIELDS)} as numbers, '
                      f'e.g. gpu:a100:sms=108,memory_gb=80,bandwidth_tb_s=2.04,tflops_bf16=312,'
                      f'tflops_f32=156,cc=8.0.')
  chip = Chip(kind, figures['memory_gb'] * 1e9, figures['bandwidth_tb_s'] * 1e12,
              figures['tflops_bf16'] * 1e12, figures['tflops_f32'] * 1e12,
              f'given on the command line ({fields})', sms=int(figures['sms']),
              compute_capability=values['cc'], usable_fraction=_GPU_USABLE)
  return Target(name, 'cuda', chip, '1x1x1')


def gpu_target_config(chip: Chip) -> str:
  """The GpuTargetConfig text proto XLA's GPU compiler reads for `chip` (the fields its
  cost model and kernel choices use; the rest are those of every recent NVIDIA GPU)."""
  major, _, minor = chip.compute_capability.partition('.')
  return f'''gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 shared_memory_per_block_optin: 232448
  threads_per_core_limit: 2048 core_count: {chip.sms} fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: {int(chip.bandwidth)} l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: {int(chip.memory_bytes)}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
  cuda_compute_capability {{ major: {int(major)} minor: {int(minor or 0)} }}
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
device_description_str: "{chip.kind}"
'''
