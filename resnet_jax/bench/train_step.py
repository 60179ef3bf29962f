"""Train-step benchmark: compile time, steady-state step time, images/s, peak memory and the
projected time of the paper's schedule (64k steps on CIFAR, 600k on ImageNet), for the
trainer's real jitted step (`train.make_train_fn`: for the CIFAR nets on-device batch
gather and augmentation, for the ImageNet nets one streamed batch of 224 crops; forward,
backward, SGD) on synthetic data; optionally beside the PyTorch reference in
benchmarks/torch_resnet.py, timed in the same run. Each measurement runs in a fresh
process, so peak memory and compile caches belong to it alone.

  python -m resnet_jax.bench train [--models resnet20,plain56] [--batch-size 128] [--torch]
  python -m resnet_jax.bench train --models resnet50 --batch-size 256 --dtype bfloat16
  python -m resnet_jax.bench train --num-replicas K [--mesh-replica R] [--replica-batching loop]
  python -m resnet_jax.bench compile [--depths 20,56,110,1202]

For the CIFAR nets it also times the trainer's evaluation of a whole test split
(`train.make_eval_fn`, 10,000 images unless --num-eval says otherwise). With --num-replicas
K, the K seeds' nets train as one program, split over R replica groups of the devices; a
second row times K single-seed processes on the same devices at once, for the total images/s
of both ways to train (and evaluate) K seeds.
"""
import argparse
import concurrent.futures
import dataclasses
import getpass
import importlib.metadata
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

from resnet_jax.bench.progress import say

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT = REPO / 'experiments' / 'cifar10.py'
TORCH_REFERENCE = REPO / 'benchmarks' / 'torch_resnet.py'
DEFAULT_MODELS = ('resnet20', 'plain56', 'resnet56', 'resnet110')
# On a CPU the deeper nets compile for many minutes each; measured on 2 busy cores:
# `python -m resnet_jax.bench train --models resnet20` took 2 minutes (compile 38 s, 4.9 s/step).
CPU_DEFAULT_MODELS = ('resnet20',)
CPU_MINUTES_PER_RESNET20 = 2
DEFAULT_DEPTHS = (20, 56, 110, 1202)
CPU_DEFAULT_DEPTHS = (20, 56)
# The measuring processes' stderr, XLA's C++ log among it (one file per user: /tmp is shared).
WORKER_LOG = Path(tempfile.gettempdir()) / f'resnet_jax_bench_{getpass.getuser()}.log'
CIFAR_TRAIN_IMAGES = 50_000  # The per-step permutation sorts as many indices as CIFAR-10.
CIFAR_TEST_IMAGES = 10_000


@dataclasses.dataclass(frozen=True)
class Setting:
  """What one measurement runs."""
  model: str
  batch_size: int = 128
  steps: int = 10
  dtype: str = 'float32'
  steps_per_dispatch: int = 1
  scan_blocks: bool = False
  num_train: int = CIFAR_TRAIN_IMAGES
  num_replicas: int = 1
  mesh_replica: int = 1
  replica_batching: str = 'auto'
  num_eval: int = CIFAR_TEST_IMAGES  # 0: no evaluation timed.
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Row:
  """One measured training step."""
  model: str
  framework: str
  dtype: str
  batch_size: int
  device: str
  compile_seconds: float
  step_seconds: float  # Median over the timed steps.
  peak_memory: str
  schedule_steps: int
  replicas: int = 1  # Nets trained at once, each on its own batch.
  peak_bytes: int = 0
  timed_span: tuple[float, float] = (0.0, 0.0)  # Wall clock at the start and end of timing.
  eval_images: int = 0  # Of each net's evaluation; 0: not timed.
  eval_seconds: float = 0.0  # One evaluation of every net.
  eval_span: tuple[float, float] = (0.0, 0.0)

  @property
  def images_per_second(self) -> float:
    return self.replicas * self.batch_size / self.step_seconds

  @property
  def eval_images_per_second(self) -> str:
    if not self.eval_images:
      return '-'
    return f'{self.replicas * self.eval_images / self.eval_seconds:.0f}'

  @property
  def schedule_hours(self) -> float:
    """Wall time of the paper's schedule per net (64k steps on CIFAR, 600k on ImageNet;
    replicas share the step time)."""
    return self.schedule_steps * self.step_seconds / 3600 / self.replicas


