"""The analysis library: runs as DataFrames, Table 6, the verdict, layer-response stds, plots."""
import json
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from resnet_jax import analysis, models
from resnet_jax.analysis import ensemble
from resnet_jax.errors import ConfigError
from resnet_jax.models.cifar import blocks_per_stage

BN_EPSILON = 1e-5  # resnet_jax.models.layers.BatchNorm's epsilon.


def write_run(workdir, model, seed, records, num_replicas=1):
  """A run folder as the trainer leaves it: config.json and metrics.jsonl."""
  workdir.mkdir(parents=True)
  (workdir / 'config.json').write_text(
      json.dumps({'model': model, 'seed': seed, 'num_replicas': num_replicas}))
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  return workdir


def records(train_errors, test_errors, every=10):
  """Train and test records at steps every, 2 * every, ... with the given errors."""
  return ([{'step': every * (i + 1), 'split': 'train', 'error': e, 'loss': 1.0}
           for i, e in enumerate(train_errors)]
          + [{'step': every * (i + 1), 'split': 'test', 'error': e, 'loss': 1.0}
             for i, e in enumerate(test_errors)])


@pytest.fixture
def study_dir(tmp_path):
  """Two depths of both families; resnet20 has two seeds."""
  write_run(tmp_path / 'plain20_seed0', 'plain20', 0, records([0.5, 0.10], [0.6, 0.12]))
  write_run(tmp_path / 'plain56_seed0', 'plain56', 0, records([0.6, 0.14], [0.7, 0.15]))
  write_run(tmp_path / 'resnet20_seed0', 'resnet20', 0, records([0.5, 0.08], [0.5, 0.09]))
  write_run(tmp_path / 'resnet20_seed1', 'resnet20', 1, records([0.5, 0.10], [0.5, 0.11]))
  write_run(tmp_path / 'resnet56_seed0', 'resnet56', 0, records([0.4, 0.05], [0.5, 0.07]))
  (tmp_path / 'results.md').write_text('not a run')
  return tmp_path


def test_load_run_adds_the_run_and_its_config(study_dir):
  run = analysis.load_run(study_dir / 'plain56_seed0')
  assert {'step', 'split', 'error', 'loss', 'run', 'model', 'family', 'depth', 'seed'} <= set(
      run.columns)
  assert len(run) == 4
  assert set(run.run) == {'plain56_seed0'} and set(run.model) == {'plain56'}
  assert set(run.family) == {'plain'} and set(run.depth) == {56} and set(run.seed) == {0}


def test_load_run_names_a_folder_that_is_not_a_run(tmp_path):
  with pytest.raises(FileNotFoundError, match='not a run directory'):
    analysis.load_run(tmp_path)


def test_load_study_reads_every_run_folder(study_dir):
  runs = analysis.load_study(study_dir)
  assert sorted(set(runs.run)) == ['plain20_seed0', 'plain56_seed0', 'resnet20_seed0',
                                   'resnet20_seed1', 'resnet56_seed0']
  assert set(runs.family) == {'plain', 'resnet'}
  assert len(runs) == 5 * 4


def test_a_workdir_of_several_seeds_reads_as_a_run_per_seed(tmp_path):
  seeds = [{**record, 'seed': seed} for record in records([0.5, 0.1], [0.6, 0.2])
           for seed in (3, 4)]
  run = analysis.load_run(write_run(tmp_path / 'plain20_seeds3-4', 'plain20', 3, seeds,
                                    num_replicas=2))
  assert sorted(set(run.run)) == ['plain20_seed3', 'plain20_seed4']
  assert list(run.seed[run.run == 'plain20_seed4']) == [4] * 4
  assert set(run.workdir) == {str(tmp_path / 'plain20_seeds3-4')}
  final = analysis.final_errors(run).set_index('run')
  assert list(final.seed) == [3, 4] and list(final.train_error) == pytest.approx([10, 10])


