"""Table 6 for a study: final train and eval error per net, beside the paper's test error."""
import math

import pandas as pd

from resnet_jax.analysis.runs import RUN_COLUMNS

# Table 6, test error (%) of the ResNets on CIFAR-10; the paper gives none for plain nets.
PAPER_TABLE6 = {'resnet20': 8.75, 'resnet32': 7.51, 'resnet44': 7.17, 'resnet56': 6.97,
                'resnet110': 6.43, 'resnet1202': 7.93}
PAPER_NOTES = {'resnet110': 'best of 5 runs; mean 6.61 ± 0.16'}


def final_errors(runs: pd.DataFrame) -> pd.DataFrame:
  """One row per run: its last step, last logged train error (the running average over the
  last log interval, Figure 6's dashed line) and last eval error, in %, and the eval split."""
  train = _last_record_per_run(runs[runs.split == 'train'])
  evaluation = _last_record_per_run(runs[runs.split != 'train'])
  return pd.DataFrame({
      'step': train.step, 'train_error': 100 * train.error,
      'eval_error': 100 * evaluation.error, 'eval_split': evaluation.split,
  }).reset_index()


def summarize(final: pd.DataFrame) -> pd.DataFrame:
  """One row per net of final_errors: mean and std (over seeds, NaN for one seed) of the
  train and eval errors, and the paper's Table 6 test error where it has one."""
  table = final.groupby(['family', 'depth', 'model'], as_index=False).agg(
      seeds=('seed', 'count'), step=('step', 'min'),
      train_error_mean=('train_error', 'mean'), train_error_std=('train_error', 'std'),
      eval_error_mean=('eval_error', 'mean'), eval_error_std=('eval_error', 'std'),
      eval_split=('eval_split', 'first'))
  return table.assign(paper_test_error=table.model.map(PAPER_TABLE6))


def results_markdown(table: pd.DataFrame, verdict: list[str]) -> str:
  """`table` (from summarize) as a Markdown table, with the verdict below it."""
  eval_split = '/'.join(sorted(set(table.eval_split)))
  lines = [f'| net | seeds | steps | train error (%) | {eval_split} error (%) | '
           'paper test error (%), Table 6 |',
           '| --- | ---: | ---: | ---: | ---: | --- |']
  for row in table.itertuples():
    paper = '—' if math.isnan(row.paper_test_error) else f'{row.paper_test_error:.2f}'
    if row.model in PAPER_NOTES:
      paper += f' ({PAPER_NOTES[row.model]})'
    lines.append(f'| {row.model} | {row.seeds} | {row.step} | '
                 f'{_mean_std(row.train_error_mean, row.train_error_std)} | '
                 f'{_mean_std(row.eval_error_mean, row.eval_error_std)} | {paper} |')
  notes = ['', 'Train error: the running average over the last logged interval (as the dashed '
           'curves of Figure 6); mean ± std over seeds.', '']
  return '\n'.join(lines + notes + [f'- {sentence}' for sentence in verdict]) + '\n'


def _last_record_per_run(records: pd.DataFrame) -> pd.DataFrame:
  return records.sort_values('step').groupby(list(RUN_COLUMNS)).last()


def _mean_std(mean: float, std: float) -> str:
  return f'{mean:.2f}' if math.isnan(std) else f'{mean:.2f} ± {std:.2f}'
