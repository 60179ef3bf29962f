"""Random-access sources of encoded ImageNet images for the streamed input: TFDS
`imagenet2012` read with tfds.data_source (ArrayRecord, no TensorFlow), an ILSVRC-layout
image folder, or synthetic images. Each split yields (name, image, label) by example index;
nothing here writes to the data.

TFDS: tfds.data_source parses the records with its own protos, without TensorFlow, and would
decode images whole with OpenCV or Pillow; tfds.decode.SkipDecoding keeps the JPEG bytes so
that they are decoded in draft mode at the size the crop needs. There is no tf.data path:
it would bring TensorFlow back for sequential reads that cannot give random access, which
the exact per-host batches and resumable state rest on; a copy prepared as TFRecord is
converted once (the error message says how).
"""
import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from resnet_jax.data.config import (cache_dir_outside, existing_path,
                                    positive_int)
from resnet_jax.data.errors import DataError
from resnet_jax.data.image_tree import IMAGE_SUFFIXES
from resnet_jax.data.imagenet.decode import unreadable
from resnet_jax.data.synthetic import class_colors, image_height_width, synthetic_images
from resnet_jax.errors import MissingPackageError

TRAIN, EVAL = 'train', 'validation'
FOLDER_LAYOUT = (
    'an ILSVRC folder holding train/<wnid>/*.JPEG (extract ILSVRC2012_img_train.tar, then each '
    'class tar inside it into train/<wnid>/) and val/<wnid>/*.JPEG (ILSVRC2012_img_val.tar '
    "sorted into class folders by the devkit's validation ground truth)")
_FOLDER_SPLITS = {TRAIN: 'train', EVAL: 'val'}
_SYNTHETIC_STREAMS = {TRAIN: 1, EVAL: 2}  # Keeps the two splits' random streams apart.

Record = tuple[str, bytes | np.ndarray, int]  # (name for messages, image, label)


@dataclasses.dataclass(frozen=True)
class Sources:
  """The train and validation splits of one data set, and what identifies it."""
  train: 'Split'
  validation: 'Split'
  class_names: tuple[str, ...]
  cache_key: str  # Names the source in cache file names; changes when the data do.
  location: str | None  # The folder or TFDS data_dir read; None for synthetic images.


