"""The table of a study: final train and eval error per net, beside the paper's (Table 6 for
the CIFAR nets, Table 2 for the ImageNet nets)."""
import math

import pandas as pd

from resnet_jax.analysis.paper import CIFAR_TABLE6, PaperResults
from resnet_jax.analysis.runs import RUN_COLUMNS


def final_errors(runs: pd.DataFrame) -> pd.DataFrame:
  """One row per run: its last step, last logged train error (the running average over the
  last log interval, the figure's dashed curves) and last eval error, in %, and the eval split."""
  train = _last_record_per_run(runs[runs.split == 'train'])
  evaluation = _last_record_per_run(runs[runs.split != 'train'])
  return pd.DataFrame({
      'step': train.step, 'train_error': 100 * train.error,
      'eval_error': 100 * evaluation.error, 'eval_split': evaluation.split,
  }).reset_index()


def summarize(final: pd.DataFrame, paper: PaperResults = CIFAR_TABLE6) -> pd.DataFrame:
  """One row per net of final_errors: mean and std (over seeds, NaN for one seed) of the
  train and eval errors, the best seed's eval error, and the paper's error (`paper`'s table)
  where it has one."""
  table = final.groupby(['family', 'depth', 'model'], as_index=False).agg(
      seeds=('seed', 'count'), step=('step', 'min'),
      train_error_mean=('train_error', 'mean'), train_error_std=('train_error', 'std'),
      eval_error_mean=('eval_error', 'mean'), eval_error_std=('eval_error', 'std'),
      eval_error_best=('eval_error', 'min'), eval_split=('eval_split', 'first'))
  return table.assign(paper_test_error=table.model.map(paper.errors))


def results_markdown(table: pd.DataFrame, verdict: list[str],
                     paper: PaperResults = CIFAR_TABLE6) -> str:
  """`table` (from summarize with the same `paper`) as a Markdown table, with the verdict
  below it."""
  # NaN: a net not evaluated yet (a study stopped by its time budget).
  eval_split = '/'.join(sorted(set(table.eval_split.dropna()))) or 'eval'
  lines = [f'| net | seeds | steps | train error (%) | {eval_split} error (%) | {paper.column} |',
           '| --- | ---: | ---: | ---: | ---: | --- |']
  for row in table.itertuples():
    error = '—' if math.isnan(row.paper_test_error) else f'{row.paper_test_error:.2f}'
    if row.model in paper.notes:
      error += f' ({paper.notes[row.model]})'
    lines.append(f'| {row.model} | {row.seeds} | {row.step} | '
                 f'{mean_std(row.train_error_mean, row.train_error_std)} | '
                 f'{mean_std(row.eval_error_mean, row.eval_error_std)} | {error} |')
  notes = ['', 'Train error: the running average over the last logged interval (as the dashed '
           f'curves of {paper.figure}); mean ± std over seeds.', *filter(None, [paper.eval_note]),
           '']
  return '\n'.join(lines + notes + [f'- {sentence}' for sentence in verdict]) + '\n'


def _last_record_per_run(records: pd.DataFrame) -> pd.DataFrame:
  return records.sort_values('step').groupby(list(RUN_COLUMNS)).last()


def is_missing(value) -> bool:
  """None (null in a results JSON) or NaN: a number a run has not produced (yet)."""
  return value is None or (isinstance(value, float) and math.isnan(value))


def mean_std(mean: float | None, std: float | None) -> str:
  """'9.00 ± 1.41' over seeds, '9.00' for one seed, '—' for a net not evaluated yet (a study
  its time budget stopped)."""
  if is_missing(mean):
    return '—'
  return f'{mean:.2f}' if is_missing(std) else f'{mean:.2f} ± {std:.2f}'
