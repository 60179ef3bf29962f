"""Data benchmark: images/s of the folder/archive decoder, cold (decoding and writing the
cache) with one process and with the default pool, and of loading from the cache; with
--imagenet, of the streamed ImageNet input instead.

  python -m resnet_jax.bench.data [--path ARCHIVE_OR_FOLDER] [--limit N] [--workers 1,2]
  python -m resnet_jax.bench.data --imagenet [--limit N] [--workers 1,2]

Without --path it reads ../shared/data/cifar10-jpeg.tar.gz beside the repository, or, where
that is absent, an archive of synthetic JPEGs it generates. With --imagenet it generates an
ILSVRC folder of photo-like 500x375 JPEGs (quality 90) and times the train augmentation in one
thread (CPU time: images/s per core) and through grain with each worker count, and the center
eval view, and compares the draft-mode decoding of large JPEGs with a full decode. Caches and
generated data go to a temporary folder.
"""
import argparse
import dataclasses
import functools
import io
import itertools
import os
import platform
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path, PurePosixPath

import jax
import numpy as np
import PIL
from PIL import Image

from resnet_jax.bench.progress import say
from resnet_jax.data import imagenet
from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.cifar import augment
from resnet_jax.data.cifar.folder import (archive_files, folder_files, load_image_archive,
                                          load_image_folder)
from resnet_jax.data.decode import default_num_workers
from resnet_jax.data.image_tree import select_images
from resnet_jax.data.imagenet import decode, pipeline
from resnet_jax.data.imagenet.augment import resized_size
from resnet_jax.data.imagenet.fake_images import encoded, smooth_image, write_ilsvrc_tree
from resnet_jax.data.synthetic import class_colors, synthetic_images

REAL_ARCHIVE = Path(__file__).resolve().parents[2].parent / 'shared/data/cifar10-jpeg.tar.gz'
GENERATED_IMAGES = 12_000  # Without the real archive or --limit: 10,000 train, 2,000 test.
IMAGENET_IMAGES = 600  # Generated for --imagenet without --limit: 480 train, 120 val.
IMAGENET_SIZE = (500, 375)  # (width, height) of a typical ILSVRC photo.
H100_IMAGES_PER_SECOND = 3000  # ResNet-50 bfloat16 training on one H100, NVIDIA's figure.
IMAGENET_BATCH = 32
TIMED_EPOCHS = 3  # Of the generated train images: long enough to outweigh prefetching.
DRAFT_IMAGES = 20  # Large photo-like JPEGs whose draft-mode decoding is compared.
DRAFT_SIZE, DRAFT_TARGET = (1024, 768), 256  # Draft mode decodes these at 1/2 scale.
# Measured: `python -m resnet_jax.bench data` on the CIFAR-10 archive, 2 busy cores.
DEFAULT_RUN_MINUTES = 3.5


@dataclasses.dataclass(frozen=True)
class Row:
  """One measurement: what was done, to how many images, in how many seconds."""
  step: str
  images: int
  seconds: float

  @property
  def images_per_second(self) -> float:
    return self.images / self.seconds


def main(argv: list[str] | None = None) -> None:
  """Runs the benchmark with command-line flags `argv` and prints its table."""
  args = _parse_flags(argv)
  with tempfile.TemporaryDirectory(prefix='resnet_jax_bench_') as scratch:
    scratch = Path(scratch)
    if args.imagenet:
      rows, per_core = measure_imagenet(args.limit or IMAGENET_IMAGES, args.workers, scratch)
      print(render(rows, f'source: generated ILSVRC folder of {IMAGENET_SIZE[0]}x'
                         f'{IMAGENET_SIZE[1]} JPEGs (quality 90)'))
      print(f'\nCores to feed one H100 training ResNet-50 in bfloat16 ({H100_IMAGES_PER_SECOND:,} '
            f'images/s): {H100_IMAGES_PER_SECOND / per_core:.1f}')
      print('\n' + draft_mode_effect(DRAFT_IMAGES))
      return
    source, description = _source(args.path, args.limit, scratch)
    workers = ','.join(map(str, args.workers))
    say(f'Timing the decoder on {description}, cold with {workers} processes, then the cache '
        f'and the on-device batches ({DEFAULT_RUN_MINUTES} minutes for the CIFAR-10 '
        'archive on 2 cores).')
    rows, splits = measure_decoder(source, args.workers, scratch)
  rows.append(_said(measure_on_device_batches(splits)))
  image_shape = 'x'.join(map(str, splits.train_images.shape[1:]))
  print(render(rows, f'source: {description}, {image_shape} images'))


