"""Tests of the streamed ImageNet input on tiny generated ILSVRC trees, synthetic images and
TFDS mock data: batches, the augmentation of Section 3.4, determinism across host counts,
resuming, the cached mean, the eval views and the error messages."""
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import grain
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from resnet_jax.data import DataError, imagenet
from resnet_jax.data.imagenet import stats, workers
from resnet_jax.data.imagenet.augment import PCA_EIGENVECTORS, random_window, resized_size
from resnet_jax.data.imagenet.decode import decoded, opened, resized_window
from resnet_jax.data.imagenet.fake_images import CLASSES, encoded, smooth_image
from resnet_jax.data.imagenet.fake_images import write_ilsvrc_tree as make_tree
from resnet_jax.data.imagenet.pipeline import prefetched
from resnet_jax.data.imagenet.views import bucket_shape, images_per_batch, ten_crops
from resnet_jax.faults.runs import child_pids

# Small crops keep the tests fast; the defaults are the paper's 224 / [256, 480] / 256.
SMALL = dict(crop_size=8, train_resize_range=(10, 16), eval_resize_size=10, eval_scales=(8, 12),
             num_workers=0)


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  return make_tree(tmp_path_factory.mktemp('ilsvrc'), {'train': 4, 'val': 3})


@pytest.fixture
def folder(tree, tmp_path):
  return dict(SMALL, source='folder', path=str(tree), cache_dir=str(tmp_path / 'cache'))


def synthetic(tmp_path, **settings) -> dict:
  return dict(SMALL, source='synthetic', cache_dir=str(tmp_path / 'cache'),
              synthetic=dict(num_train=24, num_eval=10, num_classes=5, image_size=(12, 18))
              | settings)


def take(iterator, count: int) -> list[dict]:
  return [next(iterator) for _ in range(count)]


def assert_same_batches(first: list[dict], second: list[dict]):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_defaults_are_the_papers():
  config = imagenet.default_imagenet_data_config()
  assert (config.crop_size, tuple(config.train_resize_range)) == (224, (256, 480))
  assert config.eval_resize_size == 256 and tuple(config.eval_scales) == (224, 256, 384, 480,
                                                                          640)
  assert config.normalization == 'per_pixel' and config.color_augmentation == 0.1


def test_folder_train_batches(folder):
  data = imagenet.open_streamed(folder)
  assert data.class_names == CLASSES and data.num_classes == 3
  assert (data.num_train, data.num_eval, data.eval_split) == (12, 9, 'validation')
  assert data.image_shape == (8, 8, 3) and data.mean.shape == (8, 8, 3)
  np.testing.assert_array_equal(data.std, np.ones(3))
  batches = take(data.train_iterator(seed=0, global_batch_size=6, process_index=0,
                                     process_count=1), 4)
  for batch in batches:
    assert batch['images'].shape == (6, 8, 8, 3) and batch['images'].dtype == np.uint8
    assert batch['labels'].dtype == np.int32 and set(batch['labels']) <= {0, 1, 2}
    assert batch['color_shift'].shape == (6, 3) and batch['color_shift'].dtype == np.float32
    assert batch['unreadable'].dtype == np.int32 and not batch['unreadable'].any()
  # Two epochs of 12 images: every image once in each, in a different order.
  labels = np.concatenate([batch['labels'] for batch in batches])
  assert np.bincount(labels[:12]).tolist() == [4, 4, 4] == np.bincount(labels[12:]).tolist()
  images = np.concatenate([batch['images'] for batch in batches])
  assert not np.array_equal(images[:12], images[12:])


@pytest.mark.parametrize('mode, image_format', [('L', 'JPEG'), ('CMYK', 'JPEG'),
                                                ('RGB', 'PNG'), ('RGBA', 'PNG')])
def test_grayscale_cmyk_and_png_images_load_as_rgb(mode, image_format):
  image = smooth_image(20, 16, seed=0)
  with opened(encoded(image, mode, image_format), 'x.JPEG') as handle:
    rgb = np.asarray(decoded(handle, 'x.JPEG', handle.size))
  assert rgb.shape == (16, 20, 3) and rgb.dtype == np.uint8
  expected = np.asarray(Image.fromarray(image).convert(mode).convert('RGB'), np.int16)
  assert np.abs(rgb.astype(np.int16) - expected).mean() < 4


