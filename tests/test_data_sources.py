"""Tests of load_dataset's sources (folder, archive, synthetic, TFDS), its cache, its subsets
and its errors on bad input."""
import gzip
import os
import random
import re
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_jax.data import ArraySplits, DataError, load_dataset
from resnet_jax.data import cache, decode
from resnet_jax.data.cifar import tfds_source
from resnet_jax.data.cifar.folder import load_image_archive
from resnet_jax.data.cifar.subsets import stratified_choice
from resnet_jax.data.origin import DataOrigin
from resnet_jax.faults import damage

REPO = Path(__file__).resolve().parents[1]
CIFAR_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                 'truck')
CLASSES = ('cat', 'dog', 'frog')
WIDTH, HEIGHT = 8, 6


def class_gray(label: int) -> int:
  """The gray level of every image of class `label`: far enough apart to survive JPEG."""
  return 40 + 60 * label


def write_image(path: Path, gray: int, size: tuple[int, int] = (WIDTH, HEIGHT)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new('RGB', size, (gray, gray, gray)).save(path)


def write_tree(root: Path, train_per_class: int = 4, test_per_class: int = 2) -> Path:
  """A class-folder tree of solid gray images, alternating JPEG and PNG."""
  for split, count in (('train', train_per_class), ('test', test_per_class)):
    for label, name in enumerate(CLASSES):
      for index in range(count):
        suffix = '.png' if index % 2 else '.jpg'
        write_image(root / split / name / f'{index:03d}{suffix}', class_gray(label))
  return root


def write_archive(tree: Path, archive: Path, top_dir: str | None = None) -> Path:
  with tarfile.open(archive, 'w:gz') as tar:
    for split in ('train', 'test'):
      tar.add(tree / split, arcname=f'{top_dir}/{split}' if top_dir else split)
  return archive


def source_config(source: str, path, cache_dir, **overrides) -> dict:
  return {'source': source, 'path': str(path), 'cache_dir': str(cache_dir), **overrides}


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
  """(size, mtime) of everything under `directory`, the directory itself included."""
  paths = [directory, *directory.rglob('*')]
  return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in paths}


def count_decodes(monkeypatch) -> list[str]:
  """Records the name of each image decoded in this process from now on."""
  decoded, decode_image = [], decode.decode_image

  def counting(name, data, source):
    decoded.append(name)
    return decode_image(name, data, source)

  monkeypatch.setattr(decode, 'decode_image', counting)
  return decoded


@pytest.fixture
def tree(tmp_path) -> Path:
  return write_tree(tmp_path / 'data' / 'tree')


@pytest.fixture
def archive(tree, tmp_path) -> Path:
  return write_archive(tree, tmp_path / 'data' / 'tree.tar.gz')


@pytest.fixture
def cache_dir(tmp_path) -> Path:
  return tmp_path / 'cache'


# Folder and archive sources.


def test_folder_loads_images_with_sorted_class_labels(tree, cache_dir):
  splits = load_dataset(source_config('folder', tree, cache_dir))
  assert splits.class_names == CLASSES and splits.num_classes == 3
  assert splits.eval_split == 'test'
  assert splits.train_images.shape == (12, HEIGHT, WIDTH, 3)
  assert splits.eval_images.shape == (6, HEIGHT, WIDTH, 3)
  assert splits.train_images.dtype == np.uint8 and splits.train_labels.dtype == np.int32
  assert np.bincount(splits.train_labels).tolist() == [4, 4, 4]
  assert np.bincount(splits.eval_labels).tolist() == [2, 2, 2]
  for images, labels in ((splits.train_images, splits.train_labels),
                         (splits.eval_images, splits.eval_labels)):
    grays = images.reshape(len(images), -1).mean(axis=1)
    np.testing.assert_allclose(grays, [class_gray(label) for label in labels], atol=3)


@pytest.mark.parametrize('top_dir', [None, 'cifar-mini'])
def test_archive_gives_the_same_arrays_as_the_folder(tree, tmp_path, cache_dir, top_dir):
  archive = write_archive(tree, tmp_path / f'tree-{top_dir}.tar.gz', top_dir)
  from_archive = load_dataset(source_config('archive', archive, cache_dir))
  from_folder = load_dataset(source_config('folder', tree, cache_dir))
  assert from_archive.class_names == from_folder.class_names == CLASSES
  for field in ('train_images', 'train_labels', 'eval_images', 'eval_labels'):
    np.testing.assert_array_equal(getattr(from_archive, field), getattr(from_folder, field))