def measure_decoder(source: Path, worker_counts: list[int],
                    scratch: Path) -> tuple[list[Row], ArraySplits]:
  """Cold loads of `source` (a class-folder tree or archive) with each worker count, each
  into a fresh cache under `scratch`, then a load from the last cache."""
  load = load_image_folder if source.is_dir() else load_image_archive
  rows = []
  for workers in worker_counts:
    cache_dir = scratch / f'cache_{workers}_workers'
    processes = 'this process' if workers == 1 else f'{workers} processes'
    say(f'Decoding {source} cold with {processes}...')
    started = time.perf_counter()
    splits = load(source, cache_dir, num_workers=workers)
    rows.append(_said(Row(f'decode + write cache, cold ({processes})', _count(splits),
                          time.perf_counter() - started)))
  started = time.perf_counter()
  splits = load(source, cache_dir)
  rows.append(_said(Row('load from cache', _count(splits), time.perf_counter() - started)))
  return rows, splits


def _said(row: Row) -> Row:
  say(f'{row.step}: {row.images:,} images in {row.seconds:.1f} s, '
      f'{row.images_per_second:,.0f} images/s')
  return row


def measure_imagenet(num_images: int, worker_counts: list[int],
                     scratch: Path) -> tuple[list[Row], float]:
  """Rows for the streamed ImageNet input on a generated folder, and the train images/s of
  one core (the augmentation in this thread, over CPU time)."""
  root = _generated_ilsvrc_folder(num_images, scratch / 'ilsvrc')
  config = dict(source='folder', path=str(root), cache_dir=str(scratch / 'cache'),
                normalization='per_channel', num_workers=0)
  in_process = imagenet.open_streamed(config)
  split = in_process.sources.train
  transform = functools.partial(pipeline.train_example, split, 224, (256, 480), 0.1,
                                False)
  started = time.process_time()
  for index in range(len(split)):
    transform(index, np.random.default_rng(index))
  one_core = _said(Row('train augmentation, 1 thread (CPU s)', len(split),
                       time.process_time() - started))
  rows = [one_core]
  for workers in sorted({0, *worker_counts}):
    data = imagenet.open_streamed(config | dict(num_workers=workers))
    where = (f'{workers} worker process{"es" * (workers > 1)}' if workers else
             f'in process, {pipeline.READ_THREADS} threads')
    iterator = data.train_iterator(0, IMAGENET_BATCH, 0, 1)
    next(iterator)  # Starts the workers.
    rows.append(_said(_time_batches(f'train batches, {where}', iterator,
                                    TIMED_EPOCHS * len(split))))
  # Batches of 8, so that the few val images keep every thread busy; a few passes.
  passes = itertools.chain.from_iterable(in_process.eval_iterator('center', 8, 0, 1)
                                         for _ in range(TIMED_EPOCHS))
  rows.append(_time_batches(f'eval center view, in process, {pipeline.READ_THREADS} '
                            f'threads', passes, TIMED_EPOCHS * in_process.num_eval))
  return rows, one_core.images_per_second


