"""The whole paper in one command: plans, trains, evaluates and reports every table and figure
this codebase reproduces (experiments/paper.py lists the parts and variants).

  python -m resnet_jax.reproduce --config=experiments/paper.py --workdir=/tmp/paper [--dry_run]

It prints the plan first (every run, its steps and an estimate of its training time from the
step rates measured on these devices before, with their range and source; --dry_run then times
the nets without one), then runs the parts in WORKDIR/cifar and WORKDIR/imagenet (the study
folders, which the analysis notebook reads) and writes WORKDIR/report.md and report.html. With
--config.time_budget=6h (counted from the plan), every run stops with a checkpoint when it is
spent (exit status 45) and the report says what finished, what did not, and the command that
continues. Finished runs and evaluations are
never redone.
"""
import copy
import dataclasses
import functools
import json
import shlex
import sys
import time

import jax
import ml_collections
import pandas as pd
from absl import flags
from etils import epath

from resnet_jax import analysis, evaluate
from resnet_jax.analysis.table1 import table1
from resnet_jax.errors import ConfigError, OutOfTime
from resnet_jax.paper import plan, report, study
from resnet_jax.run import time_budget
from resnet_jax.run.metric_logging import METRICS_FILE

PARTS = {
    'table1': 'Table 1: layers, parameters and multiply-adds of the ImageNet nets (computed)',
    'cifar': 'Figure 1, Table 6, Figures 6 and 7: the CIFAR-10 degradation study',
    'imagenet': 'Table 2 and Figure 4: the ImageNet plain-vs-residual study',
    'tables34': 'Tables 3 and 4: 10-crop and multi-scale testing of the trained ImageNet nets',
    'table5': 'Table 5: the ensemble of the nets of Tables 3 and 4',
}
STUDY_PARTS = ('cifar', 'imagenet')
IMAGENET_PARTS = ('imagenet', 'tables34', 'table5')
SHORTCUT_OPTIONS = ('A', 'B', 'C')  # Section 3.3: zero-padding, projections where needed, all.
RESULTS_JSON = 'results.json'  # The numbers of every part, which the report shows.
PARTS_JSON = 'parts.json'  # Each part's status, steps and wall time over all invocations.
TABLE1_CSV = 'table1.csv'


def select_parts(config: ml_collections.ConfigDict,
                 command: list[str]) -> tuple[list[str], dict[str, str]]:
  """The parts to run, in order, and why each other part is left out."""
  asked = [part.strip() for part in config.parts.split(',') if part.strip()]
  unknown = [part for part in asked if part not in PARTS]
  if unknown:
    raise ConfigError(f'Unknown parts {unknown} in --config.parts={config.parts!r}; pick from '
                      f'{list(PARTS)} (comma-separated), or leave it empty for all of them.')
  has_data = imagenet_data_configured(config.imagenet)
  if asked and not has_data and set(asked) & set(IMAGENET_PARTS):
    raise ConfigError(f'--config.parts={config.parts!r} asks for ImageNet parts, but no ImageNet '
                      'data is configured: pass --config.data_dir=TFDS_DIR (imagenet2012 '
                      'prepared by TFDS), or --config.imagenet.base.data.source=folder '
                      '--config.imagenet.base.data.path=/data/ILSVRC, or leave them out.')
  if asked:
    return [part for part in PARTS if part in asked], {
        part: 'not in --config.parts' for part in PARTS if part not in asked}
  if has_data:
    return list(PARTS), {}
  with_data = part_command(command, ','.join(IMAGENET_PARTS)) + ' --config.data_dir=TFDS_DIR'
  reason = (f'no ImageNet data configured; with imagenet2012 prepared by TFDS in TFDS_DIR: '
            f'`{with_data}` (or an ILSVRC folder: --config.imagenet.base.data.source=folder '
            '--config.imagenet.base.data.path=DIR)')
  return [part for part in PARTS if part not in IMAGENET_PARTS], {
      part: reason for part in IMAGENET_PARTS}


def imagenet_data_configured(imagenet: ml_collections.ConfigDict) -> bool:
  """Whether the ImageNet study has data: a TFDS data_dir, an ILSVRC folder, synthetic images
  or a generated folder."""
  data = imagenet.base.data
  return bool(imagenet.get('generated_images') or data.source == 'synthetic' or data.path
              or data.data_dir)


