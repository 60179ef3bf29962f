"""CIFAR-10 nets of Section 4.2 trained with the paper's recipe.

Run (from the repository root):
  python -m resnet_jax.main --config=experiments/cifar10.py:resnet20 --workdir=/tmp/resnet20

Variants after the colon, comma-separated, e.g. `:resnet56,bf16`:
  plain20 ... plain110, resnet20 ... resnet1202 (any 6n+2 depth): the net;
  bf16: bfloat16 compute with float32 parameters (a deviation from the paper's fp32);
  jpeg: read only ../shared/data/cifar10-jpeg.tar.gz (beside the checkout), never TFDS;
  val: the paper's 45k/5k train/validation split, evaluating on the held-out 5k;
  smoke: a tiny net (resnet8 unless a net is named) for 30 steps on a 1/10 subset.

Data (data.source='auto'): a prepared TFDS copy of `cifar10` (in ~/tensorflow_datasets or
data.data_dir, which must exist), else the JPEG archive beside the checkout, else a TFDS
download. The run's config_history.jsonl records which it read.

Recipe (Section 4.2): SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by
10 at 32k and 48k iterations, stop at 64k; ResNet-110 and deeper warm up at lr 0.01
for 400 iterations. Deviation: the paper's running averages use Torch's momentum 0.1,
kept here; weight decay also applies to BN scale and bias, as in the Torch code.

Measured: (docs/results.md; CIFAR-10 JPEG q75 copy; one H100 shared by several runs)
  resnet20,jpeg: 64k steps, test error 12.23 +- 0.18 % (2 seeds; the paper: 8.75, gap not yet
  explained); plain20,jpeg: 13.49 +- 0.06 %. 56-layer runs stopped at ~38k steps.
"""
import pathlib

import ml_collections

from resnet_jax import data, models, optim

WARMUP_DEPTH = 110  # "In this case [110 layers], we use 0.01 to warm up" (Section 4.2).
# Resolved against the checkout, not the working directory.
JPEG_ARCHIVE = str(pathlib.Path(__file__).resolve().parents[2] / 'shared/data/cifar10-jpeg.tar.gz')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for `arg`, a comma-separated list of variants (see the docstring)."""
  variants = [v.strip() for v in (arg or 'resnet20').split(',') if v.strip()]
  config = base_config()
  nets = [v for v in variants if v.startswith(('plain', 'resnet'))]
  unknown = [v for v in variants if v not in nets and v not in _VARIANTS]
  if unknown or len(nets) > 1:
    raise ValueError(f'Unknown or repeated config variants {unknown or nets} in {arg!r}; '
                     f'use one net name (e.g. resnet56) and any of {sorted(_VARIANTS)}.')
  if 'smoke' in variants and not nets:
    nets = ['resnet8']
  config.model = nets[0] if nets else 'resnet20'
  if models.parse(config.model).depth >= WARMUP_DEPTH:
    config.optimizer.warmup_steps = 400
  for variant in variants:
    _VARIANTS.get(variant, lambda c: None)(config)
  return config


def base_config() -> ml_collections.ConfigDict:
  """The paper's CIFAR-10 recipe for ResNet-20."""
  config = ml_collections.ConfigDict()
  config.model = 'resnet20'
  config.shortcut = 'A'  # Option A, the paper's choice for CIFAR (4.2).
  config.dtype = 'float32'
  config.scan_blocks = False
  config.bn_group_size = 0  # 0: BN over the global batch of 128, as in the paper's 4.2 runs.
  config.seed = 0
  config.num_replicas = 1  # >1: train seeds seed..seed+n-1 at once, in one program.
  # How a replica group runs its several nets: 'loop' (ordinary convs, one net after another),
  # 'vmap' (batched: grouped convs) or 'auto' (the faster one measured on the backend).
  config.replica_batching = 'auto'
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_train_steps = 64_000
  config.steps_per_dispatch = 1
  # replica: device groups sharing the num_replicas nets; data: each net's batch.
  config.mesh = ml_collections.ConfigDict({'replica': 1, 'data': -1})
  config.optimizer = optim.default_config(lr_boundaries=(32_000, 48_000), base_batch_size=128)
  config.data = data.default_data_config()
  config.data.source = 'auto'
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.path = JPEG_ARCHIVE
  config.log_every_steps = 100
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3
  config.overwrite = False  # True: move a different model's run in the workdir aside.
  # True: resume with values that change what is trained (recorded in config_history.jsonl).
  config.allow_config_change = False
  config.on_nonfinite = 'stop'  # NaN/Inf loss or gradients: 'stop', or 'skip' the step.
  config.time_budget = ''  # E.g. '6h': stop with a checkpoint when spent; a rerun continues.
  return config


def _bf16(config):
  config.dtype = 'bfloat16'


def _jpeg(config):
  config.data.source = 'archive'


def _validation(config):
  config.data.validation_size = 5000  # 45k/5k split (Section 4.2).


def _smoke(config):
  config.num_train_steps = 30
  # Powers of two, so both split evenly over any usual device count (1 to 32: 8 GPUs, a v5e-8).
  config.batch_size = 32
  config.eval_batch_size = 512
  config.data.train_fraction = 0.1
  config.optimizer.lr_boundaries = (20, 25)
  config.optimizer.warmup_steps = 0
  config.log_every_steps = 10
  config.eval_every_steps = 30
  config.checkpoint_every_steps = 30


_VARIANTS = {'bf16': _bf16, 'jpeg': _jpeg, 'val': _validation, 'smoke': _smoke}