def main(argv: list[str] | None = None) -> None:
  """`python -m resnet_jax.bench train`: measures every model and prints the table."""
  args = _train_flags(argv)
  rows, notes = [], []
  if args.models is None:
    args.models = _default_models(notes)
  say(f'Timing {", ".join(args.models)}, batch {args.batch_size}, {args.dtype}: each model in a '
      f'fresh process, compiled, then {args.steps} timed steps after a warm-up (on a CPU, about '
      f'{CPU_MINUTES_PER_RESNET20} minutes for resnet20 on 2 cores, longer for deeper nets). '
      f"XLA's own log goes to {WORKER_LOG}.")
  for model in args.models:
    setting = Setting(model, args.batch_size, args.steps, args.dtype, args.steps_per_dispatch,
                      args.scan_blocks, args.num_train, args.num_replicas, args.mesh_replica,
                      args.replica_batching, args.num_eval)
    rows.append(_in_fresh_process(measure_jax, setting))
    if setting.num_replicas > 1:
      rows.append(measure_separate_processes(setting))
    if args.torch:
      for compile in (False, True)[:2 if args.torch_compile else 1]:
        try:
          rows.append(_in_fresh_process(measure_torch, setting, compile))
        except (ImportError, ValueError) as error:
          notes.append(f'torch reference of {model}: {error}')
    say(f'{model}: ' + '; '.join(f'{row.framework} compiled in {row.compile_seconds:.1f} s, '
                                 f'{1000 * row.step_seconds:.1f} ms/step'
                                 for row in rows if row.model == model))
  print(render(rows, args, notes))


def _default_models(notes: list[str]) -> tuple[str, ...]:
  """The paper's CIFAR nets on an accelerator; on a CPU resnet20 alone, with a note."""
  if _in_fresh_process(_platform) != 'cpu':
    return DEFAULT_MODELS
  notes.append(f'On a CPU the default is {_joined(CPU_DEFAULT_MODELS)} alone: --models '
               f'{_joined(DEFAULT_MODELS)} times the rest (each compiles for minutes).')
  return CPU_DEFAULT_MODELS


def _platform() -> str:
  import jax
  return jax.default_backend()