def part_command(command: list[str], parts: str | None = None) -> str:
  """`command` (the reproduce command line) without its time budget, running only `parts`
  (all of the command's, without them)."""
  dropped = ('--config.time_budget=', '--config.parts=') if parts else ('--config.time_budget=',)
  kept = [arg for arg in command if not arg.startswith(dropped)]
  return shlex.join(kept + ([f'--config.parts={parts}'] if parts else []))


def reproduce(config: ml_collections.ConfigDict, workdir: str, command: list[str] = (),
              dry_run: bool = False, target: str | None = None) -> dict:
  """Prints the plan, then (unless `dry_run`) runs the parts and writes the report; returns
  each part's outcome. `command` is the command line, quoted in the report. With a `target`
  (bench/aot.py: tpu:v5e:4x4, gpu:h200, ...) the plan says whether each run fits there and
  its floor, from its programs compiled for it, not run."""
  workdir = epath.Path(workdir)
  command = list(command) or ['python', '-m', 'resnet_jax.reproduce']
  budget = time_budget.parse_budget(config.time_budget)
  parts, skipped = select_parts(config, command)
  timed_steps = config.estimate_steps if dry_run else 0
  studies = {part: _study_config(config, part, workdir, not dry_run or timed_steps > 0)
             for part in STUDY_PARTS
             if part in parts or (part == 'imagenet' and set(parts) & set(IMAGENET_PARTS))}
  runs = plan.planned_runs(studies, workdir)
  if 'imagenet' in studies:
    runs += tables34_runs(config.tables34.nets, studies['imagenet'], workdir)
  trained = [run for run in runs if run.part in parts]
  rates, evals = plan.estimate(trained), plan.eval_rates(trained)
  compiled = plan.compile_for(trained, target) if target else {}
  print(plan.describe(PARTS, skipped, trained, rates, evals, compiled), flush=True)
  if dry_run:
    timed = plan.estimate(trained, timed_steps, say=functools.partial(print, flush=True),
                          known=rates)
    if len(timed) > len(rates):
      print(plan.describe(PARTS, skipped, trained, timed, evals, compiled), flush=True)
    return {}
  deadline = time_budget.Deadline(budget)  # The budget trains; imports and the plan are free.
  results, outcomes = _read_json(workdir / RESULTS_JSON), _read_json(workdir / PARTS_JSON)
  context = _Context(config, workdir, deadline, studies, runs)
  for part in parts:
    print(f'== {part}: {PARTS[part]}', flush=True)
    started = time.monotonic()
    results[part], outcome = _PART_RUNNERS[part](context, part)
    wall = outcomes.get(part, {}).get('wall_seconds', 0.0) + time.monotonic() - started
    outcomes[part] = {**outcome, 'wall_seconds': wall, 'command': part_command(command, part)}
  for part, reason in skipped.items():
    if outcomes.get(part, {}).get('status') in (None, 'skipped'):
      outcomes[part] = {'status': 'skipped', 'reason': reason}
  stopped = any(outcomes[part]['status'] == 'partial' for part in parts)
  budget_stop = ({'budget': config.time_budget, 'command': part_command(command)}
                 if stopped else None)
  if jax.process_index() == 0:
    (workdir / RESULTS_JSON).write_text(json.dumps(results, indent=1))
    (workdir / PARTS_JSON).write_text(json.dumps(outcomes, indent=1))
    written = report.write(workdir, PARTS, results, outcomes, shlex.join(command), budget_stop)
    print(f'Wrote {", ".join(written)} to {workdir}.', flush=True)
  if stopped:
    raise OutOfTime(f'Time budget spent: {workdir / report.REPORT_MD} says what finished and '
                    f'what did not; `{part_command(command)}` continues.')
  return outcomes


