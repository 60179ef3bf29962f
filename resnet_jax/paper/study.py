"""The degradation study (Section 4.2): trains plain and residual CIFAR nets at several depths,
several seeds each, then writes Table 6, Figures 6 and 7 and the verdict beside them; for
ImageNet nets (Section 4.1), Table 2 and Figure 4 (Figure 7's layer responses are CIFAR-only).

  python -m resnet_jax.study --config=experiments/degradation.py --workdir=/tmp/degradation
  python -m resnet_jax.study --config=experiments/figure4.py --workdir=/tmp/figure4

With several seeds, each net's seeds train as one program (`num_replicas` = seeds, sharded
over the mesh's `replica` axis) in a folder per net, e.g. `plain56_seeds0-4`; with
`--config.seeds_in_one_program=False`, one run after another in a folder per seed
(`plain56_seed0`, ...). Either way the analysis reads one run per seed, so the results are
the same. The streamed ImageNet input trains one net per run, so there seeds always go one
after another. A rerun skips finished programs and resumes interrupted ones (the trainer resumes
by itself). With --config.time_budget=6h, every run stops with a checkpoint once the study's
budget is spent (exit status 45); the same command continues. On several processes
(`--distributed`) every process trains, process 0 writes the results. Progress and the verdict
go to stdout, the trainer's logs to stderr.
"""
import copy
import math
import pathlib
import shutil

import jax
import ml_collections
import pandas as pd
from etils import epath

from resnet_jax import analysis, models, train
from resnet_jax.data.imagenet import fake_images
from resnet_jax.errors import ConfigError, OutOfTime
from resnet_jax.run import time_budget
from resnet_jax.run.metric_logging import METRICS_FILE

RESULTS_CSV = 'results.csv'
RESULTS_MD = 'results.md'
RESPONSES_CSV = 'layer_responses.csv'
FIGURE6_PNG = 'figure6.png'
FIGURE6_RIGHT_PNG = 'figure6_right.png'  # The deepest ResNets (110 and 1202 layers).
FIGURE4_PNG = 'figure4.png'  # Figure 6's error curves for ImageNet nets.
CURVES_PNG = {'cifar': FIGURE6_PNG, 'imagenet': FIGURE4_PNG}
FIGURE7_PNG = 'figure7.png'
GENERATED_IMAGES = analysis.GENERATED_IMAGES  # The ILSVRC folder of config.generated_images.
FAMILIES = ('plain', 'resnet')
STUDIED_NETS = {'cifar': 'CIFAR nets of depth 6n+2 (20, 32, 44, 56, 110, ...)',
                'imagenet': 'ImageNet nets of depth 18, 34, 50, 101 or 152'}


def planned_runs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """The trainer config of every program the study trains, by folder name: one per net with
  all its seeds ('plain56_seeds0-4'), or one per net and seed ('plain56_seed0') when
  `seeds_in_one_program` is off or there is one seed."""
  if config.seeds < 1:
    raise ConfigError(f'seeds must be at least 1 (runs per net), got {config.seeds}.')
  runs = {}
  for net in studied_nets(config):
    seeds = net_seeds(config, net)
    if not (config.seeds_in_one_program and seeds > 1):
      for seed in range(seeds):
        runs[analysis.run_name(net, seed)] = run_config(config, net, seed)
    elif studied_dataset(config) != 'cifar':
      raise ConfigError('The streamed ImageNet input trains one net per run, not several seeds '
                        'at once; set --config.seeds_in_one_program=False.')
    else:
      runs[f'{net}_seeds0-{seeds - 1}'] = program_config(config, net)
  return runs


def studied_nets(config: ml_collections.ConfigDict) -> list[str]:
  """The plain and residual net of each depth, then the ResNets of `resnet_only_depths`
  (Table 6 has no plain-1202)."""
  return ([f'{family}{depth}' for depth in config.depths for family in FAMILIES]
          + [f'resnet{depth}' for depth in config.get('resnet_only_depths', ())])


