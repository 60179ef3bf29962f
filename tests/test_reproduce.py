"""The whole paper in one command (resnet_jax.reproduce): its plan, its bad-input messages, time
budgets, and `:smoke` end to end through the command line: the report, and a budget that stops
the runs, a kill of the command that continues them and a rerun that finishes them."""
import dataclasses
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import paper
from resnet_jax import analysis, evaluate, train
from resnet_jax.errors import ConfigError, OutOfTime
from resnet_jax.paper import plan, report, reproduce, study
from resnet_jax.run import console, time_budget

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ['--config=experiments/paper.py:smoke']
SMOKE_RUNS = {'cifar': ['plain8_seed0', 'resnet8_seed0', 'plain14_seed0', 'resnet14_seed0',
                        'resnet20_seeds0-1'],
              'imagenet': ['plain18_seed0', 'resnet18_seed0'],
              'tables34': ['resnet18_B_seed0', 'resnet18_C_seed0']}
FULL_RUNS = {'cifar': [*(f'{family}{depth}_seed0' for depth in (20, 32, 44, 56)
                         for family in ('plain', 'resnet')),
                       'plain110_seed0', 'resnet110_seeds0-4', 'resnet1202_seed0'],
             'imagenet': ['plain18_seed0', 'resnet18_seed0', 'plain34_seed0', 'resnet34_seed0'],
             'tables34': ['resnet34_B_seed0', 'resnet34_C_seed0', 'resnet50_B_seed0',
                          'resnet101_B_seed0', 'resnet152_B_seed0']}