def test_draft_mode_decodes_a_large_jpeg_at_a_reduced_scale():
  image = encoded(smooth_image(400, 320, seed=0))
  with opened(image, 'big.JPEG') as handle:
    assert decoded(handle, 'big.JPEG', (90, 70)).size == (100, 80)  # 1/4 scale.


def test_random_windows_honour_the_scale_range_and_stay_in_the_image():
  size, crop, scales = (40, 30), 8, (10, 16)
  rng = np.random.default_rng(0)
  shorter_sides, flips = [], []
  for _ in range(2000):
    (left, top, right, bottom), resized, flip = random_window(size, rng, crop, scales)
    assert 0 <= left < right <= size[0] + 1e-9 and 0 <= top < bottom <= size[1] + 1e-9
    assert resized == resized_size(size, min(resized))
    shorter_sides.append(min(resized))
    assert (right - left) * resized[0] / size[0] == pytest.approx(crop)
    flips.append(flip)
  assert set(shorter_sides) == set(range(10, 17)), 'every scale in [low, high], both ends'
  assert 0.45 < np.mean(flips) < 0.55


def test_train_view_is_a_crop_of_the_resized_image(tmp_path):
  # Scale fixed at 12: the 16x12 image is not resized, so each view is one of its 8x8 crops
  # or their flips.
  config = synthetic(tmp_path, num_train=1, num_eval=1, image_size=(12, 16))
  config.update(train_resize_range=(12, 12), color_augmentation=0.0, normalization='per_channel')
  data = imagenet.open_streamed(config)
  _, image, _ = data.sources.train[0]
  crops = [image[top:top + 8, left:left + 8] for top in range(5) for left in range(9)]
  crops += [crop[:, ::-1] for crop in crops]
  views = np.concatenate([batch['images'] for batch in take(data.train_iterator(0, 8, 0, 1), 4)])
  matches = [min(range(len(crops)), key=lambda i: np.abs(crops[i] - view.astype(int)).max())
             for view in views]
  assert all(np.array_equal(crops[m], view) for m, view in zip(matches, views))
  assert len(set(matches)) > 8 and {m < 45 for m in matches} == {True, False}


def test_color_shift_is_pca_lighting_with_the_configured_std(tmp_path):
  data = imagenet.open_streamed(synthetic(tmp_path) | dict(normalization='per_channel'))
  shifts = np.concatenate([batch['color_shift']
                           for batch in take(data.train_iterator(0, 8, 0, 1), 25)])
  # Along the first eigenvector: std 0.1 * 0.2175 * 255 = 5.5.
  along_first = shifts @ PCA_EIGENVECTORS[:, 0]
  assert 4.5 < along_first.std() < 6.5 and abs(along_first.mean()) < 1
  off = imagenet.open_streamed(synthetic(tmp_path) | dict(normalization='per_channel',
                                                          color_augmentation=0))
  assert not next(off.train_iterator(0, 8, 0, 1))['color_shift'].any()


def test_same_seed_same_batches_other_seed_other_batches(folder):
  data = imagenet.open_streamed(folder)
  first = take(data.train_iterator(3, 6, 0, 1), 3)
  assert_same_batches(first, take(data.train_iterator(3, 6, 0, 1), 3))
  other = next(data.train_iterator(4, 6, 0, 1))
  assert not np.array_equal(other['images'], first[0]['images'])


@pytest.mark.parametrize('process_count', [2, 3])
def test_host_batches_are_rows_of_the_one_host_batch(folder, process_count):
  data = imagenet.open_streamed(folder)
  whole = take(data.train_iterator(0, 6, 0, 1), 3)
  hosts = [take(data.train_iterator(0, 6, host, process_count), 3)
           for host in range(process_count)]
  for step, batch in enumerate(whole):
    rows = 6 // process_count
    for host, batches in enumerate(hosts):
      assert_same_batches([{key: value[host * rows:(host + 1) * rows]
                            for key, value in batch.items()}], [batches[step]])


