"""Checks a data config: against its defaults (unknown keys are errors, missing keys
default), and its paths (data.path exists, data.cache_dir is outside the data)."""
import difflib
import os
from pathlib import Path
from typing import Any

import ml_collections

from resnet_jax.data.errors import DataError


def with_defaults(config: Any, defaults: ml_collections.ConfigDict,
                  where: str) -> ml_collections.ConfigDict:
  """`defaults` updated with `config` (a ConfigDict or dict), nested configs included."""
  unknown = sorted(set(config.keys()) - set(defaults.keys()))
  if unknown:
    hints = [f'{key!r} (did you mean {match[0]!r}?)' if match else repr(key)
             for key in unknown
             for match in [difflib.get_close_matches(key, list(defaults.keys()), n=1)]]
    raise DataError(f'Unknown key(s) {", ".join(hints)} in {where}; the valid keys are '
                    f'{sorted(defaults.keys())}.')
  merged = {}
  for key in defaults.keys():
    value = config[key] if key in config.keys() else defaults[key]
    if isinstance(defaults[key], ml_collections.ConfigDict):
      if not hasattr(value, 'keys'):
        raise DataError(f'{where}.{key} must be a config with keys {sorted(defaults[key].keys())}'
                        f', got {value!r}.')
      value = with_defaults(value, defaults[key], f'{where}.{key}')
    merged[key] = value
  return ml_collections.ConfigDict(merged)


def positive_int(value: Any, name: str) -> int:
  """`value` as an int, or a DataError naming the config key `name`."""
  if isinstance(value, bool) or not hasattr(value, '__index__') or value < 1:
    raise DataError(f'{name} must be a positive integer, got {value!r}.')
  return int(value)


def existing_path(path: str | os.PathLike | None, source: str, what: str) -> Path:
  """data.path resolved; an error saying it must be `what` if it is unset or missing."""
  if not path:
    raise DataError(f"data.source='{source}' needs data.path: set it to {what}.")
  resolved = Path(path).expanduser().resolve()
  if not resolved.exists():
    raise DataError(f'data.path {str(path)!r} does not exist (resolved to {resolved}); set '
                    f'data.path to {what}.')
  return resolved


def cache_dir_outside(cache_dir: str | os.PathLike, data_dir: Path, nested: bool) -> Path:
  """cache_dir resolved; an error if it is `data_dir` or, when `nested`, inside it."""
  cache_root = Path(cache_dir).expanduser().resolve()
  if cache_root == data_dir or (nested and data_dir in cache_root.parents):
    raise DataError(f'data.cache_dir {cache_root} is in the data directory {data_dir}, '
                    f'which this loader never writes to; set data.cache_dir elsewhere, e.g. '
                    f'~/.cache/resnet_jax.')
  return cache_root
