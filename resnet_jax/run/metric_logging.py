"""Metrics as JSON lines beside the checkpoints, and in TensorBoard where TF is present.

`pandas.read_json(workdir / 'metrics.jsonl', lines=True)` reads a whole run.
"""
import json
import logging
import time

import jax
from etils import epath

METRICS_FILE = 'metrics.jsonl'


def _tensorboard_writer(workdir: epath.Path):
  """clu's TensorBoard writer, or None on hosts without TensorFlow.

  The summary writer alone: clu's default writer would also log every record to the console.
  """
  try:
    from clu import metric_writers  # Imports TensorFlow.
  except ImportError:
    logging.info('TensorFlow is not installed: metrics go to %s only.', METRICS_FILE)
    return None
  return metric_writers.SummaryWriter(str(workdir))


class MetricLogger:
  """Writes one JSON record per (step, split); only process 0 writes anything."""

  def __init__(self, workdir: epath.PathLike, *, resume_step: int):
    self.workdir = epath.Path(workdir)
    self.enabled = jax.process_index() == 0
    self.writer = None
    if not self.enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.path = self.workdir / METRICS_FILE
    self._drop_records_after(resume_step)
    self.writer = _tensorboard_writer(self.workdir)

  def write(self, step: int, split: str, scalars: dict, seed: int | None = None) -> None:
    """Appends a record {'step', 'split', 'time', **scalars}, and 'seed' when one of
    several replicas trained at once wrote it."""
    if not self.enabled:
      return
    scalars = {name: float(value) for name, value in scalars.items()}
    tags = {} if seed is None else {'seed': int(seed)}
    record = {'step': int(step), 'split': split, **tags, 'time': time.time(), **scalars}
    with self.path.open('a') as f:
      f.write(json.dumps(record) + '\n')
    if self.writer is not None:
      prefix = f'{split}/' if seed is None else f'seed{seed}/{split}/'
      self.writer.write_scalars(step, {prefix + name: v for name, v in scalars.items()})
      self.writer.flush()

  def has_record(self, step: int, split: str) -> bool:
    """Whether process 0 logged `split` at `step` (False on the other processes)."""
    if not self.enabled or not self.path.exists():
      return False
    records = map(_record_of, self.path.read_text().splitlines())
    return any((record.get('step'), record.get('split')) == (step, split) for record in records)

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()

  def _drop_records_after(self, step: int) -> None:
    """A resumed run logs the steps after its checkpoint again: keep one copy of each.

    A line cut short by a killed process is dropped too; it was after the checkpoint.
    """
    if not self.path.exists():
      return
    lines = self.path.read_text().splitlines()
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) != len(lines):
      replace_file(self.path, ''.join(line + '\n' for line in kept))


def _step_of(line: str) -> int | None:
  return _record_of(line).get('step')


def _record_of(line: str) -> dict:
  """The record of a line of metrics.jsonl; {} for a line cut short by a kill."""
  try:
    record = json.loads(line)
  except json.JSONDecodeError:
    return {}
  return record if isinstance(record, dict) else {}


def replace_file(path: epath.Path, text: str) -> None:
  """Writes `text` to `path` atomically, so a kill never leaves half a file."""
  temporary = path.parent / (path.name + '.tmp')
  temporary.write_text(text)
  temporary.replace(path)
