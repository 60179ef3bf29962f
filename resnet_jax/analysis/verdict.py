"""The degradation verdict (Sections 4.1 and 4.2): does the deeper plain net train worse, and
the deeper residual net better? A pure function of a results table, so it can be checked on
any table. A comparison of nets trained on stand-in data or for too few steps is shown as
numbers, never as a finding."""
import dataclasses
import json
from collections.abc import Mapping

import pandas as pd
from etils import epath

from resnet_jax.analysis.paper import CIFAR_TABLE6, PaperResults
from resnet_jax.run.record import CONFIG_FILE

GENERATED_IMAGES = 'generated_images'  # The folder a study writes generated ILSVRC images to.


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

  def sentence(self, finding: bool = True) -> str:
    """E.g. 'plain56 train error 12.30% > plain20 9.10%: degradation present'; without the
    `finding`, 'plain56 train error 12.30%, plain20 9.10%'."""
    if not finding:
      return (f'{self.deep_model} train error {self.deep_train_error:.2f}%, '
              f'{self.shallow_model} {self.shallow_train_error:.2f}%')
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


def verdict(table: pd.DataFrame, paper: PaperResults = CIFAR_TABLE6,
            stand_in: str | None = None) -> list[str]:
  """The sentences of compare_depths for `table` (from summarize): findings, or, for nets
  trained on `stand_in` data (stand_in_data) or too few steps to mean anything, 'No verdict'
  and why, then the numbers alone."""
  comparisons = compare_depths(table)
  if not comparisons:
    depths = ', '.join(map(str, sorted(set(table.depth))))
    return [f'No verdict: it compares the shallowest and deepest net of a family, and these '
            f'runs have one depth ({depths or "none"}); add depths with --config.depths.']
  reasons = [f'the nets trained on {stand_in}'] if stand_in else []
  steps = int(table.step.min())
  if steps < paper.min_steps:
    reasons.append(f'they trained {steps:,} steps, the paper {paper.steps:,} ({paper.figure}), '
                   f'and a verdict needs at least {paper.min_steps:,}')
  if not reasons:
    return [comparison.sentence() for comparison in comparisons]
  return [f'No verdict: {"; ".join(reasons)}. The final training errors only show that the '
          'study runs end to end:', *(comparison.sentence(finding=False)
                                      for comparison in comparisons)]


def stand_in_data(config: Mapping) -> str | None:
  """What a run (its config, as a dict) trained on in place of its data set: synthetic images
  or a generated folder, whose numbers check the plumbing, not the paper; None for real data."""
  data = config.get('data', {})
  if data.get('source') == 'synthetic':
    return f'synthetic images (random pixels and labels), not {data["name"]}'
  generated = epath.Path(data.get('path') or '').name == GENERATED_IMAGES
  if data.get('source') == 'folder' and generated:
    return f'generated images (a folder of random images of a few classes), not {data["name"]}'
  return None


def runs_stand_in(runs: pd.DataFrame) -> str | None:
  """stand_in_data of the runs (as from load_study) that trained on stand-in data, if any."""
  configs = (json.loads((epath.Path(workdir) / CONFIG_FILE).read_text())
             for workdir in runs.workdir.unique())
  return next(filter(None, map(stand_in_data, configs)), None)
