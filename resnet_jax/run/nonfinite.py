"""Stops a run soon after its loss or gradients become NaN/Inf, keeping the last good
checkpoint; or, with `config.on_nonfinite='skip'`, lets it skip such steps."""
from resnet_jax import errors


class NonFiniteGuard:
  """Reads each dispatch's count of non-finite steps one dispatch late, so the host stays
  ahead of the accelerator, and at once before anything is saved.

  `train_state.train_step` already leaves the state unchanged on such a step; in 'stop'
  mode the guard ends the run with the step, the last good checkpoint and likely causes.
  """

  def __init__(self, mode: str, checkpoints, learning_rate_at, steps_per_dispatch: int):
    self.skip = mode == 'skip'
    self.checkpoints = checkpoints
    self.learning_rate_at = learning_rate_at
    self.steps_per_dispatch = steps_per_dispatch
    self._pending = None

  def after_dispatch(self, step: int, nonfinite_steps) -> None:
    """Registers the dispatch that ended at `step`; checks the one before it."""
    previous, self._pending = self._pending, (step, nonfinite_steps)
    if previous is not None:
      self._check(*previous)

  def check_now(self) -> None:
    """Checks the latest dispatch; call before saving its state."""
    if self._pending is not None:
      self._check(*self._pending)

  def _check(self, step: int, nonfinite_steps) -> None:
    if self.skip or not int(nonfinite_steps):
      return
    raise errors.NonFiniteError(self._message(step))

  def _message(self, step: int) -> str:
    first = step - self.steps_per_dispatch + 1
    where = f'step {step}' if first == step else f'steps {first} to {step}'
    good = self.checkpoints.latest_step()
    kept = (f'The last good checkpoint is step {good} in {self.checkpoints.directory}; rerunning '
            'the same command resumes from it.' if good is not None else
            'There is no last good checkpoint yet: the run diverged before its first save.')
    return (f'Loss or gradients became NaN/Inf at {where} (learning rate '
            f'{float(self.learning_rate_at(step - 1)):g}); stopped without saving. {kept} '
            'Likely causes: a learning rate too high for this net (config.optimizer.learning_rate)'
            ', no warm-up for a deep net (the paper trains ResNet-110 at 0.01 for 400 steps: '
            'config.optimizer.warmup_steps=400), or bfloat16 overflow (config.dtype). To skip '
            'such steps instead, set --config.on_nonfinite=skip.')
