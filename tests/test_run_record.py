"""What a workdir records of its run, through the command line: the config of every segment
(a resume that would change what is trained is refused), and the data each segment read."""
import importlib.metadata
import json
import shutil

import pytest

from resnet_jax import errors
from resnet_jax.data import cache
from resnet_jax.faults import damage
from resnet_jax.faults.runs import Running, run_main, start_main
from resnet_jax.paper import report
from resnet_jax.run import record

RUN_FLAGS = ('--config.batch_size=8', '--config.eval_batch_size=12',
             '--config.data.train_fraction=1.0', '--config.num_train_steps=2',
             '--config.log_every_steps=1', '--config.eval_every_steps=2',
             '--config.checkpoint_every_steps=2', '--config.optimizer.learning_rate=0.01',
             '--config.optimizer.lr_boundaries=()')


def _history(workdir) -> list[dict]:
  return [json.loads(line) for line in (workdir / record.HISTORY_FILE).read_text().splitlines()]


def _finish(workdir, *flags):
  return Running(start_main(workdir, *flags, base_flags=RUN_FLAGS)).finish()


@pytest.fixture(scope='module')
def data_flags(noise_archive, tmp_path_factory) -> tuple[str, ...]:
  """The smoke config's data.source='auto' on the small archive: an empty TFDS data_dir holds
  no prepared copy, so the archive at data.path is read."""
  folders = tmp_path_factory.mktemp('data_flags')
  (folders / 'tfds').mkdir()
  return (f'--config.data.path={noise_archive}', f'--config.data.data_dir={folders / "tfds"}',
          f'--config.data.cache_dir={folders / "cache"}')


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory, data_flags):
  """Two steps on the archive; its workdir and console output. Read only: copy it to resume."""
  workdir = tmp_path_factory.mktemp('finished_run')
  return workdir, run_main(workdir, *data_flags, base_flags=RUN_FLAGS)


def test_a_run_records_and_prints_the_data_it_read(finished_run, noise_archive):
  workdir, output = finished_run
  [segment] = _history(workdir)
  assert segment['data'] == {'source': 'archive', 'location': str(noise_archive),
                             'fingerprint': cache.fingerprint(noise_archive)}
  assert segment['versions'] == record.tested_versions_state()
  assert f'on cifar10 (archive {noise_archive}), batch 8' in output
  assert segment['step'] == 0 and segment['changes'] == {}
  assert segment['config'] == json.loads((workdir / record.CONFIG_FILE).read_text())
  assert segment['config']['data']['source'] == 'auto'  # The config as given.


def test_a_resume_that_changes_the_training_is_refused_and_changes_nothing(finished_run,
                                                                           data_flags):
  workdir, _ = finished_run
  before = damage.file_digests(workdir)
  refused = _finish(workdir, *data_flags, '--config.optimizer.learning_rate=0.5',
                    '--config.batch_size=4', '--config.num_train_steps=4')
  assert refused.returncode == errors.ConfigError.exit_code, refused.tail()
  assert 'Traceback' not in refused.output
  listed = refused.output[refused.output.index('other values of keys that change what is'):]
  assert '  batch_size: 8 -> 4\n  optimizer.learning_rate: 0.01 -> 0.5\nNothing was changed.' in listed
  assert 'a new --workdir' in listed and '--config.allow_config_change=true' in listed
  assert damage.file_digests(workdir) == before


def test_a_finished_run_refuses_a_change_as_finished(finished_run):
  workdir, _ = finished_run
  config = record.read_config(workdir)
  config.optimizer.learning_rate = 0.5
  with pytest.raises(errors.ConfigError) as refused:
    record.check_resume(workdir, config, trained_step=2)
  assert str(refused.value).startswith(f'{workdir} holds a run that finished at step 2, trained '
                                       'with other values')
  assert 'optimizer.learning_rate: 0.01 -> 0.5' in str(refused.value)
  assert 'allow_config_change' not in str(refused.value)
  record.check_resume(workdir, config, trained_step=None)  # A new run: nothing to refuse.


def test_changes_are_recorded_when_allowed_or_when_they_keep_the_training(finished_run, data_flags,
                                                                          tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run[0], workdir)
  first_config = (workdir / record.CONFIG_FILE).read_text()
  resumed = _finish(workdir, *data_flags, '--config.num_train_steps=4',
                    '--config.log_every_steps=2', '--config.optimizer.learning_rate=0.05',
                    '--config.allow_config_change=true')
  assert resumed.returncode == 0, resumed.tail()
  assert [(s['step'], s['changes']) for s in _history(workdir)] == [
      (0, {}),
      (2, {'allow_config_change': 'false -> true', 'log_every_steps': '1 -> 2',
           'num_train_steps': '2 -> 4', 'optimizer.learning_rate': '0.01 -> 0.05'})]
  assert ('  Changing what is trained (allowed by allow_config_change):\n'
          '    optimizer.learning_rate: 0.01 -> 0.05\n'
          '  Leaving what is trained as it was:\n    allow_config_change: false -> true\n'
          '    log_every_steps: 1 -> 2\n    num_train_steps: 2 -> 4\n') in resumed.output
  assert (workdir / record.CONFIG_FILE).read_text() == first_config
  assert record.read_config(workdir).optimizer.learning_rate == 0.05


