"""The trainer on streamed ImageNet-style input: a tiny generated ILSVRC folder (with the odd
grayscale, CMYK and PNG-named-JPEG files), exact resume after a kill or a signal to the process
group, 2 processes against 1, a bad val image, the paper's 10-crop testing and the evaluate
command."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import imagenet
from resnet_jax import errors, sharding, train
from resnet_jax.data import DataError
from resnet_jax.data.imagenet import fake_images, workers
from resnet_jax.faults.runs import (REPO, Running, assert_same_training, child_pids,
                                    compilation_cache_env, final_state,
                                    kill_after_save, metric_records, run_main, run_processes,
                                    signal_group_when, start_main)
from resnet_jax.feeds import streamed, streamed_eval

STEPS = 6
EVAL_EVERY = 4


@pytest.fixture(scope='module', autouse=True)
def compiled_once(tmp_path_factory):
  """One JAX compilation cache for the runs of the module: the same programs, compiled once."""
  with pytest.MonkeyPatch.context() as patch:
    for name, value in compilation_cache_env(tmp_path_factory.mktemp('compiled')).items():
      patch.setenv(name, value)
    yield


@pytest.fixture(scope='module')
def stream_flags(tmp_path_factory):
  """Flags training resnet18 for 6 steps of 8 on a tiny folder, checkpointed every 2 steps and
  evaluated every 4."""
  root = tmp_path_factory.mktemp('streamed')
  tree = fake_images.write_ilsvrc_tree(root / 'ilsvrc', {'train': 8, 'val': 3})
  return ('--config.data.source=folder', f'--config.data.path={tree}',
          f'--config.data.cache_dir={root / "cache"}', '--config.data.num_workers=0',
          f'--config.num_train_steps={STEPS}', '--config.batch_size=8',
          '--config.eval_batch_size=4', '--config.log_every_steps=2',
          f'--config.eval_every_steps={EVAL_EVERY}', '--config.checkpoint_every_steps=2',
          '--config.optimizer.learning_rate=0.01', '--config.optimizer.lr_boundaries=()')


STREAMED = dict(experiment='imagenet.py', base_flags=(), devices=2)  # Each batch split over 2.


def run_streamed(workdir, flags, *extra) -> str:
  return run_main(workdir, *flags, *extra, **STREAMED)


def start_streamed(workdir, flags, *extra) -> Running:
  return Running(start_main(workdir, *flags, *extra, **STREAMED))


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
  validations = [r for r in records if r['split'] == 'validation']
  assert [r['step'] for r in validations] == [EVAL_EVERY, STEPS]
  validation = validations[-1]
  assert validation['images'] == 3 * len(fake_images.CLASSES)
  assert 0 <= validation['top5_error'] <= validation['error'] <= 1
  assert final_state(streamed_run)[0] == STEPS


@pytest.mark.slow
def test_killed_streamed_run_resumes_reading_the_same_batches(tmp_path, stream_flags,
                                                              streamed_run):
  """kill -9 after the first checkpoint; the rerun ends bit for bit like the uninterrupted run,
  so it read exactly the batches that run read (the input position is in the checkpoint)."""
  running = start_streamed(tmp_path, stream_flags)
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
  scorer = streamed_eval.make_scorer(setup.model, source.mean, source.std)
  scores, labels = streamed_eval.image_scores(scorer, setup.mesh, source, '10crop', 4, state)
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
  env = dict(os.environ, XLA_FLAGS=os.environ.get('XLA_FLAGS', '') +
             ' --xla_force_host_platform_device_count=2',
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


# Signals to the process group, shared memory, bad val images --------------------------------

WORKERS = '--config.data.num_workers=2'


def _logged(running: Running, step: int):
  return lambda: running.wait_for(rf'\bstep {step}/{STEPS}') is not None


def _saving(workdir):
  return lambda: any((workdir / 'checkpoints').glob('*.orbax-checkpoint-tmp*'))


def _workers_starting(running: Running, after: str):
  """True once the run starts a process it did not have when it logged `after`."""
  before = []

  def moment():
    if not before:
      if running.wait_for(after) is None:
        return False
      before.append(child_pids(running.process.pid))
    return bool(child_pids(running.process.pid) - before[0])
  return moment


def _owned_by(pid: int) -> list[str]:
  """What /dev/shm holds in the name of the run with process id `pid`: its workers' shared
  memory and the semaphores of their queues."""
  return [path.name for prefix in (workers.SEGMENT_PREFIX, workers.SEMAPHORE_PREFIX)
          for path in workers.SHARED_MEMORY.glob(f'{prefix}{pid}_*')]


MOMENTS = {  # (signal, moment) as the crash test found them.
    "the eval's workers starting": (
        signal.SIGINT, lambda running, workdir: _workers_starting(running, rf'\bstep 4/{STEPS}')),
    'a train step': (signal.SIGTERM, lambda running, workdir: _logged(running, 1)),
    'a checkpoint save': (signal.SIGTERM, lambda running, workdir: _saving(workdir)),
    "the train workers starting": (  # The loop starts them, after the run's description.
        signal.SIGINT, lambda running, workdir: _workers_starting(running, 'checkpoints every')),
}


@pytest.mark.slow
@pytest.mark.parametrize('moment', list(MOMENTS))
def test_a_signal_to_the_process_group_saves_exits_42_and_the_rerun_ends_the_same(
    tmp_path, stream_flags, streamed_run, moment):
  """Ctrl-C or SLURM's SIGTERM reach the grain workers too: they ignore it, the trainer saves at
  the next step boundary and exits 42 without a traceback, and nothing stays in /dev/shm."""
  signum, when = MOMENTS[moment]
  running = start_streamed(tmp_path, stream_flags, WORKERS)
  assert signal_group_when(running, signum, when(running, tmp_path)), 'the run ended first'
  stopped = running.finish()
  assert stopped.returncode == errors.Preempted.exit_code, stopped.tail()
  assert 'Traceback' not in stopped.output and 'leaked' not in stopped.output, stopped.output
  step = int(re.search(r'saved a checkpoint at step (\d+)', stopped.output)[1])
  assert final_state(tmp_path)[0] == step < STEPS
  assert not _owned_by(running.process.pid)
  assert 'Resumed' in run_streamed(tmp_path, stream_flags, WORKERS)
  assert_same_training(tmp_path, streamed_run, exact=True)


KILLS = {'trainer': lambda pid: os.kill(pid, signal.SIGKILL),  # As the OOM killer does.
         'group': lambda pid: os.killpg(pid, signal.SIGKILL)}


@pytest.mark.slow
def test_killed_runs_leave_no_workers_and_the_next_run_frees_their_shared_memory(tmp_path,
                                                                              stream_flags):
  """kill -9 of the trainer alone: its workers exit with it. kill -9 of the whole group (the
  workers and multiprocessing's resource tracker too) leaves the shared memory and the named
  semaphores of the workers' queues in /dev/shm; they carry the run's name, and the next run
  frees them."""
  killed = {}
  for name, kill in KILLS.items():
    running = start_streamed(tmp_path / name, stream_flags, WORKERS)
    assert running.wait_for(rf'\bstep 2/{STEPS}')
    kill(running.process.pid)
    running.finish()
    killed[name] = running.process.pid
  left = _owned_by(killed['group'])
  assert any(name.startswith(workers.SEMAPHORE_PREFIX) for name in left), left
  restart = start_streamed(tmp_path / 'group', stream_flags, WORKERS, '--config.num_train_steps=2')
  assert restart.finish().returncode == 0
  assert not child_pids(killed['trainer'])
  with pytest.raises(ProcessLookupError):  # Its workers exited with it.
    os.killpg(killed['trainer'], 0)
  assert not _owned_by(killed['trainer']) and not _owned_by(killed['group'])


def test_a_bad_val_image_found_by_an_eval_keeps_the_steps_before_it(tmp_path, stream_flags,
                                                                    streamed_run):
  """The eval at step 4 meets an unreadable image: the run saves step 4 and exits 2 naming it;
  once it is fixed, the rerun resumes at step 4, evaluates it and ends like the uninterrupted
  run."""
  tree = tmp_path / 'ilsvrc'
  shutil.copytree(next(flag.split('=', 1)[1] for flag in stream_flags
                       if flag.startswith('--config.data.path=')), tree)
  image = tree / 'val' / fake_images.CLASSES[1] / f'{fake_images.CLASSES[1]}_0.JPEG'
  good = image.read_bytes()
  image.write_bytes(good[:len(good) // 3])
  flags = (*stream_flags, f'--config.data.path={tree}', '--config.checkpoint_every_steps=3')
  workdir = tmp_path / 'run'
  stopped = start_streamed(workdir, flags).finish()
  assert stopped.returncode == errors.ConfigError.exit_code
  assert f'{image} is not a readable image' in stopped.output
  assert final_state(workdir)[0] == EVAL_EVERY
  image.write_bytes(good)
  assert f'at step {EVAL_EVERY}.' in run_streamed(workdir, flags)
  assert metric_records(workdir) == metric_records(streamed_run)


def test_a_run_refused_for_its_data_leaves_the_workdir_as_it_found_it(tmp_path):
  tree = fake_images.write_ilsvrc_tree(tmp_path / 'ilsvrc', {'train': 1, 'val': 1})
  (tree / 'train' / 'n09999999').mkdir()  # An empty class folder.
  config = imagenet.get_config('smoke')
  config.data.update(source='folder', path=str(tree), cache_dir=str(tmp_path / 'cache'))
  existing = tmp_path / 'existing'
  existing.mkdir()
  (existing / 'notes.txt').write_text('mine')
  for workdir in (tmp_path / 'new' / 'run', existing):
    with pytest.raises(DataError, match='holds no images'):
      train.train_and_evaluate(config, str(workdir))
  assert not (tmp_path / 'new').exists()
  assert [path.name for path in existing.iterdir()] == ['notes.txt']


def test_a_resumed_run_logs_the_unreadable_files_skipped_before_its_checkpoint(tmp_path):
  tree = fake_images.write_ilsvrc_tree(tmp_path / 'ilsvrc', {'train': 2, 'val': 1})
  wnid = fake_images.CLASSES[1]
  (tree / 'train' / wnid / f'{wnid}_0.JPEG').write_bytes(b'not an image')
  config = imagenet.get_config('smoke')
  config.batch_size = 6  # Every train image, the broken one stood in for once, each step.
  config.data.update(source='folder', path=str(tree), cache_dir=str(tmp_path / 'cache'),
                     skip_unreadable=True)
  mesh = sharding.make_mesh(config.mesh.to_dict())
  uninterrupted = streamed.StreamFeed(config, mesh)
  for _ in range(2):
    uninterrupted.train_inputs()
  saved = json.loads(json.dumps(uninterrupted.data_state()))  # As the checkpoint holds it.
  resumed = streamed.StreamFeed(config, mesh)
  resumed.restore_data_state(saved)
  for feed in (uninterrupted, resumed):
    feed.train_inputs()
  assert resumed.log_extras() == uninterrupted.log_extras() == {'unreadable_files': 3.0}


@pytest.mark.slow
def test_evaluate_stops_cleanly_on_a_group_sigterm_as_its_workers_start(streamed_run):
  command = [sys.executable, '-m', 'resnet_jax.evaluate', f'--workdir={streamed_run}',
             '--config.eval.mode=10crop', WORKERS]
  running = Running(subprocess.Popen(
      command, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO)),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, process_group=0))
  assert signal_group_when(running, signal.SIGTERM, _workers_starting(running, 'Resumed'))
  stopped = running.finish()
  assert stopped.returncode == errors.Terminated.exit_code, stopped.tail()
  assert 'Traceback' not in stopped.output and 'leaked' not in stopped.output, stopped.output
  assert not _owned_by(running.process.pid)
  assert not (streamed_run / 'eval_10crop.json').exists()
