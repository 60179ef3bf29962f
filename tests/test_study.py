"""The degradation study: its plan of runs, and its smoke variant end to end on synthetic data
(every result file, the verdict, skipping finished runs, resuming interrupted ones, the command
line and the notebook that reads a study)."""
import contextlib
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import degradation
import paper
from resnet_jax import analysis, train
from resnet_jax.errors import ConfigError
from resnet_jax.paper import study

REPO = pathlib.Path(__file__).resolve().parents[1]
# The smoke study on synthetic data, for 6 steps: checkpoints at 3 and 6, evals at 3 and 6.
# The learning rate drops where the capstone's smoke CIFAR part has it drop, past step 6 as the
# degradation smoke's own drops are: the same train programs as test_reproduce's, compiled once
# for both (the session's persistent compilation cache).
SYNTHETIC_SMOKE = {'base.data.source': 'synthetic', 'base.data.validation_size': 0,
                   'base.num_train_steps': 6, 'base.log_every_steps': 2,
                   'base.eval_every_steps': 3, 'base.checkpoint_every_steps': 3,
                   'base.optimizer.lr_boundaries':
                       paper.SMOKE_CIFAR['base.optimizer.lr_boundaries']}
SMOKE_RUNS = ['plain8_seed0', 'resnet8_seed0', 'plain14_seed0', 'resnet14_seed0']
FIRST_COLOURS = ((0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e))  # matplotlib's C0 and C1.


def synthetic_smoke_config():
  config = degradation.get_config('smoke')
  config.update_from_flattened_dict(SYNTHETIC_SMOKE)
  return config


@pytest.fixture(scope='module')
def smoke_study(tmp_path_factory):
  """(study folder, what the study printed, its verdict) of one synthetic smoke study.

  It trains 4 nets, 1.5 to 3 minutes on 2 CPU cores (mostly compiling), so every test that uses
  it is marked slow.
  """
  study_dir = tmp_path_factory.mktemp('study')
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    verdict = study.run_study(synthetic_smoke_config(), str(study_dir))
  return study_dir, printed.getvalue(), verdict


@pytest.fixture
def study_copy(smoke_study, tmp_path):
  """A copy of the smoke study that a test may change."""
  return pathlib.Path(shutil.copytree(smoke_study[0], tmp_path / 'study'))


def test_planned_runs_cover_every_depth_family_and_seed():
  config = degradation.get_config()
  config.seeds = 2
  config.seeds_in_one_program = False
  config.base.num_train_steps = 100
  runs = study.planned_runs(config)
  assert list(runs) == ['plain20_seed0', 'plain20_seed1', 'resnet20_seed0', 'resnet20_seed1',
                        'plain56_seed0', 'plain56_seed1', 'resnet56_seed0', 'resnet56_seed1']
  assert [(run.model, run.seed) for run in runs.values()][-3:] == [
      ('plain56', 1), ('resnet56', 0), ('resnet56', 1)]
  assert {run.num_train_steps for run in runs.values()} == {100}
  assert config.base.model == 'resnet20'  # Runs are copies; the base is left alone.


def test_planned_programs_train_each_nets_seeds_at_once():
  config = degradation.get_config('full')
  config.seeds = 5
  programs = study.planned_runs(config)
  assert list(programs)[:3] == ['plain20_seeds0-4', 'resnet20_seeds0-4', 'plain32_seeds0-4']
  assert len(programs) == 11  # 5 depths of both families, and ResNet-1202.
  assert {(run.seed, run.num_replicas, run.mesh.data) for run in programs.values()} == {(0, 5, -1)}
  assert programs['resnet110_seeds0-4'].optimizer.warmup_steps == 400
  config.seeds = 1  # One seed is one run, named as seed by seed.
  assert list(study.planned_runs(config))[:2] == ['plain20_seed0', 'resnet20_seed0']


@pytest.mark.parametrize('num_replicas, device_count, groups', [
    (5, 8, 1), (2, 8, 2), (4, 8, 4), (8, 8, 8), (10, 8, 2), (16, 8, 8), (5, 32, 1), (8, 32, 8)])
def test_replica_groups_divide_both_the_seeds_and_the_devices(num_replicas, device_count, groups):
  assert study.replica_groups(num_replicas, device_count) == groups