def test_archive_ignores_hidden_files_and_files_outside_the_splits(tree, tmp_path, cache_dir):
  (tree / 'README.txt').write_text('CIFAR-mini')
  (tree / 'train' / 'cat' / '._000.jpg').write_bytes(b'macOS metadata, not an image')
  archive = tmp_path / 'extra.tar'
  with tarfile.open(archive, 'w') as tar:
    tar.add(tree, arcname='mini')
  splits = load_dataset(source_config('archive', archive, cache_dir))
  assert splits.train_images.shape[0] == 12 and splits.eval_images.shape[0] == 6


def test_cache_is_reused_without_decoding(archive, cache_dir, monkeypatch):
  first = load_dataset(source_config('archive', archive, cache_dir))
  [cache_file] = cache_dir.iterdir()
  mtime = cache_file.stat().st_mtime_ns
  decoded = count_decodes(monkeypatch)
  second = load_dataset(source_config('archive', archive, cache_dir))
  assert decoded == []
  assert cache_file.stat().st_mtime_ns == mtime
  np.testing.assert_array_equal(second.train_images, first.train_images)
  np.testing.assert_array_equal(second.eval_labels, first.eval_labels)
  assert second.class_names == first.class_names


def test_cache_is_rebuilt_when_the_archive_changes(tree, archive, cache_dir, monkeypatch):
  load_dataset(source_config('archive', archive, cache_dir))
  write_image(tree / 'train' / 'dog' / '999.png', class_gray(1))
  write_archive(tree, archive)
  decoded = count_decodes(monkeypatch)
  splits = load_dataset(source_config('archive', archive, cache_dir))
  assert len(decoded) == 19
  assert splits.train_images.shape[0] == 13
  assert len(list(cache_dir.iterdir())) == 1


