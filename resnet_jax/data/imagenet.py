"""Per-host streaming ImageNet input with the augmentation of Section 3.4: tf.data over TFDS
`imagenet2012`, or a numpy generator of synthetic batches with the same structure that needs
no TensorFlow.

Train: the shorter side is resized to a random size in [256, 480], then a random 224x224
crop, a random horizontal flip and per-channel mean/std normalization. Deviations from 3.4:
the paper subtracts the per-pixel mean and adds the standard color augmentation of
Krizhevsky et al. (2012); we normalize per channel and omit color augmentation.
Eval: the shorter side is resized to 256, then the center 224x224 crop (a single crop,
not the paper's 10-crop or multi-scale testing).

Batches are dicts of numpy arrays: 'images' float32 [per_host_batch, 224, 224, 3] and
'labels' int32 [per_host_batch]; eval batches add 'mask', bool, False for the padding that
fills the last batches, so no eval image is dropped and every host yields as many batches.
"""
import functools
import math
from collections.abc import Iterator

import ml_collections
import numpy as np

from resnet_jax.data.config import positive_int, with_defaults
from resnet_jax.data.errors import DataError
from resnet_jax.data.synthetic import class_colors, synthetic_images
from resnet_jax.data.tf_import import import_tensorflow

# The usual ImageNet RGB statistics, on the 0-255 scale.
MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32) * 255
STDDEV_RGB = np.array([0.229, 0.224, 0.225], np.float32) * 255
SOURCES = ('tfds', 'synthetic')
# Tags that keep the synthetic random streams apart.
_TRAIN_STREAM, _EVAL_LABEL_STREAM, _EVAL_IMAGE_STREAM = 1, 2, 3

Batch = dict[str, np.ndarray]


def default_imagenet_data_config() -> ml_collections.ConfigDict:
  """Every key the ImageNet iterators read, with its default."""
  return ml_collections.ConfigDict(dict(
      source='tfds',  # 'tfds' or 'synthetic'.
      name='imagenet2012',  # TFDS data set; needs the manual download TFDS documents.
      data_dir=None,  # TFDS data_dir.
      crop_size=224,  # "224x224 crop" (3.4).
      train_resize_range=(256, 480),  # Shorter side "randomly sampled in [256, 480]" (3.4).
      eval_resize_size=256,  # Shorter side before the center crop.
      shuffle_buffer_size=16_384,
      synthetic=ml_collections.ConfigDict(dict(num_eval=1000, num_classes=1000, seed=0)),
  ))


def imagenet_train_iterator(config, global_batch_size: int, process_index: int,
                            process_count: int, seed: int) -> Iterator[Batch]:
  """Endless augmented train batches of this host's share of the train split.

  Each host reads its own slice of the data and yields global_batch_size / process_count
  examples a batch; the order and augmentation are fixed by (seed, process_index).
  """
  config = _checked(config)
  per_host_batch = per_host_batch_size(global_batch_size, process_index, process_count)
  if config.source == 'synthetic':
    return _synthetic_train(config, per_host_batch, process_index, seed)
  return _tfds_train(config, per_host_batch, process_index, process_count, seed)


def imagenet_eval_iterator(config, global_batch_size: int, process_index: int,
                           process_count: int) -> Iterator[Batch]:
  """One pass of this host's share of the validation split, center-cropped, padded with
  masked examples into eval_batches_per_host(...) full batches."""
  config = _checked(config)
  per_host_batch = per_host_batch_size(global_batch_size, process_index, process_count)
  if config.source == 'synthetic':
    return _synthetic_eval(config, per_host_batch, process_index, process_count)
  return _tfds_eval(config, per_host_batch, process_index, process_count)


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


def eval_batches_per_host(num_examples: int, per_host_batch: int, process_count: int) -> int:
  """Batches every host yields for `num_examples` eval examples: enough for the largest
  host share (hosts' shares differ by at most one)."""
  return max(1, math.ceil(math.ceil(num_examples / process_count) / per_host_batch))


