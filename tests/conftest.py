"""Shared fixtures: the repository's paths and a decoded copy of the real CIFAR archive."""
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = REPO.parent / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
sys.path.insert(0, str(REPO / 'experiments'))


@pytest.fixture(scope='session')
def cifar_archive() -> pathlib.Path:
  """The CIFAR-10 JPEG archive beside the checkout (skips the test if it is absent)."""
  if not CIFAR_ARCHIVE.exists():
    pytest.skip(f'{CIFAR_ARCHIVE} is absent: real-data tests need ../shared/data beside the repo.')
  return CIFAR_ARCHIVE


@pytest.fixture(scope='session')
def cifar_cache_dir(tmp_path_factory) -> pathlib.Path:
  """One cache of decoded CIFAR arrays shared by every test of the session."""
  return tmp_path_factory.mktemp('cifar_cache')