@pytest.mark.parametrize('seed', [None, 5])
def test_load_trained_run_of_several_seeds_needs_one_of_them(tmp_path, seed):
  workdir = write_run(tmp_path / 'plain20_seeds3-4', 'plain20', 3, [], num_replicas=2)
  with pytest.raises(ValueError, match=r'trained seeds \[3, 4\], not .*; pass one of them'):
    analysis.load_trained_run(workdir, seed=seed)


def test_a_seed_trained_in_two_folders_is_refused(study_dir):
  seeds = [{**record, 'seed': seed} for record in records([0.5], [0.6]) for seed in (0, 1)]
  write_run(study_dir / 'resnet20_seeds0-1', 'resnet20', 0, seeds, num_replicas=2)
  with pytest.raises(ValueError, match='resnet20_seed0 was trained twice, in .*resnet20_seed0 '
                     'and .*resnet20_seeds0-1; move one of them out of'):
    analysis.load_study(study_dir)


def test_load_study_of_an_empty_folder_says_how_to_make_one(tmp_path):
  with pytest.raises(FileNotFoundError, match='python -m resnet_jax.study'):
    analysis.load_study(tmp_path)


def test_final_errors_take_each_runs_last_records_in_percent(study_dir):
  final = analysis.final_errors(analysis.load_study(study_dir)).set_index('run')
  assert final.loc['plain56_seed0', 'train_error'] == pytest.approx(14)
  assert final.loc['plain56_seed0', 'eval_error'] == pytest.approx(15)
  assert final.loc['plain56_seed0', 'step'] == 20
  assert set(final.eval_split) == {'test'}


def test_summary_averages_seeds_and_adds_table6(study_dir):
  table = analysis.summarize(analysis.final_errors(analysis.load_study(study_dir)))
  assert list(table.model) == ['plain20', 'plain56', 'resnet20', 'resnet56']
  resnet20 = table.set_index('model').loc['resnet20']
  assert resnet20.seeds == 2
  assert resnet20.train_error_mean == pytest.approx(9)
  assert resnet20.train_error_std == pytest.approx(np.std([8, 10], ddof=1))
  assert resnet20.paper_test_error == 8.75
  assert resnet20.eval_error_best == pytest.approx(9)  # The better of its seeds: 9 and 11 %.
  assert math.isnan(table.set_index('model').loc['plain56', 'paper_test_error'])


def test_markdown_shows_every_net_the_papers_numbers_and_the_verdict(study_dir):
  table = analysis.summarize(analysis.final_errors(analysis.load_study(study_dir)))
  markdown = analysis.results_markdown(table, ['a verdict'])
  rows = [line for line in markdown.splitlines() if line.startswith('| ')]
  assert len(rows) == 2 + 4
  assert '| resnet20 | 2 | 20 | 9.00 ± 1.41 | 10.00 ± 1.41 | 8.75 |' in markdown
  assert '| plain56 | 1 | 20 | 14.00 | 15.00 | — |' in markdown
  assert 'test error (%)' in markdown and '- a verdict' in markdown


def test_markdown_notes_the_best_of_five_resnet110():
  table = pd.DataFrame({'family': ['resnet'], 'depth': [110], 'model': ['resnet110'],
                        'seeds': [1], 'step': [64000], 'train_error_mean': [0.5],
                        'train_error_std': [float('nan')], 'eval_error_mean': [6.5],
                        'eval_error_std': [float('nan')], 'eval_split': ['test'],
                        'paper_test_error': [6.43]})
  assert '6.43 (best of 5 runs; mean 6.61 ± 0.16)' in analysis.results_markdown(table, [])


def test_markdown_of_a_study_stopped_before_a_nets_first_evaluation():
  """A time budget can stop a study after a net's first steps but before its evaluation."""
  nan = float('nan')
  table = pd.DataFrame({'family': ['resnet', 'plain'], 'depth': [8, 14],
                        'model': ['resnet8', 'plain14'], 'seeds': [1, 1], 'step': [12, 1],
                        'train_error_mean': [60.0, 90.0], 'train_error_std': [nan, nan],
                        'eval_error_mean': [70.0, nan], 'eval_error_std': [nan, nan],
                        'eval_split': ['test', nan], 'paper_test_error': [nan, nan]})
  markdown = analysis.results_markdown(table, [])
  assert '| test error (%) |' in markdown
  assert '| plain14 | 1 | 1 | 90.00 | — | — |' in markdown


