"""The report of `python -m resnet_jax.reproduce`: WORKDIR/report.md and a self-contained
report.html (figures embedded as base64 PNG) that read top to bottom: each table beside the
paper's numbers with the difference, each figure with a caption of this run, each verdict
with its caveats, the data every number came from (synthetic or generated where so, and then
no finding), what was skipped and why, what a time budget stopped and the command that
continues, the hardware, versions, wall time and steps of every part, and the command that
reproduces each part. A partial run's numbers are shown as such, never beside the paper's as
a difference."""
import base64
import datetime
import importlib.metadata
import os
import platform

import jax
from etils import epath
from markdown_it import MarkdownIt

from resnet_jax.analysis import CIFAR_TABLE6, IMAGENET_TABLE2, PaperResults
from resnet_jax.analysis.table import is_missing, mean_std
from resnet_jax.paper import study
from resnet_jax.run import record, time_budget

REPORT_MD = 'report.md'
REPORT_HTML = 'report.html'
FIGURES = {'cifar': (study.FIGURE6_PNG, study.FIGURE6_RIGHT_PNG, study.FIGURE7_PNG),
           'imagenet': (study.FIGURE4_PNG,)}
STUDY_PAPERS = {'cifar': CIFAR_TABLE6, 'imagenet': IMAGENET_TABLE2}
CURVES = ('training error (dashed) and {split} error (bold) over the steps, plain nets left, '
          'ResNets right')
CAPTIONS = {study.FIGURE6_PNG: 'Figure 6: ' + CURVES, study.FIGURE4_PNG: 'Figure 4: ' + CURVES,
            study.FIGURE6_RIGHT_PNG: "Figure 6's right panel: training error (dashed) and {split} "
                                     'error (bold) over the steps of the deepest ResNets',
            study.FIGURE7_PNG: "Figure 7: std of each 3x3 layer's response (after BN, before "
                               'ReLU and addition) of the final nets on the eval images'}
FIGURE1_DEPTHS = (20, 56)  # Figure 1 is Figure 6's left panel at these depths.
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy')
FEW_SEEDS = 2  # Fewer seeds per net give no spread to weigh a difference against.
BEST_OF_NOTE = ('A net of several seeds: the eval error of its best seed, and in brackets the '
                'mean ± std over its seeds, as Table 6 reports ResNet-110 (best of 5 runs); the '
                'difference is our best against the paper\'s best where the paper gives its best '
                'run, else our mean.')


def write(workdir: epath.Path, parts: dict[str, str], results: dict, outcomes: dict,
          command: str, budget_stop: dict | None = None) -> list[str]:
  """Writes report.md and report.html for the parts (title by name) with their `results` and
  `outcomes` (as reproduce records them), and `budget_stop` (the budget and the command that
  continues) if a time budget stopped them; returns the names written."""
  markdown = render(workdir, parts, results, outcomes, command, budget_stop)
  (workdir / REPORT_MD).write_text(markdown)
  (workdir / REPORT_HTML).write_text(to_html(markdown, workdir))
  return [REPORT_MD, REPORT_HTML]


def render(workdir: epath.Path, parts: dict[str, str], results: dict, outcomes: dict,
           command: str, budget_stop: dict | None = None) -> str:
  """The report as Markdown, figures linked by their path in `workdir`."""
  lines = ['# Deep Residual Learning (He et al., 2015), reproduced', '',
           f'Written {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by `{command}`. '
           'A result of a run that trained fewer steps than planned is marked *partial* and '
           'never compared with the paper.', '', *_parts_table(parts, outcomes, results), '']
  if budget_stop:
    lines += _budget_stop(parts, results, outcomes, budget_stop)
  sections = {'table1': _table1, 'cifar': _study_section, 'imagenet': _study_section,
              'tables34': _tables34, 'table5': _table5}
  for part, title in parts.items():
    stand_in = data_stand_in(part, results)
    lines += [f'## {title}' + (f', on {stand_in.split()[0]} data' if stand_in else ''), '']
    outcome = outcomes.get(part, {'status': 'skipped', 'reason': 'not run yet'})
    if outcome['status'] == 'skipped':
      lines += [f'Skipped: {outcome["reason"]}.', '']
      continue
    if stand_in:
      lines += [f'**Data: {stand_in}.** Every number in this section checks that the part runs '
                'end to end; none is a result about the paper.', '']
    lines += sections[part](workdir, part, results.get(part), outcome)
    lines += [f'Reproduce this part: `{outcome["command"]}`', '']
  return '\n'.join(lines + _environment()) + '\n'