def draft_mode_effect(num_images: int) -> str:
  """How the decoder's JPEG draft mode (a DCT-domain reduction before the bilinear resize)
  changes the eval view of large JPEGs, against a full decode and Pillow's antialiased
  bilinear resize alone: pixel differences and CPU time per image."""
  differences, seconds = [], {'draft': 0.0, 'full': 0.0}
  for index in range(num_images):
    image = encoded(smooth_image(*DRAFT_SIZE, index, grain=20), quality=90)
    size = resized_size(DRAFT_SIZE, DRAFT_TARGET)
    views = {}
    for name, least_size in (('draft', size), ('full', DRAFT_SIZE)):
      started = time.process_time()
      with decode.opened(image, 'generated') as handle:
        rgb = decode.decoded(handle, 'generated', least_size)
        views[name] = decode.resized_window(rgb, DRAFT_SIZE, (0, 0, *DRAFT_SIZE), size)
      seconds[name] += time.process_time() - started
    differences.append(np.abs(views['draft'].astype(int) - views['full']).ravel())
  difference = np.concatenate(differences)
  return (f'JPEG draft mode, {num_images} generated {DRAFT_SIZE[0]}x{DRAFT_SIZE[1]} photo-like '
          f'JPEGs (quality 90) resized to shorter side {DRAFT_TARGET}, against a full decode:\n'
          f'  |difference| per pixel value (0-255): mean {difference.mean():.2f}, 99th '
          f'percentile {np.percentile(difference, 99):.0f}, max {difference.max()}\n'
          f'  CPU ms per image: draft {1000 * seconds["draft"] / num_images:.1f}, full '
          f'{1000 * seconds["full"] / num_images:.1f}')


def _time_batches(step: str, iterator, num_images: int) -> Row:
  """Times about `num_images` images' worth of batches (padding rows not counted)."""
  count, started = 0, time.perf_counter()
  for batch in iterator:
    count += int(batch['mask'].sum()) if 'mask' in batch else len(batch['labels'])
    if count >= num_images:
      break
  return Row(step, count, time.perf_counter() - started)


def measure_on_device_batches(splits: ArraySplits, batch_size: int = 128,
                              steps: int = 50) -> Row:
  """The trainer's jitted CIFAR batch function (gather, mean, pad-4 crop, flip) on the
  default device, timed after one compiling call; smaller batches for fewer train images."""
  batch_size = min(batch_size, len(splits.train_images))
  images, labels = jax.device_put(splits.train_images), jax.device_put(splits.train_labels)
  mean = jax.device_put(augment.per_pixel_mean(splits.train_images))
  keys = jax.random.split(jax.random.key(0))
  make_batch = jax.jit(lambda step: augment.train_batch(keys[0], keys[1], step, images, labels,
                                                        mean, batch_size))
  jax.block_until_ready(make_batch(0))
  started = time.perf_counter()
  for step in range(1, steps + 1):
    batch = make_batch(step)
  jax.block_until_ready(batch)
  device = jax.devices()[0].device_kind
  return Row(f'on-device batches, batch {batch_size} ({device})', steps * batch_size,
             time.perf_counter() - started)


def render(rows: list[Row], title: str) -> str:
  """The plain-text table of `rows`, under the machine and library versions."""
  width = max(len(row.step) for row in rows)
  lines = [f'{"step":<{width}}  {"images":>8}  {"seconds":>8}  {"images/s":>10}']
  lines += [f'{row.step:<{width}}  {row.images:>8}  {row.seconds:>8.2f}  '
            f'{row.images_per_second:>10,.0f}' for row in rows]
  return '\n'.join([machine_description(), title, '', *lines])


def machine_description() -> str:
  """The CPU, its usable cores, and the Python, numpy and Pillow versions."""
  processor = platform.processor() or platform.machine()
  return (f'machine: {processor}, {len(os.sched_getaffinity(0))} usable of {os.cpu_count()} '
          f'CPUs ({platform.system()}); python {platform.python_version()}, numpy '
          f'{np.__version__}, pillow {PIL.__version__}')