def run_command(workdir, *flags, timeout=1800):
  return subprocess.run([sys.executable, '-m', 'resnet_jax.reproduce', f'--workdir={workdir}',
                         *flags], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def start_command(workdir, *flags):
  return subprocess.Popen([sys.executable, '-m', 'resnet_jax.reproduce', f'--workdir={workdir}',
                           *flags], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)


def report_numbers(workdir: pathlib.Path) -> dict:
  """Every number of the report, the wall times aside."""
  return json.loads((workdir / reproduce.RESULTS_JSON).read_text())


@pytest.mark.parametrize('text, seconds', [('90s', 90), ('9m', 540), ('6h', 21_600),
                                           ('1h30m', 5400), ('1.5h', 5400), ('', None)])
def test_budgets_parse(text, seconds):
  assert time_budget.parse_budget(text) == seconds


@pytest.mark.parametrize('text', ['soon', '9', 'm9', '6h later', '-5m'])
def test_unreadable_budgets_are_refused(text):
  with pytest.raises(ConfigError, match='is not a duration'):
    time_budget.parse_budget(text)


def test_dry_run_plans_every_part_and_writes_nothing(tmp_path, capsys):
  config = paper.get_config('smoke')
  config.estimate_steps = 0
  assert reproduce.reproduce(config, str(tmp_path / 'paper'), dry_run=True) == {}
  printed = capsys.readouterr().out
  for part in reproduce.PARTS:
    assert f'  {part}: ' in printed
  for runs in SMOKE_RUNS.values():
    for name in runs:
      assert f'    {name}: ' in printed
  assert 'steps (0 done)' in printed and 'Total:' in printed
  assert not (tmp_path / 'paper').exists()


def test_plan_estimates_from_measured_rates_with_their_range_and_source(
    tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('RESNET_JAX_STEP_RATES', str(tmp_path / 'rates.json'))
  config = paper.get_config()
  config.estimate_steps = 0
  key = time_budget.rate_key(study.run_config(config.cifar, 'resnet20', seed=0))
  for workdir, steps_per_sec in (('/a', 0.8), ('/b', 1.0), ('/a', 0.5)):  # /a measured twice.
    time_budget.record_rate(key, steps_per_sec, source=f'training run: {workdir}')
  time_budget.record_rate(key, 1.2, source='bench train: today')
  reproduce.reproduce(config, str(tmp_path / 'paper'), dry_run=True)
  printed = capsys.readouterr().out
  # 64k steps at the median of 0.5, 1.0 and 1.2 steps/s (/a replaced), the fastest, the slowest.
  # Its 32 evaluations of the 10,000 test images: about 833 steps' forward passes.
  assert ('resnet20_seed0: 64,000 steps (0 done): ~18 h 01 min (15 h 00 min to 36 h 01 min) '
          '(median of 3 measured rates (2 training runs, 1 bench train), 0.5-1.2 steps/s; 32 '
          'evaluations of 10,000 images, estimated from their forward passes)') in printed
  assert 'Total: ~18 h 01 min (15 h 00 min to 36 h 01 min) of training and evaluations' in printed
  assert 'plain20_seed0: 64,000 steps (0 done): no measured rate' in printed
  assert 'Not estimated: plain20_seed0, plain56_seed0, resnet56_seed0: no rate measured' in printed
  assert not (tmp_path / 'paper').exists()


def test_the_plan_counts_evaluations_at_their_measured_duration_as_the_trainer_does(
    tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('RESNET_JAX_STEP_RATES', str(tmp_path / 'rates.json'))
  config = paper.get_config()
  config.estimate_steps = 0
  resnet20 = study.run_config(config.cifar, 'resnet20', seed=0)
  time_budget.record_rate(time_budget.rate_key(resnet20), 1.0, source='training run: /a')
  time_budget.record_evaluation(resnet20, 30.0, source='training run: /a')
  reproduce.reproduce(config, str(tmp_path / 'paper'), dry_run=True)
  # What the trainer's ETA says at its first step at these rates: 64,000 s and 32 x 30 s.
  eta = 64_000 / 1.0 + console.evaluations_from(1, 64_000, resnet20.eval_every_steps) * 30.0
  assert time_budget.describe(eta) == '18 h 03 min'
  assert ('resnet20_seed0: 64,000 steps (0 done): ~18 h 03 min (one measured rate (1 training '
          'run), 1 steps/s, its spread unknown; 32 evaluations as long as measured (one '
          'measured rate (1 training run)))') in capsys.readouterr().out


def test_a_dry_run_times_each_net_without_a_rate_once_and_keeps_its_rate(
    tmp_path, monkeypatch):
  monkeypatch.setenv('RESNET_JAX_STEP_RATES', str(tmp_path / 'rates.json'))
  config = paper.get_config('smoke')
  plain8 = plan.planned_runs({'cifar': config.cifar}, tmp_path / 'paper')[0]
  runs = [plain8, dataclasses.replace(plain8, name='plain8_seed1')]  # One net, one rate.
  said = []
  monkeypatch.setattr(plan, 'SLOW_COMPILE_S', 0)  # Every compile is slow: ours says so.
  rates = plan.estimate(runs, timed_steps=2, say=said.append)
  assert said[0] == ('Timing plain8_seed0 (1 of 1 nets without a measured rate): compiling, '
                     'then 2 steps...')
  assert re.fullmatch(r'  compiling plain8_seed0 took \d+ s \(its first step included\)', said[1])
  assert len(said) == 2
  assert rates['plain8_seed0'] is rates['plain8_seed1']
  assert rates['plain8_seed0'].source == '2 timed steps after a warm-up'
  assert rates['plain8_seed0'].slowest <= rates['plain8_seed0'].median
  kept = plan.estimate(runs)  # Read back: nothing timed.
  assert kept['plain8_seed0'].median == rates['plain8_seed0'].median
  assert kept['plain8_seed0'].source == 'one measured rate (1 plan timing)'
  assert not (tmp_path / 'paper').exists()
def test_a_dry_run_reads_each_runs_measured_rate_once(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('RESNET_JAX_STEP_RATES', str(tmp_path / 'rates.json'))
  config = paper.get_config('smoke')
  config.parts = 'cifar'
  runs = plan.planned_runs({'cifar': config.cifar}, tmp_path / 'paper')
  for run in runs:  # Every net has a rate: the dry run times nothing.
    time_budget.record_rate(time_budget.rate_key(run.config), 2.0, source='bench train: today')
  read = []
  measured_rate = time_budget.measured_rate
  monkeypatch.setattr(time_budget, 'measured_rate', lambda key: read.append(key) or
                      measured_rate(key))
  reproduce.reproduce(config, str(tmp_path / 'paper'), dry_run=True)
  assert len(read) == len(set(read))  # The plan's reads, reused for the timing that follows.
  assert capsys.readouterr().out.count('Plan on ') == 1


def test_full_plan_lists_every_net_of_tables_3_to_6(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('RESNET_JAX_STEP_RATES', str(tmp_path / 'rates.json'))
  config = paper.get_config('full')
  config.estimate_steps = 0
  config.imagenet.base.data.source = 'synthetic'  # Any data plans the ImageNet parts.
  reproduce.reproduce(config, str(tmp_path), dry_run=True)
  printed = capsys.readouterr().out
  planned = {}
  for line in printed.splitlines():
    if line.startswith('  ') and not line.startswith('    '):
      part = line.split(':')[0].strip()
    elif line.startswith('    '):
      planned.setdefault(part, []).append(line.split(':')[0].strip())
  assert planned == FULL_RUNS
  assert f'  table5: {reproduce.PARTS["table5"]}\n' in printed
  assert 'resnet152_B_seed0: 600,000 steps (0 done): no measured rate' in printed


def test_a_net_of_far_more_work_gets_a_cheaper_nets_rate_scaled_by_multiply_adds(
    tmp_path, monkeypatch):
  monkeypatch.setenv('RESNET_JAX_STEP_RATES', str(tmp_path / 'rates.json'))
  planned = {run.name: run for run in plan.planned_runs(
      {'cifar': paper.get_config('smoke').cifar}, tmp_path / 'paper')}
  plain8, deep = planned['plain8_seed0'], planned['resnet20_seeds0-1']
  time_budget.record_rate(time_budget.rate_key(plain8.config), 2.0, source='bench train: today')
  rates = plan.estimate([plain8, planned['resnet14_seed0'], deep])
  ratio = plan.step_multiply_adds(deep.config) / plan.step_multiply_adds(plain8.config)
  assert ratio > plan.TIMED_WORK_RATIO
  assert rates['resnet20_seeds0-1'].median == pytest.approx(2.0 / ratio)
  assert rates['resnet20_seeds0-1'].source.startswith(
      "plain8_seed0's rate (one measured rate (1 bench train)) scaled by multiply-adds")
  assert 'resnet14_seed0' not in rates  # Under the ratio and not measured: not estimated.


def test_tables34_nets_name_a_shortcut_option():
  with pytest.raises(ConfigError, match="'resnet34:D' is not NET:OPTION"):
    reproduce.tables34_runs(('resnet34:D',), paper.get_config('smoke').imagenet, pathlib.Path())


def test_default_plan_skips_imagenet_without_data_and_says_how_to_run_it(tmp_path, capsys):
  config = paper.get_config()
  config.estimate_steps = 0
  reproduce.reproduce(config, str(tmp_path), ['python', '-m', 'resnet_jax.reproduce'],
                      dry_run=True)
  printed = capsys.readouterr().out
  assert 'plain56_seed0: 64,000 steps' in printed
  for part in reproduce.IMAGENET_PARTS:
    assert (f'  {part}: {reproduce.PARTS[part]}: skipped, no ImageNet data configured; with '
            'imagenet2012 prepared by TFDS in TFDS_DIR: `python -m resnet_jax.reproduce '
            '--config.parts=imagenet,tables34,table5 --config.data_dir=TFDS_DIR`') in printed


@pytest.mark.parametrize('flags, message', [
    (['--config=experiments/paper.py:smoke', '--config.parts=table1,figure9'],
     "Unknown parts ['figure9']"),
    (['--config=experiments/paper.py:smoke', '--config.time_budget=soon'],
     "time_budget='soon' is not a duration"),
    (['--config=experiments/paper.py', '--config.parts=cifar,imagenet'],
     'asks for ImageNet parts, but no ImageNet data is configured'),
])
def test_bad_input_is_one_message_and_exit_status_2(tmp_path, flags, message):
  kept = tmp_path / 'kept.txt'
  kept.write_text('earlier results')
  result = run_command(tmp_path, *flags, '--config.estimate_steps=0', timeout=300)
  assert result.returncode == 2, result.stderr
  assert message in result.stderr
  assert 'Traceback' not in result.stderr and result.stdout == ''
  assert sorted(os.listdir(tmp_path)) == ['kept.txt'] and kept.read_text() == 'earlier results'


def test_the_commands_in_the_report_drop_the_budget_and_keep_the_rest():
  command = ['python', '-m', 'resnet_jax.reproduce', '--workdir=/p', '--config.parts=table1,cifar',
             '--config.time_budget=40s', '--config.cifar.seeds=2']
  kept = 'python -m resnet_jax.reproduce --workdir=/p'
  assert reproduce.part_command(command) == (f'{kept} --config.parts=table1,cifar '
                                             '--config.cifar.seeds=2')
  assert reproduce.part_command(command, 'cifar') == (f'{kept} --config.cifar.seeds=2 '
                                                      '--config.parts=cifar')


def test_a_run_stops_with_a_checkpoint_when_its_budget_is_spent(tmp_path):
  config = paper.get_config('smoke').cifar.base
  config.update(model='resnet8', time_budget='0s', log_every_steps=2, eval_every_steps=4,
                checkpoint_every_steps=4, num_train_steps=4)
  with pytest.raises(OutOfTime, match='step 1 of 4; rerun'):
    train.train_and_evaluate(config, str(tmp_path))
  assert analysis.latest_checkpoint_step(tmp_path) == 1  # The first step boundary.
  config.time_budget = ''
  train.train_and_evaluate(config, str(tmp_path))
  assert analysis.latest_checkpoint_step(tmp_path) == 4


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
  """(workdir, finished command) of one `:smoke` reproduction through the command line."""
  workdir = tmp_path_factory.mktemp('paper')
  result = run_command(workdir, *SMOKE)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


@pytest.mark.slow
def test_smoke_prints_the_plan_first_then_reports_every_part(smoke):
  workdir, result = smoke
  assert result.stdout.startswith('Plan on ')
  outcomes = json.loads((workdir / reproduce.PARTS_JSON).read_text())
  assert {part: outcome['status'] for part, outcome in outcomes.items()} == {
      part: 'complete' for part in reproduce.PARTS}
  assert outcomes['cifar']['steps_done'] == outcomes['cifar']['steps'] == 5 * 12
  assert 'resnet20_seeds0-1: 12 steps (0 done): ' in result.stdout
  markdown = (workdir / 'report.md').read_text()
  for title in reproduce.PARTS.values():
    assert f'## {title}' in markdown
  for line in ('| resnet50 | 50 | 25.6M | 3.86×10⁹ | 3.8×10⁹ | +1.5% |',
               '![figure6.png](cifar/figure6.png)', '![figure4.png](imagenet/figure4.png)',
               'Too few seeds: 1 run per net', '## Hardware and versions',
               '--config.parts=tables34`', '![figure6_right.png](cifar/figure6_right.png)',
               report.BEST_OF_NOTE, '| 2 nets | multiscale, validation | complete |',
               '(test set) |', "The paper's figure is on the ImageNet test set",
               'these errors check the plumbing and mean nothing', '--config.parts=table5`'):
    assert line in markdown
  assert '| resnet20 | complete | 2 |' in markdown
  assert '| resnet18 (B) | 10crop, Table 3 | complete |' in markdown
  assert 'depths 8, 14, 1 seed each, synthetic images' in markdown
  assert 'is Figure 1' not in markdown  # Figure 1 shows depths 20 and 56.
  numbers = report_numbers(workdir)
  assert [(row['net'], row['shortcut']) for row in numbers['tables34']] == [
      (net, shortcut) for net, shortcut in (('plain18', 'A'), ('resnet18', 'A'),
                                            ('resnet18', 'B'), ('resnet18', 'C'))
      for _ in ('10crop', 'multiscale')]
  assert {row['paper_top1_error'] for row in numbers['tables34']} == {27.94, 27.88, None}
  assert [member['shortcut'] for member in numbers['table5']['members']] == ['B', 'C']
  assert numbers['table5']['paper_top5_error'] == analysis.PAPER_ENSEMBLE_TOP5


@pytest.mark.slow
def test_smoke_report_names_its_stand_in_data_and_finds_nothing(smoke):
  report = (smoke[0] / 'report.md').read_text()
  for title, data in ((reproduce.PARTS['cifar'], 'synthetic'),
                      (reproduce.PARTS['imagenet'], 'generated'),
                      (reproduce.PARTS['tables34'], 'generated')):
    assert f'## {title}, on {data} data\n\n**Data: {data} images (' in report
  cifar = reproduce.PARTS['cifar']
  assert f'| cifar | {cifar} | complete, on synthetic data | 60 of 60 |' in report
  assert report.count('No verdict: the nets trained on synthetic images') == 1
  assert report.count('No verdict: it compares the shallowest and deepest net') == 1
  for finding in ('degradation present', 'no degradation', 'trains better', 'not train better'):
    assert finding not in report


@pytest.mark.slow
def test_smoke_html_report_is_self_contained(smoke):
  html = (smoke[0] / 'report.html').read_text()
  assert html.count('src="data:image/png;base64,') == 4  # Figures 6 (and its right), 7 and 4.
  assert 'src="cifar/' not in html and '<table>' in html


@pytest.mark.slow
def test_notebook_reads_the_papers_folder(smoke, run_notebook):
  outputs = run_notebook(RESNET_JAX_PAPER_DIR=smoke[0])
  assert sum('image/png' in output.get('data', {}) for output in outputs) == 3
  assert 'resnet18' in ''.join(str(output.get('data', '')) for output in outputs)


def _checkpoints(workdir: pathlib.Path) -> set[pathlib.Path]:
  return set(workdir.glob('cifar/*/checkpoints/*'))


@pytest.mark.slow
def test_a_budget_stop_a_kill_and_a_rerun_end_with_the_uninterrupted_numbers(smoke, tmp_path):
  """The budget stops the runs at a step, with a checkpoint, and the report says so and how to
  continue; the continuing command, killed with -9 once it has saved, is rerun, skips what
  finished and reports the numbers of the uninterrupted `:smoke` command."""
  flags = [*SMOKE, '--config.parts=table1,cifar', '--config.estimate_steps=0',
           '--config.cifar.resnet_only_depths=()']  # Depths 8 and 14: 4 of the 5 nets.
  stopped = run_command(tmp_path, *flags, '--config.time_budget=10s')
  assert stopped.returncode == OutOfTime.exit_code, stopped.stderr[-3000:]
  outcome = json.loads((tmp_path / reproduce.PARTS_JSON).read_text())['cifar']
  assert outcome['status'] == 'partial' and outcome['steps_done'] < outcome['steps']
  report = (tmp_path / 'report.md').read_text()
  continuing = shlex.join(['python', '-m', 'resnet_jax.reproduce', f'--workdir={tmp_path}',
                           *flags])
  assert ('## Stopped by the time budget\n\nThe time budget (--config.time_budget=10s) was '
          'spent') in report
  assert f'Continue (finished runs are not redone): `{continuing}`' in report
  offered = [command for line in report.splitlines() if line.startswith(('Continue', 'Reproduce'))
             for command in re.findall('`([^`]*)`', line)]
  assert len(offered) == 3 and not any('--config.time_budget' in c for c in offered)
  assert f'`{continuing}` continues' in stopped.stderr
  for run in report_numbers(tmp_path)['cifar']['runs']:
    step = analysis.latest_checkpoint_step(tmp_path / 'cifar' / run['name']) or 0
    assert step == run['steps_done'] <= run['steps']  # Stopped on a step, with its checkpoint.

  saved_by_the_stop = _checkpoints(tmp_path)
  process = start_command(tmp_path, *flags)
  while _checkpoints(tmp_path) <= saved_by_the_stop and process.poll() is None:
    time.sleep(0.2)
  assert process.poll() is None, 'the continuing command ended before it could be killed'
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  finished = run_command(tmp_path, *flags)
  assert finished.returncode == 0, finished.stderr[-3000:]
  assert 'finished, skipped' in finished.stdout
  rerun, uninterrupted = report_numbers(tmp_path), report_numbers(smoke[0])
  assert rerun['table1'] == uninterrupted['table1']
  assert rerun['cifar']['verdict'] == uninterrupted['cifar']['verdict']
  assert rerun['cifar']['table'] == [row for row in uninterrupted['cifar']['table']
                                     if row['model'] != 'resnet20']


def test_report_of_a_study_stopped_before_a_nets_first_evaluation(tmp_path):
  """A time budget can stop a net after its first steps, before it was ever evaluated."""
  row = dict(family='plain', depth=14, model='plain14', seeds=1, step=1, train_error_mean=90.0,
             train_error_std=None, eval_error_mean=None, eval_error_std=None, eval_split=None,
             paper_test_error=None)
  finished = row | dict(depth=8, model='plain8', step=12)
  runs = [dict(name='plain14_seed0', model='plain14', steps_done=1, steps=12)]
  runs += [dict(name=name, model=name.split('_')[0], steps_done=steps, steps=12)
           for name, steps in (('resnet14_seed0', 0), ('plain8_seed0', 12))]
  results = {'cifar': dict(table=[row, finished], runs=runs, verdict=[], seeds=1, depths=[8, 14],
                           stand_in='synthetic images (random pixels and labels), not cifar10')}
  outcomes = {'cifar': dict(status='partial', steps_done=13, steps=36, command='rerun it')}
  markdown = report.render(tmp_path, {'cifar': reproduce.PARTS['cifar']}, results, outcomes,
                           'python -m resnet_jax.reproduce --config.time_budget=1m',
                           dict(budget='1m', command='python -m resnet_jax.reproduce'))
  assert '| eval error (%) |' in markdown
  cifar = reproduce.PARTS['cifar']
  assert f'| cifar | {cifar} | partial, on synthetic data | 13 of 36 |' in markdown
  assert '**Data: synthetic images (random pixels and labels), not cifar10.**' in markdown
  assert '| plain14 | partial (1 of 12 steps) | 1 | 90.00 | — | — | — |' in markdown
  assert '| resnet14 | not started (0 of 12 steps) | | — | — | | — |' in markdown
  assert ('- Finished: plain8_seed0.\n- Stopped partway: plain14_seed0 (step 1 of 12).\n'
          '- Not started: resnet14_seed0.') in markdown


@pytest.mark.parametrize('eval_steps, said', [
    ([12], 'The validation error was measured once, at step 12: one marked point per net, not '
           'a curve.'),
    ([], 'No validation error was measured yet: the training curves alone.'),
    ([6, 12], None)])
def test_a_curve_figures_caption_says_when_there_is_no_curve_to_draw(tmp_path, eval_steps, said):
  (tmp_path / 'imagenet').mkdir()
  (tmp_path / 'imagenet' / study.FIGURE4_PNG).write_bytes(b'')
  result = dict(table=[dict(eval_split='validation')], eval_steps=eval_steps, depths=[18],
                seeds=1)
  figures = report._figures  # pylint: disable=protected-access
  caption = figures(tmp_path, 'imagenet', result, 'validation')[2]
  assert caption.startswith('*Figure 4: training error (dashed) and validation error (bold)')
  assert (said in caption) if said else ('measured' not in caption)


def test_report_gives_a_net_of_several_seeds_as_table6_does(tmp_path):
  """Best seed, then mean ± std; the difference best against the paper's best of 5 runs."""
  row = dict(family='resnet', depth=110, model='resnet110', seeds=5, step=64_000,
             train_error_mean=0.1, train_error_std=0.05, eval_error_mean=6.71,
             eval_error_std=0.2, eval_error_best=6.5, eval_split='test', paper_test_error=6.43)
  runs = [dict(name='resnet110_seeds0-4', model='resnet110', steps_done=64_000, steps=64_000)]
  results = {'cifar': dict(table=[row], runs=runs, verdict=[], seeds=1)}
  outcomes = {'cifar': dict(status='complete', steps_done=64_000, steps=64_000, command='it')}
  markdown = report.render(tmp_path, {'cifar': reproduce.PARTS['cifar']}, results, outcomes,
                           'python -m resnet_jax.reproduce')
  assert ('| resnet110 | complete | 5 | 0.10 ± 0.05 | 6.50 (6.71 ± 0.20) | 6.43 (best of 5 runs; '
          'mean 6.61 ± 0.16) | +0.07 |') in markdown
  assert report.BEST_OF_NOTE in markdown


def _ensemble_config(workdir: pathlib.Path, *members: str):
  eval_config = evaluate.default_config()
  eval_config.eval.mode, eval_config.eval.batch_size = 'multiscale', 16
  eval_config.eval.members = ','.join(str(workdir / 'tables34' / name) for name in members)
  return eval_config


@pytest.mark.slow
def test_an_ensemble_of_one_net_is_that_nets_own_evaluation(smoke, tmp_path):
  workdir, _ = smoke
  [name, _] = SMOKE_RUNS['tables34']
  alone = evaluate.evaluate_ensemble(_ensemble_config(workdir, name), str(tmp_path))
  own = json.loads((workdir / 'tables34' / name / 'eval_multiscale.json').read_text())
  assert [member['step'] for member in alone['members']] == [own['step']]
  assert (alone['error'], alone['top5_error'], alone['images']) == (
      own['error'], own['top5_error'], own['images'])
  assert alone['loss'] == pytest.approx(own['loss'], rel=1e-5)
  assert (tmp_path / 'ensemble_multiscale.json').exists()


@pytest.mark.slow
def test_the_ensembles_errors_are_those_of_its_averaged_probabilities(smoke):
  """The smoke's Table 5 ensemble against numpy on each member's own class scores."""
  workdir, _ = smoke
  eval_config = _ensemble_config(workdir, *SMOKE_RUNS['tables34'])
  members, labels = [], None
  for name in SMOKE_RUNS['tables34']:
    run = evaluate.ScoredRun.build(workdir / 'tables34' / name, eval_config)
    _, scores, labels = run.scores('multiscale', 16)
    members.append(np.asarray(scores, np.float64) / np.sum(scores, axis=1, keepdims=True))
  averaged = np.mean(members, axis=0)
  top5 = np.argsort(averaged, axis=1)[:, -5:]
  expected = {'error': np.mean(averaged.argmax(axis=1) != labels),
              'top5_error': np.mean(~(top5 == labels[:, None]).any(axis=1)),
              # The loss clamps a probability that underflowed to 0, as the evaluation's does.
              'loss': -np.mean(np.log(np.maximum(averaged[np.arange(len(labels)), labels],
                                                 1e-12)))}
  written = report_numbers(workdir)['table5']
  assert written['top1_error'] == pytest.approx(100 * expected['error'])
  assert written['top5_error'] == pytest.approx(100 * expected['top5_error'])
  saved = json.loads((workdir / 'table5' / 'ensemble_multiscale.json').read_text())
  assert saved['loss'] == pytest.approx(expected['loss'], rel=1e-4)
  assert saved['images'] == len(labels)


@pytest.mark.slow
def test_ensemble_members_on_other_data_are_refused_in_one_line(smoke, tmp_path):
  workdir, _ = smoke
  [name, _] = SMOKE_RUNS['tables34']
  other = tmp_path / 'other_data'
  other.mkdir()
  config = json.loads((workdir / 'tables34' / name / 'config.json').read_text())
  config['data']['source'] = 'synthetic'  # Generated images of other classes.
  (other / 'config.json').write_text(json.dumps(config))
  eval_config = _ensemble_config(workdir, name)
  eval_config.eval.members += f',{other}'
  with pytest.raises(ConfigError, match=f'Ensemble members disagree: {other} was tested on') as e:
    evaluate.evaluate_ensemble(eval_config, str(tmp_path / 'ensemble'))
  assert '\n' not in str(e.value)
  assert not (tmp_path / 'ensemble').exists()