class Split(Protocol):
  """One split: len() examples, each a Record by index. Picklable, for worker processes."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> Record: ...


def open_sources(config) -> Sources:
  """The sources data config `config` (already checked) names."""
  if config.source == 'folder':
    return _folder_sources(config)
  if config.source == 'tfds':
    return _tfds_sources(config)
  return _synthetic_sources(config.synthetic)


@dataclasses.dataclass(frozen=True, eq=False)
class FolderSplit:
  """Files root/names[i] (relative paths, bytes) with labels[i]."""
  root: str
  names: np.ndarray
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.names)

  def __getitem__(self, index: int) -> Record:
    path = os.path.join(self.root, os.fsdecode(self.names[index]))
    try:
      with open(path, 'rb') as file:
        return path, file.read(), int(self.labels[index])
    except OSError as error:
      raise unreadable(path, error) from None


def _folder_sources(config) -> Sources:
  root = existing_path(config.path, 'folder', FOLDER_LAYOUT)
  cache_dir_outside(config.cache_dir, root, nested=True)  # Refuses a cache_dir inside the data.
  split_dirs = {split: root / folder for split, folder in _FOLDER_SPLITS.items()}
  missing = [f'{folder}/' for split, folder in _FOLDER_SPLITS.items()
             if not split_dirs[split].is_dir()]
  if missing:
    raise DataError(f'{root} has no {" or ".join(missing)} folder; data.path must be '
                    f'{FOLDER_LAYOUT}.')
  class_names = tuple(sorted(entry.name for entry in os.scandir(split_dirs[TRAIN])
                             if entry.is_dir() and not entry.name.startswith('.')))
  if not class_names:
    raise DataError(f'{split_dirs[TRAIN]} has no class folders; data.path must be '
                    f'{FOLDER_LAYOUT}.')
  splits = {split: _list_folder(split_dirs[split], class_names) for split in _FOLDER_SPLITS}
  digest = hashlib.sha256(str(root).encode())
  for split in splits.values():
    digest.update(b'\0'.join(split.names.tolist()))
  return Sources(splits[TRAIN], splits[EVAL], class_names,
                 f'folder-{root.name}-{digest.hexdigest()[:16]}', str(root))


def _list_folder(split_dir: Path, class_names: tuple[str, ...]) -> FolderSplit:
  names, labels = [], []
  for entry in sorted(os.scandir(split_dir), key=lambda entry: entry.name):
    if entry.name.startswith('.'):
      continue
    if entry.name.endswith('.tar'):
      raise DataError(f'{entry.path} is a tar archive; extract it into {split_dir}/'
                      f'{entry.name[:-4]}/ (data.path must be {FOLDER_LAYOUT}).')
    if not entry.is_dir():
      raise DataError(f'{entry.path} sits directly in {split_dir}; put each image in its class '
                      f'folder, {split_dir}/<wnid>/{entry.name}.')
    if entry.name not in class_names:
      raise DataError(f'Class folder {entry.path} has no counterpart in the train folder; '
                      f'both splits need the same classes ({len(class_names)} in train/).')
    label, count = class_names.index(entry.name), len(names)
    for image in sorted(os.scandir(entry.path), key=lambda image: image.name):
      if image.name.startswith('.'):
        continue
      if not image.name.lower().endswith(IMAGE_SUFFIXES):
        raise DataError(f'{image.path} is not a {"/".join(IMAGE_SUFFIXES)} image; delete it or '
                        f'move it out of {split_dir}.')
      names.append(os.fsencode(f'{entry.name}/{image.name}'))
      labels.append(label)
    if len(names) == count:
      raise DataError(f'Class folder {entry.path} holds no images (an extraction cut short?); '
                      'put its images in it, or delete the folder.')
  if not names:
    raise DataError(f'{split_dir} holds no images; data.path must be {FOLDER_LAYOUT}.')
  return FolderSplit(str(split_dir), np.array(names), np.array(labels, np.int32))


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsSplit:
  """One split of a TFDS data set prepared as ArrayRecord, read by index; images stay
  encoded (tfds.decode.SkipDecoding) so that they are decoded at the size needed."""
  source: object  # The tfds.data_source of the split.
  description: str

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Record:
    example = self.source[index]
    file_name = example.get('file_name')
    name = f'{self.description}[{index}]' + (f' ({_text(file_name)})' if file_name else '')
    return name, example['image'], int(example['label'])


def _tfds_sources(config) -> Sources:
  tfds = _import_tfds()
  try:
    builder = tfds.builder(config.name, data_dir=config.data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f'TFDS has no data set {config.name!r}; set data.name to imagenet2012.'
                    ) from None
  decoders = {'image': tfds.decode.SkipDecoding()}
  try:
    splits = [builder.as_data_source(split=split, decoders=decoders) for split in (TRAIN, EVAL)]
  except (NotImplementedError, ValueError, KeyError, FileNotFoundError) as error:
    raise _not_prepared(builder, error) from None
  features = builder.info.features
  description = f'TFDS {builder.info.full_name}'
  return Sources(TfdsSplit(splits[0], f'{description} train'),
                 TfdsSplit(splits[1], f'{description} validation'),
                 tuple(features['label'].names),
                 f'tfds-{config.name}-' + hashlib.sha256(
                     f'{builder.data_dir}:{len(splits[0])}:{len(splits[1])}'.encode()
                 ).hexdigest()[:16], str(builder.data_dir))


def _not_prepared(builder, error: Exception) -> DataError:
  name, data_dir = builder.name, builder.data_dir
  if builder.is_prepared():
    return DataError(
        f'TFDS {name} in {data_dir} is prepared as {builder.info.file_format.value}, but the '
        f'streamed input reads ArrayRecord ({error}); convert it once with `tfds '
        f'convert_format --dataset_version_dir={data_dir} --out_file_format=array_record '
        f'--out_dir=<new data_dir>/{builder.info.full_name}` and set data.data_dir, or use '
        f"data.source='folder' on the extracted images.")
  return DataError(
      f'TFDS {name} is not prepared under {data_dir}. ImageNet needs a manual download: put '
      f'ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in <data_dir>/downloads/manual/ and '
      f'run `tfds build {name} --data_dir=<data_dir> --file_format=array_record` (see '
      f'https://www.tensorflow.org/datasets/catalog/imagenet2012), then set data.data_dir; or '
      f"extract the tars into {FOLDER_LAYOUT} and set data.source='folder'.")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise MissingPackageError(
        f"data.source='tfds' needs TensorFlow Datasets ({error}); install it with `pip install "
        f"tensorflow-datasets array_record` (TensorFlow itself is not needed), or use "
        f"data.source='folder' or 'synthetic'.") from None
  return tfds


def _text(value) -> str:
  value = value.item() if isinstance(value, np.ndarray) else value
  return value.decode() if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticSplit:
  """Learnable random images, each a function of (seed, split, index) alone."""
  size: int
  stream: int
  seed: int
  num_classes: int
  height_width: tuple[int, int]

  def __len__(self) -> int:
    return self.size

  def __getitem__(self, index: int) -> Record:
    rng = np.random.default_rng([self.seed, self.stream, index])
    label = rng.integers(0, self.num_classes, 1)
    image = synthetic_images(rng, label, *self.height_width, self._colors)[0]
    return f'synthetic {index}', image, int(label[0])

  @functools.cached_property
  def _colors(self) -> np.ndarray:
    return class_colors(self.num_classes, self.seed)


def _synthetic_sources(settings) -> Sources:
  num_classes = positive_int(settings.num_classes, 'data.synthetic.num_classes')
  height_width = image_height_width(settings.image_size)
  splits = {split: SyntheticSplit(
      positive_int(settings[key], f'data.synthetic.{key}'), _SYNTHETIC_STREAMS[split],
      int(settings.seed), num_classes, height_width)
      for split, key in ((TRAIN, 'num_train'), (EVAL, 'num_eval'))}
  key = (f'{settings.seed}-{num_classes}-{height_width[0]}x{height_width[1]}-'
         f'{splits[TRAIN].size}-{splits[EVAL].size}')
  return Sources(splits[TRAIN], splits[EVAL], tuple(f'class_{i}' for i in range(num_classes)),
                 f'synthetic-{key}', None)
