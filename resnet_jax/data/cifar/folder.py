"""The 'folder' and 'archive' sources: a class-folder tree of JPEG/PNG images, or a .tar/.tar.gz
of one, decoded once with Pillow and cached under cache_dir, never beside the data."""
import contextlib
import dataclasses
import gzip
import logging
import os
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from resnet_jax.data import cache
from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.config import cache_dir_outside, existing_path
from resnet_jax.data.decode import decode_images
from resnet_jax.data.errors import DataError
from resnet_jax.data.image_tree import build_splits, select_images
from resnet_jax.data.origin import DataOrigin

_ARRAYS = ('train_images', 'train_labels', 'eval_images', 'eval_labels', 'class_names')
_FOLDER = 'a folder holding train/<class>/*.jpg and test/<class>/*.jpg'
_ARCHIVE = 'a .tar or .tar.gz of train/<class>/*.jpg and test/<class>/*.jpg'

_log = logging.getLogger(__name__)

NamedFiles = Iterator[tuple[str, Callable[[], bytes]]]


def load_image_folder(path: str | os.PathLike, cache_dir: str | os.PathLike,
                      num_workers: int | None = None) -> ArraySplits:
  """The images under `path`, a class-folder tree, decoded or read from the cache."""
  root = existing_path(path, 'folder', _FOLDER)
  if not root.is_dir():
    raise DataError(f'data.path {root} is a file, not a folder; for a .tar or .tar.gz archive '
                    f"set data.source='archive'.")
  cache_root = cache_dir_outside(cache_dir, root, nested=True)
  return _load_cached(root, cache_root, lambda: folder_files(root), num_workers)


def load_image_archive(path: str | os.PathLike, cache_dir: str | os.PathLike,
                       num_workers: int | None = None) -> ArraySplits:
  """The images of `path`, a tar archive of a class-folder tree (read in one streaming
  pass), decoded or read from the cache."""
  archive = existing_path(path, 'archive', _ARCHIVE)
  if archive.is_dir():
    raise DataError(f"data.path {archive} is a folder; set data.source='folder' to read a "
                    f"folder, or point data.path at {_ARCHIVE}.")
  if not tarfile.is_tarfile(archive) and not _is_gzip(archive):  # A .gz is read to say more.
    raise DataError(f'{archive} is not a tar archive; data.path must be {_ARCHIVE}.')
  cache_root = cache_dir_outside(cache_dir, archive.parent, nested=False)
  return _load_cached(archive, cache_root, lambda: archive_files(archive), num_workers)


def _load_cached(source: Path, cache_root: Path, list_files: Callable[[], NamedFiles],
                 num_workers: int | None) -> ArraySplits:
  # Fingerprinted before decoding: a source changed meanwhile makes this cache stale.
  source_fingerprint = cache.fingerprint(source)
  origin = DataOrigin('folder' if source.is_dir() else 'archive', str(source), source_fingerprint)
  cache_path = cache.cache_file(cache_root, source)
  arrays = cache.read(cache_path, source_fingerprint, _ARRAYS)
  if arrays is not None:
    return ArraySplits(**arrays | {'class_names': tuple(map(str, arrays['class_names']))},
                       eval_split='test', origin=origin)
  _log.info('Decoding the images of %s once, into the cache %s.', source, cache_path)
  try:
    names, images = _decode(source, list_files, num_workers)
  except BrokenProcessPool as error:
    warnings.warn(f'Decoding in worker processes failed ({error}); decoding in this process '
                  f'instead. Worker processes re-import the main script: a script that loads '
                  f'data needs an `if __name__ == "__main__":` guard.', stacklevel=3)
    names, images = _decode(source, list_files, num_workers=1)
  splits = build_splits(names, images, str(source))
  cache.write(cache_path, source_fingerprint,
              {key: np.asarray(getattr(splits, key)) for key in _ARRAYS})
  return dataclasses.replace(splits, origin=origin)


def _decode(source: Path, list_files: Callable[[], NamedFiles],
            num_workers: int | None) -> tuple[list[str], np.ndarray]:
  return decode_images(select_images(list_files(), str(source)), str(source), num_workers)


def folder_files(root: Path) -> NamedFiles:
  """(path relative to `root`, read) for every file under `root`, in sorted order."""
  for directory, subdirectories, files in os.walk(root, followlinks=True):
    subdirectories.sort()
    for file in sorted(files):
      path = Path(directory, file)
      yield path.relative_to(root).as_posix(), path.read_bytes


def archive_files(archive: Path) -> NamedFiles:
  """(member name, read) for every file of a tar archive, in one streaming pass; each
  read must be called before the next pair is drawn. Damage anywhere in the archive is a
  DataError saying where reading stopped and how to check the file."""
  with open(archive, 'rb') as raw, _damage_is_a_data_error(archive, raw), \
      _tar_stream(archive, raw) as tar:
    last_member = None
    for member in tar:
      if member.isfile():
        yield member.name, _guarded_read(archive, raw, tar.extractfile(member).read)
      last_member = member.name
    _check_the_end(archive, raw, tar, last_member)


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _is_gzip(archive: Path) -> bool:
  with open(archive, 'rb') as file:
    return file.read(2) == b'\x1f\x8b'


def _tar_stream(archive: Path, raw) -> tarfile.TarFile:
  # tarfile's own gzip reader checks no CRC: gzip.GzipFile's check at the end of the stream
  # catches damage that decompresses without an error.
  if _is_gzip(archive):
    return tarfile.open(fileobj=gzip.GzipFile(fileobj=raw), mode='r|')
  return tarfile.open(fileobj=raw, mode='r|*')


def _check_the_end(archive: Path, raw, tar: tarfile.TarFile, last_member: str | None) -> None:
  """tarfile ends its listing silently at a header it cannot parse, as at the end of the
  archive: after the last member, only the zero blocks that end a tar may follow."""
  # A stream cut at a member boundary ends without an error, but also without the
  # end-of-archive block tar writes last.
  if tar.fileobj.pos - tar.offset < tarfile.BLOCKSIZE:
    raise _damaged(archive, raw, 'it ends without the end-of-archive block')
  while rest := tar.fileobj.read(tarfile.RECORDSIZE):  # To the end: the gzip CRC is checked.
    if rest.strip(b'\0'):
      after = f'after {last_member}' if last_member else 'at its start'
      raise _damaged(archive, raw, f'its tar data stop making sense {after}')


def _guarded_read(archive: Path, raw, read: Callable[[], bytes]) -> Callable[[], bytes]:
  def guarded() -> bytes:
    with _damage_is_a_data_error(archive, raw):
      return read()
  return guarded


@contextlib.contextmanager
def _damage_is_a_data_error(archive: Path, raw):
  try:
    yield
  except _ARCHIVE_ERRORS as error:
    raise _damaged(archive, raw, error) from None


def _damaged(archive: Path, raw, why) -> DataError:
  position, size = raw.tell(), archive.stat().st_size
  checks = (f'`gzip -t {archive}` and `tar -tzf {archive} > /dev/null`' if _is_gzip(archive)
            else f'`tar -tf {archive} > /dev/null`')
  return DataError(f'{archive} is damaged or incomplete ({why}; reading stopped about '
                   f'{position / max(size, 1):.0%} into the file, at byte {position:,} of '
                   f'{size:,}): the archive is truncated or corrupt, e.g. an unfinished download '
                   f'or copy; check it with {checks}, and download or copy it again.')
