"""The class-folder layout: `train/<class>/<image>` and `test/<class>/<image>`, at the top of
a folder or archive or under its one top-level directory. Labels follow sorted class names."""
from collections.abc import Callable, Iterable, Iterator
from pathlib import PurePosixPath

import numpy as np

from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.errors import DataError

SPLITS = ('train', 'test')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
_LAYOUT = 'train/<class>/*.jpg and test/<class>/*.jpg (or .jpeg/.png)'


def select_images(files: Iterable[tuple[str, Callable[[], bytes]]],
                  source: str) -> Iterator[tuple[str, bytes]]:
  """(name, bytes) of each image of the tree, from (relative name, read) pairs.

  `read` is called at once, before the next pair is drawn, as a streamed tar requires.
  Files outside train/ and test/ are ignored; hidden ones (.DS_Store, macOS '._' copies)
  too. Any other file that is not an image is an error.
  """
  root = None
  for name, read in files:
    parts = PurePosixPath(name).parts
    if any(part.startswith('.') for part in parts):
      continue
    root = _find_root(parts) if root is None else root
    if root is None or not _in_split(parts, root):
      continue
    split, *rest = parts[len(root):]
    if len(rest) < 2:
      raise DataError(f'{name} in {source} sits directly in {split}/; put each image in its '
                      f'class folder, {split}/<class>/{rest[-1]}.')
    if not name.lower().endswith(IMAGE_SUFFIXES):
      raise DataError(f'{name} in {source} is not a {"/".join(IMAGE_SUFFIXES)} image; '
                      f'delete it or convert it to one of those formats.')
    yield name, read()


def build_splits(names: list[str], images: np.ndarray, source: str) -> ArraySplits:
  """Labels the images (named as `select_images` named them) and splits train from test,
  each split in sorted name order."""
  if not names:
    raise DataError(f'Found no train/ or test/ folder in {source} (looked at its top level and '
                    f'one directory down); lay the images out as {_LAYOUT}.')
  # select_images fixed the root from the first image it kept.
  root = _find_root(PurePosixPath(names[0]).parts)
  tree_parts = [PurePosixPath(name).parts[len(root):] for name in names]
  split_of = np.array([parts[0] for parts in tree_parts])
  class_of = np.array([parts[1] for parts in tree_parts])
  for split in SPLITS:
    if split not in split_of:
      raise DataError(f'No images under {split}/ in {source}; lay the images out as {_LAYOUT}.')
  train_classes = set(class_of[split_of == 'train'].tolist())
  test_classes = set(class_of[split_of == 'test'].tolist())
  for here, there, classes in (('train', 'test', train_classes - test_classes),
                               ('test', 'train', test_classes - train_classes)):
    if classes:
      missing = sorted(classes)
      raise DataError(f'Class folder(s) {missing} have images in {here}/ but none in {there}/ '
                      f'of {source}; both splits need the same classes: add {there}/'
                      f'{missing[0]}/ images or remove {here}/{missing[0]}/.')
  class_names = tuple(sorted(train_classes))
  labels = np.searchsorted(np.array(class_names), class_of).astype(np.int32)
  order = {split: sorted(np.flatnonzero(split_of == split), key=names.__getitem__)
           for split in SPLITS}
  return ArraySplits(train_images=images[order['train']], train_labels=labels[order['train']],
                     eval_images=images[order['test']], eval_labels=labels[order['test']],
                     class_names=class_names, eval_split='test')


def _find_root(parts: tuple[str, ...]) -> tuple[str, ...] | None:
  """The directory holding train/ and test/, judged from one file's path parts."""
  if len(parts) > 1 and parts[0] in SPLITS:
    return ()
  if len(parts) > 2 and parts[1] in SPLITS:
    return parts[:1]
  return None


def _in_split(parts: tuple[str, ...], root: tuple[str, ...]) -> bool:
  return (len(parts) > len(root) + 1 and parts[:len(root)] == root
          and parts[len(root)] in SPLITS)
