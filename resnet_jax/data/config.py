"""Checks a data config against its defaults: unknown keys are errors, missing keys default."""
import difflib
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
