"""Every command keeps its compiled programs in JAX's persistent cache (run/compilation_cache.py)."""
import os

import jax
import pytest

from resnet_jax.run import compilation_cache


@pytest.fixture
def cache_folder_setting():
  """Puts jax_compilation_cache_dir back as it was after the test."""
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update('jax_compilation_cache_dir', before)


def test_commands_cache_their_programs_under_the_users_cache_folder(cache_folder_setting):
  jax.config.update('jax_compilation_cache_dir', None)
  folder = compilation_cache.enable()
  assert folder == os.path.expanduser('~/.cache/resnet_jax/compiled')
  assert jax.config.jax_compilation_cache_dir == folder


def test_a_folder_the_user_chose_is_kept(cache_folder_setting, tmp_path):
  jax.config.update('jax_compilation_cache_dir', str(tmp_path))
  assert compilation_cache.enable() == str(tmp_path)
  assert jax.config.jax_compilation_cache_dir == str(tmp_path)