def normalize(images):
  """Per-channel mean/std normalization of RGB images on the 0-255 scale (numpy or tf)."""
  return (images - MEAN_RGB) / STDDEV_RGB


def _checked(config) -> ml_collections.ConfigDict:
  config = with_defaults(config, default_imagenet_data_config(), 'ImageNet data config')
  if config.source not in SOURCES:
    raise DataError(f'The ImageNet input streams data.source {list(SOURCES)}, got '
                    f'{config.source!r}; for a class-folder tree or archive use load_dataset.')
  crop = positive_int(config.crop_size, 'data.crop_size')
  resize_range = tuple(config.train_resize_range)
  if len(resize_range) != 2 or not crop <= resize_range[0] <= resize_range[1]:
    raise DataError(f'data.train_resize_range must be (low, high) with crop_size {crop} <= low '
                    f'<= high, got {resize_range}; the paper uses (256, 480).')
  if config.eval_resize_size < crop:
    raise DataError(f'data.eval_resize_size {config.eval_resize_size} is smaller than the '
                    f'crop_size {crop}; the paper resizes to 256 before a 224 crop.')
  return config


def _synthetic_train(config, per_host_batch: int, process_index: int,
                     seed: int) -> Iterator[Batch]:
  num_classes = positive_int(config.synthetic.num_classes, 'data.synthetic.num_classes')
  colors = class_colors(num_classes, config.synthetic.seed)
  rng = np.random.default_rng([seed, _TRAIN_STREAM, process_index])
  while True:
    labels = rng.integers(0, num_classes, per_host_batch, dtype=np.int32)
    images = synthetic_images(rng, labels, config.crop_size, config.crop_size, colors)
    yield {'images': normalize(images.astype(np.float32)), 'labels': labels}


def _synthetic_eval(config, per_host_batch: int, process_index: int,
                    process_count: int) -> Iterator[Batch]:
  settings = config.synthetic
  num_classes = positive_int(settings.num_classes, 'data.synthetic.num_classes')
  num_examples = positive_int(settings.num_eval, 'data.synthetic.num_eval')
  colors = class_colors(num_classes, settings.seed)
  all_labels = np.random.default_rng([settings.seed, _EVAL_LABEL_STREAM]).integers(
      0, num_classes, num_examples, dtype=np.int32)
  host_start = num_examples * process_index // process_count
  host_stop = num_examples * (process_index + 1) // process_count
  crop = config.crop_size
  for batch in range(eval_batches_per_host(num_examples, per_host_batch, process_count)):
    start = min(host_start + batch * per_host_batch, host_stop)
    stop = min(start + per_host_batch, host_stop)
    images = np.zeros((per_host_batch, crop, crop, 3), np.float32)
    labels = np.zeros(per_host_batch, np.int32)
    for row, index in enumerate(range(start, stop)):
      # Seeded by index, so an example is the same however the hosts split the set.
      rng = np.random.default_rng([settings.seed, _EVAL_IMAGE_STREAM, index])
      image = synthetic_images(rng, all_labels[index:index + 1], crop, crop, colors)
      images[row] = normalize(image[0].astype(np.float32))
      labels[row] = all_labels[index]
    yield {'images': images, 'labels': labels, 'mask': np.arange(per_host_batch) < stop - start}


