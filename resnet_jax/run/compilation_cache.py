"""JAX's persistent compilation cache for every command, so that a resumed run, a rerun after a
kill and the reproduction plan's timed steps load the programs compiled before instead of
compiling them again (minutes for the deeper nets)."""
import os

import jax

DEFAULT_FOLDER = '~/.cache/resnet_jax/compiled'


def enable() -> str:
  """Points JAX's persistent compilation cache at DEFAULT_FOLDER, unless the user chose a folder
  (JAX_COMPILATION_CACHE_DIR); returns the folder in use."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser(DEFAULT_FOLDER))
  return jax.config.jax_compilation_cache_dir
