"""grain pipelines of the streamed ImageNet input: the endless, resumable train batches of one
host and one pass of eval batches, decoded and augmented in worker processes.

Why grain: its MapDataset is random access, so a batch is a pure function of (seed, step)
that any host can compute for any row. That gives per-host sharding that is bit for bit the
1-process batch, a fresh permutation each epoch without a shuffle buffer, and an iterator
state that is one integer, the next batch's index, which restores the stream exactly with
any number of workers. Its worker processes are spawned (safe beside JAX's threads) and pass
batches back through shared memory. Against the alternatives: tf.data needs TensorFlow, and
its shuffle buffer neither checkpoints cheaply nor splits one global batch's rows over hosts
exactly; torch's DataLoader pulls in torch and has no iterator state; DALI's fast path needs
a GPU and gives no such determinism across host counts; a hand-written process pool would
redo grain's worker management and shared memory.
"""
import contextlib
import functools
import logging
import weakref
from collections.abc import Iterator

import grain
import numpy as np
from absl import flags

from resnet_jax.data.errors import DataError
from resnet_jax.data.imagenet import workers
from resnet_jax.data.imagenet.augment import train_view
from resnet_jax.data.imagenet.decode import UnreadableImage
from resnet_jax.data.imagenet.sources import Split
from resnet_jax.data.imagenet.views import PADDING, eval_view

# Threads per process: Pillow releases the GIL while it decodes and resizes, so threads
# overlap file reads and decoding even within one worker process.
READ_THREADS = 4

_log = logging.getLogger(__name__)


class ProcessRows(grain.MapDataset):
  """This process's rows of each global batch of `parent`: its element i is the parent's
  element at position (i // b) * global_batch_size + process_index * b + i % b."""

  def __init__(self, parent: grain.MapDataset, global_batch_size: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    self._global_batch_size = global_batch_size
    self._per_host = global_batch_size // process_count
    self._offset = process_index * self._per_host

  def __len__(self) -> int:
    return len(self._parent) // self._global_batch_size * self._per_host

  def __str__(self) -> str:
    return f'ProcessRows(offset={self._offset}, per_host={self._per_host})'

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    step, row = divmod(index, self._per_host)
    return self._parent[step * self._global_batch_size + self._offset + row]


def train_batches(split: Split, seed: int, global_batch_size: int, process_index: int,
                  process_count: int, num_workers: int, crop: int,
                  resize_range: tuple[int, int], lighting_std: float,
                  skip_unreadable: bool) -> 'ResumableBatches':
  """Endless batches of this host's rows of each global batch of augmented train examples.

  Global position g of the stream is example permutation_e[g mod N] of epoch e = g // N
  (grain's index shuffle, seeded from (seed, epoch)), augmented with a Generator keyed by
  (seed, g): the same example and augmentation whichever host computes it.
  """
  shuffle_seed, augment_seed = np.random.SeedSequence(seed).generate_state(2)
  examples = (grain.MapDataset.range(len(split)).shuffle(seed=int(shuffle_seed)).repeat()
              .random_map(functools.partial(train_example, split, crop, resize_range,
                                            lighting_std, skip_unreadable),
                          seed=int(augment_seed)))
  rows = ProcessRows(examples, global_batch_size, process_index, process_count)
  return ResumableBatches(rows.batch(global_batch_size // process_count), num_workers)


def eval_batches(split: Split, rows: np.ndarray, per_host_batch: int, num_workers: int,
                 mode: str, resize_size: int,
                 skip_unreadable: bool) -> Iterator[dict[str, np.ndarray]]:
  """One pass of eval batches of `rows` (views.eval_rows), in order."""
  examples = grain.MapDataset.source(rows).map(
      functools.partial(_eval_example, split, mode, resize_size, skip_unreadable))
  return closing_when_done(prefetched(examples.batch(per_host_batch), num_workers))


def closing_when_done(iterator) -> Iterator[dict[str, np.ndarray]]:
  """The items of `iterator`, which is closed (its workers stopped) once they run out."""
  with contextlib.closing(iterator):
    yield from iterator


def prefetched(batches: grain.MapDataset, num_workers: int) -> Iterator[dict[str, np.ndarray]]:
  """An iterator of `batches`, computed ahead by `num_workers` processes (0: this one) with
  READ_THREADS threads each; close() stops them. The workers ignore the stop signals sent to
  the process group and free their shared memory; what the run leaves in /dev/shm if it is
  killed carries its name, for the next run to free (workers.py)."""
  if num_workers and not flags.FLAGS.is_parsed():
    # grain reads its absl flags when it starts workers, and fails unless they were parsed
    # (absl.app does that; a notebook or pytest does not): take their defaults.
    flags.FLAGS.mark_as_parsed()
  batches = batches.to_iter_dataset(
      grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=READ_THREADS))
  if not num_workers:
    return iter(batches)
  workers.name_semaphores_after_this_run()
  workers.leave_segments_untracked()
  tag = workers.iterator_tag()
  init = functools.partial(workers.worker_init, tag)
  with workers.stop_signals_held(defer_handlers=True):
    return _WorkerIterator(iter(batches.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers), worker_init_fn=init)), tag)