def data_stand_in(part: str, results: dict) -> str | None:
  """What `part`'s numbers came from in place of the paper's data set (its study's, for
  Tables 3 and 4), None for the data set itself."""
  study_part = 'imagenet' if part == 'tables34' else part
  return (results.get(study_part) or {}).get('stand_in') if study_part in STUDY_PAPERS else None


def _budget_stop(parts: dict[str, str], results: dict, outcomes: dict,
                 budget_stop: dict) -> list[str]:
  """What a spent time budget left finished, stopped and not started, and the command that
  continues."""
  finished, stopped, not_started = [], [], []
  for part in parts:
    outcome = outcomes.get(part, {})
    if part not in STUDY_PAPERS and outcome.get('status') == 'partial':
      (not_started if 'reason' in outcome else stopped).append(
          f'{part} ({outcome.get("reason", "some evaluations missing")})')
    for run in (results.get(part) or {}).get('runs', []) if part in STUDY_PAPERS else []:
      done, planned = run['steps_done'], run['steps']
      if done == planned:
        finished.append(run['name'])
      elif done:
        stopped.append(f'{run["name"]} (step {done:,} of {planned:,})')
      else:
        not_started.append(run['name'])
  return ['## Stopped by the time budget', '',
          f'The time budget (--config.time_budget={budget_stop["budget"]}) was spent before every '
          'part finished; each run stopped with a checkpoint at a step boundary.', '',
          f'- Finished: {", ".join(finished) or "none"}.',
          f'- Stopped partway: {", ".join(stopped) or "none"}.',
          f'- Not started: {", ".join(not_started) or "none"}.', '',
          f'Continue (finished runs are not redone): `{budget_stop["command"]}`, or the same '
          'command with a new --config.time_budget.', '']


def to_html(markdown: str, workdir: epath.Path) -> str:
  """`markdown` as one HTML page, its figures embedded."""
  body = MarkdownIt('commonmark').enable('table').render(markdown)
  for part, names in FIGURES.items():
    for name in names:
      path = workdir / part / name
      if path.exists():
        encoded = base64.b64encode(path.read_bytes()).decode('ascii')
        body = body.replace(f'src="{part}/{name}"', f'src="data:image/png;base64,{encoded}"')
  return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>ResNet paper, reproduced'
          '</title><style>body{font-family:sans-serif;max-width:60em;margin:auto}'
          'table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}'
          'img{max-width:100%}</style></head><body>\n' + body + '</body></html>\n')


def _parts_table(parts: dict[str, str], outcomes: dict, results: dict) -> list[str]:
  lines = ['| part | what | status | steps done | wall time |', '| --- | --- | --- | ---: | ---: |']
  for part, title in parts.items():
    outcome = outcomes.get(part, {'status': 'skipped'})
    stand_in = data_stand_in(part, results)
    status = outcome['status'] + (f', on {stand_in.split()[0]} data' if stand_in else '')
    steps = (f'{outcome["steps_done"]:,} of {outcome["steps"]:,}' if 'steps' in outcome else '')
    wall = time_budget.describe(outcome['wall_seconds']) if 'wall_seconds' in outcome else ''
    lines.append(f'| {part} | {title} | {status} | {steps} | {wall} |')
  return lines


def _table1(workdir, part, rows: list[dict], outcome) -> list[str]:
  lines = ['Per 224x224 image; multiply-adds of the convolutions and the classifier, what '
           'Table 1 calls FLOPs.', '',
           '| net | layers | parameters | multiply-adds | paper FLOPs | difference |',
           '| --- | ---: | ---: | ---: | ---: | ---: |']
  for row in rows:
    paper = row['paper_flops']
    difference = '—' if is_missing(paper) else f'{100 * (row["multiply_adds"] / paper - 1):+.1f}%'
    lines.append(f'| {row["net"]} | {row["layers"]} | {row["parameters"] / 1e6:.1f}M | '
                 f'{row["multiply_adds"] / 1e9:.2f}×10⁹ | '
                 f'{"—" if is_missing(paper) else f"{paper / 1e9:.1f}×10⁹"} | {difference} |')
  return lines + ['', 'The paper rounds to one decimal; its counts are the same multiply-adds.',
                  '']


