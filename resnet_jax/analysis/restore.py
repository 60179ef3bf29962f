"""A run's trained net, rebuilt from its config.json and restored from its latest checkpoint."""
import dataclasses

import flax.linen as nn
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from resnet_jax import data, train
from resnet_jax.data.cifar import augment
from resnet_jax.run import checkpoints
from resnet_jax.run.record import read_config

CHECKPOINT_DIR = 'checkpoints'  # Where resnet_jax.run.checkpoints.Checkpoints saves in a workdir.


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A run's config, net, trained variables ({'params', 'batch_stats'}), step and data."""
  config: ml_collections.ConfigDict
  model: nn.Module
  variables: dict
  step: int
  splits: data.ArraySplits

  def eval_inputs(self, num_images: int = 0) -> jax.Array:
    """The first `num_images` eval images (0: all), normalized as the trainer feeds them."""
    images = self.splits.eval_images[:num_images or None]
    return augment.normalize(images, augment.per_pixel_mean(self.splits.train_images))


def load_trained_run(workdir: epath.PathLike, seed: int | None = None) -> TrainedRun:
  """The run in `workdir` at its latest checkpoint, with the data its config names.

  A workdir that trained several seeds at once (num_replicas > 1) holds one net per seed:
  `seed` picks it, and the TrainedRun's config is that seed's own (num_replicas 1).
  """
  workdir = epath.Path(workdir)
  config = read_config(workdir)
  seeds = train.replica_seeds(config) if 'num_replicas' in config else [config.seed]
  if seed is None and len(seeds) == 1:
    seed = config.seed
  if seed not in seeds:
    raise ValueError(f'{workdir} trained seeds {seeds}, not {seed}; pass one of them as seed.')
  step, (state, _) = checkpoints.load_latest_arrays(workdir)
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  if len(seeds) > 1:  # The trainer stacks the replicas' state on a leading axis.
    variables = jax.tree.map(lambda leaf: leaf[seeds.index(seed)], variables)
    config.seed, config.num_replicas = seed, 1
  splits = data.load_dataset(config.data)
  return TrainedRun(config, train.build_model(config, splits.num_classes), variables, step,
                    splits)


def latest_checkpoint_step(workdir: epath.PathLike) -> int | None:
  """The step of the newest finalized checkpoint in `workdir`, or None if there is none."""
  directory = epath.Path(workdir) / CHECKPOINT_DIR
  steps = ocp.utils.checkpoint_steps(directory) if directory.exists() else []
  return max(steps, default=None)
