"""Checkpoints: a partial, garbled or truncated save is never loaded, the one before it
is used and the bad one kept; another model's run is refused or, on request, moved aside."""
import logging

import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax.faults import damage
from resnet_jax.run import checkpoints

FINGERPRINT = checkpoints.model_fingerprint('resnet8', {'w': np.zeros(1000)})


def _state(value: float):
  return {'w': jnp.arange(1000, dtype=jnp.float32) * value, 'step': jnp.array(int(value))}


def _save(workdir, *steps, fingerprint=FINGERPRINT, **options):
  ckpt = checkpoints.Checkpoints(workdir, every_steps=1, keep=5, fingerprint=fingerprint, **options)
  for step in steps:
    ckpt.save(step, _state(step))
  ckpt.close()


def _restore(workdir, fingerprint=FINGERPRINT, **options):
  ckpt = checkpoints.Checkpoints(workdir, every_steps=1, keep=5, fingerprint=fingerprint, **options)
  restored = ckpt.restore_latest(_state(0))
  ckpt.close()
  return int(restored['step']), restored


@pytest.mark.parametrize('how', ['garble', 'truncate'])
def test_damaged_latest_checkpoint_falls_back_and_is_kept(tmp_path, caplog, how):
  _save(tmp_path, 1, 2)
  array_file = damage.array_files(tmp_path / 'checkpoints' / '2')[0]
  # Orbax loads a garbled file as wrong numbers; the checksums catch it.
  damage.DAMAGE[how](array_file)
  damaged = array_file.read_bytes()
  with caplog.at_level(logging.WARNING):
    step, restored = _restore(tmp_path)
  assert step == 1
  np.testing.assert_array_equal(restored['w'], _state(1)['w'])
  assert 'Checkpoint at step 2' in caplog.text and 'is unreadable' in caplog.text
  kept = tmp_path / 'corrupt_checkpoints' / '2'
  assert (kept / array_file.relative_to(tmp_path / 'checkpoints' / '2')).read_bytes() == damaged
  assert not (tmp_path / 'checkpoints' / '2').exists()


def test_saving_again_after_a_fallback_replaces_nothing_it_should_keep(tmp_path):
  _save(tmp_path, 1, 2)
  damage.garble(damage.array_files(tmp_path / 'checkpoints' / '2')[0])
  _restore(tmp_path)
  _save(tmp_path, 2)
  assert _restore(tmp_path)[0] == 2
  assert (tmp_path / 'corrupt_checkpoints' / '2').is_dir()


def test_partial_save_is_reported_and_never_loaded(tmp_path, caplog):
  _save(tmp_path, 1, 2)
  (tmp_path / 'checkpoints' / '2').rename(tmp_path / 'checkpoints' / '2.orbax-checkpoint-tmp')
  with caplog.at_level(logging.WARNING):
    assert _restore(tmp_path)[0] == 1
  assert 'Ignoring partial checkpoint' in caplog.text and '2.orbax-checkpoint-tmp' in caplog.text
  assert (tmp_path / 'checkpoints' / '2.orbax-checkpoint-tmp').is_dir()


def test_another_models_run_is_refused_and_left_as_it_was(tmp_path):
  _save(tmp_path, 1)
  before = damage.file_digests(tmp_path)
  other = checkpoints.model_fingerprint('resnet14', {'w': np.zeros(1000)})
  with pytest.raises(checkpoints.CheckpointMismatchError, match='holds a resnet8 run, but the '
                     'config asks for resnet14.*--config.overwrite=true'):
    _restore(tmp_path, fingerprint=other)
  assert damage.file_digests(tmp_path) == before


def test_overwrite_moves_another_models_run_aside(tmp_path):
  _save(tmp_path, 1)
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n')
  before = damage.file_digests(tmp_path)
  other = checkpoints.model_fingerprint('resnet14', {'w': np.zeros(1000)})
  assert _restore(tmp_path, fingerprint=other, overwrite=True)[0] == 0
  (moved,) = (tmp_path / 'replaced').iterdir()
  assert damage.file_digests(moved) == before
  assert not (tmp_path / 'metrics.jsonl').exists()


def test_a_state_of_another_layout_is_refused_not_set_aside(tmp_path):
  _save(tmp_path, 1)
  ckpt = checkpoints.Checkpoints(tmp_path, every_steps=1, keep=5, fingerprint=FINGERPRINT)
  with pytest.raises(checkpoints.CheckpointMismatchError, match='laid out differently'):
    ckpt.restore_latest({**_state(0), 'extra': jnp.zeros(3)})
  ckpt.close()
  assert (tmp_path / 'checkpoints' / '1').is_dir() and not (tmp_path / 'corrupt_checkpoints').exists()


def test_checksums_change_when_any_element_changes():
  state = _state(3)
  changed = {**state, 'w': state['w'].at[517].add(1e-3)}
  assert checkpoints.state_checksums(state) == checkpoints.state_checksums(_state(3))
  assert checkpoints.state_checksums(state) != checkpoints.state_checksums(changed)