def _study_section(workdir, part, result: dict, outcome) -> list[str]:
  paper = STUDY_PAPERS[part]
  if not result or not result['table']:
    return ['No results yet: no run reached its first log step.', *_run_steps(result), '']
  eval_split = next((row['eval_split'] for row in result['table'] if row['eval_split']), 'eval')
  lines = [f'| net | status | seeds | train error (%) | {eval_split} error (%) | {paper.column} '
           '| difference (points) |', '| --- | --- | ---: | ---: | ---: | ---: | ---: |']
  rows = {row['model']: row for row in result['table']}
  for model, (done, planned) in _steps_by_model(result['runs']).items():
    row = rows.get(model)
    if row is None:
      lines.append(f'| {model} | not started (0 of {planned:,} steps) | | — | — | | — |')
      continue
    best = row.get('eval_error_best') if row['seeds'] > 1 else None
    theirs = row['paper_test_error']
    # Where the paper's error is its best run's (Table 6's ResNet-110), ours is our best seed's.
    ours = row['eval_error_mean'] if is_missing(best) or model not in paper.best_of else best
    difference = _difference(ours, theirs, done, planned, paper)
    evaluated = mean_std(row['eval_error_mean'], row['eval_error_std'])
    lines.append(f'| {model} | {_status(done, planned)} | {row["seeds"]} | '
                 f'{mean_std(row["train_error_mean"], row["train_error_std"])} | '
                 f'{evaluated if is_missing(best) else f"{best:.2f} ({evaluated})"} | '
                 f'{_paper_error(theirs, paper.notes.get(model))} | {difference} |')
  lines += ['', _comparable_note(paper), *filter(None, [paper.eval_note]),
            *([BEST_OF_NOTE] if any(row['seeds'] > 1 for row in result['table']) else []), '']
  lines += _figures(workdir, part, result, eval_split)
  lines += ['**Verdict** (final training errors):', '']
  lines += [f'- {sentence}' for sentence in result['verdict']]
  if result['seeds'] < FEW_SEEDS:
    lines.append(f'- Too few seeds: {result["seeds"]} run per net, so no spread to weigh a '
                 f'difference against; add seeds with --config.{part}.seeds=5.')
  return lines + ['', *_run_steps(result), '']


def _steps_by_model(runs: list[dict]) -> dict[str, tuple[int, int]]:
  """(steps done, steps planned) over each net's runs, in the plan's order."""
  steps = {}
  for run in runs:
    done, planned = steps.get(run['model'], (0, 0))
    steps[run['model']] = (done + run['steps_done'], planned + run['steps'])
  return steps


def _figures(workdir, part: str, result: dict, eval_split: str) -> list[str]:
  """The study's figures, each captioned with what this run trained."""
  depths = result.get('depths', [])  # Absent from the results of an older version.
  trained = (f'this run: depths {", ".join(map(str, depths))}, {result["seeds"]} '
             f'seed{"s" * (result["seeds"] > 1)} each, {result.get("stand_in") or "the real data"}')
  lines = []
  for name in FIGURES[part]:
    if (workdir / part / name).exists():
      caption = f'{CAPTIONS[name].format(split=eval_split)} ({trained}).'
      if name != study.FIGURE7_PNG:
        caption += _eval_points(result.get('eval_steps'), eval_split)
      if name == study.FIGURE6_PNG and set(FIGURE1_DEPTHS) <= set(depths):
        caption += ' Its left panel at depths 20 and 56 is Figure 1.'
      lines += [f'![{name}]({part}/{name})', '', f'*{caption}*', '']
  return lines


def _eval_points(eval_steps: list[int] | None, eval_split: str) -> str:
  """What a curve figure's caption says of too few evaluations to draw a curve."""
  if eval_steps is None or len(eval_steps) > 1:  # None: the results of an older version.
    return ''
  if not eval_steps:
    return f' No {eval_split} error was measured yet: the training curves alone.'
  return (f' The {eval_split} error was measured once, at step {eval_steps[0]:,}: one marked '
          'point per net, not a curve.')


def _run_steps(result: dict | None) -> list[str]:
  if not result:
    return []
  return ['Steps of every run: ' + ', '.join(
      f'{run["name"]} {run["steps_done"]:,}/{run["steps"]:,}' for run in result['runs']) + '.']