def test_resumed_iterator_continues_exactly(folder):
  data = imagenet.open_streamed(folder)
  uninterrupted = take(data.train_iterator(0, 6, 1, 2), 9)  # Three epochs of 4 steps.
  iterator = data.train_iterator(0, 6, 1, 2)
  take(iterator, 5)
  state = json.loads(json.dumps(iterator.get_state()))
  resumed = data.train_iterator(0, 6, 1, 2)
  resumed.set_state(state)
  assert_same_batches(take(resumed, 4), uninterrupted[5:])


def test_worker_processes_give_the_same_batches_and_resume_from_any_worker_count(tmp_path):
  config = synthetic(tmp_path)
  in_process = imagenet.open_streamed(config).train_iterator(0, 4, 0, 1)
  expected = take(in_process, 5)
  workers = imagenet.open_streamed(config | dict(num_workers=2))
  iterator = workers.train_iterator(0, 4, 0, 1)
  assert_same_batches(take(iterator, 3), expected[:3])
  iterator.close()
  midway = imagenet.open_streamed(config).train_iterator(0, 4, 0, 1)
  take(midway, 3)
  resumed = workers.train_iterator(0, 4, 0, 1)
  resumed.set_state(json.loads(json.dumps(midway.get_state())))
  assert_same_batches(take(resumed, 2), expected[3:])
  resumed.close()


def test_mean_is_cached_outside_the_data_and_reused(folder, monkeypatch, tree):
  data = imagenet.open_streamed(folder)
  assert [entry.name[:5] for entry in os.scandir(folder['cache_dir'])] == ['mean-']
  # The mean of the center views of the 12 train images.
  views = [stats._center_view(data.sources.train, 8, 10, False, i)['image']
           for i in range(12)]
  np.testing.assert_allclose(data.mean, np.mean(views, 0), rtol=1e-5)

  def fail(*args):
    raise AssertionError('the mean should come from the cache')

  monkeypatch.setattr(stats, '_center_view', fail)
  np.testing.assert_array_equal(imagenet.open_streamed(folder).mean, data.mean)
  with pytest.raises(DataError, match='is in the data directory'):
    imagenet.open_streamed(folder | dict(cache_dir=str(tree / 'cache')))


def test_mean_over_a_sample(folder):
  full = imagenet.open_streamed(folder).mean
  sampled = imagenet.open_streamed(folder | dict(mean_sample_size=3)).mean
  assert sampled.shape == full.shape and not np.allclose(sampled, full)


def test_per_channel_normalization_divides_by_the_std(folder):
  data = imagenet.open_streamed(folder | dict(normalization='per_channel'))
  assert data.mean.shape == (1, 1, 3) and data.std.shape == (3,)
  assert not os.path.exists(folder['cache_dir']), 'no mean image to compute'
  images = np.full((1, 2, 2, 3), 128, np.uint8)
  normalized = imagenet.normalize_on_device(images, None, data.mean, data.std)
  np.testing.assert_allclose(normalized[0, 0, 0], (128 - imagenet.MEAN_RGB) / imagenet.STDDEV_RGB,
                             rtol=1e-6)


def test_normalize_on_device():
  images = np.full((2, 4, 6, 3), 100, np.uint8)
  shift = np.array([[1, 2, 3], [0, 0, 0]], np.float32)
  mean = np.full((8, 8, 3), 50, np.float32)
  out = imagenet.normalize_on_device(jnp.asarray(images), jnp.asarray(shift), mean,
                                     np.full(3, 2, np.float32))
  assert out.dtype == jnp.float32 and out.shape == (2, 4, 6, 3)
  np.testing.assert_allclose(out[0, 0, 0], [25.5, 26, 26.5], rtol=1e-5)
  np.testing.assert_allclose(out[1], 25, rtol=1e-5)
  # A multi-scale view gets the per-pixel mean resized to its size.
  ramp = np.broadcast_to(np.linspace(0, 70, 8, dtype=np.float32)[None, :, None], (8, 8, 3))
  views = imagenet.normalize_on_device(jnp.asarray(images[:, None]), None, ramp,
                                       np.ones(3, np.float32))
  assert views.shape == (2, 1, 4, 6, 3)
  assert np.all(np.diff(np.asarray(views[0, 0, 0, :, 0])) < 0), 'the ramp, resized to 6 wide'
  np.testing.assert_allclose(views.mean(), 100 - 35, atol=1)