def test_cache_is_rebuilt_when_a_folder_image_changes(tree, cache_dir, monkeypatch):
  load_dataset(source_config('folder', tree, cache_dir))
  image = tree / 'test' / 'frog' / '000.jpg'
  write_image(image, 255)
  os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))
  decoded = count_decodes(monkeypatch)
  splits = load_dataset(source_config('folder', tree, cache_dir))
  assert len(decoded) == 18
  assert splits.eval_images.max() == 255


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_corrupt_cache_is_rebuilt_with_a_warning(archive, cache_dir, damage):
  first = load_dataset(source_config('archive', archive, cache_dir))
  [cache_file] = cache_dir.iterdir()
  content = cache_file.read_bytes()
  cache_file.write_bytes(b'not a zip file' if damage == 'garbage' else content[:len(content) // 2])
  with pytest.warns(UserWarning, match='unreadable.*rebuilding'):
    second = load_dataset(source_config('archive', archive, cache_dir))
  np.testing.assert_array_equal(second.train_images, first.train_images)
  assert cache_file.read_bytes() == content


def interrupted_savez(file, **arrays):
  file.write(b'PK\x03\x04 half a zip')
  raise KeyboardInterrupt


def test_a_killed_cache_write_leaves_no_corrupt_cache(archive, cache_dir, monkeypatch):
  with monkeypatch.context() as patch:
    patch.setattr(np, 'savez', interrupted_savez)
    patch.setattr(os, 'unlink', lambda path: None)  # A killed process cleans nothing up.
    with pytest.raises(KeyboardInterrupt):
      load_dataset(source_config('archive', archive, cache_dir))
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # Reading a half-written cache would warn.
    splits = load_dataset(source_config('archive', archive, cache_dir))
  assert splits.train_images.shape[0] == 12


def test_an_interrupted_cache_write_cleans_up(archive, cache_dir, monkeypatch):
  monkeypatch.setattr(np, 'savez', interrupted_savez)
  with pytest.raises(KeyboardInterrupt):
    load_dataset(source_config('archive', archive, cache_dir))
  assert list(cache_dir.iterdir()) == []


def test_loading_never_writes_to_the_data_directory(tree, archive, cache_dir):
  data_dir = archive.parent
  before = snapshot(data_dir)
  for source, path in (('folder', tree), ('archive', archive)):
    load_dataset(source_config(source, path, cache_dir))
    load_dataset(source_config(source, path, cache_dir))
  assert snapshot(data_dir) == before
  assert cache_dir.exists()


@pytest.mark.parametrize('inside', ['tree', 'tree/cache'])
def test_cache_dir_inside_the_data_is_refused(tree, inside):
  with pytest.raises(DataError, match='is in the data directory'):
    load_dataset(source_config('folder', tree, tree.parent / inside))


def test_decoding_in_worker_processes_matches_decoding_here(archive, tmp_path, monkeypatch):
  monkeypatch.setattr(decode, 'CHUNK_SIZE', 4)
  monkeypatch.setattr(decode, 'POOL_MIN_IMAGES', 8)
  decoded_here = count_decodes(monkeypatch)
  in_pool = load_image_archive(archive, tmp_path / 'pool_cache', num_workers=2)
  assert decoded_here == [], 'the workers, not this process, should have decoded'
  here = load_image_archive(archive, tmp_path / 'serial_cache', num_workers=1)
  assert len(decoded_here) == 18
  for field in ('train_images', 'train_labels', 'eval_images', 'eval_labels'):
    np.testing.assert_array_equal(getattr(in_pool, field), getattr(here, field))


def test_a_script_that_breaks_the_worker_processes_still_loads(archive, cache_dir):
  # Worker processes re-run the main script; one read from stdin cannot be re-run.
  script = textwrap.dedent(f"""
      from resnet_jax.data import decode
      from resnet_jax.data.cifar import tfds_source
      from resnet_jax.data.cifar.folder import load_image_archive
      decode.CHUNK_SIZE, decode.POOL_MIN_IMAGES = 4, 8
      splits = load_image_archive({str(archive)!r}, {str(cache_dir)!r}, num_workers=2)
      print(splits.train_images.shape)
      """)
  result = subprocess.run([sys.executable, '-'], input=script, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert 'decoding in this process instead' in result.stderr
  assert result.stdout.strip() == f'(12, {HEIGHT}, {WIDTH}, 3)'


# The real CIFAR-10 JPEG archive.


# cifar_archive and cifar_cache_dir come from conftest.py: one decode serves the session.
@pytest.fixture(scope='session')
def cifar(cifar_archive, cifar_cache_dir) -> ArraySplits:
  return load_dataset(source_config('archive', cifar_archive, cifar_cache_dir))


def test_cifar10_jpeg_archive_has_the_official_split(cifar):
  assert cifar.class_names == CIFAR_CLASSES
  assert cifar.train_images.shape == (50_000, 32, 32, 3)
  assert cifar.eval_images.shape == (10_000, 32, 32, 3)
  assert cifar.train_images.dtype == np.uint8 and cifar.eval_labels.dtype == np.int32
  assert np.bincount(cifar.train_labels).tolist() == [5000] * 10
  assert np.bincount(cifar.eval_labels).tolist() == [1000] * 10
  assert 100 < cifar.train_images.mean() < 150


def test_cifar10_paper_validation_split(cifar, cifar_archive, cifar_cache_dir):
  config = source_config('archive', cifar_archive, cifar_cache_dir, validation_size=5000)
  started = time.perf_counter()
  splits = load_dataset(config)
  assert time.perf_counter() - started < 10, 'the cache should make this load fast'
  assert splits.eval_split == 'validation'
  assert splits.train_images.shape[0] == 45_000 and splits.eval_images.shape[0] == 5000
  assert np.bincount(splits.eval_labels).tolist() == [500] * 10
  assert np.bincount(splits.train_labels).tolist() == [4500] * 10
  np.testing.assert_array_equal(load_dataset(config).eval_images, splits.eval_images)
  held_out = {image.tobytes() for image in splits.eval_images}
  assert len(held_out & {image.tobytes() for image in splits.train_images}) <= 1, (
      'a few CIFAR images are duplicates; more overlap means the split is not disjoint')


# Subsets: the held-out validation set and train_fraction.


def synthetic_config(**overrides) -> dict:
  return {'source': 'synthetic',
          'synthetic': {'num_train': 1000, 'num_eval': 50, 'image_size': 4, 'num_classes': 10,
                        'seed': 0},
          **overrides}


def rows(images: np.ndarray) -> set[bytes]:
  return {image.tobytes() for image in images}


def test_stratified_choice_is_a_deterministic_stratified_partition():
  labels = np.repeat(np.arange(10, dtype=np.int32), 5000)
  chosen, rest = stratified_choice(labels, 5000, seed=0)
  assert len(chosen) == 5000 and len(rest) == 45_000
  np.testing.assert_array_equal(np.sort(np.concatenate([chosen, rest])), np.arange(50_000))
  assert np.bincount(labels[chosen]).tolist() == [500] * 10
  np.testing.assert_array_equal(stratified_choice(labels, 5000, seed=0)[0], chosen)
  assert not np.array_equal(stratified_choice(labels, 5000, seed=1)[0], chosen)
  assert chosen[:10].tolist() != list(range(10)), 'the chosen examples should be random'


def test_validation_size_holds_out_train_images():
  everything = load_dataset(synthetic_config())
  splits = load_dataset(synthetic_config(validation_size=100))
  assert splits.eval_split == 'validation'
  assert len(splits.eval_labels) == 100 and len(splits.train_labels) == 900
  assert rows(splits.eval_images) | rows(splits.train_images) == rows(everything.train_images)
  assert not rows(splits.eval_images) & rows(splits.train_images)
  expected = np.bincount(everything.train_labels) / 10
  assert np.all(np.abs(np.bincount(splits.eval_labels) - expected) <= 1)
  np.testing.assert_array_equal(load_dataset(synthetic_config(validation_size=100)).eval_images,
                                splits.eval_images)


def test_train_fraction_keeps_a_fixed_subset_of_the_remaining_train_images():
  held_out = load_dataset(synthetic_config(validation_size=100))
  splits = load_dataset(synthetic_config(validation_size=100, train_fraction=0.1))
  assert len(splits.train_labels) == 90
  assert rows(splits.train_images) <= rows(held_out.train_images)
  np.testing.assert_array_equal(splits.eval_images, held_out.eval_images)
  again = load_dataset(synthetic_config(validation_size=100, train_fraction=0.1))
  np.testing.assert_array_equal(again.train_images, splits.train_images)


def test_synthetic_is_deterministic_from_its_seed_and_any_shape():
  config = synthetic_config()
  config['synthetic'] = dict(config['synthetic'], image_size=(5, 7), num_classes=4)
  first, second = load_dataset(config), load_dataset(config)
  assert first.train_images.shape == (1000, 5, 7, 3) and first.eval_images.shape == (50, 5, 7, 3)
  assert first.train_labels.max() == 3 and first.num_classes == 4
  np.testing.assert_array_equal(first.train_images, second.train_images)
  config['synthetic']['seed'] = 1
  assert not np.array_equal(load_dataset(config).train_images, first.train_images)


# TFDS, under tfds.testing.mock_data: no network here.


def pretend_online(monkeypatch):
  """The download host's connection check succeeds (mock_data's builders are never prepared,
  and their download is a no-op)."""
  monkeypatch.setattr(tfds_source.socket, 'create_connection',
                      lambda *args, **kwargs: socket.socket())


def pretend_offline(monkeypatch):
  def unreachable(address, timeout):
    raise OSError(101, 'Network is unreachable')
  monkeypatch.setattr(tfds_source.socket, 'create_connection', unreachable)


def test_tfds_source_under_mock_data(monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  pretend_online(monkeypatch)
  with tfds.testing.mock_data(num_examples=20):
    splits = load_dataset({'source': 'tfds', 'name': 'cifar10'})
    held_out = load_dataset({'source': 'tfds', 'name': 'cifar10', 'validation_size': 5})
  assert splits.train_images.shape == (20, 32, 32, 3) and splits.train_images.dtype == np.uint8
  assert splits.eval_images.shape == (20, 32, 32, 3) and splits.eval_labels.dtype == np.int32
  assert splits.num_classes == 10  # mock_data's label feature has names '0' ... '9'.
  assert splits.eval_split == 'test'
  assert 0 <= splits.train_labels.min() and splits.train_labels.max() < 10
  assert held_out.eval_split == 'validation' and len(held_out.eval_labels) == 5


def test_tfds_offline_fails_at_once_listing_the_other_sources(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  pretend_offline(monkeypatch)
  downloads = []
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      lambda *args, **kwargs: downloads.append(args))
  with pytest.raises(DataError) as error:
    load_dataset({'source': 'tfds', 'name': 'cifar10', 'data_dir': str(tmp_path)})
  assert downloads == []
  assert "cannot download 'cifar10': www.cs.toronto.edu is unreachable" in str(error.value)
  for way in ('--config.data.data_dir=DIR', '--config.data.source=archive',
              '--config.data.source=folder', '--config.data.source=synthetic'):
    assert way in str(error.value)


def test_tfds_finds_the_modules_it_imports_lazily_for_a_download():
  """`pip install -e '.[tfds]'` installs what TFDS's download path imports (importlib_resources)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  assert tfds.builder('cifar10').code_path.name == 'cifar.py'


def test_auto_source_reads_the_archive_when_tfds_has_no_prepared_copy(archive, tree, tmp_path,
                                                                      cache_dir, monkeypatch):
  pytest.importorskip('tensorflow_datasets')
  pretend_offline(monkeypatch)
  (tmp_path / 'tfds').mkdir()
  config = source_config('auto', archive, cache_dir, data_dir=str(tmp_path / 'tfds'))
  splits = load_dataset(config)
  assert splits.origin == DataOrigin('archive', str(archive.resolve()),
                                     cache.fingerprint(archive.resolve()))
  np.testing.assert_array_equal(
      splits.train_images, load_dataset(source_config('folder', tree, cache_dir)).train_images)
  with pytest.raises(DataError, match="(?s)TFDS cannot download 'cifar10'.*a prepared TFDS copy"):
    load_dataset(config | {'path': str(tmp_path / 'missing.tar.gz')})


def test_tfds_unknown_data_set_is_named():
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(DataError, match="no data set 'cifar_ten'.*list_builders"):
    load_dataset({'source': 'tfds', 'name': 'cifar_ten'})


def test_folder_archive_and_synthetic_never_import_tensorflow(archive, tree, cache_dir):
  script = textwrap.dedent(f"""
      import sys
      sys.modules['tensorflow'] = None
      sys.modules['tensorflow_datasets'] = None
      from resnet_jax.data import DataError, load_dataset, open_streamed
      from resnet_jax.errors import MissingPackageError
      for source, path in (('archive', {str(archive)!r}), ('folder', {str(tree)!r})):
        splits = load_dataset(dict(source=source, path=path, cache_dir={str(cache_dir)!r}))
        assert splits.train_images.shape == (12, {HEIGHT}, {WIDTH}, 3)
      assert load_dataset(dict(source='synthetic')).train_images.shape == (512, 32, 32, 3)
      streamed = open_streamed(dict(
          source='synthetic', crop_size=16, train_resize_range=(16, 16), eval_resize_size=16,
          num_workers=0, cache_dir={str(cache_dir)!r}, synthetic=dict(num_train=8, num_eval=4)))
      next(streamed.train_iterator(0, 4, 0, 1))
      next(streamed.eval_iterator('center', 4, 0, 1))
      try:
        load_dataset(dict(source='auto', path={str(tree / 'missing.tar.gz')!r}))
      except DataError as error:
        assert 'pip install -e ".[tfds]"' in str(error) and 'source=synthetic' in str(error)
      else:
        raise AssertionError('the auto source found data where there is none')
      for load, install in (
          (lambda: load_dataset(dict(source='tfds')), "'.[tfds]'"),
          (lambda: open_streamed(dict(source='tfds')), 'tensorflow-datasets array_record')):
        try:
          load()
        except MissingPackageError as error:  # A config error: exit 2, one line.
          assert 'pip install ' + install in str(error), error
        else:
          raise AssertionError('the tfds source loaded without TensorFlow')
      print('ok')
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'ok'


# Bad input: each raises DataError naming the problem and the fix.


def test_missing_path(tmp_path, cache_dir):
  for source in ('folder', 'archive'):
    with pytest.raises(DataError, match=r"data.path '.*nowhere' does not exist.*set data.path"):
      load_dataset(source_config(source, tmp_path / 'nowhere', cache_dir))


@pytest.mark.parametrize('path', [None, ''])
def test_unset_path(path, cache_dir):
  with pytest.raises(DataError, match="source='archive' needs data.path"):
    load_dataset({'source': 'archive', 'path': path, 'cache_dir': str(cache_dir)})


def test_folder_and_archive_sources_point_at_each_other(tree, archive, cache_dir):
  with pytest.raises(DataError, match="is a file, not a folder.*source='archive'"):
    load_dataset(source_config('folder', archive, cache_dir))
  with pytest.raises(DataError, match="is a folder; set data.source='folder'"):
    load_dataset(source_config('archive', tree, cache_dir))


def test_not_a_tar_archive(tmp_path, cache_dir):
  fake = tmp_path / 'images.tar.gz'
  fake.write_bytes(b'this is not an archive')
  with pytest.raises(DataError, match='images.tar.gz is not a tar archive'):
    load_dataset(source_config('archive', fake, cache_dir))


def _uncompressed_tar(tree: Path, path: Path) -> tuple[bytes, int]:
  """The bytes of an uncompressed tar of `tree`, and the offset of its first test/ member."""
  with tarfile.open(path, 'w') as tar:
    for split in ('train', 'test'):
      tar.add(tree / split, arcname=split)
  with tarfile.open(path) as tar:
    first_test = next(m for m in tar.getmembers() if m.name.startswith('test/') and m.isfile())
  return path.read_bytes(), first_test.offset


@pytest.mark.parametrize('cut', ['half_gzip', 'inside_a_member', 'at_a_member_boundary'])
def test_truncated_archive_is_called_damaged(tree, archive, tmp_path, cache_dir, cut):
  if cut == 'half_gzip':
    data, name = archive.read_bytes()[:len(archive.read_bytes()) // 2], 'cut.tar.gz'
  else:
    data, first_test = _uncompressed_tar(tree, tmp_path / 'whole.tar')
    # Inside a member, reading its bytes fails; at a boundary, the stream just stops.
    data, name = data[:first_test + (700 if cut == 'inside_a_member' else 0)], 'cut.tar'
  (tmp_path / name).write_bytes(data)
  with pytest.raises(DataError, match=f'{name} is damaged or incomplete .*download or copy it '
                                      f'again'):
    load_dataset(source_config('archive', tmp_path / name, cache_dir))


@pytest.mark.parametrize('compressed', [True, False])
@pytest.mark.parametrize('seed', range(3))
def test_garbage_anywhere_in_an_archive_is_called_damaged(noise_archive, tmp_path, cache_dir,
                                                          compressed, seed):
  archive = tmp_path / ('noise.tar.gz' if compressed else 'noise.tar')
  data = noise_archive.read_bytes()
  archive.write_bytes(data if compressed else gzip.decompress(data))
  damage.garble(archive, random.Random(seed), count=4096)
  check = f'`gzip -t {archive}`' if compressed else f'`tar -tf {archive} > /dev/null`'
  with pytest.raises(DataError, match=rf'{archive.name} is damaged or incomplete \(.*; reading '
                                      rf'stopped about \d+% into the file.*{re.escape(check)}'):
    load_dataset(source_config('archive', archive, cache_dir))


def test_no_splits(tmp_path, cache_dir):
  write_image(tmp_path / 'photos' / 'cat' / '1.jpg', 10)
  with pytest.raises(DataError, match='no train/ or test/ folder'):
    load_dataset(source_config('folder', tmp_path / 'photos', cache_dir))


@pytest.mark.parametrize('empty_split', ['train', 'test'])
def test_empty_split(tmp_path, cache_dir, empty_split):
  root = write_tree(tmp_path / 'tree', **{f'{empty_split}_per_class': 0})
  (root / empty_split / 'cat').mkdir(parents=True)
  with pytest.raises(DataError, match=f'No images under {empty_split}/'):
    load_dataset(source_config('folder', root, cache_dir))


@pytest.mark.parametrize('extra_in, missing_from', [('train', 'test'), ('test', 'train')])
def test_class_folder_in_one_split_only(tree, cache_dir, extra_in, missing_from):
  write_image(tree / extra_in / 'zebra' / '000.png', 200)
  with pytest.raises(DataError, match=rf"\['zebra'\] have images in {extra_in}/ but none in "
                                      rf'{missing_from}/.*add {missing_from}/zebra/'):
    load_dataset(source_config('folder', tree, cache_dir))


def test_corrupt_image_is_named(tree, tmp_path, cache_dir):
  (tree / 'train' / 'dog' / 'broken.jpg').write_bytes(b'\xff\xd8\xff not really a JPEG')
  archive = write_archive(tree, tmp_path / 'broken.tar.gz')
  for source, path in (('folder', tree), ('archive', archive)):
    with pytest.raises(DataError, match='train/dog/broken.jpg in .* is not a readable image'):
      load_dataset(source_config(source, path, cache_dir))


def test_non_image_file_is_named(tree, cache_dir):
  (tree / 'test' / 'cat' / 'notes.txt').write_text('a cat')
  with pytest.raises(DataError, match=r'test/cat/notes.txt in .* is not a .jpg/.jpeg/.png image'):
    load_dataset(source_config('folder', tree, cache_dir))


def test_image_outside_a_class_folder(tree, cache_dir):
  write_image(tree / 'train' / 'stray.png', 10)
  with pytest.raises(DataError, match='train/stray.png .* sits directly in train/.*class folder'):
    load_dataset(source_config('folder', tree, cache_dir))


@pytest.mark.parametrize('chunk_size', [1024, 2])
def test_mismatched_image_sizes_name_a_file_and_both_sizes(tree, cache_dir, monkeypatch,
                                                           chunk_size):
  monkeypatch.setattr(decode, 'CHUNK_SIZE', chunk_size)  # 2: the sizes differ across chunks.
  write_image(tree / 'train' / 'frog' / '002.png', 10, size=(10, 6))
  with pytest.raises(DataError, match='resize them to one size') as error:
    load_dataset(source_config('folder', tree, cache_dir))
  message = str(error.value)
  assert 'train/frog/002.png' in message and '10x6' in message and '8x6' in message


@pytest.mark.parametrize('bad_label', [3, -1])
def test_label_outside_the_class_range(bad_label):
  images = np.zeros((4, 2, 2, 3), np.uint8)
  labels = np.array([0, 1, bad_label, 2], np.int32)
  with pytest.raises(DataError, match=f'train label {bad_label} .* outside the 3 classes'):
    ArraySplits(images, labels, images, labels % 3, ('a', 'b', 'c'), 'test')


def test_synthetic_label_count_must_be_positive():
  config = synthetic_config()
  config['synthetic'] = dict(config['synthetic'], num_classes=0)
  with pytest.raises(DataError, match='num_classes must be a positive integer, got 0'):
    load_dataset(config)


@pytest.mark.parametrize('size', [1000, 5000])
def test_validation_size_must_leave_train_images(size):
  with pytest.raises(DataError, match=f'validation_size={size} leaves no training images.*'
                                      f'only 1000'):
    load_dataset(synthetic_config(validation_size=size))


@pytest.mark.parametrize('size', [-1, 2.5, True])
def test_validation_size_must_be_a_whole_number(size):
  with pytest.raises(DataError, match='validation_size must be a whole number'):
    load_dataset(synthetic_config(validation_size=size))


@pytest.mark.parametrize('fraction', [0, 0.0, -0.5, 1.5, '0.5'])
def test_train_fraction_must_be_in_zero_one(fraction):
  with pytest.raises(DataError, match=r'train_fraction must be in \(0, 1\]'):
    load_dataset(synthetic_config(train_fraction=fraction))


def test_train_fraction_that_keeps_nothing():
  with pytest.raises(DataError, match='keeps none'):
    load_dataset(synthetic_config(train_fraction=1e-4))


def test_unknown_source_lists_the_valid_ones():
  with pytest.raises(DataError, match=r"Unknown data.source 'imagefolder'; use one of "
                                      r"\['auto', 'tfds', 'folder', 'archive', 'synthetic'\]"):
    load_dataset({'source': 'imagefolder'})


def test_unknown_key_suggests_the_closest():
  with pytest.raises(DataError, match="'validation_split' \\(did you mean 'validation_size'"):
    load_dataset(synthetic_config(validation_split=5000))
