"""The ImageNet plain-vs-residual study of Section 4.1: plain-18/34 and ResNet-18/34 with option A
shortcuts, reported as Table 2 (top-1 error) and Figure 4 (training and validation error vs
iterations, plain nets left, ResNets right).

Run (from the repository root; data as for experiments/imagenet.py, e.g. an ILSVRC folder):
  python -m resnet_jax.study --config=experiments/figure4.py --workdir=/tmp/figure4 \\
    --config.base.data.source=folder --config.base.data.path=/data/ILSVRC

Variants after the colon, comma-separated: per_channel (the variant of experiments/imagenet.py,
applied to every net); smoke: the whole study on a CPU in a few minutes: the four nets trained
20 steps on 32x32 crops of a tiny ILSVRC folder of generated JPEGs (4 classes, 40-64 px, with a
grayscale JPEG, a CMYK JPEG and a PNG named .JPEG among them), written once to
WORKDIR/generated_images.
Overrides: --config.depths='(18,)', --config.seeds=2 (runs per net, one after another: the
streamed input trains one net per run), and the trainer config of every run under
--config.base (e.g. --config.base.num_train_steps=1000); base.model and base.seed are set per
run. The study writes results.md/results.csv (Table 2 beside the paper's), figure4.png and the
verdict; the validation error is the center crop evaluated during training, where Table 2 is
10-crop testing (`python -m resnet_jax.evaluate --workdir=WORKDIR/resnet34_seed0
--config.eval.mode=10crop`). Figure 7's layer responses are measured on CIFAR nets only.

Measured: `:smoke` on 2 shared CPU cores: 7 min end to end (4 nets of 20 steps, mostly
compiling), every file written; 20 steps make it a plumbing check whose verdict means nothing.
The full study: nothing yet.
"""
import ml_collections

from resnet_jax.config.files import sibling_config

VARIANTS = ('per_channel', 'smoke')
SMOKE_IMAGE_SIZES = ((48, 40), (40, 56), (64, 48), (56, 64))  # (width, height), in turn.


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The study config for `arg`, a comma-separated list of variants (see the docstring)."""
  variants = [v.strip() for v in (arg or '').split(',') if v.strip()]
  imagenet = sibling_config(__file__, 'imagenet')
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f'Unknown config variants {unknown} in {arg!r}; the study trains its own '
                     "nets (pick depths with --config.depths='(18, 34)') and takes the variants "
                     f'{list(VARIANTS)}.')
  # The nets of Table 2, with option A shortcuts; the study sets each run's model.
  base = imagenet.get_config(','.join(['resnet18', 'table2', *variants]))

  config = ml_collections.ConfigDict()
  config.depths = imagenet.TABLE2_DEPTHS
  config.seeds = 1
  config.seeds_in_one_program = False  # The streamed input trains one net per run.
  config.base = base
  config.time_budget = ''  # E.g. '6h': every run stops with a checkpoint when spent.
  if 'smoke' in variants:
    # experiments/imagenet.py's smoke sizes (32x32 crops, batch 16, 20 steps) on a folder of
    # JPEGs that the study writes (resnet_jax.paper.study.with_generated_images).
    config.generated_images = ml_collections.ConfigDict(dict(
        num_classes=4, train_per_class=8, val_per_class=4, sizes=SMOKE_IMAGE_SIZES))
  return config