def results_table(train_errors: dict) -> pd.DataFrame:
  """A summarize()-like table with the given mean train error (%) per net."""
  nets = [models.parse(name) for name in train_errors]
  return pd.DataFrame({
      'family': ['resnet' if net.residual else 'plain' for net in nets],
      'depth': [net.depth for net in nets], 'model': list(train_errors),
      'train_error_mean': list(train_errors.values())})


def test_verdict_sees_degradation_and_residual_improvement():
  plain, resnet = analysis.compare_depths(results_table(
      {'plain56': 12.3, 'plain20': 9.1, 'resnet20': 7.0, 'resnet56': 5.0}))
  assert plain.deeper_trains_worse and resnet.deeper_trains_better
  assert plain.sentence() == 'plain56 train error 12.30% > plain20 9.10%: degradation present'
  assert resnet.sentence() == ('resnet56 train error 5.00% < resnet20 7.00%: the deeper '
                               'residual net trains better')


def test_verdict_sees_no_degradation_and_no_residual_improvement():
  plain, resnet = analysis.compare_depths(results_table(
      {'plain20': 9.1, 'plain56': 8.0, 'resnet20': 7.0, 'resnet56': 7.0}))
  assert not plain.deeper_trains_worse and not resnet.deeper_trains_better
  assert plain.sentence().endswith('8.00% <= plain20 9.10%: no degradation')
  assert resnet.sentence().endswith('>= resnet20 7.00%: the deeper residual net does not train '
                                    'better')


@pytest.mark.parametrize('data, stand_in', [
    ({'source': 'synthetic', 'name': 'cifar10'}, 'synthetic images (random pixels and labels), '
     'not cifar10'),
    ({'source': 'folder', 'name': 'imagenet2012', 'path': '/tmp/paper/imagenet/generated_images'},
     'generated images (a folder of random images of a few classes), not imagenet2012'),
    ({'source': 'folder', 'name': 'imagenet2012', 'path': '/data/ILSVRC'}, None),
    ({'source': 'archive', 'name': 'cifar10'}, None)])
def test_a_verdict_on_stand_in_data_is_no_finding(data, stand_in):
  assert analysis.stand_in_data({'data': data}) == stand_in
  table = results_table({'plain20': 9.1, 'plain56': 12.3}).assign(step=64_000)
  sentences = analysis.verdict(table, stand_in=analysis.stand_in_data({'data': data}))
  if stand_in:
    assert sentences == [f'No verdict: the nets trained on {stand_in}. The final training errors '
                         'only show that the study runs end to end:',
                         'plain56 train error 12.30%, plain20 9.10%']
  else:
    assert sentences == ['plain56 train error 12.30% > plain20 9.10%: degradation present']


def test_verdict_compares_the_shallowest_and_deepest_nets_of_each_family():
  comparisons = analysis.compare_depths(results_table(
      {'resnet20': 8.0, 'resnet110': 4.0, 'resnet56': 9.0, 'plain32': 1.0}))
  assert [(c.shallow_model, c.deep_model) for c in comparisons] == [('resnet20', 'resnet110')]


def abstract_variables(model, image_shape=(32, 32, 3)):
  # Shapes only: eager init would compile every op on first use (tens of seconds on a CPU).
  abstract = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1,) + image_shape))
  return flax.traverse_util.flatten_dict(abstract)


def identity_conv_variables(model, bn_scale):
  """Variables of a CIFAR net whose 3x3 convs pass their first channels through unchanged
  (center tap 1), whose BNs multiply by `bn_scale` in eval mode and whose biases are zero."""
  # Running variance 1 - eps makes BN's eval-mode multiplier exactly its scale.
  bn_values = {'scale': bn_scale, 'bias': 0.0, 'mean': 0.0, 'var': 1 - BN_EPSILON}

  def value(path, leaf):
    if path[-1] == 'kernel' and leaf.ndim == 4:
      kernel = np.zeros(leaf.shape, np.float32)
      channels = np.arange(min(leaf.shape[2:]))
      kernel[1, 1, channels, channels] = 1
      return kernel
    return np.full(leaf.shape, bn_values.get(path[-1], 0.0), np.float32)

  return flax.traverse_util.unflatten_dict(
      {path: value(path, leaf) for path, leaf in abstract_variables(model).items()})


