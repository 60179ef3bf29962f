"""The whole paper in one command: every table and figure this codebase reproduces, trained,
evaluated and written to one report (WORKDIR/report.md and a self-contained report.html).

Run (from the repository root):
  python -m resnet_jax.reproduce --config=experiments/paper.py --workdir=/tmp/paper
  python -m resnet_jax.reproduce --config=experiments/paper.py --workdir=/tmp/paper --dry_run

The parts, cheapest first (--config.parts='table1,cifar' runs some of them; '' runs all that
the data allows):
  table1: Table 1 computed, every ImageNet net's layers, parameters and multiply-adds;
  cifar: the degradation study of experiments/degradation.py (Figure 1, Table 6, Figures 6, 7);
  imagenet: the plain-vs-residual study of experiments/figure4.py (Table 2, Figure 4), when
    ImageNet data is configured (--config.data_dir=TFDS_DIR, or
    --config.imagenet.base.data.source=folder --config.imagenet.base.data.path=/data/ILSVRC);
    otherwise the report lists it as skipped, with the command that would run it;
  tables34: 10-crop (Table 3) and multi-scale (Table 4) testing of the trained ImageNet nets,
    through resnet_jax.evaluate; with `full`, it first trains the nets of Tables 3 and 4 that the
    imagenet part does not (ResNet-34 B and C, ResNet-50, 101 and 152 B) in WORKDIR/tables34;
  table5: the ensemble of the nets tables34 trained, multi-scale (Table 5), through
    resnet_jax.evaluate --config.eval.members.
Variants after the colon: smoke: every part end to end on a CPU in minutes (CIFAR nets of depth
8 and 14 for 12 steps on synthetic images, and a scanned resnet20 of 2 seeds, plain18/resnet18
for 10 steps on a generated ILSVRC folder and a resnet18 B/C pair for tables34 and table5: a
plumbing check whose numbers mean nothing); cifar: no ImageNet parts; full: CIFAR depths 20, 32,
44, 56, 110, ResNet-1202 and 5 seeds of ResNet-110 (experiments/degradation.py:full), and every
net of Tables 3 and 4 with the paper's shortcut options.
Overrides: --config.time_budget=6h (counted from the plan; every run stops with a checkpoint
when it is spent; the report says what finished and the command that continues),
--config.estimate_steps (steps a --dry_run times, after a warm-up, of each net with no measured
step rate on these devices; 0: none; training runs and `bench train` measure rates too), and
each study's config under --config.cifar and --config.imagenet (e.g. --config.cifar.seeds=5).

Measured: `:smoke` on 2 CPU cores shared with other test runs (load average 9-13): 10 min 07 s
end to end (4 min 13 s of CPU time), every part complete, a plumbing check whose numbers mean
nothing; with the tables34 pair, table5 and a scanned 2-seed resnet32 as its deep net (load
average 8-11): 14 min 29 s (5 min 27 s of CPU time); its deep net is now resnet20. The default
plan's estimate: docs/performance.md. No accelerator run yet.
"""
import ml_collections

from resnet_jax.config.files import sibling_config

VARIANTS = ('smoke', 'cifar', 'full')
SMOKE_IMAGENET_DEPTHS = (18,)  # One plain-vs-residual pair keeps the smoke run short.
# The nets of Tables 3 and 4 besides the imagenet part's option A nets, as net:shortcut option:
# option B (projections where shapes change) for all, and C (projections everywhere) for 34
# layers (4.1, Table 3).
TABLES34_NETS = ('resnet34:B', 'resnet34:C', 'resnet50:B', 'resnet101:B', 'resnet152:B')
SMOKE_TABLES34_NETS = ('resnet18:B', 'resnet18:C')
# Fewer steps than the studies' own smoke variants; the CIFAR nets on synthetic images: no
# data set needed, as for the ImageNet parts.
SMOKE_CIFAR = {'base.data.source': 'synthetic', 'base.data.validation_size': 0,
               'base.num_train_steps': 12, 'base.optimizer.lr_boundaries': (8, 10),
               'base.log_every_steps': 4, 'base.eval_every_steps': 4,
               'base.checkpoint_every_steps': 12,
               # Table 6's deep paths on a small scale: a ResNet-only depth, scanned, 2 seeds.
               'resnet_only_depths': (20,), 'scan_blocks_min_depth': 20}
SMOKE_NET_SEEDS = {'resnet20': 2}
SMOKE_IMAGENET = {'depths': SMOKE_IMAGENET_DEPTHS, 'base.num_train_steps': 10,
                  'base.optimizer.lr_boundaries': (6, 8), 'base.eval_every_steps': 10,
                  'base.checkpoint_every_steps': 10}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for `arg`, a comma-separated list of variants (see the docstring)."""
  variants = [v.strip() for v in (arg or '').split(',') if v.strip()]
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown or {'smoke', 'full'} <= set(variants):
    raise ValueError(f'Unknown or clashing variants {unknown or variants} in {arg!r}; use any of '
                     f'{list(VARIANTS)}, smoke or full but not both.')
  smoke = 'smoke' in variants
  config = ml_collections.ConfigDict()
  config.parts = 'table1,cifar' if 'cifar' in variants else ''
  config.time_budget = ''
  config.estimate_steps = 3 if smoke else 5
  # TFDS data_dir of both studies' data (CIFAR-10 and imagenet2012), e.g. gs://bucket/tfds.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  config.cifar = sibling_config(__file__, 'degradation').get_config(
      'smoke' if smoke else 'full' if 'full' in variants else '')
  config.imagenet = sibling_config(__file__, 'figure4').get_config('smoke' if smoke else '')
  if smoke:
    config.cifar.update_from_flattened_dict(SMOKE_CIFAR)
    config.cifar.net_seeds = SMOKE_NET_SEEDS
    config.imagenet.update_from_flattened_dict(SMOKE_IMAGENET)
  for study in (config.cifar, config.imagenet):
    study.base.data.data_dir = config.get_ref('data_dir')
  config.tables34 = ml_collections.ConfigDict(dict(
      modes=('10crop', 'multiscale'),  # Tables 3 and 4.
      batch_size=16 if smoke else 0,  # Images a step; 0: each run's eval_batch_size.
      # Trained in WORKDIR/tables34 on the imagenet part's data and recipe, one seed each.
      nets=SMOKE_TABLES34_NETS if smoke else TABLES34_NETS if 'full' in variants else ()))
  config.table5 = ml_collections.ConfigDict(dict(
      # Table 5's ensembles combine nets tested multi-scale (Table 4's single models, 4.1).
      mode='multiscale', batch_size=config.tables34.get_ref('batch_size')))
  return config
