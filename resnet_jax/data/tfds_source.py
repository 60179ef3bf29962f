"""The 'tfds' source: an image classification data set from TensorFlow Datasets (e.g. cifar10),
loaded whole into numpy. TensorFlow is imported only when this source is used."""
import numpy as np

from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.errors import DataError
from resnet_jax.data.tf_import import import_tensorflow

BATCH_SIZE = 1024  # Read in batches: batch_size=-1 crashes under tfds.testing.mock_data.


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
  builder.download_and_prepare()
  eval_split = _eval_split(name, set(builder.info.splits))
  (train_images, train_labels), (eval_images, eval_labels) = (
      _read_split(tfds, builder, split) for split in ('train', eval_split))
  return ArraySplits(train_images=train_images, train_labels=train_labels,
                     eval_images=eval_images, eval_labels=eval_labels,
                     class_names=tuple(features['label'].names), eval_split=eval_split)


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
