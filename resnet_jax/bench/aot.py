"""Compiles, ahead of time and without the hardware, the programs a run of CONFIG would run on
TARGET, and says per program whether it fits in the device's memory and a floor for its time:

  python -m resnet_jax.bench aot --config=experiments/cifar10.py:resnet56 --target=tpu:v5e:2x2
  python -m resnet_jax.bench aot --config=experiments/imagenet.py:resnet50 --target=gpu:h200

The programs are the trainer's own (train.build with the target's devices, make_train_fn,
make_eval_fn; the streamed ImageNet nets' center, 10-crop and multi-scale scorers), from the
input's shapes alone. TARGET forms: bench/targets.py. A TPU target needs libtpu (`pip install
-e '.[aot]'`), a GPU target the CUDA plugin (`pip install 'jax[cuda12]==JAX_VERSION'`); neither
needs the device. Everything printed is compiled, not run: the floor is what the published
peak compute and memory bandwidth allow (plus a launch cost per GPU kernel), never a timing.
"""
import dataclasses
import functools
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding, PartitionSpec

from resnet_jax import errors, sharding, train
from resnet_jax.bench import aot_inputs, hlo_kernels, targets
from resnet_jax.data.imagenet import views
from resnet_jax.models import complexity

# Read when jax starts its TPU and GPU plugins, so set before anything asks for devices:
# compile for a GPU that is not there; take no machine-wide libtpu lock (another process may
# hold it); no TPU VM metadata to look for (libtpu warns without these).
NO_DEVICE_ENVIRONMENT = {'JAX_SKIP_CUDA_CONSTRAINTS_CHECK': '1', 'ALLOW_MULTIPLE_LIBTPU_LOAD': '1',
                         'TPU_SKIP_MDS_QUERY': '1', 'TPU_WORKER_HOSTNAMES': 'localhost',
                         'TPU_ACCELERATOR_TYPE': 'v5litepod-4'}

# A kernel on a GPU costs a few microseconds however little it does: NVIDIA's "Getting Started
# with CUDA Graphs" (developer.nvidia.com/blog/cuda-graphs) times short kernels launched one by
# one at a few microseconds each. XLA launches a step's kernels one by one, except those it
# captures in CUDA graphs (command buffers), so this part of the floor may overstate them.
GPU_LAUNCH_SECONDS = 3e-6
TPU_INSTALL = "pip install -e '.[aot]' (libtpu)"


def gpu_install() -> str:
  return f"pip install 'jax[cuda12]=={jax.__version__}' (about 3.2 GB of wheels, 4.9 GB installed)"


@dataclasses.dataclass(frozen=True)
class Program:
  """One compiled program of a run: what it is, how often a run calls it, and its analysis."""
  name: str
  calls_per_run: int
  note: str
  compile_seconds: float
  memory: dict  # Bytes per device: arguments, outputs, temporaries, total.
  flops: float  # Per device per call.
  flops_source: str
  bytes_accessed: float | None  # Per device per call; None where the backend does not say.
  kernels: dict

  def floor_seconds(self, target: targets.Target, dtype: str) -> float:
    """The least one call can take on `target`: compute or memory traffic at their published
    peaks, whichever is longer, plus a launch cost per kernel on a GPU."""
    peak = target.chip.flops_bf16 if dtype == 'bfloat16' else target.chip.flops_f32
    floor = max(self.flops / peak, (self.bytes_accessed or 0) / target.chip.bandwidth)
    if target.platform == 'cuda':
      floor += sum(self.kernels.values()) * GPU_LAUNCH_SECONDS
    return floor


def describe_devices(target: targets.Target) -> list:
  """The devices of `target`, described by libtpu or the CUDA plugin without the hardware."""
  from jax.experimental import topologies
  if target.platform == 'tpu':
    if not _installed('libtpu'):
      raise errors.MissingPackageError(f'{target.name} needs libtpu, which is not installed: '
                                       f'{TPU_INSTALL}.')
    describe = functools.partial(topologies.get_topology_desc, platform='tpu',
                                 topology_name=target.topology, **target.topology_options)
  else:
    if not _installed('jax_plugins.xla_cuda12'):
      raise errors.MissingPackageError(f'{target.name} needs the CUDA plugin, which is not '
                                       f'installed: {gpu_install()}.')
    os.environ['CUDA_VISIBLE_DEVICES'] = '-1'  # Describe the GPU; never use one.
    describe = functools.partial(topologies.get_topology_desc, platform='cuda',
                                 topology='1x1x1',
                                 target_config=targets.gpu_target_config(target.chip))
  try:
    return list(describe().devices)
  except (jax.errors.JaxRuntimeError, RuntimeError, ValueError) as error:
    first = str(error).strip().splitlines()[0]
    raise errors.ConfigError(f'{target.name}: cannot describe it ({first}); see '
                             'resnet_jax/bench/targets.py for the target forms.') from None


