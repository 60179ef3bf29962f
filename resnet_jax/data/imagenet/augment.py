"""The paper's ImageNet train augmentation of one image (Section 3.4): scale augmentation, a
random crop, a horizontal flip and the PCA color augmentation of Krizhevsky et al. (2012),
drawn from a per-example numpy Generator."""
import numpy as np

from resnet_jax.data.imagenet import decode

# ImageNet's RGB eigenvalues and eigenvectors (columns) for pixels on the 0-1 scale, as
# published with Krizhevsky et al.'s lighting noise and used by fb.resnet.torch.
PCA_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045], np.float32)
PCA_EIGENVECTORS = np.array([[-0.5675, 0.7192, 0.4009],
                             [-0.5808, -0.0045, -0.8140],
                             [-0.5836, -0.6948, 0.4203]], np.float32)


def resized_size(size: tuple[int, int], shorter_side: int) -> tuple[int, int]:
  """(width, height) of an image of `size` (width, height) resized to `shorter_side`."""
  scale = shorter_side / min(size)
  return tuple(max(shorter_side, round(side * scale)) for side in size)


def random_window(size: tuple[int, int], rng: np.random.Generator, crop: int,
                  resize_range: tuple[int, int]) -> tuple[tuple[float, float, float, float],
                                                          tuple[int, int], bool]:
  """(box, resized size, flip): the window (left, top, right, bottom) of an image of `size`
  (width, height) that becomes a random crop x crop crop once the image is resized to
  `resized size`, and whether to flip it."""
  # "its shorter side randomly sampled in [256, 480] for scale augmentation" (3.4).
  width, height = resized_size(size, int(rng.integers(resize_range[0], resize_range[1] + 1)))
  # "A 224x224 crop is randomly sampled from an image or its horizontal flip" (3.4).
  top, left = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
  scale_x, scale_y = size[0] / width, size[1] / height
  box = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
  return box, (width, height), bool(rng.random() < 0.5)


def train_view(image: bytes | np.ndarray, name: str, rng: np.random.Generator, crop: int,
               resize_range: tuple[int, int], lighting_std: float
               ) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [crop, crop, 3] image, float32 [3] color shift on the 0-255 scale)."""
  with decode.opened(image, name) as handle:
    original_size = handle.size  # Before decoded() reduces it in draft mode.
    box, resized, flip = random_window(original_size, rng, crop, resize_range)
    rgb = decode.decoded(handle, name, resized)
    view = decode.resized_window(rgb, original_size, box, (crop, crop))
  return (view[:, ::-1] if flip else view), color_shift(rng, lighting_std)


def color_shift(rng: np.random.Generator, lighting_std: float) -> np.ndarray:
  """The PCA color augmentation of one image, "the standard color augmentation in [21]"
  (3.4): eigenvectors @ (alpha * eigenvalues), alpha ~ N(0, lighting_std), on the 0-255
  scale; it is added to every pixel on the device."""
  if not lighting_std:
    return np.zeros(3, np.float32)
  alpha = rng.normal(0, lighting_std, 3).astype(np.float32)
  return PCA_EIGENVECTORS @ (alpha * PCA_EIGENVALUES) * np.float32(255)

