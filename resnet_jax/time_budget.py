"""Time budgets ('90s', '9m', '6h', '1h30m'): a run given one stops at the first step boundary
after it is spent, saving a checkpoint as on a preemption, so a rerun continues."""
import re
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

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
