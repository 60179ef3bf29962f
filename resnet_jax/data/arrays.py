"""Whole image classification data sets held in host memory as numpy arrays."""
import dataclasses

import numpy as np

from resnet_jax.data.errors import DataError
from resnet_jax.data.origin import DataOrigin

EVAL_SPLITS = ('test', 'validation')


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySplits:
  """Train and eval images (uint8 [N, H, W, C]) with int32 labels; checked on creation."""
  train_images: np.ndarray
  train_labels: np.ndarray
  eval_images: np.ndarray
  eval_labels: np.ndarray
  class_names: tuple[str, ...]
  eval_split: str  # 'test', or 'validation' when it is held out of the train set.
  origin: DataOrigin | None = None  # What was read; load_dataset always sets it.

  def __post_init__(self):
    if self.eval_split not in EVAL_SPLITS:
      raise DataError(f'eval_split must be one of {EVAL_SPLITS}, got {self.eval_split!r}.')
    if not self.class_names:
      raise DataError('A data set needs at least one class; class_names is empty.')
    _check_split('train', self.train_images, self.train_labels, self.num_classes)
    _check_split(self.eval_split, self.eval_images, self.eval_labels, self.num_classes)
    if self.train_images.shape[1:] != self.eval_images.shape[1:]:
      raise DataError(f'Train images are {self.train_images.shape[1:]} but {self.eval_split} '
                      f'images are {self.eval_images.shape[1:]}; both splits need one shape.')

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def _check_split(split: str, images: np.ndarray, labels: np.ndarray, num_classes: int):
  if images.dtype != np.uint8 or images.ndim != 4:
    raise DataError(f'{split} images must be uint8 [N, H, W, C], got {images.dtype} '
                    f'{images.shape}.')
  if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
    raise DataError(f'{split} labels must be int32 [{images.shape[0]}] to match the images, '
                    f'got {labels.dtype} {labels.shape}.')
  if not len(labels):
    raise DataError(f'The {split} split is empty; it needs at least one image.')
  outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if outside.size:
    first = outside[0]
    raise DataError(f'{split} label {labels[first]} (example {first}, one of {outside.size}) is '
                    f'outside the {num_classes} classes [0, {num_classes}); the labels and the '
                    f'class list disagree: check the dataset\'s num_classes.')