def tables34_runs(nets: tuple[str, ...], imagenet: ml_collections.ConfigDict,
                  workdir: epath.Path) -> list[plan.PlannedRun]:
  """The runs of `nets` ('resnet34:C': a net and its shortcut option), the nets of Tables 3
  and 4 that the imagenet study does not train: its recipe and data, seed 0, each in
  WORKDIR/tables34/NET_OPTION_seed0."""
  runs = []
  for entry in nets:
    net, _, shortcut = entry.partition(':')
    if shortcut not in SHORTCUT_OPTIONS:
      raise ConfigError(f'tables34.nets entry {entry!r} is not NET:OPTION with an option in '
                        f'{SHORTCUT_OPTIONS}; e.g. resnet34:C.')
    run = study.run_config(imagenet, net, seed=0)
    run.shortcut = shortcut
    name = analysis.run_name(f'{net}_{shortcut}', 0)
    runs.append(plan.PlannedRun('tables34', name, run, workdir / 'tables34' / name))
  return runs


def _study_config(config, part: str, workdir: epath.Path, with_data: bool):
  study_config = copy.deepcopy(config[part])
  return study.with_generated_images(study_config, workdir / part) if with_data else study_config


def _read_json(path: epath.Path) -> dict:
  return json.loads(path.read_text()) if path.exists() else {}


@dataclasses.dataclass(frozen=True)
class _Context:
  """What every part's runner reads."""
  config: ml_collections.ConfigDict
  workdir: epath.Path
  deadline: time_budget.Deadline
  studies: dict[str, ml_collections.ConfigDict]
  runs: list[plan.PlannedRun]

  def runs_of(self, part: str) -> list[plan.PlannedRun]:
    return [run for run in self.runs if run.part == part]


def _run_table1(context: _Context, part: str):
  """Table 1, computed once (shapes only: no budget, no training)."""
  path = context.workdir / TABLE1_CSV
  if path.exists():
    table = pd.read_csv(path)
  else:
    table = table1()
    if jax.process_index() == 0:
      context.workdir.mkdir(parents=True, exist_ok=True)
      path.write_text(table.to_csv(index=False))
  return _records(table), {'status': 'complete'}


def _run_study(context: _Context, part: str):
  """Trains the study's runs within the budget left, then writes its results."""
  study_config, study_dir = context.studies[part], context.workdir / part
  study.train_runs(study_config, study_dir, context.deadline)
  progress = [{'name': run.name, 'model': run.config.model, 'steps_done': run.steps_done(),
               'steps': run.steps} for run in context.runs_of(part)]
  result = {'runs': progress, 'table': [], 'verdict': [], 'seeds': study_config.seeds,
            'depths': list(study_config.depths),
            'stand_in': analysis.stand_in_data(study_config.base.to_dict())}
  if any(path.stat().length for path in study_dir.glob(f'*/{METRICS_FILE}')):
    result['verdict'] = study.write_results(study_config, study_dir)
    result['table'] = _records(pd.read_csv(study_dir / study.RESULTS_CSV))
    runs = analysis.load_study(study_dir)
    result['eval_steps'] = sorted({int(step) for step in runs.step[runs.split != 'train']})
  return result, _steps_outcome(progress)


def _run_tables34(context: _Context, part: str):
  """Trains the nets of Tables 3 and 4 that the imagenet part does not (within the budget
  left), then 10-crop and multi-scale testing of every ImageNet net trained so far."""
  rows, missing = [], 0
  own = context.runs_of(part)
  if own:
    study.train_programs({run.name: run.config for run in own}, context.workdir / part,
                         context.deadline)
  trained = [run for run in context.runs_of('imagenet') + own if run.steps_done()]
  if not trained:
    why = ('the time budget was spent before an ImageNet net trained a step' if
           context.deadline.passed() else 'no trained ImageNet nets yet: run the imagenet part')
    return [], {'status': 'partial' if context.deadline.passed() else 'skipped', 'reason': why}
  tables34 = context.config[part]
  for run in trained:
    for mode in tables34.modes:
      result = _evaluation(run, mode, tables34.batch_size, context.deadline)
      if result is None:
        missing += 1
        continue
      table, paper = analysis.PAPER_TEST_TABLES[mode]
      top1, top5 = paper.get((run.config.model, run.config.shortcut), (None, None))
      rows.append({'net': run.config.model, 'shortcut': run.config.shortcut, 'mode': mode,
                   'table': table, 'steps_done': result['step'], 'steps': run.steps,
                   'top1_error': 100 * result['error'], 'top5_error': 100 * result['top5_error'],
                   'paper_top1_error': top1, 'paper_top5_error': top5})
  outcome = _steps_outcome(rows)
  if missing or any(run.steps_done() < run.steps for run in own):
    outcome['status'] = 'partial'
  return rows, outcome


