"""Shared fixtures: the repository's paths and a decoded copy of the real CIFAR archive; and one
persistent compilation cache for every run of the session."""
import atexit
import io
import os
import pathlib
import shutil
import sys
import tarfile
import tempfile

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = REPO.parent / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
NOTEBOOK = REPO / 'experiments' / 'analysis.ipynb'
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
# The step rates the tests' runs measure stay out of the user's store (and its plans).
if 'RESNET_JAX_STEP_RATES' not in os.environ:
  _rates = tempfile.mkdtemp(prefix='resnet_jax_tests_step_rates_')
  atexit.register(shutil.rmtree, _rates, ignore_errors=True)
  os.environ['RESNET_JAX_STEP_RATES'] = os.path.join(_rates, 'step_rates.json')


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


@pytest.fixture(scope='session')
def noise_archive(tmp_path_factory) -> pathlib.Path:
  """A .tar.gz of random 32x32 JPEGs, train/<class>/ (8 a class) and test/<class>/ (4 a class),
  3 classes: it barely compresses, so a few KB of damage land among its members. Read only:
  copy it to damage it."""
  path = tmp_path_factory.mktemp('noise_archive') / 'noise.tar.gz'
  rng = np.random.default_rng(0)
  with tarfile.open(path, 'w:gz') as tar:
    for split, count in (('train', 8), ('test', 4)):
      for name in ('cat', 'dog', 'frog'):
        for index in range(count):
          jpeg = io.BytesIO()
          Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(jpeg, 'JPEG')
          member = tarfile.TarInfo(f'{split}/{name}/{index:03d}.jpg')
          member.size = jpeg.tell()
          jpeg.seek(0)
          tar.addfile(member, jpeg)
  return path


@pytest.fixture
def run_notebook(monkeypatch):
  """run(**environment): runs experiments/analysis.ipynb with those environment variables set
  and returns the outputs of its code cells."""
  import nbclient  # pylint: disable=import-outside-toplevel
  import nbformat  # pylint: disable=import-outside-toplevel

  def run(**environment):
    for name, value in environment.items():
      monkeypatch.setenv(name, str(value))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, kernel_name='python3', timeout=300,
                            resources={'metadata': {'path': str(NOTEBOOK.parent)}}).execute()
    return [output for cell in notebook.cells if cell.cell_type == 'code'
            for output in cell.outputs]
  return run