def measure_jax(setting: Setting, start_together=None) -> Row:
  """Compiles and times the trainer's train function for `setting`, then its evaluation of
  the whole eval split (CIFAR nets); with a barrier as `start_together`, starts each timing
  when every process waiting on it is ready; keeps the step rate for later plans
  (time_budget.record_rate)."""
  import jax

  from resnet_jax.run import time_budget

  setup, train_fn, state, metrics, dataset = _train_function(setting)
  started = time.perf_counter()
  compiled = train_fn.compile(state, metrics, dataset, True)
  compile_seconds = time.perf_counter() - started
  state, metrics, _ = jax.block_until_ready(compiled(state, metrics, dataset, True))  # Warm-up.
  wait = start_together.wait if start_together is not None else lambda: None
  wait()
  span_start = time.time()
  times = []
  for _ in range(-(-setting.steps // setting.steps_per_dispatch)):
    started = time.perf_counter()
    state, metrics, _ = jax.block_until_ready(compiled(state, metrics, dataset, False))
    times.append((time.perf_counter() - started) / setting.steps_per_dispatch)
  span = (span_start, time.time())
  evaluation = _time_evaluation(setup, state, wait) if _times_evaluation(setting) else {}

  config = setup.config
  time_budget.record_rate(time_budget.rate_key(config), 1 / statistics.median(times),
                          source=f'bench train: {time_budget.now()}')
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  peak_bytes = stats.get('peak_bytes_in_use') or _max_rss_bytes()
  peak = _mebibytes(peak_bytes) + ('' if 'peak_bytes_in_use' in stats else ' RSS')
  return Row(setting.model, _jax_framework(setting), setting.dtype, setting.batch_size,
             f'{device.device_kind} x{jax.device_count()}', compile_seconds,
             statistics.median(times), peak, config.num_train_steps, setting.num_replicas,
             peak_bytes, span, **evaluation)


def _times_evaluation(setting: Setting) -> bool:
  from resnet_jax import models
  return bool(setting.num_eval) and models.parse(setting.model).dataset == 'cifar'


def _time_evaluation(setup, state, start_together) -> dict:
  """Row fields of one evaluation of every net on the whole on-device eval split, timed
  after a warm-up (which compiles it)."""
  import jax

  from resnet_jax import train
  eval_fn = train.make_eval_fn(setup)
  jax.block_until_ready(eval_fn(state, setup.feed.data))
  start_together()
  started, span_start = time.perf_counter(), time.time()
  jax.block_until_ready(eval_fn(state, setup.feed.data))
  return dict(eval_images=len(setup.feed.splits.eval_images),
              eval_seconds=time.perf_counter() - started, eval_span=(span_start, time.time()))


def measure_separate_processes(setting: Setting) -> Row:
  """K = `setting.num_replicas` single-seed runs (seeds 0..K-1) as K processes on the same
  devices at once, each on all of them. Its step time is the wall time from the moment all
  have compiled until the last one has done its timed steps, per step: the K nets' total
  images/s while all K run. Peak memory is the sum of the K processes'."""
  count = setting.num_replicas
  single = [dataclasses.replace(setting, num_replicas=1, mesh_replica=1, seed=seed)
            for seed in range(count)]
  context = multiprocessing.get_context('spawn')
  with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(
      count, mp_context=context, initializer=_share_the_devices) as pool:
    start_together = manager.Barrier(count)
    rows = list(pool.map(measure_jax, single, [start_together] * count))
  timed_steps = -(-setting.steps // setting.steps_per_dispatch) * setting.steps_per_dispatch
  wall = lambda spans: max(end for _, end in spans) - min(start for start, _ in spans)
  peak_bytes = sum(row.peak_bytes for row in rows)
  kind = ' RSS' if rows[0].peak_memory.endswith('RSS') else ''
  return dataclasses.replace(
      rows[0], framework=f'jax ({count} processes)', replicas=count,
      compile_seconds=max(row.compile_seconds for row in rows),
      step_seconds=wall([row.timed_span for row in rows]) / timed_steps,
      eval_seconds=wall([row.eval_span for row in rows]),
      peak_bytes=peak_bytes, peak_memory=f'{_mebibytes(peak_bytes)}{kind} (sum)')


def _share_the_devices() -> None:
  _log_to_file()
  # Without this each process on a GPU would reserve 75% of its memory at start.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')


def measure_torch(setting: Setting, compile: bool) -> Row:
  """Times the PyTorch reference of `setting.model` (eager or torch.compile)."""
  torch_resnet = load_torch_reference()
  from resnet_jax.data.synthetic import synthetic_splits

  splits = synthetic_splits(setting.num_train, 1, 32, 10, seed=0)
  result = torch_resnet.time_training(setting.model, splits.train_images, splits.train_labels,
                                      setting.batch_size, setting.steps, setting.dtype, compile)
  step_seconds = statistics.median(result['step_seconds'])
  peak = (_mebibytes(result['peak_bytes']) if result['peak_bytes'] is not None
          else f'{_mebibytes(_max_rss_bytes())} RSS')
  return Row(setting.model, 'torch compile' if compile else 'torch eager', setting.dtype,
             setting.batch_size, result['device'],
             max(result['first_steps_seconds'] - 2 * step_seconds, 0.0), step_seconds, peak,
             experiment_config(setting).num_train_steps)


def load_torch_reference():
  """benchmarks/torch_resnet.py as a module; ImportError with a hint if torch is missing."""
  try:
    import torch  # noqa: F401
  except ImportError:
    raise ImportError('PyTorch is not installed; `pip install torch` (a CPU build is enough '
                      'here) to time the reference, or leave out --torch.') from None
  if not TORCH_REFERENCE.exists():
    raise ImportError(f'{TORCH_REFERENCE} is absent: run from a checkout of the repository.')
  from resnet_jax.config import files
  return files.module_at(TORCH_REFERENCE)


def experiment_config(setting: Setting):
  """The model's experiment config (the paper's recipe and schedule: experiments/cifar10.py,
  or imagenet.py for the ImageNet nets), on synthetic data of its data set's shape."""
  from resnet_jax import models
  from resnet_jax.config import files
  imagenet = models.parse(setting.model).dataset == 'imagenet'
  if not EXPERIMENT.exists():
    raise FileNotFoundError(f'{EXPERIMENT} is absent: run from a checkout of the repository.')
  module = files.sibling_config(str(EXPERIMENT), 'imagenet' if imagenet else 'cifar10')
  config = module.get_config(setting.model)
  config.batch_size = setting.batch_size
  config.dtype = setting.dtype
  config.steps_per_dispatch = setting.steps_per_dispatch
  config.scan_blocks = setting.scan_blocks
  config.num_replicas = setting.num_replicas
  config.replica_batching = setting.replica_batching
  config.mesh.replica = setting.mesh_replica
  config.seed = setting.seed
  config.data.source = 'synthetic'
  config.eval_batch_size = setting.batch_size
  if imagenet:  # The step reads one batch of 224 crops of 256x341 images, 1000 classes.
    config.data.synthetic.update(num_train=setting.batch_size, num_eval=setting.batch_size,
                                 image_size=(256, 341))
    config.data.num_workers = 0
    if setting.batch_size % config.bn_group_size:  # Groups of 32 need a batch of 32s.
      config.bn_group_size = 0
  else:
    config.data.synthetic.num_train = setting.num_train
    config.data.synthetic.num_eval = setting.num_eval or setting.batch_size
  return config


def render(rows: list[Row], args: argparse.Namespace, notes: list[str] = ()) -> str:
  """The table of `rows` under the machine, the library versions and the settings."""
  header = ('model', 'framework', 'dtype', 'batch', 'compile s', 'step ms', 'images/s',
            'eval images/s', 'peak memory', 'schedule h')
  table = [header] + [
      (row.model, row.framework, row.dtype, str(row.batch_size), f'{row.compile_seconds:.1f}',
       f'{1000 * row.step_seconds:.1f}', f'{row.images_per_second:.0f}',
       row.eval_images_per_second, row.peak_memory, f'{row.schedule_hours:.2f}')
      for row in rows]
  widths = [max(len(line[i]) for line in table) for i in range(len(header))]
  lines = ['  '.join(cell.ljust(width) if i < 3 else cell.rjust(width)
                     for i, (cell, width) in enumerate(zip(line, widths))) for line in table]
  devices = sorted({f'{row.framework.split()[0]}: {row.device}' for row in rows})
  settings = (f'steps timed: {args.steps} (median), steps per dispatch: '
              f'{args.steps_per_dispatch}, scan blocks: {args.scan_blocks}, '
              f'train images: {args.num_train}, eval images: {args.num_eval} (one evaluation, '
              'after a warm-up; eval images/s counts every net)')
  return '\n'.join([machine_description(), 'devices: ' + '; '.join(devices), settings,
                    'peak memory: device peak where the backend reports one, else the '
                    "process's max RSS", '', *lines, *notes])


def machine_description() -> str:
  """Host CPU and load, XLA_FLAGS, and the jax, jaxlib, flax and torch versions."""
  versions = ', '.join(f'{name} {_version(name)}' for name in ('jax', 'jaxlib', 'flax', 'torch'))
  load = ', '.join(f'{value:.1f}' for value in os.getloadavg())
  return (f'host: {platform.processor() or platform.machine()}, '
          f'{len(os.sched_getaffinity(0))} usable CPUs, load average {load}; python '
          f'{platform.python_version()}, {versions}; '
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")


def compile_main(argv: list[str] | None = None) -> None:
  """`python -m resnet_jax.bench compile`: train-step compile time per depth, blocks
  unrolled and scanned."""
  parser = argparse.ArgumentParser(prog='python -m resnet_jax.bench compile',
                                   description=compile_main.__doc__)
  parser.add_argument('--depths', type=_depths, default=None,
                      help=f'comma-separated 6n+2 depths (default: {_joined(DEFAULT_DEPTHS)}; on a '
                           f'CPU {_joined(CPU_DEFAULT_DEPTHS)})')
  parser.add_argument('--family', choices=('resnet', 'plain'), default='resnet',
                      help='residual or plain nets (default: resnet)')
  parser.add_argument('--batch-size', type=_positive, default=128,
                      help='images a step of each net (default: 128, the paper\'s CIFAR batch)')
  args = parser.parse_args(argv)
  if args.depths is None:
    args.depths = DEFAULT_DEPTHS if _in_fresh_process(_platform) != 'cpu' else CPU_DEFAULT_DEPTHS
  say(f'Compiling the train step of {args.family} {_joined(args.depths)}, blocks unrolled and '
      f"scanned, each in a fresh process; XLA's own log goes to {WORKER_LOG}.")
  lines = [f'{"model":<12}{"blocks":<10}{"compile s":>10}']
  for depth in args.depths:
    for scan_blocks in (False, True):
      setting = Setting(f'{args.family}{depth}', args.batch_size, steps=1,
                        scan_blocks=scan_blocks, num_train=args.batch_size)
      seconds = _in_fresh_process(compile_seconds, setting)
      say(f'{setting.model}, {"scanned" if scan_blocks else "unrolled"} blocks: {seconds:.1f} s')
      lines.append(f'{setting.model:<12}{"scanned" if scan_blocks else "unrolled":<10}'
                   f'{seconds:>10.1f}')
  print('\n'.join([machine_description(), f'batch {args.batch_size}; seconds to trace, lower '
                   'and compile the train step', '', *lines]))


def compile_seconds(setting: Setting) -> float:
  """Seconds to trace, lower and compile the train function of `setting`."""
  _, train_fn, state, metrics, dataset = _train_function(setting)
  started = time.perf_counter()
  train_fn.lower(state, metrics, dataset, True).compile()
  return time.perf_counter() - started


def _train_function(setting: Setting):
  """The setup, the trainer's jitted train function and its arguments, as
  train.train_and_evaluate builds them."""
  from resnet_jax import train

  setup = train.build(experiment_config(setting))
  state, metrics = train.initial_state(setup)
  return setup, train.make_train_fn(setup), state, metrics, setup.feed.train_inputs()


def _in_fresh_process(function, *args):
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context,
                                              initializer=_log_to_file) as pool:
    return pool.submit(function, *args).result()


def _log_to_file() -> None:
  """Sends the worker's stderr (XLA's C++ log: its "Very slow compile" alarms) to WORKER_LOG;
  errors still reach the console as the exceptions the pool passes back."""
  log = os.open(WORKER_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  os.dup2(log, 2)
  os.close(log)


def _jax_framework(setting: Setting) -> str:
  extras = [f'{setting.steps_per_dispatch} steps/dispatch'] if setting.steps_per_dispatch > 1 else []
  extras += ['scanned blocks'] if setting.scan_blocks else []
  if setting.num_replicas > 1:
    from resnet_jax import replicas
    groups = 'group' if setting.mesh_replica == 1 else 'groups'
    extras.append(f'{setting.num_replicas} replicas on {setting.mesh_replica} {groups}, '
                  f'{replicas.batching(setting.replica_batching)}')
  return 'jax' + (f' ({", ".join(extras)})' if extras else '')


def _max_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB.


def _mebibytes(count: int) -> str:
  return f'{count / 2**20:,.0f} MiB'


def _version(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def _train_flags(argv: list[str] | None) -> argparse.Namespace:
  from resnet_jax import replicas
  parser = argparse.ArgumentParser(prog='python -m resnet_jax.bench train',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--models', type=_names, default=None,
                      help=f'comma-separated registry names (default: {_joined(DEFAULT_MODELS)}; '
                           f'on a CPU {_joined(CPU_DEFAULT_MODELS)})')
  parser.add_argument('--batch-size', type=_positive, default=128,
                      help='images a step of each net (default: 128, the paper\'s CIFAR batch)')
  parser.add_argument('--steps', type=_positive, default=10, help='timed steps, after a warm-up')
  parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32',
                      help='compute dtype; parameters stay float32 (default: float32)')
  parser.add_argument('--steps-per-dispatch', type=_positive, default=1,
                      help='steps per jitted call (lax.scan over steps when > 1)')
  parser.add_argument('--scan-blocks', action='store_true', help='nn.scan over identical blocks')
  parser.add_argument('--num-train', type=_positive, default=CIFAR_TRAIN_IMAGES,
                      help='synthetic train images on the device (default: as many as CIFAR-10)')
  parser.add_argument('--num-eval', type=int, default=CIFAR_TEST_IMAGES,
                      help='synthetic eval images whose evaluation is timed (CIFAR nets; '
                      '0: none)')
  parser.add_argument('--num-replicas', type=_positive, default=1,
                      help='nets (seeds) trained at once in one program; images/s counts all '
                      'of them; above 1, also times as many single-seed processes run at once')
  parser.add_argument('--mesh-replica', type=_positive, default=1,
                      help="device groups the replicas are split over (the mesh's replica "
                      'axis); must divide --num-replicas and the device count')
  parser.add_argument('--replica-batching', choices=replicas.BATCHINGS, default='auto',
                      help='how a group runs its several nets (config.replica_batching)')
  parser.add_argument('--torch', action='store_true',
                      help='also time benchmarks/torch_resnet.py, eager and torch.compile')
  parser.add_argument('--no-torch-compile', dest='torch_compile', action='store_false',
                      help='with --torch, time eager PyTorch only (torch.compile takes minutes)')
  args = parser.parse_args(argv)
  if args.num_train < args.batch_size:
    parser.error(f'--num-train {args.num_train} must hold at least one batch of {args.batch_size}')
  if args.num_eval < 0:
    parser.error(f'--num-eval must be 0 (no evaluation timed) or more images, got {args.num_eval}')
  if args.num_replicas % args.mesh_replica:
    parser.error(f'--mesh-replica {args.mesh_replica} must divide --num-replicas '
                 f'{args.num_replicas}: each replica group trains as many nets')
  return args


def _names(text: str) -> tuple[str, ...]:
  from resnet_jax import models
  names = tuple(name.strip() for name in text.split(',') if name.strip())
  for name in names:
    try:
      models.parse(name)
    except ValueError as error:
      raise argparse.ArgumentTypeError(str(error)) from None
  return names


def _joined(values) -> str:
  return ','.join(map(str, values))


def _depths(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(depth) for depth in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected depths like 20,56,110, got {text!r}') from None


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'expected a positive integer, got {text}')
  return value
