"""The ImageNet nets of Table 1 with the paper's ImageNet recipe (Section 3.4).

Run (from the repository root), once the trainer streams ImageNet (see "Not wired yet"):
  python -m resnet_jax.main --config=experiments/imagenet.py:resnet50 --workdir=/tmp/resnet50

Not wired yet: the trainer trains only on whole data sets placed on the device
(data.load_dataset, the CIFAR path); the streaming ImageNet input
(data.imagenet_train_iterator / imagenet_eval_iterator) is not wired into it, so these configs
cannot be trained yet. They resolve and build the paper's nets (tests/test_configs.py).

Variants after the colon, comma-separated, e.g. `:resnet34,table2`:
  plain18, plain34, resnet18, resnet34, resnet50, resnet101, resnet152: the net (default
    resnet50), with option B shortcuts (projections where shapes change; Tables 3 and 4);
  table2: option A shortcuts (zero-padded identities, no extra parameters) for the 18/34-layer
    plain-vs-residual comparison of Table 2 and Figure 4.

Recipe (Section 3.4): SGD momentum 0.9, weight decay 1e-4, global batch 256 (each host loads
per_host_batch_size(config) of it), lr 0.1 divided by 10 twice, up to 60e4 iterations; 224x224
crops of images whose shorter side is sampled in [256, 480], horizontal flips; TFDS
`imagenet2012`. Deviations: the paper divides the lr "when the error plateaus"; here at fixed
boundaries, 30 and 60 epochs (150,137 and 300,274 iterations at batch 256). The input
normalizes per channel, has no color augmentation and evaluates one center crop (see
resnet_jax/data/imagenet.py).

Measured: nothing yet.
"""
import jax
import ml_collections

from resnet_jax import data, models, optim
from resnet_jax.data import imagenet as imagenet_input

TRAIN_IMAGES = 1_281_167  # ILSVRC 2012 train split ("1.28 million training images", 4.1).
BATCH_SIZE = 256  # "a mini-batch size of 256" (3.4).
LR_DECAY_EPOCHS = (30, 60)
TABLE2_DEPTHS = (18, 34)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config for `arg`, a comma-separated list of variants (see the docstring)."""
  variants = [v.strip() for v in (arg or 'resnet50').split(',') if v.strip()]
  nets = [v for v in variants if v.startswith(('plain', 'resnet'))]
  unknown = [v for v in variants if v not in nets and v != 'table2']
  if unknown or len(nets) > 1:
    raise ValueError(f'Unknown or repeated config variants {unknown or nets} in {arg!r}; use '
                     'one net name (e.g. resnet50) and optionally table2.')
  config = base_config()
  config.model = nets[0] if nets else 'resnet50'
  spec = models.parse(config.model)
  if spec.dataset != 'imagenet':
    raise ValueError(f'{config.model} is a CIFAR net (experiments/cifar10.py); the ImageNet nets '
                     'are plain18, plain34 and resnet18/34/50/101/152.')
  if 'table2' in variants:
    if spec.depth not in TABLE2_DEPTHS:
      raise ValueError(f'table2 compares the 18- and 34-layer nets (Table 2), got '
                       f'{config.model}; the deeper nets use option B (Table 3).')
    config.shortcut = 'A'  # "zero-padding for increasing dimensions (option A)" (4.1).
  return config


def base_config() -> ml_collections.ConfigDict:
  """The paper's ImageNet recipe for ResNet-50."""
  steps_per_epoch = TRAIN_IMAGES / BATCH_SIZE
  config = ml_collections.ConfigDict()
  config.model = 'resnet50'
  config.shortcut = 'B'  # Projections only where shapes change (option B, 4.1).
  config.dtype = 'float32'
  config.scan_blocks = False
  config.bn_group_size = 0  # 0: BN over the whole global batch.
  config.seed = 0
  config.num_replicas = 1  # >1: train seeds seed..seed+n-1 at once, vmapped.
  config.batch_size = BATCH_SIZE  # Global; see per_host_batch_size.
  config.eval_batch_size = 1024
  config.num_train_steps = 600_000  # "up to 60 x 10^4 iterations" (3.4).
  config.steps_per_dispatch = 1
  config.mesh = ml_collections.ConfigDict({'data': -1})
  config.optimizer = optim.default_config(
      lr_boundaries=tuple(round(epochs * steps_per_epoch) for epochs in LR_DECAY_EPOCHS),
      base_batch_size=BATCH_SIZE)
  config.data = data.default_imagenet_data_config()
  config.data.data_dir = ml_collections.config_dict.placeholder(str)
  config.log_every_steps = 100
  config.eval_every_steps = 5000
  config.checkpoint_every_steps = 5000
  config.keep_checkpoints = 3
  config.overwrite = False  # True: move a different model's run in the workdir aside.
  config.on_nonfinite = 'stop'  # NaN/Inf loss or gradients: 'stop', or 'skip' the step.
  return config


def per_host_batch_size(config: ml_collections.ConfigDict) -> int:
  """This host's share of the global `config.batch_size`, checked to split evenly.

  Call it after jax.distributed.initialize: configs are parsed before it, so the share cannot
  be a config field.
  """
  return imagenet_input.per_host_batch_size(config.batch_size, jax.process_index(),
                                            jax.process_count())
