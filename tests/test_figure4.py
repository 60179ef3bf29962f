"""The Figure 4 study (Table 2's plain and residual ImageNet nets): its config and plan, the
verdict against the paper's schedule, and its smoke variant through the command line on a
generated ILSVRC folder."""
import contextlib
import io
import json
import pathlib
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

import figure4
import paper
from resnet_jax import analysis
from resnet_jax.errors import ConfigError
from resnet_jax.paper import study

REPO = pathlib.Path(__file__).resolve().parents[1]
# One depth (two nets) of 4 steps, evaluated at steps 2 and 4: the shortest run of every file.
# Its learning rate drops where the capstone's smoke ImageNet part has it drop (past step 4):
# the same train programs as test_reproduce's, compiled once (the persistent cache).
SMOKE_OVERRIDES = {'depths': '(18,)', 'base.num_train_steps': 4, 'base.log_every_steps': 2,
                   'base.eval_every_steps': 2, 'base.checkpoint_every_steps': 4,
                   'base.optimizer.lr_boundaries':
                       paper.SMOKE_IMAGENET['base.optimizer.lr_boundaries']}


def test_the_study_trains_table2s_nets_with_option_a_one_net_per_run():
  runs = study.planned_runs(figure4.get_config())
  assert list(runs) == ['plain18_seed0', 'resnet18_seed0', 'plain34_seed0', 'resnet34_seed0']
  assert {(run.shortcut, run.num_replicas, run.dtype) for run in runs.values()} == {
      ('A', 1, 'bfloat16')}
  assert {run.optimizer.warmup_steps for run in runs.values()} == {0}
  smoke = figure4.get_config('smoke')
  smoke.seeds = 2
  runs = study.planned_runs(smoke)
  assert list(runs)[:2] == ['plain18_seed0', 'plain18_seed1']
  assert {(run.batch_size, run.data.crop_size) for run in runs.values()} == {(16, 32)}


@pytest.mark.parametrize('field, value, message', [
    ('seeds_in_one_program', True, 'trains one net per run.*seeds_in_one_program=False'),
    ('depths', (18, 20), 'ImageNet nets of depth 18, 34, 50, 101 or 152, got depth 20'),
])
def test_planned_runs_refuse_what_the_streamed_nets_cannot_do(field, value, message):
  config = figure4.get_config()
  config.seeds = 2
  config[field] = value
  with pytest.raises(ConfigError, match=message):
    study.planned_runs(config)


def test_config_refuses_nets_and_unknown_variants():
  with pytest.raises(ValueError, match=r"Unknown config variants \['resnet50'\].*--config.depths"):
    figure4.get_config('resnet50')


def test_verdict_weighs_the_steps_against_figure4s_schedule():
  table = pd.DataFrame({'family': ['plain', 'plain', 'resnet', 'resnet'],
                        'depth': [18, 34, 18, 34],
                        'model': ['plain18', 'plain34', 'resnet18', 'resnet34'],
                        'train_error_mean': [30.0, 32.0, 29.0, 26.0], 'step': [20] * 4})
  too_few, plain, resnet = analysis.verdict(table, analysis.IMAGENET_TABLE2)
  assert too_few.startswith('No verdict: they trained 20 steps, the paper 600,000 (Figure 4), '
                            'and a verdict needs at least 150,000')
  assert (plain, resnet) == ('plain34 train error 32.00%, plain18 30.00%',
                             'resnet34 train error 26.00%, resnet18 29.00%')
  plain, resnet = analysis.verdict(table.assign(step=150_000), analysis.IMAGENET_TABLE2)
  assert plain.endswith('degradation present')
  assert resnet.endswith('the deeper residual net trains better')


def test_notebook_shows_table2_and_figure4_of_an_imagenet_study(tmp_path, run_notebook):
  for model in ('plain18', 'resnet18'):
    run = tmp_path / f'{model}_seed0'
    run.mkdir()
    (run / 'config.json').write_text(json.dumps({'model': model, 'seed': 0}))
    records = [{'step': step, 'split': split, 'loss': 2.0, 'error': 0.5}
               for step in (2, 4) for split in ('train', 'validation')]
    (run / 'metrics.jsonl').write_text(''.join(json.dumps(record) + '\n' for record in records))
  outputs = run_notebook(RESNET_JAX_STUDY_DIR=tmp_path)
  assert '27.94' in outputs[0]['data']['text/plain']  # plain18's top-1 error in Table 2.
  assert sum('image/png' in output.get('data', {}) for output in outputs) == 1  # Figure 4.
  assert 'No Figure 7' in ''.join(output.get('text', '') for output in outputs)


@pytest.mark.slow
def test_smoke_study_through_the_command_line(tmp_path):
  """2 nets of 4 steps: about 2 minutes on 2 CPU cores, mostly compiling."""
  study_dir = tmp_path / 'figure4'
  overrides = [f'--config.{key}={value}' for key, value in SMOKE_OVERRIDES.items()]
  result = subprocess.run(
      [sys.executable, '-m', 'resnet_jax.study', '--config=experiments/figure4.py:smoke',
       f'--workdir={study_dir}', f'--config.base.data.cache_dir={tmp_path / "cache"}',
       *overrides], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Wrote results.md, results.csv and figure4.png' in result.stdout
  assert 'no figure7.png' in result.stdout
  # One depth: nothing to compare (the verdict's sentences: test_verdict_weighs_the_steps...).
  assert ('No verdict: it compares the shallowest and deepest net of a family, and these runs '
          'have one depth (18)') in result.stdout

  table = pd.read_csv(study_dir / study.RESULTS_CSV)
  assert list(table.model) == ['plain18', 'resnet18']
  assert set(table.step) == {4} and set(table.eval_split) == {'validation'}
  assert list(table.paper_test_error) == [27.94, 27.88]
  assert table[['train_error_mean', 'eval_error_mean']].stack().between(0, 100).all()
  markdown = (study_dir / study.RESULTS_MD).read_text()
  assert '| validation error (%) | paper top-1 error (%), Table 2 (10-crop) |' in markdown
  assert '| plain18 | 1 | 4 |' in markdown and '| 27.88 |' in markdown
  assert 'dashed curves of Figure 4' in markdown and '10-crop testing' in markdown
  assert Image.open(study_dir / study.FIGURE4_PNG).format == 'PNG'
  assert not (study_dir / study.FIGURE7_PNG).exists()

  # The folder it trained on: written under the study, with ILSVRC's odd files.
  first_class = study_dir / study.GENERATED_IMAGES / 'train' / 'n00000000'
  odd = [Image.open(first_class / f'n00000000_{index}.JPEG') for index in range(3)]
  assert [(image.format, image.mode) for image in odd] == [('JPEG', 'L'), ('JPEG', 'CMYK'),
                                                          ('PNG', 'RGB')]

  # A rerun trains nothing and writes the folder no second time.
  written = first_class.stat().st_mtime_ns
  config = figure4.get_config('smoke')
  config.update_from_flattened_dict({**SMOKE_OVERRIDES, 'depths': (18,),
                                     'base.data.cache_dir': str(tmp_path / 'cache')})
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    verdict = study.run_study(config, str(study_dir))
  assert [sentence.split(':')[0] for sentence in verdict] == ['No verdict']  # One depth.
  assert printed.getvalue().count('finished, skipped') == 2
  assert first_class.stat().st_mtime_ns == written
