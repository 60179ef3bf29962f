"""The degradation study (Section 4.2): trains plain and residual CIFAR nets at several depths,
one run per net and seed, then writes Table 6, Figures 6 and 7 and the verdict beside them.

  python -m resnet_jax.study --config=experiments/degradation.py --workdir=/tmp/degradation

A rerun skips finished runs and resumes interrupted ones (the trainer resumes by itself).
Progress and the verdict go to stdout, the trainer's logs to stderr.
"""
import copy

import ml_collections
import pandas as pd
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from resnet_jax import analysis, models, train
from resnet_jax.metric_logging import METRICS_FILE

RESULTS_CSV = 'results.csv'
RESULTS_MD = 'results.md'
RESPONSES_CSV = 'layer_responses.csv'
FIGURE6_PNG = 'figure6.png'
FIGURE7_PNG = 'figure7.png'
FAMILIES = ('plain', 'resnet')


def planned_runs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """The trainer config of every run of the study, by run name (e.g. 'plain56_seed0')."""
  if config.seeds < 1:
    raise ValueError(f'seeds must be at least 1 (runs per net), got {config.seeds}.')
  runs = {}
  for depth in config.depths:
    for family in FAMILIES:
      for seed in range(config.seeds):
        runs[f'{family}{depth}_seed{seed}'] = run_config(config, f'{family}{depth}', seed)
  return runs


def run_config(config: ml_collections.ConfigDict, net: str,
               seed: int) -> ml_collections.ConfigDict:
  """The base config with the net and seed of one run, and the warm-up of deep nets."""
  spec = models.parse(net)
  if spec.dataset != 'cifar':
    raise ValueError(f'The study trains CIFAR nets of depth 6n+2 (20, 32, 44, 56, 110, ...), '
                     f'got depth {spec.depth}; fix --config.depths.')
  run = copy.deepcopy(config.base)
  run.model = net
  run.seed = seed
  if spec.depth >= config.deep_warmup.min_depth:
    run.optimizer.warmup_steps = config.deep_warmup.steps
  return run


def is_finished(workdir: epath.Path, config: ml_collections.ConfigDict) -> bool:
  """Whether the run in `workdir` logged its final step and saved its final checkpoint."""
  if not (workdir / METRICS_FILE).exists():
    return False
  run = analysis.load_run(workdir)
  final_splits = set(run.split[run.step == config.num_train_steps]) if len(run) else set()
  return ('train' in final_splits and bool(final_splits - {'train'})
          and analysis.latest_checkpoint_step(workdir) == config.num_train_steps)


def train_runs(config: ml_collections.ConfigDict, study_dir: epath.Path) -> None:
  """Trains every planned run that has not finished, saying which it trains or skips."""
  runs = planned_runs(config)
  for index, (name, run) in enumerate(runs.items(), start=1):
    workdir = study_dir / name
    progress = f'[{index}/{len(runs)}] {name}:'
    if is_finished(workdir, run):
      print(f'{progress} finished, skipped', flush=True)
      continue
    resuming = analysis.latest_checkpoint_step(workdir)
    start = f'resuming from step {resuming}' if resuming else 'training'
    print(f'{progress} {start} to step {run.num_train_steps} in {workdir}', flush=True)
    train.train_and_evaluate(run, str(workdir))


def layer_responses(study_dir: epath.Path, run_names, num_images: int,
                    batch_size: int) -> pd.DataFrame:
  """Figure 7's response std of every layer of each run's final net on its eval images; rows:
  run, model, family, depth, seed, layer (from 1), std."""
  frames = []
  for name in run_names:
    trained = analysis.load_trained_run(study_dir / name)
    stds = analysis.layer_response_stds(trained.model, trained.variables,
                                        trained.eval_inputs(num_images), batch_size)
    frames.append(pd.DataFrame({'run': name, **analysis.describe_run(trained.config),
                                'layer': range(1, len(stds) + 1), 'std': stds}))
  return pd.concat(frames, ignore_index=True)


def write_results(config: ml_collections.ConfigDict, study_dir: epath.Path) -> list[str]:
  """Writes the table, the figures and the layer responses of the runs in `study_dir`;
  returns the verdict's sentences."""
  runs = analysis.load_study(study_dir)
  table = analysis.summarize(analysis.final_errors(runs))
  verdict = analysis.verdict(table)
  table.to_csv(study_dir / RESULTS_CSV, index=False)
  (study_dir / RESULTS_MD).write_text(analysis.results_markdown(table, verdict))
  analysis.figure6(runs).savefig(study_dir / FIGURE6_PNG, dpi=120)
  responses = layer_responses(study_dir, sorted(set(runs.run)), config.figure7.num_images,
                              config.figure7.batch_size)
  responses.to_csv(study_dir / RESPONSES_CSV, index=False)
  analysis.figure7(responses).savefig(study_dir / FIGURE7_PNG, dpi=120)
  return verdict


def run_study(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Trains what is missing, writes the results and prints the verdict, which it returns."""
  study_dir = epath.Path(workdir)
  train_runs(config, study_dir)
  verdict = write_results(config, study_dir)
  print(f'Wrote {RESULTS_MD}, {RESULTS_CSV}, {FIGURE6_PNG}, {FIGURE7_PNG} and {RESPONSES_CSV} '
        f'to {study_dir}.')
  print('Verdict (final training error):' if verdict else
        'Verdict: needs two depths of a family to compare.')
  for sentence in verdict:
    print(f'  {sentence}')
  return verdict


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  run_study(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  # Defined here, not on import, so that resnet_jax.main's flags of the same names can coexist.
  config_flags.DEFINE_config_file('config', None,
                                  'Study config, e.g. experiments/degradation.py:smoke,jpeg.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Study directory: a folder per run, the results beside.')
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
