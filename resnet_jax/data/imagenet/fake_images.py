"""Generated ILSVRC folders (`split/<wnid>/<wnid>_<i>.JPEG`) of smooth, photo-like images, for
the smoke studies, the data benchmark and the tests of the streamed input; with the odd files
ILSVRC holds, a grayscale JPEG, a CMYK JPEG and a PNG named .JPEG, where asked."""
import io
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

CLASSES = ('n01', 'n02', 'n03')
SIZES = ((16, 12), (40, 30), (30, 40), (20, 20), (24, 16))  # (width, height), in turn.
# (PIL mode, format) of the first images of the first class's train folder, when asked for.
ODD_FILES = (('L', 'JPEG'), ('CMYK', 'JPEG'), ('RGB', 'PNG'))


def smooth_image(width: int, height: int, seed, grain: float = 0.0) -> np.ndarray:
  """A uint8 RGB image [height, width, 3]: a colour and gradients across it drawn from `seed`
  (an int or a sequence of ints), plus Gaussian grain of std `grain`."""
  rng = np.random.default_rng(seed)
  rows, columns = np.mgrid[0:height, 0:width] / max(width, height)
  base, slopes = rng.integers(0, 100, 3), rng.uniform(40, 150, (3, 2))
  image = np.stack([base[c] + slopes[c, 0] * rows + slopes[c, 1] * columns for c in range(3)],
                   -1)
  if grain:
    image += rng.normal(0, grain, image.shape)
  return image.clip(0, 255).astype(np.uint8)


def encoded(image: np.ndarray, mode: str = 'RGB', image_format: str = 'JPEG',
            quality: int = 95) -> bytes:
  """`image` converted to the PIL `mode` and encoded as `image_format`."""
  buffer = io.BytesIO()
  Image.fromarray(image).convert(mode).save(buffer, format=image_format, quality=quality)
  return buffer.getvalue()


def write_ilsvrc_tree(root: str | os.PathLike, images_per_class: Mapping[str, int],
                      classes: Sequence[str] = CLASSES,
                      sizes: Sequence[tuple[int, int]] = SIZES, odd_files: bool = True,
                      grain: float = 0.0, quality: int = 95) -> pathlib.Path:
  """Writes `images_per_class[split]` images of each class to root/split/<wnid>/ (an empty
  folder for 0) and returns root. Image i of class k has the size sizes[(i + k) % len(sizes)];
  with `odd_files`, the first images of train/<classes[0]> are the ODD_FILES."""
  root = pathlib.Path(root)
  for split_index, (split, count) in enumerate(images_per_class.items()):
    for label, wnid in enumerate(classes):
      folder = root / split / wnid
      folder.mkdir(parents=True, exist_ok=True)
      odd = ODD_FILES if odd_files and (split, label) == ('train', 0) else ()
      for index in range(count):
        width, height = sizes[(index + label) % len(sizes)]
        mode, image_format = odd[index] if index < len(odd) else ('RGB', 'JPEG')
        image = smooth_image(width, height, (split_index, label, index), grain)
        (folder / f'{wnid}_{index}.JPEG').write_bytes(
            encoded(image, mode, image_format, quality))
  return root
