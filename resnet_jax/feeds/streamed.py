"""The streamed input of the ImageNet nets: each process loads its share of every global
batch on the host (data/imagenet/), the batch is assembled on the mesh, and normalized
and color-shifted on the device. The iterator's position goes into every checkpoint, so a
resumed run reads exactly the batches an uninterrupted one reads."""
import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from resnet_jax import sharding
from resnet_jax.data import imagenet

_TRAIN_KEYS = ('images', 'labels', 'color_shift')
_UNREADABLE = 'unreadable_files'  # Its key in the data state.


class StreamFeed:
  """The trainer's input for streamed data sets (feeds.Feed)."""
  streamed = True

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.source = imagenet.open_streamed(config.data)
    self.seed, self.batch_size = config.seed, config.batch_size
    self.steps_per_dispatch = config.steps_per_dispatch
    self.num_classes = self.source.num_classes
    self.image_shape = tuple(self.source.image_shape)
    self.eval_split = self.source.eval_split
    self.origin = self.source.origin
    # [steps_per_dispatch, batch, ...]: each step's batch split over the data axis.
    self.shardings = {key: NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS))
                      for key in _TRAIN_KEYS}
    self.mean = sharding.put_replicated(mesh, np.asarray(self.source.mean, np.float32))
    self.std = sharding.put_replicated(mesh, np.asarray(self.source.std, np.float32))
    self._iterator = None
    self._unreadable = 0

  @property
  def iterator(self):
    """This process's train iterator, started on first use (evaluation never starts it)."""
    if self._iterator is None:
      self._iterator = self.source.train_iterator(self.seed, self.batch_size,
                                                  jax.process_index(), jax.process_count())
    return self._iterator

  def train_inputs(self) -> dict:
    batches = [next(self.iterator) for _ in range(self.steps_per_dispatch)]
    self._unreadable += sum(int(np.sum(batch['unreadable'])) for batch in batches)
    # Each process holds its rows of every global batch: jax infers the global shape.
    return {key: jax.make_array_from_process_local_data(
                self.shardings[key], np.stack([batch[key] for batch in batches]))
            for key in _TRAIN_KEYS}

  def train_batch(self, data_keys, inputs: dict, step, index):
    del data_keys, step  # The host drew the order and the augmentation.
    batch = {key: inputs[key][index] for key in _TRAIN_KEYS}
    images = imagenet.normalize_on_device(batch['images'], batch['color_shift'], self.mean,
                                          self.std)
    return images, batch['labels']

  def data_state(self):
    # The unreadable files not logged yet, so that a resumed run logs what this one would.
    return {**self.iterator.get_state(), _UNREADABLE: self._unreadable}

  def restore_data_state(self, state) -> None:
    self._unreadable = int(state.get(_UNREADABLE, 0))
    self.iterator.set_state(state)

  def log_extras(self) -> dict:
    """Unreadable files skipped (data.skip_unreadable) on this host since the last log."""
    count, self._unreadable = self._unreadable, 0
    return {'unreadable_files': float(count)}
