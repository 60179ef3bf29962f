"""The ImageNet nets of Table 1 with the paper's ImageNet recipe (Section 3.4).

Run (from the repository root; TFDS `imagenet2012` prepared as ArrayRecord, or an ILSVRC
folder with --config.data.source=folder --config.data.path=DIR):
  python -m resnet_jax.main --config=experiments/imagenet.py:resnet50 --workdir=/tmp/resnet50
  python -m resnet_jax.evaluate --workdir=/tmp/resnet50 --config.eval.mode=10crop

Variants after the colon, comma-separated, e.g. `:resnet34,table2`:
  plain18, plain34, resnet18, resnet34, resnet50, resnet101, resnet152: the net (default
    resnet50), with option B shortcuts (projections where shapes change; Tables 3 and 4);
  table2: option A shortcuts (zero-padded identities, no extra parameters) for the 18/34-layer
    plain-vs-residual comparison of Table 2 and Figure 4;
  per_channel: per-channel mean/std normalization and no color augmentation (the recipe of
    later work) instead of the paper's per-pixel mean and PCA lighting;
  smoke: the whole path on a CPU in a minute or two: synthetic images, 32x32 crops of
    images resized to [36, 48], batch 16, 20 steps, float32 (resnet18 unless a net is named).
    Its errors check the plumbing only; its multi-scale error means nothing at all: the net
    downsamples 32x, so whole images of 32-48 px end in a 1x1 or 2x2 feature map (evaluate
    says so beside the number).

Recipe (Section 3.4): SGD momentum 0.9, weight decay 1e-4, global batch 256 (each host loads
its share), lr 0.1 divided by 10 twice, 60e4 iterations; shorter side sampled in [256, 480],
224x224 crops, horizontal flips, per-pixel mean subtraction, PCA color augmentation; BN
statistics over groups of 32 examples, as on the paper's 8 GPUs (256 / 8). Evaluation
during training: the center 224 crop of the image resized to 256 (`python -m
resnet_jax.evaluate` adds 10-crop and multi-scale testing).
Deviations: the paper divides the lr "when the error plateaus"; here at fixed epochs 30 and
60 (150,137 and 300,274 iterations at batch 256), where the error of the usual ResNet-50 runs
plateaus; bfloat16 compute with float32 parameters (the paper computed in float32); the
multi-scale test batches images in aspect-ratio buckets (resnet_jax/data/imagenet/views.py).

Measured: `:smoke` on 2 shared CPU cores: 1 min 40 s end to end (46 s of it compiling), 89.6%
validation error after 20 steps on synthetic images, a check of the plumbing only. Nothing on
ImageNet yet (no accelerator so far).
"""
import ml_collections

from resnet_jax import models, optim
from resnet_jax.data import imagenet as imagenet_input

TRAIN_IMAGES = 1_281_167  # ILSVRC 2012 train split ("1.28 million training images", 4.1).
BATCH_SIZE = 256  # "a mini-batch size of 256" (3.4).
BN_GROUP_SIZE = 32  # 256 images over the paper's 8 GPUs: BN statistics per GPU.
LR_DECAY_EPOCHS = (30, 60)
TABLE2_DEPTHS = (18, 34)
VARIANTS = ('table2', 'per_channel', 'smoke')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for `arg`, a comma-separated list of variants (see the docstring)."""
  variants = [v.strip() for v in (arg or '').split(',') if v.strip()]
  nets = [v for v in variants if v.startswith(('plain', 'resnet'))]
  unknown = [v for v in variants if v not in nets and v not in VARIANTS]
  if unknown or len(nets) > 1:
    raise ValueError(f'Unknown or repeated config variants {unknown or nets} in {arg!r}; use '
                     f'one net name (e.g. resnet50) and any of {list(VARIANTS)}.')
  config = base_config()
  config.model = nets[0] if nets else ('resnet18' if 'smoke' in variants else 'resnet50')
  spec = models.parse(config.model)
  if spec.dataset != 'imagenet':
    raise ValueError(f'{config.model} is a CIFAR net (experiments/cifar10.py); the ImageNet nets '
                     'are plain18, plain34 and resnet18/34/50/101/152.')
  if 'table2' in variants:
    if spec.depth not in TABLE2_DEPTHS:
      raise ValueError(f'table2 compares the 18- and 34-layer nets (Table 2), got '
                       f'{config.model}; the deeper nets use option B (Table 3).')
    config.shortcut = 'A'  # "zero-padding for increasing dimensions (option A)" (4.1).
  if 'per_channel' in variants:
    config.data.normalization = 'per_channel'
    config.data.color_augmentation = 0.0
  if 'smoke' in variants:
    _smoke(config)
  return config


def base_config() -> ml_collections.ConfigDict:
  """The paper's ImageNet recipe for ResNet-50."""
  steps_per_epoch = TRAIN_IMAGES / BATCH_SIZE
  config = ml_collections.ConfigDict()
  config.model = 'resnet50'
  config.shortcut = 'B'  # Projections only where shapes change (option B, 4.1).
  config.dtype = 'bfloat16'  # Deviation: float32 parameters, bfloat16 compute.
  config.scan_blocks = False
  config.bn_group_size = BN_GROUP_SIZE
  config.seed = 0
  config.num_replicas = 1  # The streamed input trains one net per run.
  config.replica_batching = 'auto'  # Of several nets per replica group (not with one).
  config.batch_size = BATCH_SIZE  # Global; each host loads batch_size / process_count.
  config.eval_batch_size = 1024
  config.num_train_steps = 600_000  # "up to 60 x 10^4 iterations" (3.4).
  config.steps_per_dispatch = 1
  # replica: device groups sharing the num_replicas nets; data: each net's batch.
  config.mesh = ml_collections.ConfigDict({'replica': 1, 'data': -1})
  config.optimizer = optim.default_config(
      lr_boundaries=tuple(round(epochs * steps_per_epoch) for epochs in LR_DECAY_EPOCHS),
      base_batch_size=BATCH_SIZE)
  config.data = imagenet_input.default_imagenet_data_config()
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.data.path = ml_collections.config_dict.placeholder(str)
  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 5000
  config.keep_checkpoints = 3
  config.overwrite = False  # True: move a different model's run in the workdir aside.
  # True: resume with values that change what is trained (recorded in config_history.jsonl).
  config.allow_config_change = False
  config.on_nonfinite = 'stop'  # NaN/Inf loss or gradients: 'stop', or 'skip' the step.
  config.time_budget = ''  # E.g. '6h': stop with a checkpoint when spent; a rerun continues.
  return config


def _smoke(config: ml_collections.ConfigDict) -> None:
  config.dtype = 'float32'  # bfloat16 convolutions are slow on CPUs.
  config.bn_group_size = 0
  config.batch_size = 16
  config.eval_batch_size = 16
  config.num_train_steps = 20
  config.optimizer.lr_boundaries = (10, 15)
  config.log_every_steps = 5
  config.eval_every_steps = 10
  config.checkpoint_every_steps = 10
  data = config.data
  data.source = 'synthetic'
  data.crop_size, data.train_resize_range, data.eval_resize_size = 32, (36, 48), 36
  data.eval_scales = (32, 48)  # Two scales to average, each a compile per bucket.
  data.num_workers = 0
  data.synthetic.update(num_train=256, num_eval=48, num_classes=10, image_size=(45, 60))
