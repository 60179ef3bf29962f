"""The paper's ImageNet test views of one image (center crop, 10-crop, multi-scale; Section
3.4) and the plan of which host evaluates which image in which batch.

Multi-scale testing feeds whole images of different aspect ratios. To batch them, each image
is resized to the shape of the nearest of a few aspect-ratio buckets (shorter side s, longer
side s times the bucket's ratio); a deviation from the paper, which scores every image at its
own aspect ratio: an image between 1:1 and 2:1 is stretched by at most 6.1% (more only beyond
2:1). Every host computes the same plan from the images' sizes, so all hosts yield batches of
the same shapes in the same order.
"""
import math

import numpy as np

from resnet_jax.data.imagenet import decode
from resnet_jax.data.imagenet.augment import resized_size

MODES = ('center', '10crop', 'multiscale')
# Longer / shorter side of the multi-scale buckets; ImageNet photos are mostly 4:3 and 3:2.
BUCKET_RATIOS = (1.0, 1.125, 1.25, 4 / 3, 1.5, 1.625, 16 / 9, 2.0)
PADDING = -1  # The example index of a padding row.


def eval_view(mode: str, image: bytes | np.ndarray, name: str, shape: tuple[int, int],
              resize_size: int) -> np.ndarray:
  """uint8 [V, height, width, 3]: the views of `mode`; `shape` is (height, width) of one
  view: the crop (center, 10crop) or the bucket's shape (multiscale)."""
  with decode.opened(image, name) as handle:
    original_size = handle.size
    # 10-crop and center: "the standard 10-crop testing" of the image resized to 256 (3.4).
    size = shape[::-1] if mode == 'multiscale' else resized_size(original_size, resize_size)
    rgb = decode.decoded(handle, name, size)
    resized = decode.resized_window(rgb, original_size, (0, 0, *original_size), size)
  if mode == 'multiscale':
    return resized[None]
  crops = ten_crops(resized, shape[0])
  return crops[4:5] if mode == 'center' else crops


def ten_crops(image: np.ndarray, crop: int) -> np.ndarray:
  """uint8 [10, crop, crop, 3]: the four corner crops and the center crop of `image`
  [height, width, 3], then the same five of its horizontal flip (Table 3's 10-crop)."""
  height, width = image.shape[:2]
  corners = ((0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop),
             ((height - crop) // 2, (width - crop) // 2))
  crops = np.stack([image[top:top + crop, left:left + crop] for top, left in corners])
  return np.concatenate([crops, crops[:, :, ::-1]])


def bucket_shape(size: tuple[int, int], shorter_side: int) -> tuple[int, int]:
  """(height, width) of the multi-scale bucket of an image of `size` (width, height)."""
  width, height = size
  ratio = max(width, height) / min(width, height)
  nearest = min(BUCKET_RATIOS, key=lambda bucket: abs(math.log(ratio / bucket)))
  longer = round(shorter_side * nearest)
  return (shorter_side, longer) if width >= height else (longer, shorter_side)


def images_per_batch(mode: str, center_batch: int, crop: int, scales: tuple[int, ...],
                     multiple: int) -> int:
  """Images in a global eval batch of `mode` that hold about as many pixels as `center_batch`
  center crops (so one eval batch size fits every mode's memory): 10 crops an image for
  10crop, a whole image up to the largest bucket at the largest scale for multiscale; rounded
  down to a multiple of `multiple` (the devices a batch is split over), at least one each."""
  if mode == 'center':
    return center_batch
  view_pixels = 10 * crop * crop if mode == '10crop' else max(scales) ** 2 * max(BUCKET_RATIOS)
  images = int(center_batch * crop * crop // view_pixels)
  return max(multiple, images // multiple * multiple)


def eval_rows(mode: str, sizes: np.ndarray | None, num_examples: int, crop: int,
              scales: tuple[int, ...], global_batch_size: int, process_index: int,
              process_count: int) -> np.ndarray:
  """int64 [batches * b, 3]: (example index or PADDING, view height, view width) of each row
  this host evaluates, b = global_batch_size // process_count rows a batch.

  Global batches hold one view shape each and are padded to global_batch_size; host p takes
  rows [p * b, (p + 1) * b) of each, so every example is evaluated once over all hosts (once
  per scale for multiscale). `sizes` ([num_examples, 2], width and height) is needed only
  for multiscale.
  """
  groups = {}
  if mode == 'multiscale':
    for scale in scales:
      for index, size in enumerate(sizes):
        groups.setdefault((scale, *bucket_shape(size, scale)), []).append(index)
  else:
    groups[(0, crop, crop)] = list(range(num_examples))
  per_host = global_batch_size // process_count
  rows = []
  for (_, height, width), indices in sorted(groups.items()):
    padded = np.full(math.ceil(len(indices) / global_batch_size) * global_batch_size, PADDING)
    padded[:len(indices)] = indices
    mine = padded.reshape(-1, process_count, per_host)[:, process_index].reshape(-1)
    rows.append(np.stack([mine, np.full_like(mine, height), np.full_like(mine, width)], 1))
  return np.concatenate(rows)