def test_a_finished_run_started_with_an_allowed_change_shows_what_it_trained_with(
    finished_run, data_flags, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run[0], workdir)
  again = _finish(workdir, *data_flags, '--config.optimizer.learning_rate=0.05',
                  '--config.allow_config_change=true')
  assert again.returncode == 0, again.tail()
  assert ', 2 steps, lr 0.01 (' in again.output and 'lr 0.05' not in again.output
  assert again.output.endswith('Not applied, as nothing is trained (it was trained with the '
                               'value left of each arrow):\n  optimizer.learning_rate: 0.01 -> '
                               '0.05\n')
  assert 'allow_config_change' not in again.output
  assert len(_history(workdir)) == 1  # Nothing trained, nothing recorded.


def test_a_finished_run_recorded_by_an_older_version_is_described_as_given(finished_run,
                                                                            tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run[0], workdir)
  config = record.read_config(workdir)
  config.optimizer.learning_rate = 0.05
  history = _history(workdir)
  del history[0]['config']['dtype']  # A key this version added.
  (workdir / record.HISTORY_FILE).write_text(''.join(json.dumps(s) + '\n' for s in history))
  described, not_applied = record.finished_run_config(workdir, config)
  assert described is config  # The banner needs every key; the changes still say the truth.
  assert not_applied['optimizer.learning_rate'] == '0.01 -> 0.05'


@pytest.mark.parametrize('key, kept', [
    ('num_train_steps', True), ('mesh.data', True), ('checkpoint_every_steps', True),
    ('data.cache_dir', True), ('optimizer.learning_rate', False),
    ('optimizer.lr_boundaries', False), ('batch_size', False), ('seed', False),
    ('data.path', False), ('data.source', False), ('num_replicas', False), ('dtype', False),
    ('meshes', False), ('a_key_added_later', False)])
def test_only_the_listed_keys_keep_the_training(key, kept):
  assert record.changes_training(key) is not kept


def test_an_explicit_data_dir_that_does_not_exist_is_an_error(tmp_path, data_flags):
  missing = tmp_path / 'tfds'
  refused = _finish(tmp_path / 'run', *data_flags, f'--config.data.data_dir={missing}')
  assert refused.returncode == errors.ConfigError.exit_code, refused.tail()
  assert f"data.data_dir '{missing}' does not exist" in refused.output
  assert 'Traceback' not in refused.output
  # Refused before it trained: the workdir it made (and its lock) is gone again.
  assert not (tmp_path / 'run').exists()


def test_a_damaged_archive_is_called_damaged(tmp_path, noise_archive, data_flags):
  archive = tmp_path / noise_archive.name
  shutil.copy(noise_archive, archive)
  damage.garble(archive, count=4096)
  refused = _finish(tmp_path / 'run', *data_flags, '--config.data.source=archive',
                    f'--config.data.path={archive}')
  assert refused.returncode == errors.ConfigError.exit_code, refused.tail()
  assert f'{archive} is damaged or incomplete' in refused.output
  assert f'check it with `gzip -t {archive}`' in refused.output
  assert 'lay the images out' not in refused.output and 'Traceback' not in refused.output


def test_the_installed_versions_are_named_where_they_differ_from_the_tested_ones(tmp_path,
                                                                               monkeypatch):
  """constraints.txt pins what CI tested; config_history and the report name what differs."""
  jax_version, numpy_version = (importlib.metadata.version(name) for name in ('jax', 'numpy'))
  constraints = tmp_path / 'constraints.txt'
  constraints.write_text(f'numpy=={numpy_version}\nJAX==0.0.1\nnot-installed-here==1.0\n')
  differ = f'versions differ from constraints.txt: JAX {jax_version} (tested 0.0.1)'
  assert record.tested_versions_state(constraints) == differ
  monkeypatch.setattr(record, 'CONSTRAINTS', constraints)
  assert f'- Not the tested install: {differ}.' in report.render(tmp_path, {}, {}, {}, 'test')
  constraints.write_text(f'numpy=={numpy_version}\njax=={jax_version}\n')
  assert record.tested_versions_state(constraints) == record.AS_TESTED
  assert 'Not the tested install' not in report.render(tmp_path, {}, {}, {}, 'test')
  assert record.tested_versions_state(tmp_path / 'absent.txt') is None
