"""Time budgets ('90s', '9m', '6h', '1h30m'): a run given one stops at the first step boundary
after it is spent, saving a checkpoint as on a preemption, so a rerun continues. And the
measured step rates that say how long a run will take: training runs and `bench train` keep
each rate in STEP_RATES_FILE by what the speed depends on (net, batch, devices), and a plan
estimates from them, with their spread; the durations of evaluations are kept alike."""
import dataclasses
import datetime
import json
import os
import pathlib
import re
import statistics
import time

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from resnet_jax import models
from resnet_jax.errors import ConfigError

_UNIT_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86_400}
_TERM = re.compile(r'(\d+(?:\.\d+)?)([smhd])')


def parse_budget(text: str | None) -> float | None:
  """The seconds of a budget such as '90s', '9m', '6h' or '1h30m'; None for '' (no budget)."""
  text = (text or '').replace(' ', '')
  if not text:
    return None
  terms = _TERM.findall(text)
  if ''.join(number + unit for number, unit in terms) != text:
    raise ConfigError(f'time_budget={text!r} is not a duration; write it like 90s, 9m, 6h or '
                      '1h30m (seconds, minutes, hours, days).')
  return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in terms)


def describe(seconds: float) -> str:
  """A duration for people: '45 s', '12 min', '3 h 05 min'."""
  if seconds < 60:
    return f'{seconds:.0f} s'
  minutes = round(seconds / 60)
  return f'{minutes} min' if minutes < 60 else f'{minutes // 60} h {minutes % 60:02d} min'


class Deadline:
  """The end of a time budget that starts now (never, without a budget)."""

  def __init__(self, budget_seconds: float | None):
    self.end = None if budget_seconds is None else time.monotonic() + budget_seconds

  def remaining(self) -> float | None:
    """Seconds left (negative once spent), or None without a budget."""
    return None if self.end is None else self.end - time.monotonic()

  def passed(self, hosts_in_step: bool = True) -> bool:
    """Whether the budget is spent. Several processes go by process 0's clock, read only where
    `hosts_in_step` (the log steps, where they wait for each other anyway), so that all of them
    stop on the same step."""
    if self.end is None:
      return False
    if jax.process_count() == 1:
      return self.remaining() <= 0
    if not hosts_in_step:
      return False
    spent = np.asarray(self.remaining() <= 0)
    return bool(multihost_utils.broadcast_one_to_all(spent))


STEP_RATES_FILE = '~/.cache/resnet_jax/step_rates.json'  # RESNET_JAX_STEP_RATES overrides it.
KEPT_RATES = 10  # The latest measurements of each key; older machines' loads age out.


def rate_key(config: ml_collections.ConfigDict) -> str:
  """What a run's steps/s depends on: its net, shortcut, dtype, batch, nets trained at once,
  the source of a streamed input (ImageNet nets; CIFAR sits on the devices whatever its
  source), and the devices, e.g. 'resnet20 A float32 batch 128 x1 on 1 cpu'."""
  devices = jax.devices()
  streamed = (f' from {config.data.source}'
              if models.parse(config.model).dataset == 'imagenet' else '')
  return (f'{config.model} {config.shortcut} {config.dtype} batch {config.batch_size} '
          f'x{config.num_replicas}{streamed} on {len(devices)} {devices[0].device_kind}')


def eval_key(config: ml_collections.ConfigDict) -> str:
  """What an evaluation's duration depends on: rate_key's net and devices, the eval batch and
  the images (their data set and source; the number of synthetic images, a folder's path or
  CIFAR's held-out validation set where the config names one)."""
  data = config.data
  images = (f' ({data.synthetic.num_eval} images)' if data.source == 'synthetic' else
            f' ({data.path})' if data.source == 'folder' else
            f' (validation {data.validation_size})' if data.get('validation_size') else '')
  return (f'{rate_key(config)}: evaluating {data.name} from {data.source}{images} at batch '
          f'{config.eval_batch_size}')


@dataclasses.dataclass(frozen=True)
class StepRate:
  """Steps/s of one kind of run (training only: compilation and evaluations left out), the
  slowest and fastest of the measurements behind it, and where they came from."""
  median: float
  slowest: float
  fastest: float
  source: str  # E.g. 'median of 3 measured rates (2 training runs, 1 bench train)'.

  def seconds(self, steps: int) -> tuple[float, float, float]:
    """Seconds of `steps` steps: at the median rate, the fastest and the slowest."""
    return steps / self.median, steps / self.fastest, steps / self.slowest

  def describe(self) -> str:
    """E.g. 'median of 3 measured rates (2 training runs, 1 bench train), 1.20-1.41 steps/s'."""
    if self.slowest == self.fastest:
      return f'{self.source}, {self.median:.3g} steps/s, its spread unknown'
    return f'{self.source}, {self.slowest:.3g}-{self.fastest:.3g} steps/s'


def step_rates_file() -> pathlib.Path:
  return pathlib.Path(os.path.expanduser(os.environ.get('RESNET_JAX_STEP_RATES', STEP_RATES_FILE)))


def measured_rate(key: str) -> StepRate | None:
  """The StepRate of the runs of `key` (rate_key) measured so far, None if none was."""
  samples = _read_rates().get(key, [])
  if not samples:
    return None
  rates = [sample['steps_per_sec'] for sample in samples]
  kinds = {}
  for sample in samples:
    kind = sample['source'].split(':')[0]  # 'training run', without its workdir.
    kinds[kind] = kinds.get(kind, 0) + 1
  what = ', '.join(f'{count} {kind}{"s" * (count > 1)}' for kind, count in kinds.items())
  source = (f'median of {len(rates)} measured rates ({what})' if len(rates) > 1 else
            f'one measured rate ({what})')
  return StepRate(statistics.median(rates), min(rates), max(rates), source)


def record_evaluation(config: ml_collections.ConfigDict, seconds: float, source: str) -> None:
  """Keeps the duration of one evaluation of `config` (as evaluations/s, under eval_key), as
  record_rate does a step rate."""
  record_rate(eval_key(config), 1 / max(seconds, 1e-9), source)


def record_rate(key: str, steps_per_sec: float, source: str) -> None:
  """Keeps `steps_per_sec` measured for runs of `key`, from `source` ('KIND: DETAIL', e.g.
  'training run: WORKDIR'; a later rate from the same source replaces its earlier one), among
  the latest KEPT_RATES of the key. Process 0 only; a store that cannot be written is left be."""
  if jax.process_index() != 0 or not steps_per_sec > 0:
    return
  rates = _read_rates()
  samples = [sample for sample in rates.get(key, []) if sample['source'] != source]
  samples.append({'steps_per_sec': steps_per_sec, 'source': source, 'when': now(),
                  'load_average': round(os.getloadavg()[0], 2)})
  rates[key] = samples[-KEPT_RATES:]
  path = step_rates_file()
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f'{path.name}.{os.getpid()}.partial')
    partial.write_text(json.dumps(rates, indent=1))
    partial.replace(path)  # Whole or not at all, also with several runs writing.
  except OSError:
    pass  # A read-only home: estimates then come from timed steps.


def now() -> str:
  """The time for people, e.g. '2026-12-04 15:30:12 UTC'."""
  return f'{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC'


def _read_rates() -> dict[str, list[dict]]:
  try:
    return json.loads(step_rates_file().read_text())
  except (OSError, ValueError):
    return {}
