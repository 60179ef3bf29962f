"""The device mesh and the shardings the trainer asks for, in one place.

Batches are split along the mesh's `data` axis; parameters, optimizer state, BN
statistics and the on-device data set are replicated. A future fsdp-style rule only
has to change `state_sharding`.
"""
import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from resnet_jax.errors import ConfigError

DATA_AXIS = 'data'


def make_mesh(axis_sizes: dict[str, int]) -> Mesh:
  """A mesh over all devices; one axis size may be -1 to take the remaining devices."""
  names = tuple(axis_sizes)
  sizes = [int(size) for size in axis_sizes.values()]
  if DATA_AXIS not in names:
    raise ConfigError(f'The mesh needs a {DATA_AXIS!r} axis, got axes {names}; '
                     f"e.g. --config.mesh.data=-1.")
  device_count = jax.device_count()
  if sizes.count(-1) > 1:
    raise ConfigError(f'At most one mesh axis may be -1, got {axis_sizes}.')
  if -1 in sizes:
    known = math.prod(size for size in sizes if size != -1)
    sizes[sizes.index(-1)] = device_count // known
  if math.prod(sizes) != device_count:
    raise ConfigError(f'The mesh {dict(zip(names, sizes))} needs {math.prod(sizes)} devices, '
                     f'but {device_count} are visible; set its sizes to multiply to {device_count}.')
  # Auto axes: the compiler propagates shardings from in/out_shardings (GSPMD style).
  return jax.make_mesh(tuple(sizes), names, axis_types=(AxisType.Auto,) * len(names),
                       devices=jax.devices())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def state_sharding(mesh: Mesh, state):
  """Shardings for a train-state pytree: replicated (data parallelism)."""
  return jax.tree.map(lambda _: replicated(mesh), state)


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