def _tfds_train(config, per_host_batch: int, process_index: int, process_count: int,
                seed: int) -> Iterator[Batch]:
  tf, tfds = import_tensorflow()
  builder = tfds.builder(config.name, data_dir=config.data_dir)
  if _num_examples(builder, 'train') < process_count:
    raise DataError(f'The train split of {config.name} has fewer examples than the '
                    f'{process_count} hosts; every host needs at least one.')
  host_seed = int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])
  examples = builder.as_dataset(
      split=tfds.split_for_jax_process('train', process_index=process_index,
                                       process_count=process_count),
      shuffle_files=True, decoders={'image': tfds.decode.SkipDecoding()},
      read_config=tfds.ReadConfig(shuffle_seed=host_seed))
  examples = examples.repeat().shuffle(config.shuffle_buffer_size, seed=host_seed)
  augment_seeds = tf.data.Dataset.random(seed=host_seed).batch(2)
  dataset = tf.data.Dataset.zip((examples, augment_seeds)).map(
      functools.partial(_train_example, tf, config), num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(per_host_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return iter(tfds.as_numpy(dataset))


def _tfds_eval(config, per_host_batch: int, process_index: int,
               process_count: int) -> Iterator[Batch]:
  tf, tfds = import_tensorflow()
  builder = tfds.builder(config.name, data_dir=config.data_dir)
  num_batches = eval_batches_per_host(_num_examples(builder, 'validation'), per_host_batch,
                                      process_count)
  examples = builder.as_dataset(
      split=tfds.split_for_jax_process('validation', process_index=process_index,
                                       process_count=process_count),
      shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()})
  crop = config.crop_size
  padding = tf.data.Dataset.from_tensors({
      'images': tf.zeros([crop, crop, 3]), 'labels': tf.constant(0, tf.int32),
      'mask': tf.constant(False)}).repeat()
  dataset = examples.map(functools.partial(_eval_example, tf, config),
                         num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.concatenate(padding).take(num_batches * per_host_batch)
  return iter(tfds.as_numpy(dataset.batch(per_host_batch).prefetch(tf.data.AUTOTUNE)))


def _num_examples(builder, split: str) -> int:
  try:
    return builder.info.splits[split].num_examples
  except KeyError:
    raise DataError(
        f"TFDS {builder.name} has no prepared '{split}' split under {builder.data_dir}. "
        f'ImageNet needs a manual download: put ILSVRC2012_img_train.tar and '
        f'ILSVRC2012_img_val.tar in <data_dir>/downloads/manual/ and run `tfds build '
        f'{builder.name} --data_dir=<data_dir>` (see '
        f'https://www.tensorflow.org/datasets/catalog/imagenet2012).') from None


def _train_example(tf, config, example, seed) -> dict:
  scale_seed, crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
  image = _decode(tf, example['image'])
  height_width = tf.shape(image)[:2]
  low, high = config.train_resize_range
  # Scale augmentation: shorter side uniform in [256, 480], then a random 224 crop (3.4).
  shorter_side = tf.random.stateless_uniform([], scale_seed, low, high + 1, dtype=tf.int32)
  window = _window_size(tf, height_width, shorter_side, config.crop_size)
  slack = tf.cast(height_width - window + 1, tf.float32)
  offset = tf.cast(tf.random.stateless_uniform([2], crop_seed) * slack, tf.int32)
  image = _resized_window(tf, image, offset, window, config.crop_size)
  image = tf.image.stateless_random_flip_left_right(image, flip_seed)  # Flip (3.4).
  return {'images': normalize(image), 'labels': tf.cast(example['label'], tf.int32)}


def _eval_example(tf, config, example) -> dict:
  image = _decode(tf, example['image'])
  height_width = tf.shape(image)[:2]
  window = _window_size(tf, height_width, config.eval_resize_size, config.crop_size)
  image = _resized_window(tf, image, (height_width - window) // 2, window, config.crop_size)
  return {'images': normalize(image), 'labels': tf.cast(example['label'], tf.int32),
          'mask': tf.constant(True)}


def _decode(tf, image_bytes):
  return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def _window_size(tf, height_width, shorter_side, crop: int):
  """The side of the square of the original image that becomes the crop x crop crop once the
  image is resized to `shorter_side`."""
  shorter = tf.cast(tf.reduce_min(height_width), tf.float32)
  window = tf.cast(tf.round(crop * shorter / tf.cast(shorter_side, tf.float32)), tf.int32)
  return tf.clip_by_value(window, 1, tf.reduce_min(height_width))


def _resized_window(tf, image, offset, window, crop: int):
  # Cropping the window first and resizing only it gives the crop of the resized image (up to
  # interpolation at the window's edges) at a fraction of the cost for 480-pixel scales.
  image = tf.image.crop_to_bounding_box(image, offset[0], offset[1], window, window)
  return tf.image.resize(image, [crop, crop], antialias=True)