def _parse_flags(argv: list[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='python -m resnet_jax.bench.data',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--path', type=Path, default=None,
                      help=f'class-folder tree or .tar/.tar.gz of one (default: {REAL_ARCHIVE} '
                           f'if present, else generated JPEGs)')
  parser.add_argument('--imagenet', action='store_true',
                      help='time the streamed ImageNet input on generated 500x375 JPEGs')
  parser.add_argument('--limit', type=int, default=None,
                      help='use about this many images, the same share of every class of both '
                           'splits (at least one of each)')
  parser.add_argument('--workers', type=_worker_counts,
                      default=sorted({1, default_num_workers()}),
                      help='comma-separated decoder process counts to time, each cold '
                           '(default: 1 and the default pool size)')
  args = parser.parse_args(argv)
  if args.limit is not None and args.limit < 1:
    parser.error(f'--limit must be a positive number of images, got {args.limit}')
  if args.path is not None and not args.path.exists():
    parser.error(f'--path {args.path} does not exist; give a class-folder tree or an archive')
  return args


def _worker_counts(text: str) -> list[int]:
  try:
    counts = [int(count) for count in text.split(',')]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1:
    raise argparse.ArgumentTypeError(f'expected positive integers like 1,2, got {text!r}')
  return counts


def _source(path: Path | None, limit: int | None, scratch: Path) -> tuple[Path, str]:
  """The folder or archive to decode, and how to describe it."""
  if path is None and not REAL_ARCHIVE.exists():
    return (_generated_archive(limit or GENERATED_IMAGES, scratch / 'generated.tar.gz'),
            f'generated JPEGs ({REAL_ARCHIVE} is absent)')
  path = (path or REAL_ARCHIVE).resolve()
  if limit:
    return _subset_archive(path, limit, scratch / 'subset.tar.gz'), f'a subset of {path}'
  return path, str(path)


def _subset_archive(source: Path, limit: int, destination: Path) -> Path:
  """A .tar.gz of about `limit` images of `source`, the same share of every class folder."""
  files = archive_files(source) if source.is_file() else folder_files(source)
  by_folder = defaultdict(list)
  for name, data in select_images(files, str(source)):
    by_folder[PurePosixPath(name).parent].append((name, data))
  share = limit / sum(map(len, by_folder.values()))
  kept = [image for images in by_folder.values()
          for image in sorted(images)[:max(1, round(len(images) * share))]]
  return _write_archive(kept, destination)


def _generated_archive(num_images: int, destination: Path) -> Path:
  """A .tar.gz of about `num_images` synthetic 32x32 JPEGs (quality 75, like the CIFAR copy)
  in 10 classes: a sixth of them test, and every class in both splits."""
  num_classes = 10
  num_test = max(num_classes, num_images // 6)
  num_train = max(num_classes, num_images - num_test)
  rng = np.random.default_rng(0)
  colors = class_colors(num_classes, seed=0)
  named = []
  for split, count in (('train', num_train), ('test', num_test)):
    labels = np.arange(count, dtype=np.int32) % num_classes
    for index, (image, label) in enumerate(
        zip(synthetic_images(rng, labels, 32, 32, colors), labels)):
      encoded = io.BytesIO()
      Image.fromarray(image).save(encoded, format='JPEG', quality=75)
      named.append((f'{split}/class_{label}/{index:06d}.jpg', encoded.getvalue()))
  return _write_archive(named, destination)


def _generated_ilsvrc_folder(num_images: int, root: Path) -> Path:
  """An ILSVRC folder of about `num_images` photo-like JPEGs (smooth gradients and grain,
  about 90 KB each like ILSVRC's), 10 classes, a fifth of them in val/."""
  per_class = max(2, num_images // 10)
  val = max(1, per_class // 5)
  return write_ilsvrc_tree(root, {'train': per_class - val, 'val': val},
                           classes=[f'n{label:08d}' for label in range(10)],
                           sizes=[IMAGENET_SIZE], odd_files=False, grain=20, quality=90)


def _write_archive(named_files: list[tuple[str, bytes]], destination: Path) -> Path:
  with tarfile.open(destination, 'w:gz') as tar:
    for name, data in named_files:
      member = tarfile.TarInfo(name)
      member.size = len(data)
      tar.addfile(member, io.BytesIO(data))
  return destination


def _count(splits: ArraySplits) -> int:
  return len(splits.train_labels) + len(splits.eval_labels)


if __name__ == '__main__':
  main(sys.argv[1:])
