"""The device mesh and the shardings the trainer asks for, in one place.

The mesh has two axes: `replica` (groups of devices, one group per share of the
`num_replicas` nets trained at once) and `data` (the devices of a group, over which each
net's batch is split). Parameters, optimizer state and BN statistics of a net live on its
replica group, replicated over that group's `data` devices; the on-device data set is
replicated everywhere. A future fsdp-style rule only has to change `state_sharding`.
"""
import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from resnet_jax.errors import ConfigError

REPLICA_AXIS = 'replica'
DATA_AXIS = 'data'
AXES = (REPLICA_AXIS, DATA_AXIS)


def make_mesh(axis_sizes: dict[str, int], devices=None) -> Mesh:
  """A (replica, data) mesh over `devices` (default: all of jax's; bench/aot.py passes a
  TPU or GPU description's); one axis size may be -1 to take the rest.

  `data` is the last, fastest-varying axis, so a replica group's devices sit on as few
  hosts as possible (a host's devices come next to each other in jax.devices()).
  """
  unknown = sorted(set(axis_sizes) - set(AXES))
  if unknown or DATA_AXIS not in axis_sizes:
    raise ConfigError(f'The mesh has the axes {AXES}, got {tuple(axis_sizes)}; e.g. '
                      '--config.mesh.data=-1 --config.mesh.replica=1.')
  sizes = [int(axis_sizes.get(name, 1)) for name in AXES]
  devices = jax.devices() if devices is None else list(devices)
  device_count = len(devices)
  if sizes.count(-1) > 1:
    raise ConfigError(f'At most one mesh axis may be -1, got {dict(axis_sizes)}.')
  if any(size == 0 or size < -1 for size in sizes):
    raise ConfigError(f'Mesh axis sizes must be positive (or -1: the rest), got '
                      f'{dict(axis_sizes)}.')
  if -1 in sizes:
    known = math.prod(size for size in sizes if size != -1)
    sizes[sizes.index(-1)] = max(device_count // known, 1)
  if math.prod(sizes) != device_count:
    raise ConfigError(f'The mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, '
                      f'but {device_count} are visible; set its sizes to multiply to '
                      f'{device_count}.')
  # Auto axes: the compiler propagates shardings from in/out_shardings (GSPMD style).
  return jax.make_mesh(tuple(sizes), AXES, axis_types=(AxisType.Auto,) * len(AXES),
                       devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """One net's batch: leading axis split over `data`, the rest replicated (inside a replica
  group's shard_map, over that group's `data` devices)."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def per_replica(mesh: Mesh) -> NamedSharding:
  """Arrays with a leading [num_replicas] axis: each replica group holds its share."""
  return NamedSharding(mesh, PartitionSpec(REPLICA_AXIS))


def state_sharding(mesh: Mesh, state, num_replicas: int):
  """Shardings for a train-state pytree: replicated over `data` (data parallelism), and
  split over `replica` along the leading axis when several nets train at once."""
  sharding = per_replica(mesh) if num_replicas > 1 else replicated(mesh)
  return jax.tree.map(lambda _: sharding, state)


def put_replicated(mesh: Mesh, array: np.ndarray) -> jax.Array:
  """Places a host array, identical on every process, on all devices of the mesh."""
  sharding = replicated(mesh)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def check_batch_divides(batch_size: int, mesh: Mesh, what: str = 'batch_size') -> None:
  """Raises if a global batch cannot be split evenly over the data axis."""
  shards = mesh.shape[DATA_AXIS]
  if batch_size % shards:
    raise ConfigError(f'{what}={batch_size} does not divide over the {shards} devices of the '
                      f"mesh's {DATA_AXIS!r} axis; use a multiple of {shards}.")


def check_replicas_divide(num_replicas: int, mesh: Mesh) -> None:
  """Raises if the nets trained at once cannot be shared evenly by the replica groups."""
  groups = mesh.shape[REPLICA_AXIS]
  if num_replicas % groups:
    raise ConfigError(
        f'num_replicas={num_replicas} nets cannot be shared evenly by the {groups} replica '
        f'groups of the mesh (mesh.replica={groups}); train a multiple of {groups} nets, or set '
        f'--config.mesh.replica to a divisor of {num_replicas} (and mesh.data to the rest).')