def test_only_the_deepest_nets_warm_up():
  runs = study.planned_runs(degradation.get_config('full'))
  warmup = {name: run.optimizer.warmup_steps for name, run in runs.items()}
  assert warmup['resnet110_seeds0-4'] == warmup['plain110_seed0'] == 400
  assert warmup['resnet1202_seed0'] == 400
  assert warmup['resnet56_seed0'] == warmup['plain20_seed0'] == 0


def test_full_adds_a_scanned_resnet1202_and_five_seeds_of_resnet110():
  runs = study.planned_runs(degradation.get_config('full'))
  assert list(runs)[-3:] == ['plain110_seed0', 'resnet110_seeds0-4', 'resnet1202_seed0']
  assert 'plain1202_seed0' not in runs  # Table 6 has no plain-1202.
  assert runs['resnet110_seeds0-4'].num_replicas == 5
  assert {name for name, run in runs.items() if run.scan_blocks} == {'resnet1202_seed0'}
  config = degradation.get_config('full')
  config.seeds_in_one_program = False  # Seed by seed: five runs of ResNet-110, one of others.
  names = list(study.planned_runs(config))
  assert [name for name in names if name.startswith('resnet110')] == [
      f'resnet110_seed{seed}' for seed in range(5)]
  assert names.count('resnet56_seed0') == 1 and 'resnet56_seed1' not in names
  assert study.deepest_resnet_depths(config) == (110, 1202)
  assert study.deepest_resnet_depths(degradation.get_config()) == ()


@pytest.mark.parametrize('field, value, message', [
    ('depths', (20, 18), 'CIFAR nets of depth 6n\\+2'),
    ('depths', (21,), 'depth must be 6n\\+2'),
    ('seeds', 0, 'seeds must be at least 1'),
])
def test_planned_runs_refuse_bad_settings(field, value, message):
  config = degradation.get_config()
  config[field] = value
  with pytest.raises(ValueError, match=message):
    study.planned_runs(config)


@pytest.mark.slow
def test_smoke_study_writes_the_table(smoke_study):
  study_dir, _, _ = smoke_study
  table = pd.read_csv(study_dir / study.RESULTS_CSV)
  assert list(table.model) == ['plain8', 'plain14', 'resnet8', 'resnet14']
  assert set(table.seeds) == {1} and set(table.step) == {6} and set(table.eval_split) == {'test'}
  for column in ('train_error_mean', 'eval_error_mean'):
    assert table[column].between(0, 100).all()
  markdown = (study_dir / study.RESULTS_MD).read_text()
  for model in table.model:
    assert f'| {model} | 1 | 6 |' in markdown


@pytest.mark.slow
def test_smoke_study_draws_both_figures(smoke_study):
  study_dir, _, _ = smoke_study
  for name in (study.FIGURE6_PNG, study.FIGURE7_PNG):
    pixels = np.round(matplotlib.image.imread(study_dir / name)[..., :3] * 255).astype(int)
    for colour in FIRST_COLOURS:  # The two depths' curves are drawn.
      assert (pixels == colour).all(-1).sum() > 100, f'{name} lacks the curves in {colour}'
  figure6 = analysis.figure6(analysis.load_study(study_dir))
  assert [len(ax.lines) for ax in figure6.axes] == [4, 4]


@pytest.mark.slow
def test_smoke_study_measures_every_layer_of_every_net(smoke_study):
  study_dir, _, _ = smoke_study
  responses = pd.read_csv(study_dir / study.RESPONSES_CSV)
  layers = responses.groupby('run').layer.max().to_dict()
  assert layers == {'plain8_seed0': 7, 'resnet8_seed0': 7, 'plain14_seed0': 13,
                    'resnet14_seed0': 13}  # 6n+1 3x3 layers: the stem and 2 per block.
  assert (responses['std'] > 0).all()