def random_variables(model, seed=0):
  """Random variables of `model`'s shapes, with positive BN running variances."""
  rng = np.random.default_rng(seed)
  return flax.traverse_util.unflatten_dict({
      path: (rng.uniform(0.5, 2, leaf.shape) if path[-1] == 'var'
             else 0.3 * rng.normal(size=leaf.shape)).astype(np.float32)
      for path, leaf in abstract_variables(model).items()})


def test_layer_response_stds_of_a_net_with_known_weights():
  # Every image is one constant c >= 0, so convs, strided convs and ReLUs pass it unchanged:
  # layer k's response is bn_scale**k * c on the 3 input channels and 0 on the others.
  depth, bn_scale = 14, 2.0
  model = models.create(f'plain{depth}')
  constants = np.linspace(0, 1, 10, dtype=np.float32) ** 2
  images = np.broadcast_to(constants[:, None, None, None], (10, 32, 32, 3))
  variables = identity_conv_variables(model, bn_scale)
  n = blocks_per_stage(depth)
  widths = [16] + [16] * 2 * n + [32] * 2 * n + [64] * 2 * n
  expected = [3 / width * bn_scale ** layer * np.std(constants)
              for layer, width in enumerate(widths, start=1)]
  stds = analysis.layer_response_stds(model, variables, images, batch_size=5)
  np.testing.assert_allclose(stds, expected, rtol=1e-5)


def test_layer_response_stds_do_not_depend_on_the_batch_size():
  model = models.create('resnet8')
  images = np.random.default_rng(1).normal(size=(12, 32, 32, 3)).astype(np.float32)
  variables = random_variables(model)
  whole = analysis.layer_response_stds(model, variables, images, batch_size=12)
  batched = analysis.layer_response_stds(model, variables, images, batch_size=4)
  assert whole.shape == (7,)
  np.testing.assert_allclose(batched, whole, rtol=1e-5)


def test_layer_response_stds_of_scanned_blocks_follow_the_layer_order():
  scanned = models.create('resnet20', scan_blocks=True, shortcut='B')
  variables = random_variables(scanned)
  images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
  unrolled = models.create('resnet20', shortcut='B')
  from_scanned = analysis.layer_response_stds(scanned, variables, images, batch_size=4)
  from_unrolled = analysis.layer_response_stds(unrolled, models.unroll_scanned(variables),
                                               images, batch_size=4)
  assert from_scanned.shape == (19,)  # The stem and 2 x 9 block convs; no projections.
  np.testing.assert_allclose(from_scanned, from_unrolled, rtol=1e-5)


def test_layer_response_stds_rejects_an_empty_image_set():
  model = models.create('resnet8')
  with pytest.raises(ValueError, match='at least one image'):
    analysis.layer_response_stds(model, random_variables(model), np.zeros((0, 32, 32, 3)),
                                 batch_size=4)


def test_figure6_draws_train_and_test_curves_per_depth_in_two_panels(study_dir):
  figure = analysis.figure6(analysis.load_study(study_dir))
  plain, resnet = figure.axes
  assert plain.get_shared_y_axes().joined(plain, resnet)
  for ax in (plain, resnet):
    styles = sorted(line.get_linestyle() for line in ax.lines)
    assert styles == ['-', '-', '--', '--']  # Test and train error for each of two depths.
  assert [t.get_text() for t in resnet.get_legend().get_texts()] == ['ResNet-20', 'ResNet-56']
  # The two seeds of resnet20 are averaged: final train error (8 + 10) / 2 %.
  resnet20_train = next(line for line in resnet.lines
                        if line.get_linestyle() == '--' and line.get_color() == 'C0')
  assert resnet20_train.get_ydata()[-1] == pytest.approx(9)


