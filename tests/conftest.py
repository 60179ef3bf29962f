"""Shared fixtures: the repository's paths and a decoded copy of the real CIFAR archive; and one
persistent compilation cache for every run of the session."""
import atexit
import os
import pathlib
import shutil
import sys
import tempfile

import nbclient
import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / 'experiments' / 'analysis.ipynb'
CIFAR_ARCHIVE = REPO.parent / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
sys.path.insert(0, str(REPO / 'experiments'))

# The tests start dozens of training processes that compile the same tiny programs: they share
# JAX's persistent compilation cache (set before anything imports JAX; subprocesses inherit it).
# A program loaded from the cache is the compiled code itself, so the numbers stay the same.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='resnet_jax_tests_compilation_cache_')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_cache,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


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


@pytest.fixture
def run_notebook(monkeypatch):
  """run(**environment): runs experiments/analysis.ipynb with those environment variables set
  and returns the outputs of its code cells."""
  def run(**environment):
    for name, value in environment.items():
      monkeypatch.setenv(name, str(value))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, kernel_name='python3', timeout=300,
                            resources={'metadata': {'path': str(NOTEBOOK.parent)}}).execute()
    return [output for cell in notebook.cells if cell.cell_type == 'code'
            for output in cell.outputs]
  return run
