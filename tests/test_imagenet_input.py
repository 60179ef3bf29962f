"""Tests of the per-host streaming ImageNet input: the synthetic numpy path and the tf.data
path under tfds.testing.mock_data."""
import numpy as np
import pytest

from resnet_jax.data import DataError, imagenet
from resnet_jax.data.imagenet import (eval_batches_per_host, imagenet_eval_iterator,
                                      imagenet_train_iterator, per_host_batch_size)

# Small crops keep the tests fast; the defaults are the paper's 224 / [256, 480] / 256.
SMALL = dict(crop_size=16, train_resize_range=(18, 24), eval_resize_size=18)


def synthetic(num_eval: int = 10, num_classes: int = 7) -> dict:
  return dict(SMALL, source='synthetic',
              synthetic=dict(num_eval=num_eval, num_classes=num_classes, seed=0))


def test_defaults_are_the_papers():
  config = imagenet.default_imagenet_data_config()
  assert config.crop_size == 224
  assert tuple(config.train_resize_range) == (256, 480)
  assert config.eval_resize_size == 256


def test_synthetic_train_batches_are_split_over_hosts():
  batches = [next(imagenet_train_iterator(synthetic(), 12, host, 3, seed=0)) for host in range(3)]
  for batch in batches:
    assert set(batch) == {'images', 'labels'}
    assert batch['images'].shape == (4, 16, 16, 3) and batch['images'].dtype == np.float32
    assert batch['labels'].shape == (4,) and batch['labels'].dtype == np.int32
    assert 0 <= batch['labels'].min() and batch['labels'].max() < 7
    assert -3 < batch['images'].mean() < 3, 'images should be normalized'
  assert not np.array_equal(batches[0]['images'], batches[1]['images']), 'hosts should differ'
  again = next(imagenet_train_iterator(synthetic(), 12, 0, 3, seed=0))
  np.testing.assert_array_equal(again['images'], batches[0]['images'])
  other_seed = next(imagenet_train_iterator(synthetic(), 12, 0, 3, seed=1))
  assert not np.array_equal(other_seed['images'], batches[0]['images'])


def test_synthetic_train_iterator_is_endless():
  iterator = imagenet_train_iterator(synthetic(), 4, 0, 1, seed=0)
  assert len([next(iterator) for _ in range(5)]) == 5


@pytest.mark.parametrize('process_count', [1, 3])
def test_synthetic_eval_pads_and_never_drops_an_image(process_count):
  per_host = [list(imagenet_eval_iterator(synthetic(num_eval=10), 2 * process_count, host,
                                          process_count))
              for host in range(process_count)]
  expected_batches = eval_batches_per_host(10, 2, process_count)
  assert [len(batches) for batches in per_host] == [expected_batches] * process_count
  kept_labels, kept_images = [], []
  for batches in per_host:
    for batch in batches:
      assert set(batch) == {'images', 'labels', 'mask'} and batch['mask'].dtype == bool
      assert batch['images'].shape == (2, 16, 16, 3) and batch['labels'].dtype == np.int32
      kept_labels.extend(batch['labels'][batch['mask']])
      kept_images.extend(batch['images'][batch['mask']])
      assert not batch['images'][~batch['mask']].any(), 'padding should be zeros'
  assert len(kept_labels) == 10
  one_host = [batch for batch in imagenet_eval_iterator(synthetic(num_eval=10), 2, 0, 1)]
  np.testing.assert_array_equal(kept_labels, np.concatenate([b['labels'] for b in one_host]))
  np.testing.assert_array_equal(kept_images, np.concatenate([b['images'] for b in one_host]))


def test_eval_batches_per_host_covers_the_largest_host_share():
  assert eval_batches_per_host(50_000, 128, 1) == 391
  assert eval_batches_per_host(50_000, 128, 8) == 49  # 6250 a host: 48 full batches and one.
  assert eval_batches_per_host(10, 4, 3) == 1  # Shares of 3, 3 and 4.
  assert eval_batches_per_host(13, 4, 3) == 2  # A share of 5.


def test_global_batch_must_split_evenly_over_hosts():
  assert per_host_batch_size(1024, 0, 8) == 128
  with pytest.raises(DataError, match='batch size 10 does not split evenly over 4 hosts; use a '
                                      'multiple of 4'):
    imagenet_train_iterator(synthetic(), 10, 0, 4, seed=0)
  with pytest.raises(DataError, match=r'process_index must be in \[0, 2\), got 2'):
    imagenet_eval_iterator(synthetic(), 8, 2, 2)