@pytest.mark.slow
def test_smoke_study_prints_progress_and_a_checkable_verdict(smoke_study):
  study_dir, printed, verdict = smoke_study
  for index, run in enumerate(SMOKE_RUNS, start=1):
    assert f'[{index}/4] {run}: training to step 6' in printed
  table = pd.read_csv(study_dir / study.RESULTS_CSV).set_index('model').train_error_mean
  too_few_steps, plain, resnet = verdict
  assert too_few_steps.startswith('No verdict: the nets trained on synthetic images (random '
                                  'pixels and labels), not cifar10; they trained 6 steps')
  assert plain == (f'plain14 train error {table["plain14"]:.2f}%, plain8 {table["plain8"]:.2f}%')
  assert re.fullmatch(r'resnet14 train error [\d.]+%, resnet8 [\d.]+%', resnet)
  assert f'  {too_few_steps}\n  {plain}\n  {resnet}\n' in printed


@pytest.mark.slow
def test_rerun_skips_finished_runs(study_copy, monkeypatch, capsys):
  def no_training(*args):
    raise AssertionError(f'trained a finished run: {args}')

  monkeypatch.setattr(train, 'train_and_evaluate', no_training)
  study.train_runs(synthetic_smoke_config(), study_copy)
  assert capsys.readouterr().out.count('finished, skipped') == 4


@pytest.mark.slow
def test_rerun_resumes_an_interrupted_run(study_copy, monkeypatch, capsys):
  shutil.rmtree(study_copy / 'resnet8_seed0' / 'checkpoints' / '6')
  trained = []
  monkeypatch.setattr(train, 'train_and_evaluate', lambda config, workdir, deadline=None:
                      trained.append((config.model, workdir)))
  study.train_runs(synthetic_smoke_config(), study_copy)
  assert trained == [('resnet8', str(study_copy / 'resnet8_seed0'))]
  assert '[2/4] resnet8_seed0: resuming from step 3 to step 6' in capsys.readouterr().out


@pytest.mark.slow
def test_a_run_without_its_final_records_is_not_finished(study_copy):
  run = study.planned_runs(synthetic_smoke_config())['plain8_seed0']
  metrics = study_copy / 'plain8_seed0' / 'metrics.jsonl'
  assert study.is_finished(study_copy / 'plain8_seed0', run)
  metrics.write_text(''.join(line + '\n' for line in metrics.read_text().splitlines()
                             if '"step": 6' not in line))
  assert not study.is_finished(study_copy / 'plain8_seed0', run)
  metrics.write_text('')  # Killed before its first record.
  assert not study.is_finished(study_copy / 'plain8_seed0', run)