def net_seeds(config: ml_collections.ConfigDict, net: str) -> int:
  """The runs of `net`: its entry in `net_seeds` (Table 6 reports ResNet-110 over 5 runs),
  else `seeds`."""
  seeds = config.get('net_seeds', {}).get(net, config.seeds)
  if seeds < 1:
    raise ConfigError(f'net_seeds.{net} must be at least 1 (runs of the net), got {seeds}.')
  return seeds


def run_config(config: ml_collections.ConfigDict, net: str,
               seed: int) -> ml_collections.ConfigDict:
  """The base config with the net and seed of one run, the warm-up of deep nets (where the
  study config has a `deep_warmup`) and scanned blocks from `scan_blocks_min_depth` layers."""
  spec = models.parse(net)
  dataset = studied_dataset(config)
  if spec.dataset != dataset:
    raise ConfigError(f'The study trains {STUDIED_NETS[dataset]}, got depth {spec.depth}; fix '
                      '--config.depths.')
  run = copy.deepcopy(config.base)
  run.model = net
  run.seed = seed
  warmup = config.get('deep_warmup')
  if warmup and spec.depth >= warmup.min_depth:
    run.optimizer.warmup_steps = warmup.steps
  scan_depth = config.get('scan_blocks_min_depth')
  if scan_depth and spec.depth >= scan_depth:
    run.scan_blocks = True  # One traced block per stage: compiling does not grow with depth.
  return run


def studied_dataset(config: ml_collections.ConfigDict) -> str:
  """'cifar' or 'imagenet': the nets of the study's base config."""
  return models.parse(config.base.model).dataset


# One program per net, not per depth: plain and residual nets of a depth share a parameter
# layout with option A, so one vmap could train both, but only with `residual` as a traced
# per-replica switch (a shortcut multiplied by 0 or 1) inside the blocks, where the paper's
# two nets differ by structure alone (Section 4.2, Figure 3). It would also mix two models in
# one run's config, checkpoint fingerprint and metrics, for at most twice the replicas per
# program, which more seeds give as well.
def program_config(config: ml_collections.ConfigDict, net: str) -> ml_collections.ConfigDict:
  """The config training seeds 0..k-1 of `net` at once (k = net_seeds): `num_replicas` = k,
  split over as many replica groups of the devices as both allow (see replica_groups)."""
  run = run_config(config, net, seed=0)
  run.num_replicas = net_seeds(config, net)
  run.mesh.replica, run.mesh.data = replica_groups(run.num_replicas), -1
  return run


def replica_groups(num_replicas: int, device_count: int | None = None) -> int:
  """The mesh's `replica` size for `num_replicas` nets: the largest divisor of both it and the
  device count (all processes' devices), so each group trains the same number of nets, each
  net's batch split over its group's `data` devices."""
  return math.gcd(num_replicas, device_count or jax.device_count())


def is_finished(workdir: epath.Path, config: ml_collections.ConfigDict) -> bool:
  """Whether every seed trained in `workdir` logged its final step and the program saved its
  final checkpoint."""
  metrics = workdir / METRICS_FILE
  if not metrics.exists() or not metrics.read_text().strip():  # Killed before its first record.
    return False
  run = analysis.load_run(workdir)
  final = run[run.step == config.num_train_steps]
  return (all({'train'} < set(final.split[final.seed == seed])
              for seed in train.replica_seeds(config))
          and analysis.latest_checkpoint_step(workdir) == config.num_train_steps)


def train_runs(config: ml_collections.ConfigDict, study_dir: epath.Path,
               deadline: time_budget.Deadline | None = None) -> bool:
  """Trains every planned program that has not finished, saying which it trains or skips;
  until the `deadline` (the capstone's), or else the study's `time_budget`, is passed (each
  run stops with a checkpoint). Returns whether every program finished."""
  deadline = deadline or time_budget.Deadline(time_budget.parse_budget(config.get('time_budget')))
  return train_programs(planned_runs(config), study_dir, deadline, config)


