"""Config and workdir checks before anything is compiled (helper-5 is writing the real one)."""
import jax
import numpy as np


def validate(config) -> None:
  del config


def checkpoint_bytes(abstract_state) -> int:
  return int(sum(np.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract_state)))


def check_workdir(workdir, required_bytes: int) -> None:
  del workdir, required_bytes