def prepare_environment() -> None:
  """Lets jax describe TPUs and GPUs in this process without any (call before jax starts)."""
  for name, value in NO_DEVICE_ENVIRONMENT.items():
    os.environ.setdefault(name, value)


def _installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # Its parent package is missing.
    return False


def compile_run(config: ml_collections.ConfigDict, target: targets.Target,
                programs: tuple[str, ...] = ()) -> tuple[train.Setup, list[Program]]:
  """The setup of `config` on `target`'s devices and its programs (those named in `programs`,
  default all: train, eval or center, 10crop, multiscale), compiled."""
  setup = train.build(config, devices=describe_devices(target), open_feed=aot_inputs.open_feed)
  return setup, [_compiled(*program) for program in _programs(setup)
                 if not programs or program[0].split()[-1] in programs]


def _programs(setup: train.Setup):
  """(name, calls per run, note, lower, multiply-adds per device a call) of every program a
  run of setup.config compiles."""
  config, feed = setup.config, setup.feed
  mesh = setup.mesh.shape
  nets = config.num_replicas // mesh[sharding.REPLICA_AXIS]  # Per replica group.
  per_image = functools.partial(complexity.count_multiply_adds, setup.model)
  # A train step: the forward pass and a backward pass of about twice its work.
  train_madds = 3 * per_image(feed.image_shape) * config.batch_size // mesh[sharding.DATA_AXIS]
  state, metrics = jax.eval_shape(functools.partial(train.initial_state, setup))
  replicated = sharding.replicated(setup.mesh)
  dispatches = -(-config.num_train_steps // config.steps_per_dispatch)
  evaluations = config.num_train_steps // config.eval_every_steps + bool(
      config.num_train_steps % config.eval_every_steps)
  reset = jax.ShapeDtypeStruct((), jnp.bool_, sharding=replicated)
  yield ('train', dispatches, f'{config.steps_per_dispatch} step(s) a call',
         lambda: train.make_train_fn(setup).lower(state, metrics, feed.train_inputs(), reset),
         train_madds * nets * config.steps_per_dispatch)
  if not feed.streamed:
    eval_images = feed.data.eval_images.shape[0] * feed.data.eval_images.shape[1]
    yield ('eval', evaluations, f'the whole {feed.eval_split} split a call',
           lambda: train.make_eval_fn(setup).lower(state, feed.data),
           per_image(feed.image_shape) * eval_images * nets // mesh[sharding.DATA_AXIS])
    return
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  scorer = _scorer(setup)
  for mode, calls in (('center', evaluations), ('10crop', 1), ('multiscale', 1)):
    images, shape = _eval_images(setup, mode)
    batches = -(-feed.source.num_eval * _scales(mode, config) // images)
    note = (f'{images} images of {shape[1]} view(s) {shape[2]}x{shape[3]} a call'
            + (', the largest of the multi-scale shapes' if mode == 'multiscale' else ''))
    yield (f'eval {mode}', calls * batches, note,
           lambda shape=shape: scorer.lower(variables, jax.ShapeDtypeStruct(
               shape, jnp.uint8, sharding=NamedSharding(setup.mesh, PartitionSpec(
                   sharding.DATA_AXIS)))),
           per_image(shape[2:]) * images * shape[1] // mesh[sharding.DATA_AXIS])


def _scorer(setup: train.Setup):
  from resnet_jax.feeds import streamed_eval
  return streamed_eval.make_scorer(setup.model, setup.feed.source.mean, setup.feed.source.std)


def _scales(mode: str, config) -> int:
  return len(config.data.eval_scales) if mode == 'multiscale' else 1


def _eval_images(setup: train.Setup, mode: str) -> tuple[int, tuple]:
  """Images a call and the uint8 batch shape [b, views, h, w, 3] of `mode` (the trainer's
  center crops; evaluate's 10-crop and its largest multi-scale bucket)."""
  config, data = setup.config, setup.config.data
  if mode == 'center':
    images = config.eval_batch_size
  else:
    from resnet_jax import evaluate
    images = evaluate.images_per_step(0, mode, config, setup.mesh)
  views_of = {'center': 1, '10crop': 10, 'multiscale': 1}[mode]
  height = width = data.crop_size
  if mode == 'multiscale':
    height = max(data.eval_scales)
    width = round(height * max(views.BUCKET_RATIOS))
  return images, (images, views_of, height, width, 3)


def _compiled(name: str, calls: int, note: str, lower: Callable, multiply_adds: int) -> Program:
  started = time.perf_counter()
  compiled = lower().compile()
  seconds = time.perf_counter() - started
  memory = compiled.memory_analysis()
  parts = {'arguments': memory.argument_size_in_bytes, 'outputs': memory.output_size_in_bytes,
           'temporaries': memory.temp_size_in_bytes}
  total = sum(parts.values()) - memory.alias_size_in_bytes  # Donated buffers count once.
  costs = compiled.cost_analysis() or {}  # None on a GPU.
  flops, source = costs.get('flops'), "XLA's cost analysis"
  if flops is None:
    flops, source = 2.0 * multiply_adds, 'twice the convs\' and dense layers\' multiply-adds'
  return Program(name, calls, note, seconds, {**parts, 'total': total}, flops, source,
                 costs.get('bytes accessed'), dict(hlo_kernels.count(compiled.as_text())))


def render(config_name: str, config, target: targets.Target, setup: train.Setup,
           programs: list[Program]) -> str:
  """The report of `programs`: per program its compile time, memory against the device's,
  flops, bytes and kernels per call, and the floor of a call and of the run's calls."""
  devices = setup.mesh.devices.flat
  hosts = len({device.process_index for device in devices})
  mesh = ' x '.join(f'{axis} {size}' for axis, size in setup.mesh.shape.items())
  lines = [f'COMPILED, NOT RUN: {config_name} ({config.model}, {config.dtype}, batch '
           f'{config.batch_size}, {config.num_train_steps:,} steps) for {target.name}: '
           f'{setup.mesh.devices.size} x {target.chip.kind} on {hosts} host(s), mesh {mesh}; '
           f'{_versions(target)}.']
  for program in programs:
    lines += _program_lines(program, target, config.dtype)
  lines.append(f'Floor of the run (training and its evaluations; evaluate\'s 10-crop and '
               f'multi-scale passes apart): {duration(run_floor(programs, target, config))}.')
  lines += [f'Assumptions: {target.chip.kind}: {target.chip.source}.',
            f'  memory: {_bytes(target.usable_bytes)} usable per device'
            + (f' ({target.chip.usable_fraction:.0%} of {_bytes(target.chip.memory_bytes)}: jax\'s '
               'GPU client preallocates that fraction, XLA_PYTHON_CLIENT_MEM_FRACTION)'
               if target.platform == 'cuda' else '') + '.',
            '  floor: max(flops / peak, bytes accessed / HBM bandwidth) per call'
            + (f' + {GPU_LAUNCH_SECONDS * 1e6:.0f} us per kernel (NVIDIA, "Getting Started '
               'with CUDA Graphs": a few us per short kernel launched one by one)'
               if target.platform == 'cuda' else '')
            + '; a lower bound, never a timing: real steps are slower.']
  return '\n'.join(lines)


def run_floor(programs: list[Program], target: targets.Target, config) -> float:
  """Seconds of the floor of training and the evaluations during it."""
  return sum(program.floor_seconds(target, config.dtype) * program.calls_per_run
             for program in programs if program.name in ('train', 'eval', 'eval center'))


def _program_lines(program: Program, target: targets.Target, dtype: str) -> list[str]:
  memory = program.memory
  fits = 'fits' if memory['total'] <= target.usable_bytes else 'DOES NOT FIT'
  kernels = sum(program.kernels.values())
  kinds = ', '.join(f'{program.kernels[kind]} {kind}' for kind in hlo_kernels.KINDS
                    if program.kernels.get(kind))
  floor = program.floor_seconds(target, dtype)
  traffic = ('bytes accessed not reported by this backend' if program.bytes_accessed is None
             else f'{program.bytes_accessed / 1e9:,.2f} GB accessed')
  work = f'{program.flops / 1e9:,.1f} GFLOP ({program.flops_source}), {traffic}'
  floors = (f'floor {duration(floor)} a call, {duration(floor * program.calls_per_run)} for '
            f'{program.calls_per_run:,} calls')
  return [f'{program.name} ({program.note}): compiled in {program.compile_seconds:.1f} s',
          f'  memory per device: {_bytes(memory["total"])} ({_bytes(memory["arguments"])} '
          f'arguments, {_bytes(memory["outputs"])} outputs, {_bytes(memory["temporaries"])} '
          'temporaries) of '
          f'{_bytes(target.usable_bytes)}: {fits}',
          f'  per device a call: {work}; {kernels:,} kernels ({kinds})',
          f'  {floors}']


def _versions(target: targets.Target) -> str:
  package = 'libtpu' if target.platform == 'tpu' else 'jax-cuda12-plugin'
  try:
    version = importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    version = '?'
  return f'jax {jax.__version__}, {package} {version}'


def _bytes(count: float) -> str:
  if count < 2**30:
    return f'{count / 2**20:,.1f} MiB'
  return f'{count / 2**30:,.2f} GiB'


def duration(seconds: float) -> str:
  """Seconds as ms, s or h, for floors from microseconds to days."""
  if seconds < 1:
    return f'{seconds * 1e3:,.2f} ms'
  if seconds < 3600:
    return f'{seconds:,.1f} s'
  return f'{seconds / 3600:,.2f} h'


def as_json(config_name: str, config, target: targets.Target, programs: list[Program]) -> dict:
  """What render prints, as JSON values (for docs tables and other tools)."""
  return {'config': config_name, 'target': target.name, 'model': config.model,
          'dtype': config.dtype, 'batch_size': config.batch_size, 'compiled_not_run': True,
          'usable_bytes': target.usable_bytes,
          'programs': [{**dataclasses.asdict(program),
                        'floor_seconds': program.floor_seconds(target, config.dtype),
                        'fits': program.memory['total'] <= target.usable_bytes}
                       for program in programs]}


def main(argv: list[str]) -> None:
  """`python -m resnet_jax.bench aot --config=CONFIG --target=TARGET [--json=PATH]`."""
  from absl import app, flags
  from ml_collections import config_flags

  from resnet_jax import commands
  config_flags.DEFINE_config_file('config', None, 'Config file, e.g. '
                                  'experiments/cifar10.py:resnet56.', lock_config=True)
  flags.DEFINE_string('target', None, 'tpu:v5e:4x4, tpu:v4-32, gpu:h100, gpu:h200, or '
                      'gpu:NAME:sms=..,memory_gb=..,bandwidth_tb_s=..,tflops_bf16=..,'
                      'tflops_f32=..,cc=.. (resnet_jax/bench/targets.py).')
  flags.DEFINE_list('programs', [], 'Compile only these: train, eval (CIFAR nets), center, '
                    '10crop, multiscale (ImageNet nets); default all.')
  flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
  flags.mark_flags_as_required(['config', 'target'])

  def run(_):
    flag_values = flags.FLAGS
    try:
      target = targets.parse(flag_values.target)
      setup, programs = compile_run(flag_values.config, target, tuple(flag_values.programs))
    except errors.ConfigError as error:
      print(f'{error}', file=sys.stderr)
      sys.exit(error.exit_code)
    config_name = next(arg.split('=', 1)[1] for arg in sys.argv if arg.startswith('--config='))
    print(render(config_name, setup.config, target, setup, programs))
    if flag_values.json:
      with open(flag_values.json, 'w') as file:
        json.dump(as_json(config_name, setup.config, target, programs), file, indent=1)
    too_big = [program.name for program in programs
               if program.memory['total'] > target.usable_bytes]
    if too_big:  # Exit status 1, so that a launcher stops before renting the hardware.
      print(f'Does not fit on {target.name}: {", ".join(too_big)}.', file=sys.stderr)
      sys.exit(1)

  from resnet_jax.run import console
  console.quiet_libraries()
  prepare_environment()
  app.run(run, argv=['python -m resnet_jax.bench aot'] + argv, flags_parser=commands.parse_flags)