class _WorkerIterator:
  """A grain iterator fed by worker processes, whose every call holds the stop signals: grain
  starts a worker from threads it starts in such calls, which inherit the held mask
  (workers.py). Until the first batch has come, and so the workers have started, a stop
  signal's handler waits for the call to end; later it runs at once, so that Ctrl-C still
  stops a run whose workers hang."""

  def __init__(self, iterator: grain.DatasetIterator, tag: str | None):
    self._iterator, self._tag = iterator, tag
    self._started = False

  def __iter__(self) -> '_WorkerIterator':
    return self

  def __next__(self):
    with workers.stop_signals_held(defer_handlers=not self._started):
      batch = next(self._iterator)
    self._started = True
    return batch

  def close(self) -> None:
    self._iterator.close()  # Stops the workers.
    workers.free_segments(self._tag)


class ResumableBatches:
  """An iterator of `batches` (random access) whose state is the index of the next batch:
  JSON, and valid whatever the number of workers of the run that restores it. Workers start
  at the first next(), so a restore right after creation starts them once."""

  def __init__(self, batches: grain.MapDataset, num_workers: int):
    self._batches, self._num_workers = batches, num_workers
    self._next_batch, self._running = 0, []  # _running: [the grain iterator], once started.

  def __iter__(self) -> 'ResumableBatches':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if not self._running:
      self._running.append(prefetched(self._batches[self._next_batch:], self._num_workers))
      # Closed and released at exit at the latest: grain's own cleanup, run when its iterator
      # is collected, fails once Python has begun tearing down its modules.
      weakref.finalize(self, _close_all, self._running)
    batch = next(self._running[0])
    self._next_batch += 1
    return batch

  def get_state(self) -> dict[str, int]:
    return {'next_batch': self._next_batch}

  def set_state(self, state: dict[str, int]) -> None:
    self.close()
    self._next_batch = int(state['next_batch'])

  def close(self) -> None:
    """Stops the worker processes, if any."""
    _close_all(self._running)


def _close_all(iterators: list) -> None:
  while iterators:
    iterators.pop().close()


def readable(split: Split, index: int, skip_unreadable: bool, read):
  """(read(name, image), label, stand_in): `read` of example `index`, or, if it is unreadable
  and skip_unreadable, of the next readable example in index order (stand_in True)."""
  for attempt in range(len(split)):
    name, image, label = split[(index + attempt) % len(split)]
    try:
      return read(name, image), label, attempt > 0
    except UnreadableImage as error:
      if not skip_unreadable:
        raise
      _log.warning('Skipping an unreadable image (data.skip_unreadable): %s', error.problem)
  raise DataError(f'None of the {len(split)} images of the split is readable.')


def train_example(split: Split, crop: int, resize_range: tuple[int, int], lighting_std: float,
                  skip_unreadable: bool, index: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
  """The augmented example `index` of `split`, a row of a train batch."""
  (image, shift), label, stand_in = readable(
      split, index, skip_unreadable,
      lambda name, image: train_view(image, name, rng, crop, resize_range, lighting_std))
  return {'images': np.ascontiguousarray(image), 'labels': np.int32(label),
          'color_shift': shift.astype(np.float32), 'unreadable': np.int32(stand_in)}


def _eval_example(split: Split, mode: str, resize_size: int, skip_unreadable: bool,
                  row: np.ndarray) -> dict[str, np.ndarray]:
  index, height, width = (int(value) for value in row)
  views = 10 if mode == '10crop' else 1
  blank = {'images': np.zeros((views, height, width, 3), np.uint8), 'labels': np.int32(0),
           'mask': np.False_, 'index': np.int32(PADDING)}
  if index == PADDING:
    return blank
  try:
    name, image, label = split[index]
    images = eval_view(mode, image, name, (height, width), resize_size)
  except UnreadableImage as error:
    if not skip_unreadable:
      raise
    # Not replaced: an eval image is either scored as itself or left out.
    _log.warning('Leaving an unreadable image out of the evaluation: %s', error)
    return blank | {'index': np.int32(index)}
  return {'images': images, 'labels': np.int32(label), 'mask': np.True_,
          'index': np.int32(index)}

