"""The experiment configs: they resolve, build the paper's nets and carry its recipes."""
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest
from clu import parameter_overview

import cifar10
import degradation
import figure4
import imagenet
import paper
from resnet_jax import data, optim, train
from resnet_jax.config import checks

REPO = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / 'experiments'
IMAGENET_NETS = {'plain18': (18, False), 'plain34': (34, False), 'resnet18': (18, True),
                 'resnet34': (34, True), 'resnet50': (50, True), 'resnet101': (101, True),
                 'resnet152': (152, True)}
# torchvision's totals for the same nets (option B shortcuts).
IMAGENET_PARAMETERS = {'resnet18': 11_689_512, 'resnet34': 21_797_672, 'resnet50': 25_557_032,
                       'resnet101': 44_549_160, 'resnet152': 60_192_808}


def parameter_count(config) -> int:
  model = train.build_model(config, num_classes=1000)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
  return parameter_overview.count_parameters(variables['params'])


@pytest.mark.parametrize('path', sorted(EXPERIMENTS.glob('*.py')), ids=lambda p: p.name)
def test_each_config_opens_with_its_command_and_what_was_measured(path):
  modules = {'cifar10.py': cifar10, 'degradation.py': degradation, 'figure4.py': figure4,
             'imagenet.py': imagenet, 'paper.py': paper}
  module = modules[path.name]
  assert 'python -m resnet_jax.' in module.__doc__ and f'experiments/{path.name}' in module.__doc__
  assert 'Measured:' in module.__doc__


@pytest.mark.parametrize('name', IMAGENET_NETS)
def test_imagenet_configs_build_their_net(name):
  config = imagenet.get_config(name)
  model = train.build_model(config, num_classes=1000)
  assert (model.depth, model.residual) == IMAGENET_NETS[name]
  assert config.shortcut == 'B'
  if name in IMAGENET_PARAMETERS:
    assert parameter_count(config) == IMAGENET_PARAMETERS[name]


@pytest.mark.parametrize('depth', (18, 34))
def test_table2_resnets_have_exactly_the_parameters_of_their_plain_nets(depth):
  table2 = imagenet.get_config(f'resnet{depth},table2')
  assert table2.shortcut == 'A'
  assert parameter_count(table2) == parameter_count(imagenet.get_config(f'plain{depth}'))
  assert parameter_count(table2) < parameter_count(imagenet.get_config(f'resnet{depth}'))


def test_imagenet_recipe_is_section_3_4():
  config = imagenet.get_config('resnet50')
  assert (config.batch_size, config.num_train_steps) == (256, 600_000)
  assert (config.optimizer.weight_decay, config.optimizer.momentum) == (1e-4, 0.9)
  schedule = optim.learning_rate_schedule(config.optimizer, config.batch_size)
  steps_per_epoch = 1_281_167 / 256
  for epochs, learning_rate in ((0, 0.1), (29.99, 0.1), (30.01, 0.01), (59.99, 0.01),
                                (60.01, 0.001), (119, 0.001)):
    assert schedule(int(epochs * steps_per_epoch)) == pytest.approx(learning_rate)
  assert config.data.name == 'imagenet2012' and config.data.source == 'tfds'
  assert tuple(config.data.train_resize_range) == (256, 480) and config.data.crop_size == 224


def test_imagenet_data_config_is_accepted_by_the_streaming_input(tmp_path):
  config = imagenet.get_config('resnet18')
  config.data.update(source='synthetic', num_workers=0, cache_dir=str(tmp_path))
  config.data.synthetic.update(num_train=4, num_eval=2)
  batch = next(data.open_streamed(config.data).train_iterator(
      seed=0, global_batch_size=2, process_index=0, process_count=1))
  assert batch['images'].shape == (2, 224, 224, 3)


def test_imagenet_defaults_are_the_papers_augmentation_and_bn_groups():
  config = imagenet.get_config('resnet50')
  assert (config.data.normalization, config.data.color_augmentation) == ('per_pixel', 0.1)
  assert config.bn_group_size == 32 and config.batch_size % config.bn_group_size == 0
  assert (config.dtype, config.num_replicas) == ('bfloat16', 1)
  variant = imagenet.get_config('resnet50,per_channel')
  assert (variant.data.normalization, variant.data.color_augmentation) == ('per_channel', 0)


@pytest.mark.parametrize('arg, message', [
    ('resnet50,table2', 'table2 compares the 18- and 34-layer nets'),
    ('resnet56', 'is a CIFAR net'),
    ('resnet18,resnet34', 'one net name'),
    ('resnet50,bf17', "Unknown or repeated config variants \\['bf17'\\]"),
])
def test_imagenet_config_errors(arg, message):
  with pytest.raises(ValueError, match=message):
    imagenet.get_config(arg)


def test_degradation_default_is_figure6s_pair_with_the_cifar_recipe():
  config = degradation.get_config()
  assert tuple(config.depths) == (20, 56) and config.seeds == 1
  assert config.base.to_dict() == cifar10.get_config().to_dict()
  assert (config.deep_warmup.min_depth, config.deep_warmup.steps) == (110, 400)


def test_degradation_full_adds_the_other_table6_depths():
  assert tuple(degradation.get_config('full').depths) == (20, 32, 44, 56, 110)


def test_degradation_passes_cifar10_variants_to_every_run():
  config = degradation.get_config('smoke,jpeg')
  smoke_jpeg = cifar10.get_config('smoke,jpeg')
  assert config.base.data.source == 'archive' and config.base.data.path == smoke_jpeg.data.path
  assert config.base.num_train_steps == smoke_jpeg.num_train_steps
  assert tuple(config.depths) == (8, 14)
  assert config.base.data.validation_size == 500  # A small eval split for the smoke study.
  assert config.deep_warmup.steps == 0  # The smoke recipe never warms up.


@pytest.mark.parametrize('arg, message', [
    ('resnet56', 'The study trains its own nets'),
    ('full,smoke', 'full and smoke exclude each other'),
    ('fulll', "variants \\['fulll'\\].*The study adds the variants \\['full', 'smoke'\\]"),
])
def test_degradation_config_errors(arg, message):
  with pytest.raises(ValueError, match=message):
    degradation.get_config(arg)


def test_every_config_in_the_scale_docs_passes_the_trainers_checks():
  """The launch examples of docs/running_at_scale.md name configs the trainer accepts."""
  text = (REPO / 'docs' / 'running_at_scale.md').read_text()
  modules = {'cifar10': cifar10, 'imagenet': imagenet}
  examples = set(re.findall(r'experiments/(cifar10|imagenet)\.py:([\w,]+)', text))
  assert ('imagenet', 'resnet50') in examples
  for name, variants in examples:
    checks.validate(modules[name].get_config(variants))
