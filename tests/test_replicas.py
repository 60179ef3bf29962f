"""Several seeds' nets in one program train exactly as each seed alone, in process on one CPU
device (the replica-sharded topologies run through the command line in test_train.py).

float32 shows agreement to rounding after a few steps; float64 shows that what is left is
rounding (about 1e-10 over 20 steps), where a real difference (BN statistics or random
numbers shared between replicas) would stay of the order of the weights' changes.
"""
import dataclasses

import cifar10
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax import replicas, train
from resnet_jax.faults.runs import assert_trees_close

SEEDS = (0, 1)  # Trained together; seed 1 alone too (one compile less than both alone).


def tiny_config(num_replicas: int = 1, seed: int = 0, batching: str = 'auto'):
  config = cifar10.get_config('smoke')
  config.data.source, config.data.train_fraction = 'synthetic', 1.0
  config.data.synthetic.update(num_train=32, num_eval=8, image_size=8)
  config.batch_size = config.eval_batch_size = 4
  config.num_replicas, config.seed, config.replica_batching = num_replicas, seed, batching
  config.mesh.replica, config.mesh.data = 1, 1
  return config


def initial(config, float64: bool = False):
  """The setup, initial train state and metrics of `config`; in float64 the net computes and
  keeps its weights in float64 (run inside jax.enable_x64), from its float32 init."""
  setup = train.build(config)
  if float64:
    setup = dataclasses.replace(setup, model=setup.model.clone(dtype=jnp.float64))
  state, metrics = train.initial_state(setup)
  if float64:
    state = jax.tree.map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
  return setup, state, metrics


def trained(setup, state, metrics, steps: int):
  """The train state after `steps` steps of the trainer's own train function."""
  train_fn = train.make_train_fn(setup)
  for _ in range(steps):
    state, metrics, _ = train_fn(state, metrics, setup.feed.train_inputs(), False)
  return jax.device_get(state)


def replica(state, index: int):
  return jax.tree.map(lambda x: x[index], state)


def assert_replica_is_its_seed(together, alone, rtol, atol):
  """Replica 1 ended where seed 1 alone did; replica 0 elsewhere (its own init and data)."""
  second = replica(together, 1)
  assert_trees_close((second.params, second.batch_stats), (alone.params, alone.batch_stats),
                     rtol=rtol, atol=atol)
  first = jax.tree.leaves(replica(together, 0).params)[0]
  assert not np.allclose(first, jax.tree.leaves(second.params)[0], rtol=1e-3, atol=1e-4)


def test_auto_batching_loops_over_nets_on_a_cpu_and_where_unmeasured():
  assert replicas.batching('auto', 'cpu') == 'loop'
  assert replicas.batching('auto', 'tpu') == 'loop'
  assert replicas.batching('vmap', 'cpu') == 'vmap'
  with pytest.raises(ValueError, match='replica_batching must be one of'):
    replicas.batching('pmap')


def test_each_replica_trains_like_its_seed_alone_in_float32():
  together = trained(*initial(tiny_config(len(SEEDS))), steps=3)
  assert list(together.step) == [3, 3]
  assert_replica_is_its_seed(together, trained(*initial(tiny_config(seed=SEEDS[1])), steps=3),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('batching', ['loop', 'vmap'])
def test_in_float64_replicas_match_their_seeds_to_1e_10_over_20_steps(batching):
  """From the same float64 copy of the float32 init (which two programs may round an ulp
  apart), 20 steps of replica 1 and of seed 1 alone differ by float64 rounding only."""
  with jax.enable_x64(True):
    setup, state, metrics = initial(tiny_config(len(SEEDS), batching=batching), float64=True)
    alone_setup, alone_state, alone_metrics = initial(tiny_config(seed=SEEDS[1]), float64=True)
    assert_trees_close(replica(jax.device_get(state), 1).params,
                       jax.device_get(alone_state).params, rtol=1e-6, atol=1e-7)
    alone = trained(alone_setup, replica(jax.device_get(state), 1), alone_metrics, steps=20)
    together = trained(setup, state, metrics, steps=20)
  assert jax.tree.leaves(together.params)[0].dtype == np.float64
  # BN running variances reach ~1e4 here: 1e-10 absolute, or relative on such values.
  assert_replica_is_its_seed(together, alone, rtol=1e-12, atol=1e-10)


def test_every_seed_of_a_net_runs_the_same_compiled_programs():
  """The seeds are arguments of the init and train programs, not constants in them: a second
  seed compiles nothing new (nor misses the persistent cache)."""
  programs = []
  for seed in SEEDS:
    setup, state, metrics = initial(tiny_config(seed=seed))
    train_fn = train.make_train_fn(setup)
    programs.append(train_fn.lower(state, metrics, setup.feed.train_inputs(), False).as_text())
  assert programs[0] == programs[1]
  first, second = (jax.tree.leaves(trained(*initial(tiny_config(seed=seed)), steps=1).params)[0]
                   for seed in SEEDS)
  assert not np.allclose(first, second)  # Each seed still draws its own init and batches.
