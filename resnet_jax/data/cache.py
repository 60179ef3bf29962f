"""Decoded arrays cached as .npz files: one file per source, written atomically, reused while
the source's fingerprint (resolved path, sizes, mtimes) is unchanged, rebuilt otherwise."""
import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

# Bump when decoding changes, so caches written by older code are rebuilt.
FORMAT_VERSION = 1

_log = logging.getLogger(__name__)


def cache_file(cache_dir: Path, source: Path) -> Path:
  """The cache file of `source` (a resolved path): named after it and a hash of its path."""
  digest = hashlib.sha256(str(source).encode()).hexdigest()[:16]
  return cache_dir / f'{source.name}-{digest}.npz'


def fingerprint(source: Path) -> str:
  """A hash of the resolved path, size and mtime of `source` and of every file under it."""
  hasher = hashlib.sha256(f'v{FORMAT_VERSION}:{source}'.encode())
  paths = [source] if source.is_file() else sorted(p for p in source.rglob('*') if p.is_file())
  for path in paths:
    stat = path.stat()
    hasher.update(f'\0{path.relative_to(source.parent)}\0{stat.st_size}\0{stat.st_mtime_ns}'
                  .encode())
  return hasher.hexdigest()


def read(path: Path, expected_fingerprint: str,
         keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
  """The arrays `keys` cached in `path`, or None when it is missing, stale or unreadable."""
  try:
    with open(path, 'rb') as file, np.load(file, allow_pickle=False) as npz:
      if str(npz['fingerprint']) != expected_fingerprint:
        _log.info('Cache %s is stale (its source changed); rebuilding it.', path)
        return None
      return {key: npz[key] for key in keys}
  except FileNotFoundError:
    return None
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
    warnings.warn(f'Cache {path} is unreadable ({error}); rebuilding it.', stacklevel=2)
    return None


def write(path: Path, source_fingerprint: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes `arrays` to `path` via a temporary file and a rename, so a killed write never
  leaves a partial cache; a failed write only warns, as the arrays are still in memory."""
  temporary = None
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    with os.fdopen(handle, 'wb') as file:
      np.savez(file, fingerprint=np.array(source_fingerprint), **arrays)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temporary, path)
  except BaseException as error:
    if temporary:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    if not isinstance(error, OSError):
      raise
    warnings.warn(f'Could not write the cache {path} ({error}); the images will be decoded '
                  f'again next time: set data.cache_dir to a writable directory.', stacklevel=2)

