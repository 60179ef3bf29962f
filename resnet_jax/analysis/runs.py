"""Runs as pandas DataFrames: one workdir's metrics.jsonl with its config, or every run of a
study. A workdir that trained several seeds at once (num_replicas > 1) holds one run per seed."""
import io
import json

import pandas as pd
from etils import epath

from resnet_jax import models
from resnet_jax.run.metric_logging import METRICS_FILE
from resnet_jax.run.record import CONFIG_FILE

RUN_COLUMNS = ('run', 'model', 'family', 'depth', 'seed')


def run_name(model: str, seed: int) -> str:
  """The name of one seed's run of `model`, as the study names its folders: 'plain56_seed3'."""
  return f'{model}_seed{seed}'


def load_run(workdir: epath.PathLike) -> pd.DataFrame:
  """One row per logged (step, split, seed) record of the workdir, plus the columns run, model,
  family ('plain' or 'resnet'), depth, seed and workdir (the folder it was trained in).

  The run is the folder's name, or run_name(model, seed) per seed for a workdir that trained
  several seeds at once, so each seed reads as the study's run of its own.
  """
  workdir = epath.Path(workdir)
  for name in (METRICS_FILE, CONFIG_FILE):
    if not (workdir / name).exists():
      raise FileNotFoundError(
          f'{workdir / name} is missing: {workdir} is not a run directory, or its run has not '
          'logged anything yet. Train it with `python -m resnet_jax.main --workdir=...`.')
  config = json.loads((workdir / CONFIG_FILE).read_text())
  metrics = pd.read_json(io.StringIO((workdir / METRICS_FILE).read_text()), lines=True)
  described = {**describe_run(config), 'run': workdir.name, 'workdir': str(workdir)}
  if 'seed' in metrics:  # Several seeds trained at once: each record names its seed.
    described.update(seed=metrics.seed,
                     run=[run_name(config['model'], seed) for seed in metrics.seed])
  return metrics.assign(**described)


def describe_run(config) -> dict:
  """The model, family ('plain' or 'resnet'), depth and seed of a run's config."""
  spec = models.parse(config['model'])
  return {'model': config['model'], 'family': 'resnet' if spec.residual else 'plain',
          'depth': spec.depth, 'seed': config['seed']}


def load_study(study_dir: epath.PathLike) -> pd.DataFrame:
  """load_run of every run folder (one holding a metrics file) in `study_dir`, in one frame;
  raises if two folders hold the same run (a seed trained twice)."""
  study_dir = epath.Path(study_dir)
  run_dirs = sorted(path.parent for path in study_dir.glob(f'*/{METRICS_FILE}'))
  if not run_dirs:
    raise FileNotFoundError(
        f'No runs in {study_dir} (no */{METRICS_FILE}); run the study first: `python -m '
        f'resnet_jax.study --config=experiments/degradation.py --workdir={study_dir}`.')
  runs = pd.concat([load_run(run_dir) for run_dir in run_dirs], ignore_index=True)
  folders = runs.drop_duplicates(['run', 'workdir'])
  twice = folders[folders.run.duplicated(keep=False)]
  if len(twice):
    name = twice.run.iloc[0]
    where = ' and '.join(twice.workdir[twice.run == name])
    raise ValueError(f'{name} was trained twice, in {where}; move one of them out of {study_dir}.')
  return runs