def train_programs(runs: dict[str, ml_collections.ConfigDict], study_dir: epath.Path,
                   deadline: time_budget.Deadline,
                   config: ml_collections.ConfigDict | None = None) -> bool:
  """train_runs for `runs` (trainer configs by folder name in `study_dir`) until `deadline`;
  `config` is the study's, needed where a program trains several seeds at once."""
  finished = True
  for index, (name, run) in enumerate(runs.items(), start=1):
    workdir = study_dir / name
    progress = f'[{index}/{len(runs)}] {name}:'
    if is_finished(workdir, run):
      print(f'{progress} finished, skipped', flush=True)
      continue
    if run.num_replicas > 1 and _trained_seed_by_seed(config, study_dir, run):
      print(f'{progress} finished seed by seed, skipped', flush=True)
      continue
    resuming = analysis.latest_checkpoint_step(workdir)
    start = f'resuming from step {resuming}' if resuming else 'training'
    seeds = (f' ({run.num_replicas} seeds on {run.mesh.replica} replica groups)'
             if run.num_replicas > 1 else '')
    remaining = deadline.remaining()
    if remaining is not None and remaining <= 0:
      print(f'{progress} not started: the time budget is spent', flush=True)
      finished = False
      continue
    print(f'{progress} {start} to step {run.num_train_steps}{seeds} in {workdir}', flush=True)
    try:
      train.train_and_evaluate(run, str(workdir), deadline)
    except OutOfTime as stopped:
      print(f'{progress} {stopped}', flush=True)
      finished = False
  return finished


def _trained_seed_by_seed(config, study_dir: epath.Path, program) -> bool:
  """Whether a study run seed by seed already finished every seed of `program`; raises if it
  started some of them, since the program would train those seeds a second time."""
  runs = {seed: study_dir / analysis.run_name(program.model, seed)
          for seed in train.replica_seeds(program)}
  started = [workdir.name for workdir in runs.values() if (workdir / METRICS_FILE).exists()]
  if not started:
    return False
  if all(is_finished(workdir, run_config(config, program.model, seed))
         for seed, workdir in runs.items()):
    return True
  raise ConfigError(
      f'{study_dir} holds {", ".join(started)} of {program.model} trained seed by seed, not all '
      'finished; finish them the same way with --config.seeds_in_one_program=False, or move '
      'them out of the study folder.')


def layer_responses(runs: pd.DataFrame, num_images: int, batch_size: int) -> pd.DataFrame:
  """Figure 7's response std of every layer of each run's final net (`runs` as from
  analysis.load_study) on its eval images; rows: run, model, family, depth, seed, layer (from
  1), std."""
  frames = []
  for run in runs.drop_duplicates('run').sort_values('run').itertuples():
    trained = analysis.load_trained_run(run.workdir, seed=run.seed)
    stds = analysis.layer_response_stds(trained.model, trained.variables,
                                        trained.eval_inputs(num_images), batch_size)
    frames.append(pd.DataFrame({'run': run.run, **analysis.describe_run(trained.config),
                                'layer': range(1, len(stds) + 1), 'std': stds}))
  return pd.concat(frames, ignore_index=True)


