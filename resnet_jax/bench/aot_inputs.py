"""The trainer's two inputs (feeds/) as shapes alone, for compiling ahead of time: the arrays a
run's programs read, as `jax.ShapeDtypeStruct`s with the shardings the real feeds give them,
and the real feeds' own `train_batch`. Nothing is read and nothing is placed on a device."""
import jax
import ml_collections
import numpy as np

from resnet_jax import models, sharding
from resnet_jax.bench.train_step import CIFAR_TEST_IMAGES, CIFAR_TRAIN_IMAGES
from resnet_jax.data import imagenet
from resnet_jax.data.origin import DataOrigin
from resnet_jax.data.synthetic import image_height_width
from resnet_jax.errors import ConfigError
from resnet_jax.feeds import on_device, streamed

IMAGENET_CLASSES, IMAGENET_VAL_IMAGES = 1000, 50_000  # ILSVRC 2012 (TFDS imagenet2012).
CIFAR_SHAPE = (32, 32, 3)
ORIGIN = DataOrigin('shapes only (compiled ahead of time)')


def open_feed(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """The shapes-only feed of `config.model` (train.build's `open_feed`)."""
  if models.parse(config.model).dataset == 'imagenet':
    return ShapedStreamFeed(config, mesh)
  return ShapedOnDeviceFeed(config, mesh)


def cifar_sizes(data: ml_collections.ConfigDict) -> tuple[int, int, tuple, int, str]:
  """(train images, eval images, image shape, classes, eval split) of a CIFAR data config,
  after its validation hold-out and train fraction, without reading it."""
  if data.source == 'synthetic':
    synthetic = data.synthetic
    num_train, num_eval = synthetic.num_train, synthetic.num_eval
    shape = image_height_width(synthetic.image_size) + (3,)
    classes = synthetic.num_classes
  elif data.name == 'cifar10':
    num_train, num_eval, shape, classes = CIFAR_TRAIN_IMAGES, CIFAR_TEST_IMAGES, CIFAR_SHAPE, 10
  else:
    raise ConfigError(f'Compiling ahead of time knows the shapes of cifar10, not of '
                      f'data.name={data.name!r}; describe it with --config.data.source=synthetic '
                      'and data.synthetic.num_train/num_eval/image_size/num_classes.')
  split = 'test'
  if data.validation_size:
    num_train, num_eval = num_train - data.validation_size, data.validation_size
    split = 'validation'
  return round(num_train * data.train_fraction), num_eval, shape, classes, split


def _shaped(mesh, shape, dtype, spec=None) -> jax.ShapeDtypeStruct:
  placement = sharding.replicated(mesh) if spec is None else jax.sharding.NamedSharding(mesh, spec)
  return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=placement)


class ShapedOnDeviceFeed(on_device.OnDeviceFeed):
  """OnDeviceFeed with its on-device data set as shapes: the data config's sizes."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    num_train, num_eval, shape, classes, split = cifar_sizes(config.data)
    batches = -(-num_eval // config.eval_batch_size)
    eval_rows = (batches, config.eval_batch_size)
    self.data = on_device.DeviceData(
        train_images=_shaped(mesh, (num_train,) + shape, np.uint8),
        train_labels=_shaped(mesh, (num_train,), np.int32),
        mean=_shaped(mesh, shape, np.float32),
        eval_images=_shaped(mesh, eval_rows + shape, np.uint8),
        eval_labels=_shaped(mesh, eval_rows, np.int32),
        eval_mask=_shaped(mesh, eval_rows, np.bool_))
    self.shardings = jax.tree.map(lambda _: sharding.replicated(mesh), self.data)
    self.batch_size, self.augment = config.batch_size, config.data.augment
    self.num_classes, self.image_shape, self.eval_split = classes, shape, split
    self.origin = ORIGIN

  def train_inputs(self) -> on_device.DeviceData:
    return self.data


class _ShapedSource:
  """What the trainer and evaluate read of a StreamedData, from the data config alone."""

  def __init__(self, data: ml_collections.ConfigDict):
    synthetic = data.source == 'synthetic'
    self.num_classes = data.synthetic.num_classes if synthetic else IMAGENET_CLASSES
    self.num_eval = data.synthetic.num_eval if synthetic else IMAGENET_VAL_IMAGES
    self.image_shape = (data.crop_size, data.crop_size, 3)
    if data.normalization == 'per_pixel':  # Its values come from the data; its shape does not.
      self.mean, self.std = np.zeros(self.image_shape, np.float32), np.ones(3, np.float32)
    else:
      self.mean, self.std = imagenet.MEAN_RGB.reshape(1, 1, 3), imagenet.STDDEV_RGB
    self.eval_split, self.origin = imagenet.EVAL, ORIGIN


class ShapedStreamFeed(streamed.StreamFeed):
  """StreamFeed whose dispatch inputs are shapes: [steps_per_dispatch, batch, ...] arrays with
  the real feed's shardings; its normalization constants are numpy arrays."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.source = _ShapedSource(config.data)
    self.steps_per_dispatch, self.batch_size = config.steps_per_dispatch, config.batch_size
    self.num_classes, self.image_shape = self.source.num_classes, self.source.image_shape
    self.eval_split, self.origin = self.source.eval_split, ORIGIN
    self.mean, self.std = self.source.mean, self.source.std
    spec = jax.sharding.PartitionSpec(None, sharding.DATA_AXIS)
    rows = (self.steps_per_dispatch, self.batch_size)
    self._inputs = {'images': _shaped(mesh, rows + self.image_shape, np.uint8, spec),
                    'labels': _shaped(mesh, rows, np.int32, spec),
                    'color_shift': _shaped(mesh, rows + (3,), np.float32, spec)}
    self.shardings = {key: value.sharding for key, value in self._inputs.items()}

  def train_inputs(self) -> dict:
    return self._inputs

