"""Orbax checkpoints of the train state (and of a streamed input's position): verified on
restore, never loaded partial or corrupt, and never mixed with another model's run."""
import errno
import json
import logging
import os
import shutil
import time

import jax
import jax.numpy as jnp
import grain.checkpoint
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax import lax
from jax.experimental import multihost_utils

from resnet_jax import errors
from resnet_jax.run import workdir_lock

CHECKPOINT_DIR = 'checkpoints'
CORRUPT_DIR = 'corrupt_checkpoints'  # Unreadable checkpoints are moved here, never deleted.
REPLACED_DIR = 'replaced'  # With config.overwrite, another model's run is moved here.
PARTIAL_MARK = '.orbax-checkpoint-tmp'  # Orbax writes a save here, then renames it when done.


class CheckpointMismatchError(errors.WorkdirError):
  """The workdir holds checkpoints of a different model or shape."""


class CorruptCheckpointError(Exception):
  """A checkpoint's files do not hold what was saved."""


def model_fingerprint(model_name: str, params) -> dict:
  """What must match for a checkpoint to be restored into this run."""
  return {'model': model_name, 'param_shapes': _layout(params)}


def _layout(tree) -> dict:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): list(np.shape(leaf)) for path, leaf in leaves}


@jax.jit
def _leaf_checksums(tree) -> list:
  """A position-weighted wrapping sum of each leaf's bits; any changed element changes it."""

  def checksum(leaf):
    bits = lax.bitcast_convert_type(leaf, jnp.dtype(f'uint{8 * leaf.dtype.itemsize}'))
    bits = bits.reshape(-1).astype(jnp.uint32)
    weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + 1
    return jnp.sum(bits * weights, dtype=jnp.uint32)

  return [checksum(leaf) for leaf in jax.tree.leaves(tree)]


def state_checksums(tree) -> list[int]:
  """Checksums of every array in `tree`, stored beside each save because orbax keeps
  none of the array data: a garbled file would otherwise load as wrong numbers."""
  return [int(np.asarray(value.addressable_data(0))) for value in _leaf_checksums(tree)]


def load_latest_arrays(workdir: epath.PathLike, step: int | None = None) -> tuple[int, list]:
  """The latest checkpoint in `workdir` (or the one of `step`) as host arrays, on any number
  of devices and without building the model.

  Returns (step, [train_state, train_metrics]), each a nested dict of numpy arrays
  (`train_state['params']`, `['batch_stats']`, ...), for analysis and tests.
  """
  directory = epath.Path(workdir) / CHECKPOINT_DIR
  if not directory.exists():
    raise FileNotFoundError(f'No checkpoints under {directory}; train with --workdir={workdir} first.')
  options = ocp.CheckpointManagerOptions(create=False, read_only=True)
  with ocp.CheckpointManager(directory, options=options, item_handlers=_handlers()) as manager:
    step = manager.latest_step() if step is None else step
    if step not in manager.all_steps():
      raise FileNotFoundError(f'{directory} holds no complete checkpoint'
                              f'{"" if step is None else f" of step {step}"}.')
    # Restore onto one local device, whatever topology wrote the checkpoint.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=device),
                            manager.item_metadata(step)['state'])
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  return step, jax.tree.map(np.asarray, restored['state'])


def _handlers() -> dict:
  # 'data': each process's input iterator state, one file per process (grain's handler).
  return {'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler(),
          'data': grain.checkpoint.CheckpointHandler()}


class _DataState:
  """A frozen copy of an input iterator's state, in the form grain's orbax handler saves and
  restores. The handler asks for the state when the async save runs, by which time the
  training loop has moved the iterator on: hence the copy."""

  def __init__(self, state=None):
    self.state = state

  def get_state(self) -> bytes:
    return json.dumps(self.state).encode()

  def set_state(self, state: bytes) -> None:
    self.state = json.loads(state)

  def start_prefetch(self) -> None:
    """Called by the handler after a restore; the real iterator starts when it is used."""