def _tables34(workdir, part, rows: list[dict], outcome) -> list[str]:
  if not rows:
    return [f'Nothing tested: {outcome.get("reason", "no trained ImageNet nets")}.', '']
  lines = ['| net | test | status | top-1 error (%) | paper | difference | top-5 error (%) | '
           'paper | difference |', '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
  for row in rows:
    cells = []
    for k in ('top1', 'top5'):
      ours, theirs = row[f'{k}_error'], row[f'paper_{k}_error']
      cells += [f'{ours:.2f}', '—' if is_missing(theirs) else f'{theirs:.2f}',
                _difference(ours, theirs, row['steps_done'], row['steps'], IMAGENET_TABLE2)]
    lines.append(f'| {row["net"]} ({row["shortcut"]}) | {row["mode"]}, {row["table"]} | '
                 f'{_status(row["steps_done"], row["steps"])} | {" | ".join(cells)} |')
  return lines + ['', 'Shortcut option in brackets; the paper has no multi-scale (Table 4) '
                  'result for option A nets, nor top-5 errors for the 18-layer nets. '
                  + _comparable_note(IMAGENET_TABLE2), '']


def _table5(workdir, part, result: dict, outcome) -> list[str]:
  if not result:
    return ['Not evaluated: the time budget was spent first; the same command evaluates it.', '']
  members = ', '.join(f'{member["model"]} ({member["shortcut"]}, {member["step"]:,} steps)'
                      for member in result['members'])
  status = ('complete' if outcome['status'] == 'complete' else
            f'partial ({outcome["steps_done"]:,} of {outcome["steps"]:,} steps)')
  fewest = min(member['step'] for member in result['members'])
  lines = ['| ensemble | test | status | top-1 error (%) | top-5 error (%) | paper top-5 error '
           '(%), Table 5 |', '| --- | --- | --- | ---: | ---: | ---: |',
           f'| {len(result["members"])} nets | {result["mode"]}, validation | {status} | '
           f'{result["top1_error"]:.2f} | {result["top5_error"]:.2f} | '
           f'{result["paper_top5_error"]:.2f} (test set) |', '',
           f'Members: {members}; their class probabilities are averaged over the nets and over '
           f'each net\'s {result["mode"]} views ({result["images"]:,} images).',
           'The paper\'s figure is on the ImageNet test set (from the test server) with six nets '
           'of different depth, two of them 152 layers (4.1); ours is on the validation set with '
           'the nets of Tables 3 and 4 trained here, so the two are not the same measurement and '
           'no difference is given.']
  if fewest < IMAGENET_TABLE2.min_steps:
    lines.append(f'Its nets trained as few as {fewest:,} steps (the paper: '
                 f'{IMAGENET_TABLE2.steps:,}): these errors check the plumbing and mean nothing.')
  return lines + ['']


def _environment() -> list[str]:
  devices = jax.devices()
  versions = ', '.join(f'{name} {_version(name)}' for name in PACKAGES)
  return ['## Hardware and versions', '',
          f'- Devices: {len(devices)} × {devices[0].device_kind} ({jax.default_backend()}), '
          f'{jax.process_count()} process(es).',
          f'- Host: {platform.platform()}, {os.cpu_count()} CPU cores, Python '
          f'{platform.python_version()}.', f'- Versions: {versions}.', *_untested_install()]


def _untested_install() -> list[str]:
  tested = record.tested_versions_state()
  return [] if tested in (None, record.AS_TESTED) else [f'- Not the tested install: {tested}.']


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def _difference(ours: float, theirs, done: int, planned: int, paper: PaperResults) -> str:
  """Ours minus the paper's, in points, for a complete run of at least the paper's shortest
  meaningful schedule; else why there is none."""
  if is_missing(theirs):
    return '—'
  if done < planned:
    return '— (partial)'
  if done < paper.min_steps:
    return f'— ({done:,} steps)'
  return f'{ours - theirs:+.2f}'


def _paper_error(error, note: str | None) -> str:
  if is_missing(error):
    return '—'
  return f'{error:.2f}' if note is None else f'{error:.2f} ({note})'


def _comparable_note(paper: PaperResults) -> str:
  return (f'A difference is given for complete runs of at least {paper.min_steps:,} steps (the '
          f'first lr drop; the paper trained {paper.steps:,}); shorter or partial runs show '
          'only our error.')


def _status(done: int, planned: int) -> str:
  return 'complete' if done == planned else f'partial ({done:,} of {planned:,} steps)'
