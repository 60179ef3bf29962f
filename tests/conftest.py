"""Shared fixtures: the repository's paths and a decoded copy of the real CIFAR archive; one
persistent compilation cache for every run of the session; how the session spends its CPU."""
import atexit
import contextlib
import io
import logging
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
# The xdist workers inherit the folder from the controller, which imports this file first: one
# folder for the whole run.
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

# A library's log record (grain, orbax, absl, our own warnings) goes to pytest's log capture
# alone, shown with a failing test: with no handler of the process's own, a record logged while
# no test captures (by a grain thread as a worker's session ends) would fall through to
# logging.lastResort, which prints it into the progress output.
logging.getLogger().addHandler(logging.NullHandler())

# Compiling is much of the suite's CPU time. LLVM's optimization level 1, not XLA's default,
# compiles a tiny net's programs in about half the time (a cold 8-step ResNet-8 run: 26 -> 14
# CPU-s, measured on 2 busy shared cores). Every process of the session compiles so (the workers
# and the runs they start: faults.runs.start_main keeps these flags), so the runs that must agree
# bit for bit still do. Level 0 would save a little more, but rounds differently enough that 8
# devices no longer train like 1 to test_train's tolerance. A user's runs, and the Quick start
# that .ci/run trains, keep XLA's default.
TEST_XLA_FLAGS = '--xla_backend_optimization_level=1'
if TEST_XLA_FLAGS not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

# xdist gives each worker one test file at a time (--dist=loadfile) in the order collected
# (--no-loadscope-reorder; its default order, most tests first, left the files that train
# through the command line for last): the files that take longest go first, so that the
# last to end is a short one. The order is an estimate from the runs each file starts.
LONGEST_FILES_FIRST = ('test_reproduce.py', 'test_streamed_train.py', 'test_train.py',
                       'test_study.py', 'test_faults.py', 'test_figure4.py', 'test_bench.py',
                       'test_run_record.py')


def pytest_collection_modifyitems(items):
  """Puts the tests of LONGEST_FILES_FIRST first, in that order; the rest keep theirs."""
  def rank(item):
    name = item.path.name
    return LONGEST_FILES_FIRST.index(name) if name in LONGEST_FILES_FIRST else len(
        LONGEST_FILES_FIRST)
  items.sort(key=rank)


TENSORFLOW_STAND_IN = 'without_tensorflow'


@pytest.fixture(scope='session', autouse=True)
def runs_without_tensorflow(tmp_path_factory):
  """The processes the tests start import no TensorFlow, as on the accelerator hosts that lack
  it: its import is about 4.5 of the 10 CPU-seconds of a tiny training run (measured on 2 busy
  cores), and the tests start dozens. The TensorBoard writer then says TensorFlow is not
  installed; a test that needs TensorFlow in a process it starts uses `with_tensorflow()`.

  A session fixture, so that it acts in the processes that run tests (the xdist workers, or
  pytest with -n 0), whose own TensorFlow stays importable, and not in the xdist controller,
  whose environment the workers inherit.
  """
  stand_in = tmp_path_factory.mktemp(TENSORFLOW_STAND_IN, numbered=False)
  (stand_in / 'tensorflow').mkdir()
  (stand_in / 'tensorflow' / '__init__.py').write_text(
      "raise ImportError('TensorFlow is hidden from the processes the tests start "
      "(tests/conftest.py)')\n")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('PYTHONPATH', os.pathsep.join(
        [str(stand_in), *filter(None, [os.environ.get('PYTHONPATH')])]))
    yield stand_in


@contextlib.contextmanager
def with_tensorflow():
  """Within it, the processes the tests start can import TensorFlow again."""
  shown = os.pathsep.join(path for path in os.environ.get('PYTHONPATH', '').split(os.pathsep)
                          if pathlib.Path(path).name != TENSORFLOW_STAND_IN)
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('PYTHONPATH', shown)
    yield


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
