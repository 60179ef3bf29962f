"""The paper's CIFAR augmentation, done on device (Section 4.2)."""
import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.data.cifar import augment

IMAGES = np.random.default_rng(0).integers(1, 255, (64, 32, 32, 3)).astype(np.uint8)


def batch(step, images=IMAGES, mean=None, batch_size=64):
  keys = jax.random.split(jax.random.key(0))
  mean = np.zeros((32, 32, 3), np.float32) if mean is None else mean
  x, y = augment.train_batch(keys[0], keys[1], jnp.int32(step), jnp.asarray(images),
                             jnp.arange(len(images)), jnp.asarray(mean), batch_size)
  return np.asarray(x), np.asarray(y)


def crop_and_flip_of(image, augmented):
  """The (dy, dx, flipped) that turns `image` into `augmented`, or None."""
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  for flipped in (False, True):
    for dy in range(9):
      for dx in range(9):
        crop = padded[dy:dy + 32, dx:dx + 32]
        if np.array_equal(crop[:, ::-1] if flipped else crop, augmented):
          return dy, dx, flipped
  return None


def test_crops_stay_inside_the_padded_image_and_about_half_are_flipped():
  x, y = batch(0)
  found = [crop_and_flip_of(IMAGES[label].astype(np.float32), image) for image, label in zip(x, y)]
  assert all(f is not None for f in found)
  assert 20 <= sum(f[2] for f in found) <= 44
  assert len({f[:2] for f in found}) > 20


def test_same_step_gives_the_same_batch_and_the_next_step_another():
  np.testing.assert_array_equal(batch(3)[0], batch(3)[0])
  assert not np.array_equal(batch(3)[0], batch(4)[0])


def test_every_example_appears_once_per_epoch():
  labels = np.concatenate([batch(step, batch_size=16)[1] for step in range(4)])
  assert sorted(labels) == list(range(64))


def test_per_pixel_mean_is_subtracted():
  mean = augment.per_pixel_mean(IMAGES)
  np.testing.assert_allclose(mean, IMAGES.astype(np.float64).mean(0), rtol=1e-6)
  normalized = np.asarray(augment.normalize(jnp.asarray(IMAGES), jnp.asarray(mean)))
  np.testing.assert_allclose(normalized.mean(0), 0, atol=1e-3)
