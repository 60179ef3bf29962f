"""The 'tfds' source: an image classification data set from TensorFlow Datasets (e.g. cifar10),
loaded whole into numpy. TensorFlow is imported only when this source is used."""
import socket
import urllib.parse
from pathlib import Path

import numpy as np

from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.errors import DataError
from resnet_jax.data.origin import DataOrigin
from resnet_jax.data.tf_import import import_tensorflow

BATCH_SIZE = 1024  # Read in batches: batch_size=-1 crashes under tfds.testing.mock_data.
# Offline, TFDS retries its download for minutes before failing: a connection to the data set's
# host within this many seconds tells first whether there is a network.
CONNECT_TIMEOUT_S = 5


def is_prepared(name: str, data_dir: str | None = None) -> bool:
  """Whether a prepared TFDS copy of `name` is in `data_dir` (False without TFDS installed)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  try:
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except tfds.core.registered.DatasetNotFoundError:
    return False


def check_data_dir(name: str, data_dir: str | None) -> None:
  """A DataError when `data_dir` is set but does not exist: read nothing else in its place."""
  if data_dir is None or '://' in data_dir:  # Cloud storage: TFDS says what it lacks.
    return
  resolved = Path(data_dir).expanduser().resolve()
  if not resolved.is_dir():
    raise DataError(f'data.data_dir {data_dir!r} does not exist (resolved to {resolved}); set it '
                    f'to the folder holding {name}/ (`tfds build {name} --data_dir=DIR` writes it '
                    f'there), create it for TFDS to download {name} into, or unset it.')


def ways_to_get_data(name: str) -> str:
  """The sources that read `name` without downloading it, one per line, as command flags."""
  return (f'Ways to get the data without a download:\n'
          f'  - a prepared TFDS copy: --config.data.data_dir=DIR, where DIR holds {name}/ as '
          f'`tfds build {name} --data_dir=DIR` writes it on a machine with internet;\n'
          f'  - a .tar/.tar.gz of train/<class>/*.jpg and test/<class>/*.jpg: '
          f'--config.data.source=archive --config.data.path=ARCHIVE (the `jpeg` variant of '
          f'experiments/cifar10.py reads ../shared/data/cifar10-jpeg.tar.gz beside the checkout);\n'
          f'  - a folder of that layout: --config.data.source=folder --config.data.path=DIR;\n'
          f'  - random images, to check the code only: --config.data.source=synthetic.')


def load_tfds(name: str, data_dir: str | None = None) -> ArraySplits:
  """The train split and the test (else validation) split of TFDS data set `name`."""
  _, tfds = import_tensorflow()
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f'TFDS has no data set {name!r}; set data.name to one of '
                    f'tfds.list_builders(), e.g. cifar10 or cifar100.') from None
  features = builder.info.features
  if 'image' not in features or 'label' not in features:
    raise DataError(f'TFDS data set {name!r} has features {sorted(features)}, not an image '
                    f"and a label; use an image classification data set such as 'cifar10'.")
  if None in features['image'].shape:
    raise DataError(f'TFDS data set {name!r} has images of varying size {features["image"].shape}'
                    f'; this loader needs one size: resize them into a class-folder tree and use '
                    f"data.source='folder', or use the streaming ImageNet input.")
  if not builder.is_prepared():
    _download(builder, name)
  eval_split = _eval_split(name, set(builder.info.splits))
  (train_images, train_labels), (eval_images, eval_labels) = (
      _read_split(tfds, builder, split) for split in ('train', eval_split))
  return ArraySplits(train_images=train_images, train_labels=train_labels,
                     eval_images=eval_images, eval_labels=eval_labels,
                     class_names=tuple(features['label'].names), eval_split=eval_split,
                     origin=DataOrigin('tfds', str(builder.data_dir), builder.info.full_name))


def _download(builder, name: str) -> None:
  host = urllib.parse.urlparse(builder.info.homepage or '').hostname
  if host:  # CIFAR's homepage host is also its download host.
    try:
      socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
      raise DataError(f'TFDS cannot download {name!r}: {host} is unreachable ({error}); no '
                      f'network?\n{ways_to_get_data(name)}') from None
  try:
    builder.download_and_prepare()
  except Exception as error:  # pylint: disable=broad-except  # Network errors of many kinds.
    raise DataError(f'TFDS could not download and prepare {name!r} '
                    f'({type(error).__name__}: {error}).\n{ways_to_get_data(name)}') from None


def _eval_split(name: str, splits: set[str]) -> str:
  # tfds.testing.mock_data knows no split names, and accepts any.
  if not splits or 'test' in splits:
    return 'test'
  if 'validation' in splits:
    return 'validation'
  raise DataError(f'TFDS data set {name!r} has splits {sorted(splits)}, neither test nor '
                  f'validation to evaluate on; use a data set that has one of them.')


def _read_split(tfds, builder, split: str) -> tuple[np.ndarray, np.ndarray]:
  dataset = builder.as_dataset(split=split, batch_size=BATCH_SIZE, as_supervised=True)
  batches = list(tfds.as_numpy(dataset))
  images = np.concatenate([images for images, _ in batches])
  labels = np.concatenate([labels for _, labels in batches])
  return images, labels.astype(np.int32)
