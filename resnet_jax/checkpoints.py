"""Orbax checkpoints of the train state, refusing ones written by another model."""
import logging

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath


class CheckpointMismatchError(ValueError):
  """The workdir holds checkpoints of a different model or shape."""


def model_fingerprint(model_name: str, params) -> dict:
  """What must match for a checkpoint to be restored into this run."""
  shapes = jax.tree_util.tree_flatten_with_path(params)[0]
  return {'model': model_name,
          'param_shapes': {jax.tree_util.keystr(path): list(leaf.shape) for path, leaf in shapes}}


def load_latest_arrays(workdir: epath.PathLike) -> tuple[int, list]:
  """The latest checkpoint in `workdir` as host arrays, on any number of devices and
  without building the model.

  Returns (step, [train_state, train_metrics]), each a nested dict of numpy arrays
  (`train_state['params']`, `['batch_stats']`, ...), for analysis and tests.
  """
  directory = epath.Path(workdir) / 'checkpoints'
  if not directory.exists():
    raise FileNotFoundError(f'No checkpoints under {directory}; train with --workdir={workdir} first.')
  options = ocp.CheckpointManagerOptions(create=False, read_only=True)
  handlers = {'state': ocp.StandardCheckpointHandler()}
  with ocp.CheckpointManager(directory, options=options, item_handlers=handlers) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'{directory} holds no complete checkpoint.')
    # Restore onto one local device, whatever topology wrote the checkpoint.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=device),
                            manager.item_metadata(step)['state'])
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  return step, jax.tree.map(np.asarray, restored['state'])


class Checkpoints:
  """Periodic async saves (keep-last-N) and restore of the latest one in `workdir`."""

  def __init__(self, workdir: epath.PathLike, *, every_steps: int, keep: int, fingerprint: dict):
    self.directory = epath.Path(workdir) / 'checkpoints'
    self.every_steps = every_steps
    self.fingerprint = fingerprint
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def restore_latest(self, state):
    """The latest saved state, or `state` unchanged when there is none."""
    step = self.manager.latest_step()
    if step is None:
      return state
    meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    self._check(meta, step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))['state']
    logging.info('Resumed from %s at step %d.', self.directory, step)
    return restored

  def maybe_save(self, step: int, state, force: bool = False) -> bool:
    """Saves every `every_steps` steps, or now with `force`; returns whether it saved."""
    if not force and step % self.every_steps:
      return False
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(self.fingerprint))
    return self.manager.save(step, args=args, force=force)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def _check(self, meta: dict, step: int) -> None:
    if meta == self.fingerprint:
      return
    if meta.get('model') != self.fingerprint['model']:
      problem = f"a {meta.get('model')} run, but the config asks for {self.fingerprint['model']}"
    else:
      problem = 'parameters of other shapes (a different shortcut, width or number of classes)'
    raise CheckpointMismatchError(
        f'{self.directory} (step {step}) holds {problem}. Nothing was changed; use a new '
        '--workdir, or set the config back to the model that wrote it.')
