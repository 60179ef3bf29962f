"""Synthetic images for tests and benchmarks, deterministic from a seed and learnable: each
class has its own mean color, so a net can beat chance on them."""
import numpy as np

from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.config import positive_int
from resnet_jax.data.errors import DataError
from resnet_jax.data.origin import DataOrigin

NOISE = 64  # Pixel noise around the class color: visible, yet leaving the classes apart.


def synthetic_splits(num_train: int, num_eval: int, image_size: int | tuple[int, int],
                     num_classes: int, seed: int) -> ArraySplits:
  """Random uint8 RGB images [N, H, W, 3] and int32 labels; `image_size` is S or (H, W)."""
  num_train = positive_int(num_train, 'data.synthetic.num_train')
  num_eval = positive_int(num_eval, 'data.synthetic.num_eval')
  num_classes = positive_int(num_classes, 'data.synthetic.num_classes')
  height, width = image_height_width(image_size)
  colors = class_colors(num_classes, seed)
  train_rng, eval_rng = np.random.default_rng(seed).spawn(2)
  train_labels = train_rng.integers(0, num_classes, num_train, dtype=np.int32)
  eval_labels = eval_rng.integers(0, num_classes, num_eval, dtype=np.int32)
  return ArraySplits(
      train_images=synthetic_images(train_rng, train_labels, height, width, colors),
      train_labels=train_labels,
      eval_images=synthetic_images(eval_rng, eval_labels, height, width, colors),
      eval_labels=eval_labels,
      class_names=tuple(f'class_{i}' for i in range(num_classes)), eval_split='test',
      origin=DataOrigin('synthetic'))


def image_height_width(image_size) -> tuple[int, int]:
  """(height, width) from data.synthetic.image_size, an int S (S x S) or a pair (H, W)."""
  sizes = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size,) * 2
  if len(sizes) != 2:
    raise DataError(f'data.synthetic.image_size must be an int or a (height, width) pair, '
                    f'got {image_size!r}.')
  return tuple(positive_int(size, 'data.synthetic.image_size') for size in sizes)


def class_colors(num_classes: int, seed: int) -> np.ndarray:
  """The mean RGB color of each class, int16 [num_classes, 3], drawn from `seed`."""
  return np.random.default_rng([seed, 0, num_classes]).integers(
      NOISE, 256 - NOISE, (num_classes, 3), dtype=np.int16)


def synthetic_images(rng: np.random.Generator, labels: np.ndarray, height: int, width: int,
                     colors: np.ndarray) -> np.ndarray:
  """uint8 images [len(labels), height, width, 3]: each label's color plus uniform noise."""
  noise = rng.integers(-NOISE, NOISE + 1, (len(labels), height, width, 3), dtype=np.int16)
  return (colors[labels][:, None, None, :] + noise).astype(np.uint8)
