"""What the streamed input computes once per data set and caches under data.cache_dir (never in
the data directory): the per-pixel mean image of the train split, and the eval images' sizes
that multi-scale batching needs."""
import functools
import hashlib
import logging
from pathlib import Path

import grain
import numpy as np

from resnet_jax.data import cache
from resnet_jax.data.imagenet.decode import UnreadableImage, image_size
from resnet_jax.data.imagenet.pipeline import closing_when_done, prefetched
from resnet_jax.data.imagenet.sources import Sources, Split
from resnet_jax.data.imagenet.views import eval_view

MEAN_SAMPLE_SEED = 0  # The same sample of train images for every run on a data set.
_BATCH = 64

_log = logging.getLogger(__name__)


def per_pixel_mean(sources: Sources, config) -> np.ndarray:
  """float32 [crop, crop, 3], 0-255 scale: the mean of the center crops of the train images
  resized to shorter side eval_resize_size, over all of them or data.mean_sample_size."""
  split, sample = sources.train, config.mean_sample_size
  key = (f'mean-{sources.cache_key}-{config.crop_size}-{config.eval_resize_size}-{sample}-'
         f'{config.skip_unreadable}')

  def compute():
    indices = np.arange(len(split))
    if 0 < sample < len(split):
      indices = np.sort(np.random.default_rng(MEAN_SAMPLE_SEED).choice(
          len(split), sample, replace=False))
    _log.info('Computing the per-pixel mean of %d train images once, into %s.', len(indices),
              config.cache_dir)
    views = grain.MapDataset.source(indices).map(functools.partial(
        _center_view, split, config.crop_size, config.eval_resize_size, config.skip_unreadable))
    total, count = np.zeros((config.crop_size,) * 2 + (3,)), 0
    for batch in closing_when_done(prefetched(views.batch(_BATCH), config.num_workers)):
      total += batch['image'].sum(0, dtype=np.float64)
      count += int(batch['count'].sum())
    return (total / count).astype(np.float32)

  return _cached(config.cache_dir, key, compute)


def eval_image_sizes(sources: Sources, config) -> np.ndarray:
  """int64 [num_eval, 2]: (width, height) of every eval image, read from its header."""
  split = sources.validation

  def compute():
    sizes = grain.MapDataset.range(len(split)).map(
        functools.partial(_size, split, config.skip_unreadable))
    batches = closing_when_done(prefetched(sizes.batch(_BATCH), config.num_workers))
    return np.concatenate(list(batches))

  return _cached(config.cache_dir, f'sizes-{sources.cache_key}', compute)


def _cached(cache_dir: str, key: str, compute) -> np.ndarray:
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  path = Path(cache_dir).expanduser() / f'{key.split("-")[0]}-{digest}.npz'
  arrays = cache.read(path, key, ('value',))
  if arrays is not None:
    return arrays['value']
  value = compute()
  cache.write(path, key, {'value': value})
  return value


def _center_view(split: Split, crop: int, resize_size: int, skip_unreadable: bool,
                 index: int) -> dict[str, np.ndarray]:
  try:
    name, image, _ = split[index]
    return {'image': eval_view('center', image, name, (crop, crop), resize_size)[0],
            'count': np.int32(1)}
  except UnreadableImage:
    if not skip_unreadable:
      raise
    return {'image': np.zeros((crop, crop, 3), np.uint8), 'count': np.int32(0)}


def _size(split: Split, skip_unreadable: bool, index: int) -> np.ndarray:
  try:
    name, image, _ = split[index]
    return np.array(image_size(image, name))
  except UnreadableImage:
    if not skip_unreadable:
      raise
    return np.ones(2, np.int64)  # Left out of the evaluation anyway.
