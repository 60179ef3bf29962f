"""The degradation study of Section 4.2: plain and residual CIFAR-10 nets at several depths,
reported as Table 6, Figure 6 (error vs iterations) and Figure 7 (layer response stds).

Run (from the repository root):
  python -m resnet_jax.study --config=experiments/degradation.py --workdir=/tmp/degradation

Variants after the colon, comma-separated, e.g. `:full,jpeg`:
  full: depths 20, 32, 44, 56 and 110 (default: 20 and 56, the pair of Figure 1), ResNet-1202
    (no plain-1202, as in Table 6; scanned blocks; Figure 6's right panel with ResNet-110,
    figure6_right.png) and ResNet-110 over 5 seeds (Table 6: best, and mean ± std);
  smoke: depths 8 and 14 (20 and 56 take minutes a run on a CPU), 30 steps of batch 32 on a
    1/10 train subset, evaluated every 10 steps on 500 held-out train images (the trainer has no
    smaller test subset): the whole study end to end on a CPU in a few minutes;
  jpeg, bf16, val (and smoke): the variants of experiments/cifar10.py, applied to every run.
Overrides: --config.seeds=2 (runs per net, seeds 0..k-1; --config.net_seeds.resnet110=3 for one
net where the config names it), --config.depths='(20, 32)', --config.resnet_only_depths='(1202,)',
and the
trainer config of every run under --config.base (e.g. --config.base.num_train_steps=32000);
base.model and base.seed are set per run. A net's seeds train as one program (num_replicas =
seeds, base.mesh set to as many replica groups as seeds and devices allow), or one run after
another with --config.seeds_in_one_program=False (the results are the same).

Measured: `:smoke,jpeg` on 2 shared CPU cores: 2 min 16 s end to end, every file written; 30
steps make it a plumbing check whose verdict means nothing. The default and full studies:
nothing yet.
"""
import ml_collections

from resnet_jax.config.files import sibling_config

STUDY_VARIANTS = ('full', 'smoke')
DEFAULT_DEPTHS = (20, 56)
FULL_DEPTHS = (20, 32, 44, 56, 110)  # The depths of Figure 6 and Table 6 (1202 aside).
FULL_RESNET_ONLY_DEPTHS = (1202,)  # Table 6 and Figure 6 (right) have no plain-1202.
FULL_NET_SEEDS = {'resnet110': 5}  # Table 6: ResNet-110's "best (mean±std)" of 5 runs.
# Deeper nets train with scanned blocks: a 1202-layer net unrolled takes far longer to compile.
SCAN_BLOCKS_MIN_DEPTH = 1202
SMOKE_DEPTHS = (8, 14)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The study config for `arg`, a comma-separated list of variants (see the docstring)."""
  variants = [v.strip() for v in (arg or '').split(',') if v.strip()]
  nets = [v for v in variants if v.startswith(('plain', 'resnet'))]
  if nets:
    raise ValueError(f'The study trains its own nets, got {nets} in {arg!r}; pick depths with '
                     "--config.depths='(20, 56)' or the full variant.")
  if set(STUDY_VARIANTS) <= set(variants):
    raise ValueError(f'full and smoke exclude each other in {arg!r}; use one of them.')
  cifar10 = sibling_config(__file__, 'cifar10')
  base_variants = [v for v in variants if v != 'full']
  try:
    base = cifar10.get_config(','.join(base_variants))
    deepest = cifar10.get_config(','.join([f'resnet{cifar10.WARMUP_DEPTH}'] + base_variants))
  except ValueError as error:
    raise ValueError(f'{error} The study adds the variants {list(STUDY_VARIANTS)}.') from None

  config = ml_collections.ConfigDict()
  config.depths = FULL_DEPTHS if 'full' in variants else DEFAULT_DEPTHS
  config.seeds = 1
  config.net_seeds = ml_collections.ConfigDict(FULL_NET_SEEDS if 'full' in variants else {})
  config.resnet_only_depths = FULL_RESNET_ONLY_DEPTHS if 'full' in variants else ()
  config.scan_blocks_min_depth = SCAN_BLOCKS_MIN_DEPTH
  # The seeds of a net as one program, split over the mesh's replica axis (a small CIFAR net
  # cannot fill an accelerator); False: one run per seed, as studies before it. Each device
  # group runs its seeds with ordinary convs (base.replica_batching='auto'), so on a CPU the
  # one program costs what seed-by-seed runs cost (docs/performance.md).
  config.seeds_in_one_program = True
  config.base = base
  config.time_budget = ''  # E.g. '6h': every run stops with a checkpoint when spent.
  # The recipe warms nets this deep up at a low lr (4.2); the study sets that per run.
  config.deep_warmup = ml_collections.ConfigDict(dict(
      min_depth=cifar10.WARMUP_DEPTH, steps=deepest.optimizer.warmup_steps))
  config.figure7 = ml_collections.ConfigDict(dict(
      num_images=0,  # Eval images whose responses Figure 7 measures; 0: all (the test set).
      batch_size=500))
  if 'smoke' in variants:
    config.depths = SMOKE_DEPTHS
    config.base.data.validation_size = 500
    config.base.eval_every_steps = 10
  return config
