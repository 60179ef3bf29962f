"""The trainer on streamed ImageNet-style input: a tiny generated ILSVRC folder (with the odd
grayscale, CMYK and PNG-named-JPEG files), exact resume after a kill, 2 processes against 1,
and the paper's 10-crop testing."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imagenet
from resnet_jax import stream_eval, train
from resnet_jax.data import fake_images
from resnet_jax.faults.runs import (Running, assert_same_training, final_state, kill_after_save,
                                    metric_records, run_main, run_processes, start_main)

STEPS = 6
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def stream_flags(tmp_path_factory):
  """Flags training resnet18 for 6 steps of 8 on a tiny folder, checkpointed every 2."""
  root = tmp_path_factory.mktemp('streamed')
  tree = fake_images.write_ilsvrc_tree(root / 'ilsvrc', {'train': 8, 'val': 3})
  return ('--config.data.source=folder', f'--config.data.path={tree}',
          f'--config.data.cache_dir={root / "cache"}', '--config.data.num_workers=0',
          f'--config.num_train_steps={STEPS}', '--config.batch_size=8',
          '--config.eval_batch_size=4', '--config.log_every_steps=2',
          f'--config.eval_every_steps={STEPS}', '--config.checkpoint_every_steps=2',
          '--config.optimizer.learning_rate=0.01', '--config.optimizer.lr_boundaries=()')


def run_streamed(workdir, flags, *extra, **options):
  """A streamed run on 2 devices: each step's batch is split over both."""
  return run_main(workdir, *flags, *extra, experiment='imagenet.py', base_flags=(), devices=2,
                  **options)


@pytest.fixture(scope='module')
def streamed_run(tmp_path_factory, stream_flags):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  run_streamed(workdir, stream_flags)
  return workdir


@pytest.mark.slow  # streamed_run: over 3 minutes on 2 busy cores.
def test_streamed_run_trains_and_evaluates_every_val_image(streamed_run):
  records = metric_records(streamed_run)
  train_records = [r for r in records if r['split'] == 'train']
  assert [r['step'] for r in train_records] == [2, 4, 6]
  assert all(r['unreadable_files'] == 0 for r in train_records)
  [validation] = [r for r in records if r['split'] == 'validation']
  assert validation['images'] == 3 * len(fake_images.CLASSES)
  assert 0 <= validation['top5_error'] <= validation['error'] <= 1
  assert final_state(streamed_run)[0] == STEPS


@pytest.mark.slow
def test_killed_streamed_run_resumes_reading_the_same_batches(tmp_path, stream_flags,
                                                              streamed_run):
  """kill -9 after the first checkpoint; the rerun ends bit for bit like the uninterrupted run,
  so it read exactly the batches that run read (the input position is in the checkpoint)."""
  running = Running(start_main(tmp_path, *stream_flags, experiment='imagenet.py', base_flags=(),
                               devices=2))
  kill_after_save(running, tmp_path, step=2)
  assert (tmp_path / 'checkpoints' / '2' / 'data' / 'process_0-of-1.json').exists()
  output = run_streamed(tmp_path, stream_flags)
  assert 'Resumed' in output
  assert_same_training(tmp_path, streamed_run, exact=True)


@pytest.mark.slow
def test_two_processes_train_the_same_streamed_net_as_one(tmp_path, stream_flags, streamed_run):
  """Each of 2 processes (1 device each) loads half of every global batch; together they train
  the net that 1 process on 2 devices trains. (Against 1 device, the other summation order of
  a batch split in two grows past float tolerance within 2 steps of these tiny nets.)"""
  run_processes(tmp_path, *stream_flags, experiment='imagenet.py', base_flags=())
  assert_same_training(tmp_path, streamed_run)
  saved = tmp_path / 'checkpoints' / str(STEPS) / 'data'
  assert sorted(path.name for path in saved.glob('process_*.json')) == [
      'process_0-of-2.json', 'process_1-of-2.json']


def test_ten_crop_scores_are_the_average_of_the_ten_single_crop_scores(tmp_path):
  """10-crop testing (Tables 2, 3) averages the softmax scores of the 10 views of each image."""
  tree = fake_images.write_ilsvrc_tree(tmp_path / 'ilsvrc', {'train': 2, 'val': 3})
  config = imagenet.get_config('smoke')
  config.data.update(source='folder', path=str(tree), cache_dir=str(tmp_path / 'cache'))
  setup = train.build(config)
  source, state = setup.feed.source, train.initial_state(setup)[0]
  scorer = stream_eval.make_scorer(setup.model, source.mean, source.std)
  scores, labels = stream_eval.image_scores(scorer, setup.mesh, source, '10crop', 4, state)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  single_crop_scores = np.zeros_like(scores)
  for batch in source.eval_iterator('10crop', 4, 0, 1):
    assert batch['images'].shape[1] == 10
    mask = batch['mask']
    for view in range(10):
      view_scores = np.asarray(scorer(variables, batch['images'][:, view:view + 1]))
      single_crop_scores[batch['index'][mask]] += view_scores[mask] / 10
  assert len(labels) == 3 * len(fake_images.CLASSES)
  np.testing.assert_allclose(scores, single_crop_scores, rtol=1e-5, atol=1e-6)
  one_view = np.asarray(scorer(variables, batch['images'][:, :1]))[mask]
  assert not np.allclose(one_view, scores[batch['index'][mask]]), 'the views should differ'


@pytest.mark.slow  # streamed_run, then about 90 s to evaluate it.
def test_evaluate_sizes_the_batch_per_mode_and_flags_views_that_are_not_the_papers(
    streamed_run):
  """`python -m resnet_jax.evaluate` in multi-scale mode: the batch holds the pixels of the
  run's center-crop eval batch, every val image counts once, the JSON lands in the workdir,
  and a net trained on tiny crops gets the caveat that its multi-scale error means nothing."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-m', 'resnet_jax.evaluate', f'--workdir={streamed_run}',
       '--config.eval.mode=multiscale'], cwd=REPO, env=env, capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  console = result.stdout + result.stderr
  # eval_batch_size=4 center crops of 32 px hold fewer pixels than one whole image at the
  # largest scale: the floor is one image per device.
  assert 'multiscale testing, 2 images a step' in console
  assert "views are not the paper's" in console and 'not Table 4' in console
  written = streamed_run / 'eval_multiscale.json'
  assert f'written to {written}' in console
  saved = json.loads(written.read_text())
  assert saved['images'] == 3 * len(fake_images.CLASSES)
  assert 0 <= saved['top5_error'] <= saved['error'] <= 1