def write_results(config: ml_collections.ConfigDict, study_dir: epath.Path) -> list[str]:
  """Writes the table and the figures of the runs in `study_dir` beside the paper's, and for
  CIFAR nets the layer responses; returns the verdict's sentences. Every process computes them
  (restoring checkpoints synchronizes the processes); only process 0 writes."""
  dataset = studied_dataset(config)
  paper = analysis.PAPER_RESULTS[dataset]
  runs = analysis.load_study(study_dir)
  table = analysis.summarize(analysis.final_errors(runs), paper)
  # Depth against depth within each family over `depths`, both families alike (ResNet-only
  # depths aside, which have no plain net to set beside them).
  verdict = analysis.verdict(table[table.depth.isin(config.depths)], paper,
                             analysis.runs_stand_in(runs))
  # Figure 7 measures the nets on CIFAR's in-memory eval images; the streamed input has none.
  responses = (layer_responses(runs, config.figure7.num_images, config.figure7.batch_size)
               if dataset == 'cifar' else None)
  if jax.process_index() == 0:
    (study_dir / RESULTS_CSV).write_text(csv_text(table))
    (study_dir / RESULTS_MD).write_text(analysis.results_markdown(table, verdict, paper))
    _save_figure(analysis.figure6(runs, paper), study_dir / CURVES_PNG[dataset])
    deepest = deepest_resnet_depths(config)
    if deepest:
      _save_figure(analysis.figure6_right(runs, deepest), study_dir / FIGURE6_RIGHT_PNG)
    if responses is not None:
      (study_dir / RESPONSES_CSV).write_text(csv_text(responses))
      _save_figure(analysis.figure7(responses), study_dir / FIGURE7_PNG)
  return verdict


def deepest_resnet_depths(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The depths of Figure 6's right panel: the deepest of `depths` and the ResNet-only depths
  beyond it (110 and 1202 in the paper); none for a study without ResNet-only depths."""
  beyond = tuple(config.get('resnet_only_depths', ()))
  return (max(config.depths), *beyond) if beyond and config.depths else beyond


def csv_text(table: pd.DataFrame) -> str:
  """`table` as CSV, its floats to six significant digits: 78.125, not 78.12500000000001."""
  return table.to_csv(index=False, float_format='%.6g')


def with_generated_images(config: ml_collections.ConfigDict,
                          study_dir: epath.Path) -> ml_collections.ConfigDict:
  """`config` training on the ILSVRC folder of generated images its `generated_images` asks
  for (written once, to STUDY_DIR/generated_images), or `config` as it is if it asks none."""
  generated = config.get('generated_images')
  if not generated:
    return config
  root = pathlib.Path(study_dir) / GENERATED_IMAGES
  if not root.exists():  # Written aside and renamed: an interrupted write is not mistaken for it.
    partial = root.with_name(f'{GENERATED_IMAGES}.partial')
    shutil.rmtree(partial, ignore_errors=True)
    fake_images.write_ilsvrc_tree(
        partial, {'train': generated.train_per_class, 'val': generated.val_per_class},
        classes=[f'n{label:08d}' for label in range(generated.num_classes)],
        sizes=generated.sizes)
    partial.rename(root)
  config = copy.deepcopy(config)
  config.base.data.source, config.base.data.path = 'folder', str(root)
  return config


def _save_figure(figure, path: epath.Path) -> None:
  with path.open('wb') as file:  # Through epath, so a gs:// study folder works too.
    figure.savefig(file, format='png', dpi=120)


def run_study(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Trains what is missing, writes the results and prints the verdict, which it returns."""
  study_dir = epath.Path(workdir)
  config = with_generated_images(config, study_dir)
  finished = train_runs(config, study_dir)
  verdict = write_results(config, study_dir)
  if jax.process_index() != 0:
    return verdict
  dataset = studied_dataset(config)
  if dataset == 'cifar':
    right = f'{FIGURE6_RIGHT_PNG}, ' if deepest_resnet_depths(config) else ''
    print(f'Wrote {RESULTS_MD}, {RESULTS_CSV}, {FIGURE6_PNG}, {right}{FIGURE7_PNG} and '
          f'{RESPONSES_CSV} to {study_dir}.')
  else:
    print(f'Wrote {RESULTS_MD}, {RESULTS_CSV} and {CURVES_PNG[dataset]} to {study_dir}; no '
          f'{FIGURE7_PNG} (layer responses are measured on CIFAR nets only).')
  print('Verdict (final training error):')
  for sentence in verdict:
    print(f'  {sentence}')
  if not finished:
    raise OutOfTime('Time budget spent before every run finished (results.md shows the steps '
                    'each trained); rerun the same command to continue.')
  return verdict
