"""The degradation verdict (Sections 4.1 and 4.2): does the deeper plain net train worse, and
the deeper residual net better? A pure function of a results table, so it can be checked on
any table."""
import dataclasses

import pandas as pd

from resnet_jax.analysis.paper import CIFAR_TABLE6, PaperResults


@dataclasses.dataclass(frozen=True)
class DepthComparison:
  """The final train errors (%) of a family's shallowest and deepest nets."""
  family: str  # 'plain' or 'resnet'
  shallow_model: str
  deep_model: str
  shallow_train_error: float
  deep_train_error: float

  @property
  def deeper_trains_worse(self) -> bool:
    return self.deep_train_error > self.shallow_train_error

  @property
  def deeper_trains_better(self) -> bool:
    return self.deep_train_error < self.shallow_train_error

  def sentence(self) -> str:
    """E.g. 'plain56 train error 12.30% > plain20 9.10%: degradation present'."""
    if self.family == 'plain':
      sign = '>' if self.deeper_trains_worse else '<='
      finding = 'degradation present' if self.deeper_trains_worse else 'no degradation'
    else:
      sign = '<' if self.deeper_trains_better else '>='
      finding = ('the deeper residual net trains better' if self.deeper_trains_better
                 else 'the deeper residual net does not train better')
    return (f'{self.deep_model} train error {self.deep_train_error:.2f}% {sign} '
            f'{self.shallow_model} {self.shallow_train_error:.2f}%: {finding}')


def compare_depths(table: pd.DataFrame) -> list[DepthComparison]:
  """For each family (plain, then resnet) with at least two depths in `table` (columns family,
  depth, model, train_error_mean, as from summarize), its shallowest vs its deepest net."""
  comparisons = []
  for family in ('plain', 'resnet'):
    nets = table[table.family == family].sort_values('depth')
    if len(nets) < 2:
      continue
    shallow, deep = nets.iloc[0], nets.iloc[-1]
    comparisons.append(DepthComparison(
        family, shallow.model, deep.model, float(shallow.train_error_mean),
        float(deep.train_error_mean)))
  return comparisons


def verdict(table: pd.DataFrame, paper: PaperResults = CIFAR_TABLE6) -> list[str]:
  """The sentences of compare_depths for `table` (from summarize), led by a warning when
  its nets trained too few steps for the comparison to mean anything."""
  sentences = [comparison.sentence() for comparison in compare_depths(table)]
  steps = int(table.step.min()) if len(table) else 0
  if sentences and steps < paper.min_steps:
    sentences.insert(0, f'Too few steps to mean anything: the nets trained {steps:,} steps, '
                        f'the paper {paper.steps:,} ({paper.figure}), and a verdict needs at '
                        f'least {paper.min_steps:,}; what follows only shows that the study '
                        f'runs end to end.')
  return sentences
