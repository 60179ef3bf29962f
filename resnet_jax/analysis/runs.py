"""Runs as pandas DataFrames: one run's metrics.jsonl with its config, or every run of a study."""
import io
import json

import pandas as pd
from etils import epath

from resnet_jax import models
from resnet_jax.metric_logging import CONFIG_FILE, METRICS_FILE

RUN_COLUMNS = ('run', 'model', 'family', 'depth', 'seed')


def load_run(workdir: epath.PathLike) -> pd.DataFrame:
  """One row per logged (step, split) record of the run in `workdir`, plus the columns
  run (the folder's name), model, family ('plain' or 'resnet'), depth and seed."""
  workdir = epath.Path(workdir)
  for name in (METRICS_FILE, CONFIG_FILE):
    if not (workdir / name).exists():
      raise FileNotFoundError(
          f'{workdir / name} is missing: {workdir} is not a run directory, or its run has not '
          'logged anything yet. Train it with `python -m resnet_jax.main --workdir=...`.')
  config = json.loads((workdir / CONFIG_FILE).read_text())
  metrics = pd.read_json(io.StringIO((workdir / METRICS_FILE).read_text()), lines=True)
  return metrics.assign(run=workdir.name, **describe_run(config))


def describe_run(config) -> dict:
  """The model, family ('plain' or 'resnet'), depth and seed of a run's config."""
  spec = models.parse(config['model'])
  return {'model': config['model'], 'family': 'resnet' if spec.residual else 'plain',
          'depth': spec.depth, 'seed': config['seed']}


def load_study(study_dir: epath.PathLike) -> pd.DataFrame:
  """load_run of every run folder (one holding a metrics file) in `study_dir`, in one frame."""
  study_dir = epath.Path(study_dir)
  run_dirs = sorted(path.parent for path in study_dir.glob(f'*/{METRICS_FILE}'))
  if not run_dirs:
    raise FileNotFoundError(
        f'No runs in {study_dir} (no */{METRICS_FILE}); run the study first: `python -m '
        f'resnet_jax.study --config=experiments/degradation.py --workdir={study_dir}`.')
  return pd.concat([load_run(run_dir) for run_dir in run_dirs], ignore_index=True)