@pytest.mark.slow
def test_command_line_reruns_a_finished_study(study_copy):
  for name in (study.RESULTS_CSV, study.FIGURE6_PNG, study.FIGURE7_PNG):
    (study_copy / name).unlink()
  overrides = [f'--config.{key}={value}' for key, value in SYNTHETIC_SMOKE.items()]
  result = subprocess.run(
      [sys.executable, '-m', 'resnet_jax.study', '--config=experiments/degradation.py:smoke',
       f'--workdir={study_copy}', *overrides],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count('finished, skipped') == 4
  assert 'Verdict (final training error):' in result.stdout
  for name in (study.RESULTS_CSV, study.FIGURE6_PNG, study.FIGURE7_PNG):
    assert (study_copy / name).exists()


@pytest.mark.slow
def test_notebook_runs_on_a_study(smoke_study, run_notebook):
  outputs = run_notebook(RESNET_JAX_STUDY_DIR=smoke_study[0])
  assert sum('image/png' in output.get('data', {}) for output in outputs) == 2
  assert 'resnet14' in outputs[0]['data']['text/plain']
  assert 'plain14 train error' in ''.join(output.get('text', '') for output in outputs)


def one_depth_two_seeds_config(**overrides):
  config = synthetic_smoke_config()
  config.depths, config.seeds = (8,), 2
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def seed_studies(smoke_study, tmp_path_factory):
  """(seed by seed, one program per net, what the latter printed): depth 8 and seeds 0-1 of the
  smoke study, trained seed by seed (seed 0 copied from the smoke study) and, from the command
  line on 8 devices, each net's seeds as one program on 2 replica groups of 4 devices."""
  by_seed = tmp_path_factory.mktemp('seed_by_seed')
  for name in ('plain8_seed0', 'resnet8_seed0'):
    shutil.copytree(smoke_study[0] / name, by_seed / name)
  with contextlib.redirect_stdout(io.StringIO()):
    study.run_study(one_depth_two_seeds_config(seeds_in_one_program=False), str(by_seed))
  in_one = tmp_path_factory.mktemp('seeds_in_one_program')
  overrides = [f'--config.{key}={value}'
               for key, value in {**SYNTHETIC_SMOKE, 'depths': (8,), 'seeds': 2}.items()]
  result = subprocess.run(
      [sys.executable, '-m', 'resnet_jax.study', '--config=experiments/degradation.py:smoke',
       f'--workdir={in_one}', *overrides], cwd=REPO, capture_output=True, text=True,
      timeout=600, env={**os.environ, 'XLA_FLAGS': os.environ.get('XLA_FLAGS', '') +
                                   ' --xla_force_host_platform_device_count=8'})
  assert result.returncode == 0, result.stderr[-3000:]
  return by_seed, in_one, result.stdout


@pytest.mark.slow
def test_seeds_in_one_program_give_the_results_of_seed_by_seed(seed_studies):
  by_seed, in_one, printed = seed_studies
  assert '[1/2] plain8_seeds0-1: training to step 6 (2 seeds on 2 replica groups)' in printed
  assert sorted(p.parent.name for p in in_one.glob('*/metrics.jsonl')) == [
      'plain8_seeds0-1', 'resnet8_seeds0-1']
  # Figure 7's stds to 0.5%: the final nets agree to float tolerance, which a plain net 6 steps
  # into training amplifies to 0.1% in some layers (as 8 devices against 1 do seed by seed);
  # two seeds' stds differ by more.
  for name, numbers, rtol in ((study.RESULTS_CSV, ['train_error_mean', 'train_error_std',
                                                   'eval_error_mean', 'eval_error_std'], 1e-4),
                              (study.RESPONSES_CSV, ['std'], 5e-3)):
    expected, table = pd.read_csv(by_seed / name), pd.read_csv(in_one / name)
    pd.testing.assert_frame_equal(table.drop(columns=numbers), expected.drop(columns=numbers))
    np.testing.assert_allclose(table[numbers], expected[numbers], rtol=rtol)
  table = pd.read_csv(in_one / study.RESULTS_CSV)
  assert set(table.seeds) == {2} and table.train_error_std.notna().all()


@pytest.mark.slow
def test_finished_programs_and_seed_by_seed_runs_are_skipped(seed_studies, monkeypatch, capsys):
  by_seed, in_one, _ = seed_studies

  def no_training(*args):
    raise AssertionError(f'trained a finished run: {args}')

  monkeypatch.setattr(train, 'train_and_evaluate', no_training)
  study.train_runs(one_depth_two_seeds_config(), in_one)
  assert capsys.readouterr().out.count('finished, skipped') == 2
  study.train_runs(one_depth_two_seeds_config(), by_seed)
  assert capsys.readouterr().out.count('finished seed by seed, skipped') == 2


@pytest.mark.slow
def test_a_program_would_not_train_seeds_begun_seed_by_seed(seed_studies, tmp_path):
  by_seed = pathlib.Path(shutil.copytree(seed_studies[0], tmp_path / 'study'))
  shutil.rmtree(by_seed / 'resnet8_seed1' / 'checkpoints' / '6')
  with pytest.raises(ConfigError, match='resnet8_seed0, resnet8_seed1 of resnet8 trained seed '
                     'by seed, not all finished; finish them .*seeds_in_one_program=False'):
    study.train_runs(one_depth_two_seeds_config(), by_seed)


@pytest.mark.slow
def test_only_process_0_writes_the_results(study_copy, monkeypatch, capsys):
  for name in (study.RESULTS_CSV, study.RESULTS_MD, study.RESPONSES_CSV, study.FIGURE6_PNG,
               study.FIGURE7_PNG):
    (study_copy / name).unlink()
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  verdict = study.run_study(synthetic_smoke_config(), str(study_copy))
  assert len(verdict) == 3 and capsys.readouterr().out.count('finished, skipped') == 4
  assert sorted(path.name for path in study_copy.iterdir()) == sorted(SMOKE_RUNS)


def test_results_csv_rounds_away_float_noise():
  table = pd.DataFrame({'model': ['plain20'], 'train_error_mean': [78.12500000000001],
                        'step': [30]})
  assert study.csv_text(table) == 'model,train_error_mean,step\nplain20,78.125,30\n'
