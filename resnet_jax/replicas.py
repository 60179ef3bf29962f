"""Several nets in one program, each with ordinary convolutions.

`num_replicas` nets (one per seed) carry a leading replica axis on every array of theirs. The
mesh's `replica` axis splits that axis over groups of devices (`jax.shard_map`, manual over
`replica` only, so each net's batch stays split over its group's `data` devices by the
compiler). A group holding one net runs the one-net program; a group holding several runs
them one after another (`loop`) or batched (`vmap`, which turns every convolution with
per-net weights into one grouped convolution).
"""
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from resnet_jax import sharding

BATCHINGS = ('auto', 'loop', 'vmap')

# What `auto` picks per backend. CPU: measured, the loop is 3-4x faster than vmap's grouped
# convolutions (docs/performance.md). GPU and TPU: vmap is unmeasured, so the loop, which
# costs what the nets' separate runs cost, until a measurement says otherwise.
MEASURED_FASTEST = {'cpu': 'loop'}


def batching(requested: str, backend: str | None = None) -> str:
  """'loop' or 'vmap': how a device group runs its nets; `auto` picks the faster one measured
  on `backend` (default: jax's), the loop where nothing was measured."""
  if requested not in BATCHINGS:
    raise ValueError(f'replica_batching must be one of {BATCHINGS}, got {requested!r}.')
  if requested != 'auto':
    return requested
  return MEASURED_FASTEST.get(backend or jax.default_backend(), 'loop')


def per_replica(fn: Callable, mesh: Mesh, num_replicas: int, in_axes: Sequence[int | None],
                how: str = 'auto') -> Callable:
  """`fn` (one net's computation) over the nets of a leading replica axis.

  `in_axes` says per positional argument whether it has the replica axis (0) or is shared by
  every net (None); every output has the replica axis. With one net, `fn` itself (no axis).
  """
  if num_replicas == 1:
    return fn
  groups = mesh.shape[sharding.REPLICA_AXIS]
  run_group = _group_runner(fn, in_axes, num_replicas // groups, batching(how))
  return jax.shard_map(
      run_group, mesh=mesh, out_specs=PartitionSpec(sharding.REPLICA_AXIS),
      in_specs=tuple(PartitionSpec() if axis is None else PartitionSpec(sharding.REPLICA_AXIS)
                     for axis in in_axes),
      axis_names={sharding.REPLICA_AXIS}, check_vma=False)


def _group_runner(fn: Callable, in_axes: Sequence[int | None], nets: int, how: str) -> Callable:
  """One group's function: its `nets` nets' arguments in, their stacked results out."""
  if how == 'vmap' and nets > 1:
    return jax.vmap(fn, in_axes=tuple(in_axes))

  def run_one_by_one(*args):
    results = [fn(*(arg if axis is None else jax.tree.map(lambda x, n=net: x[n], arg)
                    for arg, axis in zip(args, in_axes)))
               for net in range(nets)]
    return jax.tree.map(lambda *per_net: jnp.stack(per_net), *results)

  return run_one_by_one
