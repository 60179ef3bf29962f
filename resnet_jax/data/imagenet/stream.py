"""The streamed ImageNet input the trainer sees: open_streamed(config.data) gives a StreamedData
whose iterators yield this host's uint8 batches, decoded and augmented in grain worker
processes, and normalize_on_device finishes the paper's preprocessing inside jit.

Sources: TFDS `imagenet2012` (ArrayRecord, read without TensorFlow), an ILSVRC folder
(train/<wnid>/*, val/<wnid>/*), or synthetic images; see sources.py. Train
augmentation (Section 3.4): shorter side random in [256, 480], a random 224x224 crop, a
horizontal flip, per-pixel mean subtraction and the PCA color augmentation of Krizhevsky et
al. Eval: center crop, 10-crop, or multi-scale whole images (views.py).
Named variant: normalization='per_channel' with color_augmentation=0 is the common recipe of
later work (per-channel mean and std, no color augmentation).

Choices the paper leaves open: the per-pixel mean is that of the train images' center crops
at shorter side eval_resize_size; the PCA lighting uses the published ImageNet eigenvalues
and eigenvectors rather than ones recomputed here; resizing is Pillow's antialiased bilinear,
after libjpeg's DCT shrink for JPEGs at least twice the size needed (decode.py).
Deviation: multi-scale testing batches images in aspect-ratio buckets (views.py).
"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from resnet_jax.data.config import positive_int, with_defaults
from resnet_jax.data.decode import default_num_workers
from resnet_jax.data.errors import DataError
from resnet_jax.data.imagenet import stats, workers
from resnet_jax.data.imagenet.pipeline import eval_batches, train_batches
from resnet_jax.data.imagenet.sources import EVAL, Sources, open_sources
from resnet_jax.data.imagenet.views import MODES, eval_rows
from resnet_jax.data.origin import DataOrigin

SOURCES = ('tfds', 'folder', 'synthetic')
NORMALIZATIONS = ('per_pixel', 'per_channel')
# The usual ImageNet RGB statistics on the 0-255 scale, for normalization='per_channel'.
MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32) * 255
STDDEV_RGB = np.array([0.229, 0.224, 0.225], np.float32) * 255


def default_imagenet_data_config() -> ml_collections.ConfigDict:
  """Every key the streamed ImageNet input reads, with its default."""
  return ml_collections.ConfigDict(dict(
      source='tfds',  # One of SOURCES.
      name='imagenet2012',  # TFDS data set, prepared as ArrayRecord (source='tfds').
      data_dir=None,  # TFDS data_dir (source='tfds').
      path=None,  # ILSVRC folder: train/<wnid>/*, val/<wnid>/* (source='folder').
      cache_dir='~/.cache/resnet_jax',  # The mean image and eval sizes; never the data's folder.
      crop_size=224,  # "224x224 crop" (3.4).
      train_resize_range=(256, 480),  # Shorter side "randomly sampled in [256, 480]" (3.4).
      eval_resize_size=256,  # Shorter side before the center crop and the 10 crops.
      eval_scales=(224, 256, 384, 480, 640),  # Shorter sides of multi-scale testing (3.4).
      normalization='per_pixel',  # "the per-pixel mean subtracted" (3.4), or 'per_channel'.
      mean_sample_size=0,  # Train images the per-pixel mean averages (0: all of them).
      color_augmentation=0.1,  # PCA lighting std of Krizhevsky et al. (3.4); 0: none.
      skip_unreadable=False,  # True: an unreadable file is stood in for, not an error.
      num_workers=None,  # grain worker processes (0: decode in this process; None: one a core).
      synthetic=ml_collections.ConfigDict(dict(
          num_train=1280, num_eval=256, num_classes=1000, image_size=(300, 400), seed=0)),
  ))


@dataclasses.dataclass(frozen=True, eq=False)
class StreamedData:
  """An opened streamed data set: its sizes, normalization statistics and iterators."""
  config: ml_collections.ConfigDict
  sources: Sources
  mean: np.ndarray  # float32 [crop, crop, 3] (per_pixel) or [1, 1, 3]; 0-255 scale.
  std: np.ndarray  # float32 [3]; ones for the paper's per-pixel mean.
  eval_split: str = EVAL

  @property
  def class_names(self) -> tuple[str, ...]:
    return self.sources.class_names

  @property
  def num_classes(self) -> int:
    return len(self.sources.class_names)

  @property
  def origin(self) -> DataOrigin:
    """What this data set reads: its source, folder or TFDS data_dir, and cache key."""
    return DataOrigin(self.config.source, self.sources.location, self.sources.cache_key)

  @property
  def num_train(self) -> int:
    return len(self.sources.train)

  @property
  def num_eval(self) -> int:
    return len(self.sources.validation)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (self.config.crop_size, self.config.crop_size, 3)

  def train_iterator(self, seed: int, global_batch_size: int, process_index: int,
                     process_count: int):
    """Endless batches of this host's rows of each global batch: 'images' uint8 [b, crop,
    crop, 3], 'labels' int32 [b], 'color_shift' float32 [b, 3] (PCA lighting, 0-255 scale,
    added on the device) and 'unreadable' int32 [b] (1: a stand-in for a skipped file).

    A fresh permutation every epoch from (seed, epoch); host p's batch is rows [p * b,
    (p + 1) * b) of the 1-host batch, bit for bit. get_state()/set_state() resume exactly.
    """
    per_host_batch_size(global_batch_size, process_index, process_count)
    config = self.config
    return train_batches(self.sources.train, seed, global_batch_size, process_index,
                         process_count, config.num_workers, config.crop_size,
                         tuple(config.train_resize_range), config.color_augmentation,
                         config.skip_unreadable)

  def eval_iterator(self, mode: str, global_batch_size: int, process_index: int,
                    process_count: int):
    """One pass over the validation split: 'images' uint8 [b, V, h, w, 3], 'labels' int32
    [b], 'mask' bool [b] (False on padding) and 'index' int32 [b] (the example's index).

    mode: 'center' (V=1), '10crop' (V=10) or 'multiscale' (V=1, whole images, h and w
    vary from batch to batch, each image once per scale). Every host yields the same
    number of batches of the same shapes; over the hosts each image counts once.
    """
    if mode not in MODES:
      raise DataError(f'Unknown eval mode {mode!r}; use one of {list(MODES)}.')
    per_host = per_host_batch_size(global_batch_size, process_index, process_count)
    config = self.config
    sizes = (stats.eval_image_sizes(self.sources, config) if mode == 'multiscale'
             else None)
    rows = eval_rows(mode, sizes, self.num_eval, config.crop_size, tuple(config.eval_scales),
                     global_batch_size, process_index, process_count)
    return eval_batches(self.sources.validation, rows, per_host, config.num_workers, mode,
                        config.eval_resize_size, config.skip_unreadable)


def open_streamed(data_config) -> StreamedData:
  """Checks `data_config` (a ConfigDict or dict; missing keys default), opens its source and
  loads or computes (once, cached under cache_dir) the normalization statistics; first frees
  the shared memory that killed runs' workers left."""
  config = _checked(data_config)
  workers.free_segments_of_dead_runs()
  sources = open_sources(config)
  if config.normalization == 'per_pixel':
    mean, std = stats.per_pixel_mean(sources, config), np.ones(3, np.float32)
  else:
    mean, std = MEAN_RGB.reshape(1, 1, 3), STDDEV_RGB
  return StreamedData(config, sources, mean, std)


def normalize_on_device(images: jax.Array, color_shift: jax.Array | None, mean: jax.Array,
                        std: jax.Array) -> jax.Array:
  """float32 (images + color_shift - mean) / std of uint8 images [..., h, w, 3] (pure jax).

  color_shift is [batch, 3] (train) or None (eval). A per-pixel mean whose size is not the
  images' (multi-scale views) is resized to them: the mean image is smooth, and this keeps
  each region's mean where training saw it.
  """
  images = images.astype(jnp.float32)
  if color_shift is not None:
    images = images + color_shift.reshape(color_shift.shape[:1] + (1,) * (images.ndim - 2)
                                          + (3,))
  mean = jnp.asarray(mean, jnp.float32)
  if mean.shape[0] > 1 and mean.shape[:2] != images.shape[-3:-1]:
    mean = jax.image.resize(mean, images.shape[-3:-1] + (3,), 'linear')
  return (images - mean) / jnp.asarray(std, jnp.float32)


def per_host_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  """The examples each of `process_count` hosts loads per step."""
  global_batch_size = positive_int(global_batch_size, 'The global batch size')
  process_count = positive_int(process_count, 'process_count')
  if not 0 <= process_index < process_count:
    raise DataError(f'process_index must be in [0, {process_count}), got {process_index}.')
  if global_batch_size % process_count:
    raise DataError(f'The global batch size {global_batch_size} does not split evenly over '
                    f'{process_count} hosts; use a multiple of {process_count}.')
  return global_batch_size // process_count


def _checked(data_config) -> ml_collections.ConfigDict:
  config = with_defaults(data_config, default_imagenet_data_config(), 'ImageNet data config')
  if config.source not in SOURCES:
    raise DataError(f'The streamed ImageNet input reads data.source {list(SOURCES)}, got '
                    f'{config.source!r}; for a small class-folder tree or archive use '
                    f'load_dataset.')
  crop = positive_int(config.crop_size, 'data.crop_size')
  resize_range = tuple(config.train_resize_range)
  if len(resize_range) != 2 or not crop <= resize_range[0] <= resize_range[1]:
    raise DataError(f'data.train_resize_range must be (low, high) with crop_size {crop} <= low '
                    f'<= high, got {resize_range}; the paper uses (256, 480).')
  if positive_int(config.eval_resize_size, 'data.eval_resize_size') < crop:
    raise DataError(f'data.eval_resize_size {config.eval_resize_size} is smaller than the '
                    f'crop_size {crop}; the paper resizes to 256 before a 224 crop.')
  for scale in config.eval_scales:
    positive_int(scale, 'Each of data.eval_scales')
  if config.normalization not in NORMALIZATIONS:
    raise DataError(f'data.normalization must be one of {list(NORMALIZATIONS)}, got '
                    f"{config.normalization!r}; 'per_pixel' is the paper's (3.4).")
  if isinstance(config.color_augmentation, bool) or not isinstance(
      config.color_augmentation, (int, float)) or config.color_augmentation < 0:
    raise DataError(f'data.color_augmentation must be a PCA lighting std >= 0 (0.1 in '
                    f'Krizhevsky et al.; 0: off), got {config.color_augmentation!r}.')
  if config.mean_sample_size:
    positive_int(config.mean_sample_size, 'data.mean_sample_size')
  if config.num_workers is None:
    config.num_workers = default_num_workers()
  elif config.num_workers:
    positive_int(config.num_workers, 'data.num_workers')
  return config