def test_the_data_directory_is_never_written(tmp_path):
  root = make_tree(tmp_path / 'data', {'train': 2, 'val': 2})

  def listing():
    return sorted((str(path), path.stat().st_mtime_ns, path.stat().st_size)
                  for path in root.rglob('*'))

  before = listing()
  for path in [root, *root.rglob('*')]:
    path.chmod(0o555 if path.is_dir() else 0o444)
  try:
    data = imagenet.open_streamed(dict(SMALL, source='folder', path=str(root),
                                       cache_dir=str(tmp_path / 'cache')))
    take(data.train_iterator(0, 3, 0, 1), 3)
    for mode in ('center', '10crop', 'multiscale'):
      list(data.eval_iterator(mode, 3, 0, 1))
  finally:
    for path in [root, *root.rglob('*')]:
      path.chmod(0o755 if path.is_dir() else 0o644)
  assert listing() == before


def test_unreadable_file_is_named_or_stood_in_for(tmp_path, caplog):
  root = make_tree(tmp_path / 'data', {'train': 2, 'val': 1})
  (root / 'train' / 'n02' / 'n02_1.JPEG').write_bytes(b'not an image')
  (root / 'val' / 'n01' / 'n01_0.JPEG').write_bytes(encoded(smooth_image(20, 20, 0))[:300])
  config = dict(SMALL, source='folder', path=str(root), cache_dir=str(tmp_path / 'cache'),
                normalization='per_channel')
  data = imagenet.open_streamed(config)
  with pytest.raises(DataError, match='n02_1.JPEG is not a readable image.*skip_unreadable'):
    take(data.train_iterator(0, 6, 0, 1), 2)
  with pytest.raises(DataError, match='n01_0.JPEG is not a readable image .OSError: Truncated'):
    list(data.eval_iterator('center', 3, 0, 1))
  skipping = imagenet.open_streamed(config | dict(skip_unreadable=True))
  batches = take(skipping.train_iterator(0, 6, 0, 1), 4)
  skipped = [record.getMessage() for record in caplog.records if 'Skipping' in record.getMessage()]
  # The file and what is wrong with it, not the advice to skip it that the run already took.
  assert {message.split(': ', 1)[1].split(' (')[0] for message in skipped} == {
      f'{root / "train" / "n02" / "n02_1.JPEG"} is not a readable image'}
  assert not any('skip_unreadable=True' in message for message in skipped)
  # A batch is an epoch of the 6 images: the broken one is stood in for once in each.
  assert [int(batch['unreadable'].sum()) for batch in batches] == [1, 1, 1, 1]
  assert_same_batches(batches, take(skipping.train_iterator(0, 6, 0, 1), 4))
  # An unreadable eval image is left out, not replaced.
  for mode in ('center', 'multiscale'):
    kept = [index for batch in skipping.eval_iterator(mode, 3, 0, 1)
            for index in batch['index'][batch['mask']]]
    assert sorted(kept) == sorted([1, 2] * (2 if mode == 'multiscale' else 1))
  with pytest.raises(DataError, match='n02_1.JPEG is not a readable image'):
    imagenet.open_streamed(config | dict(normalization='per_pixel'))


@pytest.mark.parametrize('layout, message', [
    ({'train': 1}, r'has no val/ folder; data.path must be an ILSVRC folder holding train/'),
    ({'train': 0, 'val': 1}, 'holds no images'),
])
def test_wrong_folder_layout_says_what_is_expected(tmp_path, layout, message):
  root = make_tree(tmp_path / 'data', layout)
  with pytest.raises(DataError, match=message):
    imagenet.open_streamed(dict(SMALL, source='folder', path=str(root),
                                cache_dir=str(tmp_path / 'cache')))


def test_missing_path_and_loose_files_are_explained(tmp_path):
  with pytest.raises(DataError, match="data.source='folder' needs data.path"):
    imagenet.open_streamed(dict(source='folder'))
  root = make_tree(tmp_path / 'data', {'train': 1, 'val': 1})
  (root / 'val' / 'loose.JPEG').write_bytes(b'')
  with pytest.raises(DataError, match='loose.JPEG sits directly in .*put each image in its '
                                      'class folder'):
    imagenet.open_streamed(dict(source='folder', path=str(root),
                                cache_dir=str(tmp_path / 'cache')))