@pytest.mark.parametrize('overrides, message', [
    (dict(source='archive'), r"streams data.source \['tfds', 'synthetic'\], got 'archive'"),
    (dict(train_resize_range=(12, 24)), r'crop_size 16 <= low <= high, got \(12, 24\)'),
    (dict(eval_resize_size=8), 'eval_resize_size 8 is smaller than the crop_size 16'),
    (dict(crop=224), "'crop' \\(did you mean 'crop_size'"),
])
def test_bad_config(overrides, message):
  with pytest.raises(DataError, match=message):
    imagenet_train_iterator({**synthetic(), **overrides}, 4, 0, 1, seed=0)


# The tf.data preprocessing, on a smooth 60x120 image whose shorter side becomes 36.


@pytest.fixture
def smooth_image():
  tf = pytest.importorskip('tensorflow')
  rows, columns = np.mgrid[0:60, 0:120]
  image = np.stack([rows * 2, columns * 2, rows + columns], axis=-1).astype(np.uint8)
  config = imagenet.default_imagenet_data_config()
  config.update(SMALL | dict(train_resize_range=(36, 36), eval_resize_size=36))
  example = {'image': tf.io.encode_png(image), 'label': tf.constant(3, tf.int64)}
  resized = tf.image.resize(image, [36, 72], antialias=True).numpy()
  return tf, config, example, resized


def unnormalized(images) -> np.ndarray:
  return images.numpy() * imagenet.STDDEV_RGB + imagenet.MEAN_RGB


def test_eval_takes_the_center_crop_of_the_image_resized_to_eval_resize_size(smooth_image):
  tf, config, example, resized = smooth_image
  result = imagenet._eval_example(tf, config, example)
  assert result['labels'].numpy() == 3 and result['mask'].numpy()
  np.testing.assert_allclose(unnormalized(result['images']), resized[10:26, 28:44], atol=2)


def test_train_takes_a_random_crop_of_the_image_resized_to_the_sampled_scale(smooth_image):
  tf, config, example, resized = smooth_image
  crops = [resized[top:top + 16, left:left + 16] for top in range(21) for left in range(57)]
  crops += [crop[:, ::-1] for crop in crops]
  matches = set()
  for seed in range(8):
    image = unnormalized(imagenet._train_example(tf, config, example, tf.constant([seed, 0]))[
        'images'])
    errors = [np.abs(image - crop).max() for crop in crops]
    assert min(errors) < 2, 'the train image should be a (flipped) crop of the resized image'
    matches.add(int(np.argmin(errors)))
  assert len(matches) > 4, 'crops should vary with the seed'
  assert {match < len(crops) // 2 for match in matches} == {True, False}, 'and so should flips'


# The tf.data path, under tfds.testing.mock_data.


@pytest.fixture
def mock_imagenet(monkeypatch):
  """imagenet2012 mocked with 10 examples of random small images (and random labels)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  # mock_data leaves the split sizes unknown; the real ones come from the prepared data.
  monkeypatch.setattr(imagenet, '_num_examples', lambda builder, split: 10)
  with tfds.testing.mock_data(num_examples=10):
    yield dict(SMALL, source='tfds', shuffle_buffer_size=16)


def test_tfds_train_batches(mock_imagenet):
  first = next(imagenet_train_iterator(mock_imagenet, 8, 1, 2, seed=0))
  assert set(first) == {'images', 'labels'}
  assert first['images'].shape == (4, 16, 16, 3) and first['images'].dtype == np.float32
  assert first['labels'].shape == (4,) and first['labels'].dtype == np.int32
  assert 0 <= first['labels'].min() and first['labels'].max() < 1000
  assert -3 < first['images'].mean() < 3, 'images should be normalized'
  again = next(imagenet_train_iterator(mock_imagenet, 8, 1, 2, seed=0))
  np.testing.assert_array_equal(again['images'], first['images'])
  other_seed = next(imagenet_train_iterator(mock_imagenet, 8, 1, 2, seed=1))
  assert not np.array_equal(other_seed['images'], first['images'])


def test_tfds_eval_pads_the_last_batch(mock_imagenet):
  batches = list(imagenet_eval_iterator(mock_imagenet, 4, 0, 1))
  assert len(batches) == 3
  assert [int(batch['mask'].sum()) for batch in batches] == [4, 4, 2]
  assert all(batch['images'].shape == (4, 16, 16, 3) for batch in batches)
  assert not batches[-1]['images'][2:].any(), 'padding should be zeros'
  again = list(imagenet_eval_iterator(mock_imagenet, 4, 0, 1))
  np.testing.assert_array_equal(again[0]['images'], batches[0]['images'])


def test_unprepared_imagenet_says_how_to_prepare_it(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(DataError, match='manual download.*ILSVRC2012_img_train.tar'):
    next(imagenet_eval_iterator(dict(source='tfds', data_dir=str(tmp_path)), 4, 0, 1))