def test_an_eval_curve_of_one_point_is_a_marker_that_names_its_step(tmp_path):
  for model in ('plain18', 'resnet18'):  # Figure 4's smoke: trained 12 steps, evaluated once.
    write_run(tmp_path / f'{model}_seed0', model, 0, records([0.9, 0.8], [0.75], every=6)[:3])
  plain, _ = analysis.figure6(analysis.load_study(tmp_path)).axes
  [point] = [line for line in plain.lines if line.get_linestyle() == '-']
  assert list(point.get_xdata()) == [6] and point.get_marker() == 'o'
  assert point.get_markersize() >= 8 and not point.get_clip_on()  # Whole, also at the edge.
  assert [t.get_text() for t in plain.get_legend().get_texts()] == ['plain-18 (one point, step 6)']
  [train] = [line for line in plain.lines if line.get_linestyle() == '--']
  assert train.get_marker() == 'None'


def test_figure6_right_shows_only_the_resnets_of_its_depths(study_dir):
  figure = analysis.figure6_right(analysis.load_study(study_dir), depths=(20, 56))
  [panel] = figure.axes
  assert sorted(line.get_linestyle() for line in panel.lines) == ['-', '-', '--', '--']
  assert [t.get_text() for t in panel.get_legend().get_texts()] == ['ResNet-20', 'ResNet-56']
  resnet56_test = next(line for line in panel.lines
                       if line.get_linestyle() == '-' and line.get_color() == 'C1')
  assert resnet56_test.get_ydata()[-1] == pytest.approx(7)


def test_an_ensemble_averages_each_nets_probabilities_over_its_views():
  # Net one sums its 2 scales' scores; net two has one view. Image 0: net one is sure of
  # class 0, net two leans to class 1; averaged, class 0 wins (0.45 + 0.2 > 0.05 + 0.4).
  net_one = np.array([[1.8, 0.2, 0.0], [0.0, 0.2, 1.8]])
  net_two = np.array([[0.4, 0.5, 0.1], [0.1, 0.1, 0.8]])
  averaged = ensemble.average_probabilities([net_one, net_two])
  np.testing.assert_allclose(averaged, [[0.65, 0.3, 0.05], [0.05, 0.1, 0.85]])
  np.testing.assert_allclose(ensemble.average_probabilities([net_one]),
                             ensemble.probabilities(net_one))


@pytest.mark.parametrize('other, message', [
    (ensemble.TestSet(('a', 'b', 'c'), 'folder-1', 10), '3 classes where /runs/one has 2'),
    (ensemble.TestSet(('a', 'b'), 'folder-2', 10),
     'data folder-2 \\(10 images\\) where /runs/one has folder-1 \\(10\\)'),
    (ensemble.TestSet(('a', 'b'), 'folder-1', 9),
     'data folder-1 \\(9 images\\) where /runs/one has folder-1 \\(10\\)'),
])
def test_ensemble_members_must_share_their_test_set(other, message):
  first = ensemble.TestSet(('a', 'b'), 'folder-1', 10)
  ensemble.check_same_test_set({'/runs/one': first, '/runs/two': first})
  with pytest.raises(ConfigError, match=f'^Ensemble members disagree: /runs/two was tested on '
                                        f'{message}'):
    ensemble.check_same_test_set({'/runs/one': first, '/runs/two': other})


def test_figure7_shows_each_net_in_layer_order_and_sorted():
  responses = pd.DataFrame([
      {'model': model, 'family': family, 'depth': depth, 'seed': 0, 'layer': layer, 'std': std}
      for model, family, depth, stds in [('plain8', 'plain', 8, [1, 3, 2]),
                                         ('resnet8', 'resnet', 8, [2, 1, 4])]
      for layer, std in enumerate(stds, start=1)])
  original, by_magnitude = analysis.figure7(responses).axes
  assert [list(line.get_ydata()) for line in original.lines] == [[1, 3, 2], [2, 1, 4]]
  assert [list(line.get_ydata()) for line in by_magnitude.lines] == [[3, 2, 1], [4, 2, 1]]
  assert [line.get_linestyle() for line in original.lines] == ['--', '-']
