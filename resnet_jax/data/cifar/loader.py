"""load_dataset: a whole data set as numpy arrays, from the source the data config names,
with the optional held-out validation set and train fraction applied."""
import importlib.util
import logging
from pathlib import Path

import ml_collections

from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.cifar.folder import load_image_archive, load_image_folder
from resnet_jax.data.cifar.subsets import hold_out_validation, keep_train_fraction
from resnet_jax.data.cifar.tfds_source import (check_data_dir, is_prepared, load_tfds,
                                               ways_to_get_data)
from resnet_jax.data.config import with_defaults
from resnet_jax.data.errors import DataError
from resnet_jax.data.synthetic import synthetic_splits

SOURCES = ('auto', 'tfds', 'folder', 'archive', 'synthetic')

_log = logging.getLogger(__name__)


def default_data_config() -> ml_collections.ConfigDict:
  """Every key load_dataset reads, with its default (CIFAR-10 from TFDS)."""
  return ml_collections.ConfigDict(dict(
      source='tfds',  # One of SOURCES.
      name='cifar10',  # TFDS data set (source='tfds').
      data_dir=None,  # TFDS data_dir (source='tfds').
      # Class-folder tree (source='folder') or a .tar/.tar.gz of one ('archive', and 'auto'
      # when TFDS has no prepared copy).
      path=None,
      cache_dir='~/.cache/resnet_jax',  # Decoded folder/archive arrays; never the data's folder.
      validation_size=0,  # >0: hold out this many train images for eval (5000 in Section 4.2).
      train_fraction=1.0,  # Keep this fraction of the (remaining) train images.
      augment=True,  # Read by the trainer's on-device augmentation, not here.
      synthetic=ml_collections.ConfigDict(dict(
          num_train=512, num_eval=128, image_size=32, num_classes=10, seed=0)),
  ))


def load_dataset(data_config) -> ArraySplits:
  """The train and eval arrays `data_config` (a ConfigDict or dict) describes.

  Missing keys take default_data_config()'s values; unknown keys and bad values raise
  DataError before anything is read. validation_size and train_fraction pick class-
  stratified subsets with fixed seeds, so a config always gives the same images.
  """
  config = with_defaults(data_config, default_data_config(), 'data config')
  _check_subset_sizes(config)
  if config.source in ('auto', 'tfds'):
    check_data_dir(config.name, config.data_dir)
  if config.source == 'auto':
    config.source = auto_source(config)
  if config.source == 'tfds':
    splits = load_tfds(config.name, config.data_dir)
  elif config.source == 'folder':
    splits = load_image_folder(config.path, config.cache_dir)
  elif config.source == 'archive':
    splits = load_image_archive(config.path, config.cache_dir)
  elif config.source == 'synthetic':
    splits = synthetic_splits(**config.synthetic)
  else:
    raise DataError(f'Unknown data.source {config.source!r}; use one of {list(SOURCES)}.')
  if config.validation_size:
    splits = hold_out_validation(splits, config.validation_size)
  if config.train_fraction < 1:
    splits = keep_train_fraction(splits, config.train_fraction)
  return splits


def auto_source(config: ml_collections.ConfigDict) -> str:
  """What source='auto' reads: a prepared TFDS copy of `name`, else the archive at `path`,
  else a TFDS download (which fails within seconds without a network)."""
  if is_prepared(config.name, config.data_dir):
    _log.info('Data: the prepared TFDS copy of %s.', config.name)
    return 'tfds'
  if config.path and Path(config.path).expanduser().is_file():
    _log.info('Data: %s (TFDS has no prepared copy of %s).', config.path, config.name)
    return 'archive'
  if importlib.util.find_spec('tensorflow_datasets') is None:
    raise DataError(f'No data: TFDS is not installed, and the archive data.path='
                    f'{config.path!r} does not exist; `pip install -e ".[tfds]"` lets TFDS read '
                    f'or download {config.name!r}.\n{ways_to_get_data(config.name)}')
  _log.info('Data: downloading %s with TFDS (no prepared copy, no archive at %s).',
            config.name, config.path)
  return 'tfds'


def _check_subset_sizes(config: ml_collections.ConfigDict):
  validation_size, train_fraction = config.validation_size, config.train_fraction
  if isinstance(validation_size, bool) or not hasattr(validation_size, '__index__') or (
      validation_size < 0):
    raise DataError(f'data.validation_size must be a whole number of train images >= 0 (0: '
                    f'evaluate on the test split), got {validation_size!r}.')
  if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not (
      0 < train_fraction <= 1):
    raise DataError(f'data.train_fraction must be in (0, 1], the fraction of train images to '
                    f'keep (1.0: all), got {train_fraction!r}.')