def _run_table5(context: _Context, part: str):
  """The ensemble of the nets tables34 trained (Table 5), at their latest checkpoints."""
  members = [run for run in context.runs_of('tables34') if run.steps_done()]
  if len(members) < 2:
    planned = ('fewer than two of them trained yet: run the tables34 part first'
               if context.config.tables34.nets else
               'no nets planned for it (--config=experiments/paper.py:full plans them)')
    return {}, {'status': 'skipped', 'reason': f'needs two or more nets of tables34, {planned}'}
  table5 = context.config[part]
  result = _ensemble_evaluation(members, table5, context.workdir / part, context.deadline)
  progress = [{'steps_done': run.steps_done(), 'steps': run.steps} for run in members]
  outcome = _steps_outcome(progress)
  if result is None:
    return {}, {**outcome, 'status': 'partial'}
  return {'mode': result['mode'], 'members': result['members'], 'images': result['images'],
          'top1_error': 100 * result['error'], 'top5_error': 100 * result['top5_error'],
          'paper_top5_error': analysis.PAPER_ENSEMBLE_TOP5}, outcome


def _ensemble_evaluation(members: list[plan.PlannedRun], table5, folder: epath.Path,
                         deadline) -> dict | None:
  """evaluate's ensemble result of `members` at their latest checkpoints: read back if
  written for those, else computed into `folder` (None once the budget is spent)."""
  saved = folder / f'ensemble_{table5.mode}.json'
  if saved.exists():
    result = json.loads(saved.read_text())
    if [(member['workdir'], member['step']) for member in result['members']] == [
        (str(run.workdir), run.steps_done()) for run in members]:
      return result
  if deadline.passed():
    return None
  eval_config = evaluate.default_config()
  eval_config.eval.mode, eval_config.eval.batch_size = table5.mode, table5.batch_size
  eval_config.eval.members = ','.join(str(run.workdir) for run in members)
  return evaluate.evaluate_ensemble(eval_config, str(folder))


def _evaluation(run: plan.PlannedRun, mode: str, batch_size: int, deadline) -> dict | None:
  """evaluate's result for `run` at its latest checkpoint: read back if written at that step,
  else computed (None once the budget is spent)."""
  saved = run.workdir / f'eval_{mode}.json'
  if saved.exists():
    result = json.loads(saved.read_text())
    if result['step'] == run.steps_done():
      return result
  if deadline.passed():
    return None
  eval_config = evaluate.default_config()
  eval_config.eval.mode, eval_config.eval.batch_size = mode, batch_size
  return evaluate.evaluate_run(eval_config, str(run.workdir))


def _records(table: pd.DataFrame) -> list[dict]:
  """The rows of `table` as JSON values (None where pandas has NaN)."""
  return json.loads(table.to_json(orient='records'))


def _steps_outcome(progress: list[dict]) -> dict:
  """complete or partial, and the steps done of those planned, over `progress`'s runs."""
  done = sum(run['steps_done'] for run in progress)
  planned = sum(run['steps'] for run in progress)
  return {'status': 'complete' if done == planned else 'partial', 'steps_done': done,
          'steps': planned}


_PART_RUNNERS = {'table1': _run_table1, 'cifar': _run_study, 'imagenet': _run_study,
                 'tables34': _run_tables34, 'table5': _run_table5}


def _use_compilation_cache(workdir: str) -> None:
  """JAX's persistent compilation cache in WORKDIR (unless one is set): the plan's timed steps
  compile the programs that training then loads, and a rerun compiles nothing again."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', str(epath.Path(workdir) / 'compilation_cache'))


def reproduce_from_flags(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """reproduce() with the command line's --dry_run, its compilation cache in WORKDIR, and the
  command line quoted in the report."""
  _use_compilation_cache(workdir)
  command = ['python', '-m', 'resnet_jax.reproduce'] + [
      arg for arg in sys.argv[1:] if arg not in ('--dry_run', '--nodry_run')]
  return reproduce(config, workdir, command, dry_run=flags.FLAGS.dry_run,
                   target=flags.FLAGS.target)
