"""Decodes one streamed image into RGB with Pillow, at the least resolution a later resize
needs (JPEG draft mode), and resizes a window of it; any unreadable file is a DataError
naming it. Real ImageNet holds CMYK and grayscale JPEGs and a PNG named .JPEG: all load."""
import contextlib
import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from resnet_jax.data.errors import DataError

# Bilinear, which Pillow antialiases when it reduces: the usual choice for ImageNet inputs,
# faster than bicubic and within 4% of box (docs/performance.md, data section). A JPEG at
# least twice the size a resize needs is first shrunk in the DCT by decoded() (libjpeg's
# 1/2, 1/4 or 1/8 scaling), so its effective filter is that shrink followed by bilinear:
# a mean difference of 1.2 grey levels of 255 from a full decode, for 2/3 of the CPU time
# (`python -m resnet_jax.bench data --imagenet`).
RESAMPLE = Image.Resampling.BILINEAR
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class UnreadableImage(DataError):
  """An image file that Pillow cannot decode."""


@contextlib.contextmanager
def opened(image: bytes | np.ndarray, name: str) -> Iterator[Image.Image]:
  """The image, not yet decoded (its size is known from the header): encoded bytes, or a
  uint8 RGB array (synthetic data)."""
  if isinstance(image, np.ndarray):
    yield Image.fromarray(image)
    return
  try:
    handle = Image.open(io.BytesIO(image))
  except _DECODE_ERRORS as error:
    raise unreadable(name, error) from None
  with handle:
    yield handle


def decoded(image: Image.Image, name: str, least_size: tuple[int, int]) -> Image.Image:
  """`image` decoded to RGB, at a JPEG scale of 1/1, 1/2, 1/4 or 1/8 whose (width, height)
  is still at least `least_size`: decoding fewer DCT coefficients is much faster."""
  image.draft('RGB', least_size)
  try:
    image.load()
    return image if image.mode == 'RGB' else image.convert('RGB')
  except _DECODE_ERRORS as error:
    raise unreadable(name, error) from None


def resized_window(image: Image.Image, original_size: tuple[int, int],
                   box: tuple[float, float, float, float],
                   size: tuple[int, int]) -> np.ndarray:
  """uint8 [height, width, 3]: the window `box` (left, top, right, bottom in the pixels of
  the image at `original_size`, before any draft reduction) resized to `size` (width,
  height). Resizing only the window costs a fraction of resizing the whole image."""
  scale_x, scale_y = image.width / original_size[0], image.height / original_size[1]
  left, top, right, bottom = box
  window = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
  return np.asarray(image.resize(size, RESAMPLE, box=window))


def image_size(image: bytes | np.ndarray, name: str) -> tuple[int, int]:
  """(width, height) of an image, from its header alone."""
  with opened(image, name) as handle:
    return handle.size


def unreadable(name: str, error: Exception) -> UnreadableImage:
  """The error for an image that cannot be read or decoded; its `problem` says what is wrong
  without the advice (for a run that already skips such images)."""
  problem = f'{name} is not a readable image ({type(error).__name__}: {error})'
  unreadable_image = UnreadableImage(f'{problem}; replace it with a valid JPEG or PNG, or set '
                                     'data.skip_unreadable=True to stand another image in for it.')
  unreadable_image.problem = problem
  return unreadable_image
