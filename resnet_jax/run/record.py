"""A workdir's record of how its run was trained: `config.json` holds the config the run started
with, and `config_history.jsonl` one line per segment (each start or resume that trains): the
step it started at, its config, what changed from the segment before, the data it read and
whether the installed packages are the versions CI tested (constraints.txt).

A resume that would change what is trained is refused unless config.allow_config_change;
a change that leaves the training as it was (KEYS_A_RESUME_MAY_CHANGE) is recorded.
"""
import dataclasses
import importlib.metadata
import json
import logging
import pathlib
import re
import time

import jax
import ml_collections
from etils import epath

import resnet_jax
from resnet_jax.data.origin import DataOrigin
from resnet_jax.errors import ConfigError
from resnet_jax.run.metric_logging import replace_file

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.jsonl'
# The exact versions CI tested, beside setup.cfg in the checkout (README: how to regenerate).
CONSTRAINTS = pathlib.Path(resnet_jax.__file__).resolve().parents[1] / 'constraints.txt'
AS_TESTED = f'installed versions as in {CONSTRAINTS.name}, the ones CI tested'

# What a resumed run may change: how long it goes, on what devices, how it is watched and
# saved. Every other key (the net, the data and where it is read from, the optimizer, the
# batch, the lr schedule, the seed, the replicas, the dtype, and any key this table does not
# name) changes what is trained. A name covers the keys under it (`mesh`: `mesh.data`, ...).
KEYS_A_RESUME_MAY_CHANGE = (
    'num_train_steps',  # The lr schedule is in steps (optimizer.lr_boundaries), not fractions.
    'steps_per_dispatch', 'mesh', 'replica_batching',  # How the steps run, not what they do.
    'log_every_steps', 'eval_every_steps', 'eval_batch_size', 'data.eval_scales',
    'checkpoint_every_steps', 'keep_checkpoints', 'overwrite', 'allow_config_change',
    'on_nonfinite', 'data.skip_unreadable',  # What to do about a failure, once it shows.
    'time_budget',  # When this segment stops, not what it trains.
    'data.cache_dir', 'data.num_workers',
)


def read_config(workdir: epath.PathLike) -> ml_collections.ConfigDict:
  """The config the run in `workdir` trains with: its latest segment's."""
  config = _latest_config(epath.Path(workdir))
  if config is None:
    raise FileNotFoundError(f'{epath.Path(workdir) / CONFIG_FILE} does not exist: {workdir} '
                            'holds no run; train one there first (python -m resnet_jax.main '
                            '--workdir=...).')
  return ml_collections.ConfigDict(config)


def changes_training(key: str) -> bool:
  """Whether a change of `key` (dotted, e.g. 'optimizer.learning_rate') changes what a run
  trains."""
  return not any(key == name or key.startswith(name + '.') for name in KEYS_A_RESUME_MAY_CHANGE)


def config_changes(old: dict, new: dict) -> dict[str, str]:
  """'old -> new' by dotted key, for every key whose value differs between two configs (as
  JSON)."""
  old, new = _flat(old), _flat(new)
  return {key: f'{_shown(old, key)} -> {_shown(new, key)}'
          for key in sorted(old.keys() | new.keys())
          if old.get(key, _ABSENT) != new.get(key, _ABSENT)}


def check_resume(workdir: epath.Path, config: ml_collections.ConfigDict,
                 trained_step: int | None) -> None:
  """Raises ConfigError when `config` changes what the run in `workdir` was trained with
  (`trained_step`: its latest checkpoint's step, None before the first), unless
  config.allow_config_change; for a finished run, says there is nothing to train on."""
  recorded = _latest_config(workdir) if trained_step is not None else None
  if recorded is None or config.allow_config_change:
    return
  refused = {key: change for key, change in config_changes(recorded, _as_json(config)).items()
             if changes_training(key)}
  if not refused:
    return
  if trained_step >= config.num_train_steps:
    raise ConfigError(
        f'{workdir} holds a run that finished at step {trained_step:,}, trained with other '
        f'values of keys that change what is trained:\n{_listed(refused)}\nNothing was '
        'changed. Train the new values in a new --workdir (this run has no steps left to train '
        'them on).')
  raise ConfigError(
      f'{workdir} holds a run trained with other values of keys that change what is trained:\n'
      f'{_listed(refused)}\nNothing was changed. Resume with the old values (left of each '
      'arrow), train the new ones in a new --workdir, or pass --config.allow_config_change=true '
      f'to train this run on with them (recorded in {workdir / HISTORY_FILE}).')