def disk_full(workdir: epath.Path, bytes_per_save: int) -> errors.DiskFull:
  """The error of a save that does not fit on the disk of `workdir`."""
  return errors.DiskFull(
      f'The disk of --workdir={workdir} is full: {shutil.disk_usage(workdir).free / 2**20:,.1f} '
      f'MiB free, and a checkpoint of this run needs about {bytes_per_save / 2**20:,.1f} MiB. '
      'The checkpoints saved before are intact: free some space (or lower '
      '--config.keep_checkpoints) and rerun the same command to resume.')


def is_disk_full(error: BaseException) -> bool:
  """Whether `error`, or one it was raised from, says the disk is full: an OSError, or the
  text of one inside a tensorstore or orbax error raised in a save's background thread."""
  while error is not None:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if os.strerror(errno.ENOSPC) in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


class Checkpoints:
  """Periodic async saves (keep-last-N) and a verified restore of the latest good one.

  On start it warns about partial saves (a killed process) and never loads them, and
  refuses a workdir holding another model's run unless `overwrite`, which moves that
  run aside. A checkpoint that fails to load or to match its checksums is moved to
  `corrupt_checkpoints/` and the one before it is used.
  """

  def __init__(self, workdir: epath.PathLike, *, every_steps: int, keep: int, fingerprint: dict,
               overwrite: bool = False, bytes_per_save: int = 0):
    self.workdir = epath.Path(workdir)
    self.bytes_per_save = bytes_per_save
    self.directory = self.workdir / CHECKPOINT_DIR
    self.every_steps = every_steps
    self.fingerprint = fingerprint
    self.options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                enable_async_checkpointing=True)
    self._warn_about_partial_saves()
    self.manager = self._open()
    self._refuse_other_model(overwrite)

  def restore_latest(self, state, restore_data_state=None):
    """The latest good saved state, or `state` unchanged when there is none.

    `restore_data_state`, when given, receives the input state saved with it.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self._restore_verified(step, state)
        if restore_data_state is not None:
          restore_data_state(self._restore_data_state(step))
      except CorruptCheckpointError as error:
        self._set_aside(step, error)
        continue
      logging.info('Resumed from %s at step %d.', self.directory, step)
      return restored
    return state

  def latest_step(self) -> int | None:
    """The step of the newest complete save, waiting for one in flight."""
    self.manager.wait_until_finished()
    return self.manager.latest_step()

  def is_due(self, step: int) -> bool:
    """Whether `step` is one of the periodic saves."""
    return step % self.every_steps == 0

  def save(self, step: int, state, data_state=None) -> None:
    """Starts an async save of `state` at `step`, with its layout and checksums, and of
    this process's input state `data_state` (JSON-serializable) when there is one."""
    if '://' not in os.fspath(self.workdir) and (
        shutil.disk_usage(self.workdir).free < self.bytes_per_save):
      raise disk_full(self.workdir, self.bytes_per_save)  # Before orbax's threads fail on it.
    meta = {**self.fingerprint, 'layout': _layout(state), 'checksums': state_checksums(state)}
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if data_state is not None:
      items['data'] = grain.checkpoint.CheckpointSave(_DataState(data_state))
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def _open(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(self.directory, options=self.options, item_handlers=_handlers())

  def _warn_about_partial_saves(self) -> None:
    if jax.process_index() != 0 or not self.directory.exists():
      return
    for path in sorted(self.directory.glob(f'*{PARTIAL_MARK}*')):
      logging.warning('Ignoring partial checkpoint %s: a save that never finished (the process '
                      'was killed). It is never loaded; orbax replaces it when that step is '
                      'saved again.', path)

  def _read_meta(self, step: int) -> dict:
    try:
      return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    except Exception as error:  # Damaged files raise JSON, tensorstore or orbax errors.
      raise CorruptCheckpointError(f'its metadata does not load: {error}') from error

  def _restore_verified(self, step: int, state):
    meta = self._read_meta(step)
    self._check(meta, step)
    if meta.get('layout') != _layout(state):  # Absent: saved before layouts were recorded.
      raise CheckpointMismatchError(
          f'{self.directory} (step {step}) holds a train state laid out differently from this '
          'one (saved by another version of resnet_jax?). Nothing was changed; use a new '
          '--workdir or the version that wrote it.')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
      restored = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))['state']
    except Exception as error:  # Truncated or garbled array files; the layout was checked.
      raise CorruptCheckpointError(f'its arrays do not load: {error}') from error
    if 'checksums' in meta and state_checksums(restored) != meta['checksums']:
      raise CorruptCheckpointError('its arrays do not match the checksums saved with them')
    return restored

  def _restore_data_state(self, step: int):
    saved = self.directory / str(step) / 'data'
    this_process = saved / f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    if not this_process.exists():
      others = sorted(path.name for path in saved.glob('process_*.json'))
      raise CheckpointMismatchError(
          f'{self.directory} (step {step}) holds no input position for process '
          f'{jax.process_index()} of {jax.process_count()} (it has {others or "none"}): it was '
          'saved by a run with another number of processes, or without a streamed input. '
          'Nothing was changed; resume with the number of processes that wrote it.')
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          data=grain.checkpoint.CheckpointRestore(_DataState())))['data']
    except Exception as error:  # A damaged JSON file.
      raise CorruptCheckpointError(f'its input position does not load: {error}') from error
    return restored.state

  def _refuse_other_model(self, overwrite: bool) -> None:
    step = self.manager.latest_step()
    if step is None:
      return
    try:
      self._check(self._read_meta(step), step)
    except CorruptCheckpointError:
      return  # restore_latest sets it aside and checks the one before.
    except CheckpointMismatchError as mismatch:
      if not overwrite:
        raise
      self._move_run_aside(mismatch)

  def _move_run_aside(self, mismatch: CheckpointMismatchError) -> None:
    self.manager.close()
    destination = self.workdir / REPLACED_DIR / time.strftime('%Y%m%d-%H%M%S')
    if jax.process_index() == 0:
      destination.mkdir(parents=True)
      for path in self.workdir.iterdir():
        if path.name not in (REPLACED_DIR, workdir_lock.LOCK_FILE):  # This run holds the lock.
          path.rename(destination / path.name)
    multihost_utils.sync_global_devices('moved the previous run aside')
    logging.warning('config.overwrite: %s Moved that run to %s.', mismatch, destination)
    self.manager = self._open()

  def _set_aside(self, step: int, error: CorruptCheckpointError) -> None:
    destination = self.workdir / CORRUPT_DIR / str(step)
    if destination.exists():
      destination = destination.with_name(f'{step}-{time.strftime("%Y%m%d-%H%M%S")}')
    if jax.process_index() == 0:
      destination.parent.mkdir(parents=True, exist_ok=True)
      (self.directory / str(step)).rename(destination)
    multihost_utils.sync_global_devices(f'set aside checkpoint {step}')
    logging.warning('Checkpoint at step %d in %s is unreadable (%s). Moved it to %s for '
                    'inspection; trying the one before.', step, self.directory, error, destination)
    self.manager.reload()

  def _check(self, meta: dict, step: int) -> None:
    saved = {key: meta.get(key) for key in self.fingerprint}
    if saved == self.fingerprint:
      return
    if saved['model'] != self.fingerprint['model']:
      problem = f"a {saved['model']} run, but the config asks for {self.fingerprint['model']}"
    else:
      problem = 'parameters of other shapes (a different shortcut, width or number of classes)'
    raise CheckpointMismatchError(
        f'{self.directory} (step {step}) holds {problem}. Nothing was changed; use a new '
        '--workdir, set the config back to the model that wrote it, or pass '
        '--config.overwrite=true to move that run aside (nothing is deleted).')