def test_unprepared_tfds_says_how_to_prepare_it(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(DataError, match='manual download.*ILSVRC2012_img_train.tar.*'
                                      'file_format=array_record'):
    imagenet.open_streamed(dict(source='tfds', data_dir=str(tmp_path)))


def test_tfds_source_under_mock_data(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=6):
    data = imagenet.open_streamed(dict(SMALL, source='tfds', cache_dir=str(tmp_path)))
    assert (data.num_train, data.num_eval, data.num_classes) == (6, 6, 1000)
    batch = next(data.train_iterator(0, 4, 1, 2))
    assert batch['images'].shape == (2, 8, 8, 3) and 0 <= batch['labels'].min()
    batches = list(data.eval_iterator('center', 4, 0, 1))
    assert [int(batch['mask'].sum()) for batch in batches] == [4, 2]


def test_ten_crops_are_the_corners_center_and_flips():
  image = smooth_image(14, 10, seed=0)
  crops = ten_crops(image, 8)
  expected = [image[:8, :8], image[:8, 6:], image[2:, :8], image[2:, 6:], image[1:9, 3:11]]
  np.testing.assert_array_equal(crops[:5], expected)
  np.testing.assert_array_equal(crops[5:], [crop[:, ::-1] for crop in expected])


def test_center_view_is_the_ten_crop_center_of_the_resized_image(folder):
  data = imagenet.open_streamed(folder)
  center = np.concatenate([b['images'] for b in data.eval_iterator('center', 3, 0, 1)])
  ten = np.concatenate([b['images'] for b in data.eval_iterator('10crop', 3, 0, 1)])
  assert center.shape == (9, 1, 8, 8, 3) and ten.shape == (9, 10, 8, 8, 3)
  np.testing.assert_array_equal(center[:, 0], ten[:, 4])
  # The views of a 40x30 image resized to shorter side 10 (13x10).
  name, image, _ = data.sources.validation[1]
  with opened(image, name) as handle:
    resized = np.asarray(decoded(handle, name, (13, 10)).resize((13, 10), Image.BILINEAR))
  np.testing.assert_array_equal(ten[1], ten_crops(resized, 8))


@pytest.mark.parametrize('mode', ['center', 'multiscale'])
@pytest.mark.parametrize('process_count', [1, 3])
def test_eval_counts_every_image_once_over_hosts(folder, mode, process_count):
  data = imagenet.open_streamed(folder)
  hosts = [list(data.eval_iterator(mode, 3 * process_count, host, process_count))
           for host in range(process_count)]
  shapes = [[batch['images'].shape for batch in batches] for batches in hosts]
  assert all(host_shapes == shapes[0] for host_shapes in shapes), 'hosts must agree'
  seen = {}
  for batches in hosts:
    for batch in batches:
      assert batch['images'].shape[:2] == (3, 1)
      shorter_side = min(batch['images'].shape[2:4])
      for index, label in zip(batch['index'][batch['mask']], batch['labels'][batch['mask']]):
        seen.setdefault(int(index), []).append(shorter_side)
        assert label == index // 3
  scales = (8, 12) if mode == 'multiscale' else (8,)
  assert sorted(seen) == list(range(9))
  assert all(sorted(sides) == list(scales) for sides in seen.values())


def test_multiscale_views_are_whole_images_in_aspect_buckets(folder):
  data = imagenet.open_streamed(folder)
  shapes = {batch['images'].shape[2:4] for batch in data.eval_iterator('multiscale', 3, 0, 1)}
  # 16x12 and 40x30 (4:3), 30x40 (3:4), 20x20 and 24x16 (3:2) at shorter sides 8 and 12.
  assert shapes == {(8, 11), (11, 8), (8, 8), (8, 12), (12, 16), (16, 12), (12, 12), (12, 18)}


def test_global_batch_must_split_evenly_over_hosts(tmp_path):
  assert imagenet.per_host_batch_size(1024, 0, 8) == 128
  data = imagenet.open_streamed(synthetic(tmp_path))
  with pytest.raises(DataError, match='batch size 10 does not split evenly over 4 hosts; use a '
                                      'multiple of 4'):
    data.train_iterator(0, 10, 0, 4)
  with pytest.raises(DataError, match=r'process_index must be in \[0, 2\), got 2'):
    data.eval_iterator('center', 8, 2, 2)
  with pytest.raises(DataError, match="Unknown eval mode 'ten'"):
    data.eval_iterator('ten', 8, 0, 1)


@pytest.mark.parametrize('overrides, message', [
    (dict(source='archive'), r"reads data.source \['tfds', 'folder', 'synthetic'\], got 'arch"),
    (dict(train_resize_range=(6, 24)), r'crop_size 8 <= low <= high, got \(6, 24\)'),
    (dict(eval_resize_size=4), 'eval_resize_size 4 is smaller than the crop_size 8'),
    (dict(normalization='per_image'), "normalization must be one of"),
    (dict(color_augmentation=-1), 'color_augmentation must be a PCA lighting std >= 0'),
    (dict(num_workers=-2), 'num_workers must be a positive integer'),
    (dict(crop=224), "'crop' \\(did you mean 'crop_size'"),
])
def test_bad_config(tmp_path, overrides, message):
  with pytest.raises(DataError, match=message):
    imagenet.open_streamed(synthetic(tmp_path) | overrides)


def test_multiscale_buckets_stretch_an_image_by_at_most_six_percent():
  for ratio in np.linspace(1, 2, 201):
    for size in ((round(300 * ratio), 300), (300, round(300 * ratio))):
      height, width = bucket_shape(size, 480)
      assert min(height, width) == 480
      assert height == width or (height > width) == (size[1] > size[0])
      stretch = (max(height, width) / 480) / (max(size) / min(size))
      assert abs(math.log(stretch)) < math.log(1.062)


def test_an_unextracted_class_tar_is_explained(tmp_path):
  root = make_tree(tmp_path / 'data', {'train': 1, 'val': 1})
  (root / 'train' / 'n04.tar').write_bytes(b'')
  with pytest.raises(DataError, match=r'n04.tar is a tar archive; extract it into .*train/n04/'):
    imagenet.open_streamed(dict(source='folder', path=str(root),
                                cache_dir=str(tmp_path / 'cache')))


def test_eval_batches_of_every_mode_hold_the_pixels_of_the_center_batch():
  """The recipe's 1,024 center crops a step would be 10,240 crops in 10-crop mode and 1,024
  whole 640-px images in multi-scale mode: both are sized down to the same pixels."""
  scales = (224, 256, 384, 480, 640)
  assert images_per_batch('center', 1024, 224, scales, 8) == 1024
  assert images_per_batch('10crop', 1024, 224, scales, 8) == 96  # 102 crops' worth, to 8s.
  # The largest bucket at 640 is 640 x 1280 (2:1): 1024 * 224^2 / (640 * 1280) = 62.7.
  assert images_per_batch('multiscale', 1024, 224, scales, 8) == 56
  assert images_per_batch('multiscale', 16, 224, scales, 8) == 8  # At least one per device.


def test_draft_mode_decoding_of_a_large_jpeg_stays_close_to_a_full_decode():
  """For JPEGs at least twice the size needed, decoded() shrinks in the DCT before the
  bilinear resize: its view differs from a full decode by about a grey level on average."""
  size, target = (1024, 768), (341, 256)
  image = encoded(smooth_image(*size, 0, grain=20), quality=90)
  views = []
  for least_size in (target, size):
    with opened(image, 'large.JPEG') as handle:
      rgb = decoded(handle, 'large.JPEG', least_size)
      views.append(resized_window(rgb, size, (0, 0, *size), target).astype(int))
    assert rgb.size == ((size[0] // 2, size[1] // 2) if least_size == target else size)
  difference = np.abs(views[0] - views[1])
  assert 0 < difference.mean() < 2.5 and difference.max() < 30


def test_an_empty_class_folder_is_refused_not_made_a_class(tmp_path):
  root = make_tree(tmp_path / 'data', {'train': 1, 'val': 1})
  (root / 'train' / 'n04').mkdir()
  with pytest.raises(DataError, match=r'Class folder \S+/train/n04 holds no images'):
    imagenet.open_streamed(dict(SMALL, source='folder', path=str(root),
                                cache_dir=str(tmp_path / 'cache')))


def test_grain_workers_ignore_the_stop_signals_of_their_process_group():
  """Ctrl-C and SLURM signal the whole process group, grain's workers too, even as they start:
  they ignore them (the trainer saves, then stops them), name their shared memory after this
  process and leave none behind."""
  batches = grain.MapDataset.range(48).map(
      lambda index: {'x': np.full((8, 8, 3), index, np.uint8)}).batch(4)
  sent, done = [], threading.Event()

  def signal_the_workers():  # The group but this process, which the test runner shares.
    while not done.is_set():
      for pid in child_pids(os.getpid()):
        for signum in workers.STOP_SIGNALS:
          with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            sent.append(pid)
      time.sleep(0.002)

  thread = threading.Thread(target=signal_the_workers)
  thread.start()
  try:
    iterator = prefetched(batches, num_workers=2)
    values = [int(value) for batch in iterator for value in batch['x'][:, 0, 0, 0]]
    segments = list(workers.SHARED_MEMORY.glob(
        f'{workers.SEGMENT_PREFIX}{workers.this_run_id()}_*'))
    iterator.close()
  finally:
    done.set()
    thread.join()
  assert values == list(range(48))
  assert len(set(sent)) >= 2, 'the workers were never signalled'
  assert segments == [] or all(not path.exists() for path in segments)
  assert not list(workers.SHARED_MEMORY.glob(
      f'{workers.SEGMENT_PREFIX}{workers.this_run_id()}_*'))


def test_only_the_shared_memory_and_semaphores_of_dead_runs_are_freed(tmp_path):
  live = workers.this_run_id()
  pid, ticks = live.split('_')
  names = {'live': f'{workers.SEGMENT_PREFIX}{live}_0a',
           'pid reused': f'{workers.SEGMENT_PREFIX}{pid}_{int(ticks) + 1}_0b',
           'gone': f'{workers.SEGMENT_PREFIX}{2**22 + 1}_5_0c',
           "another program's": 'psm_0d',
           'live semaphore': f'{workers.SEMAPHORE_PREFIX}{live}-0e',
           "a gone run's semaphore": f'{workers.SEMAPHORE_PREFIX}{2**22 + 1}_5-0f',
           "a gone worker's semaphore": f'{workers.SEMAPHORE_PREFIX}{2**22 + 1}_5_3-0g',
           "another program's semaphore": 'sem.mp-0h'}
  for name in names.values():
    (tmp_path / name).write_bytes(b'0' * 64)
  assert workers.free_segments_of_dead_runs(tmp_path) == 4
  assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
      names[key] for key in ('live', "another program's", 'live semaphore',
                             "another program's semaphore"))


def test_a_stop_signal_as_workers_start_is_handled_once_the_block_ends():
  """The handler of a SIGTERM taken by another thread runs in the main thread at its next
  bytecode, mask or not: stop_signals_held(defer_handlers=True) holds it back to the end."""
  received, inside = [], []
  idle = threading.Event()
  listener = threading.Thread(target=idle.wait)  # Takes the signal, as JAX's threads do.
  listener.start()
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
  try:
    with workers.stop_signals_held(defer_handlers=True):
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(200):
        time.sleep(0.001)
      inside.extend(received)
    for _ in range(200):
      time.sleep(0.001)
  finally:
    signal.signal(signal.SIGTERM, previous)
    idle.set()
    listener.join()
  assert inside == []
  assert received == [signal.SIGTERM]


def test_the_resource_tracker_is_silent_about_a_runs_segment_whose_unlink_was_cut():
  """A stop signal between removing a segment's file and unregistering it made the resource
  tracker warn at exit about "leaked shared_memory objects"; a run's segments are its own."""
  cut_unlink = (
      'import _posixshmem; from multiprocessing import shared_memory\n'
      'from resnet_jax.data.imagenet import workers\n'
      'workers.leave_segments_untracked()\n'
      f'segment = shared_memory.SharedMemory("{workers.SEGMENT_PREFIX}0_0_cut", create=True, '
      'size=64)\n'
      'segment.close()\n'
      '_posixshmem.shm_unlink(segment._name)\n')
  result = subprocess.run([sys.executable, '-c', cut_unlink], capture_output=True, text=True,
                          timeout=120, check=True)
  assert 'leaked' not in result.stderr and 'Traceback' not in result.stderr, result.stderr