def record_segment(workdir: epath.Path, config: ml_collections.ConfigDict, step: int,
                   data_read: DataOrigin) -> None:
  """Records the segment of the run that starts at `step` (process 0 writes): from step 0,
  `config` starts a new run in config.json and the history; later, the history gains a line."""
  if jax.process_index() != 0:
    return
  new, history = _as_json(config), workdir / HISTORY_FILE
  if step == 0:  # A new run: nothing trained with an earlier config remains.
    replace_file(workdir / CONFIG_FILE, config.to_json_best_effort(indent=2))
    earlier, changes = '', {}
  else:
    earlier = history.read_text() if history.exists() else ''
    changes = config_changes(_latest_config(workdir) or new, new)
  record = {'step': step, 'time': time.time(), 'changes': changes,
            'data': dataclasses.asdict(data_read), 'versions': tested_versions_state(),
            'config': new}
  replace_file(history, earlier + json.dumps(record) + '\n')
  if changes:
    logging.info('Config changes from step %d on (trained so far with the value left of each '
                 'arrow, on with the one right of it), recorded in %s:\n%s', step, history,
                 _grouped(changes))


def finished_run_config(workdir: epath.Path, config: ml_collections.ConfigDict
                        ) -> tuple[ml_collections.ConfigDict, dict[str, str]]:
  """For a finished run started again with `config`: the config it was trained with (its
  latest segment's; `config` if none was recorded, or one of an older version that lacks some
  of its keys) and what `config` would change of what is trained, which nothing applies."""
  recorded = _latest_config(workdir)
  if recorded is None:
    return config, {}
  given = _as_json(config)
  not_applied = {key: change for key, change in config_changes(recorded, given).items()
                 if changes_training(key)}
  if _flat(given).keys() - _flat(recorded).keys():
    return config, not_applied
  return ml_collections.ConfigDict(recorded), not_applied


def tested_versions_state(constraints: pathlib.Path | None = None) -> str | None:
  """AS_TESTED, or 'versions differ from constraints.txt: jax 0.9.0 (tested 0.10.2), ...'
  naming each installed package whose version is not the one pinned there (packages that are
  not installed, such as extras not asked for, are left out); None without the file (an
  install not made from the checkout). `constraints`: CONSTRAINTS unless given."""
  constraints = constraints or CONSTRAINTS
  if not constraints.exists():
    return None
  installed = {_normalized(dist.metadata['Name']): dist.version
               for dist in importlib.metadata.distributions() if dist.metadata['Name']}
  differ = []
  for line in constraints.read_text().splitlines():
    name, equals, tested = line.split('#')[0].strip().partition('==')
    version = installed.get(_normalized(name))
    if equals and version is not None and version != tested:
      differ.append(f'{name} {version} (tested {tested})')
  if not differ:
    return AS_TESTED
  return f'versions differ from {constraints.name}: {", ".join(differ)}'


def _normalized(name: str) -> str:
  return re.sub(r'[-_.]+', '-', name).lower()  # PEP 503: jax_cuda12 is jax-cuda12.


_ABSENT = object()  # A key one of two configs lacks (written by another version).


def _latest_config(workdir: epath.Path) -> dict | None:
  history = workdir / HISTORY_FILE
  if history.exists():
    return json.loads(history.read_text().splitlines()[-1])['config']
  if (workdir / CONFIG_FILE).exists():
    return json.loads((workdir / CONFIG_FILE).read_text())
  return None


def _as_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def _flat(config: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in config.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


def _listed(changes: dict[str, str], indent: str = '  ') -> str:
  return '\n'.join(f'{indent}{key}: {change}' for key, change in changes.items())


def _grouped(changes: dict[str, str]) -> str:
  """`changes` listed under what they change: what is trained, or how the run goes on."""
  trained = {key: change for key, change in changes.items() if changes_training(key)}
  settings = {key: change for key, change in changes.items() if key not in trained}
  groups = (('Changing what is trained (allowed by allow_config_change)', trained),
            ('Leaving what is trained as it was', settings))
  return '\n'.join(f'  {title}:\n{_listed(group, "    ")}' for title, group in groups if group)


def _shown(flat: dict, key: str) -> str:
  value = flat.get(key, _ABSENT)
  return '(not in the config)' if value is _ABSENT else json.dumps(value)
