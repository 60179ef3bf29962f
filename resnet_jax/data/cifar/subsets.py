"""Deterministic, class-stratified subsets: the held-out validation set and train fractions."""
import dataclasses

import numpy as np

from resnet_jax.data.arrays import ArraySplits
from resnet_jax.data.errors import DataError

# Fixed seeds: the same data and sizes always give the same subsets.
VALIDATION_SEED = 0
TRAIN_FRACTION_SEED = 1


def stratified_choice(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits range(len(labels)) into `size` chosen indices and the rest, both sorted.

  Each class gives its share of `size` in proportion to its count (balanced classes
  give exactly size / num_classes each when that divides); which examples a class gives
  is a random permutation drawn from `seed`.
  """
  order = np.random.default_rng(seed).permutation(len(labels))
  permuted = labels[order]
  counts = np.bincount(permuted)
  by_class = np.argsort(permuted, kind='stable')
  rank_in_class = np.empty(len(labels), np.int64)
  rank_in_class[by_class] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
  # Taking the smallest rank / class size interleaves the classes in proportion.
  share = (rank_in_class + 0.5) / counts[permuted]
  chosen = np.sort(order[np.argsort(share, kind='stable')[:size]])
  rest = np.setdiff1d(np.arange(len(labels)), chosen, assume_unique=True)
  return chosen, rest


def hold_out_validation(splits: ArraySplits, validation_size: int) -> ArraySplits:
  """Moves `validation_size` train images into the eval set, named 'validation'."""
  num_train = len(splits.train_labels)
  if validation_size >= num_train:
    raise DataError(f'validation_size={validation_size} leaves no training images: the train '
                    f'split has only {num_train}; use a validation_size below {num_train} '
                    f'(the paper holds out 5000 of 50000).')
  validation, train = stratified_choice(splits.train_labels, validation_size, VALIDATION_SEED)
  return dataclasses.replace(
      splits, train_images=splits.train_images[train], train_labels=splits.train_labels[train],
      eval_images=splits.train_images[validation], eval_labels=splits.train_labels[validation],
      eval_split='validation')


def keep_train_fraction(splits: ArraySplits, train_fraction: float) -> ArraySplits:
  """Keeps round(train_fraction * N) train images, stratified by class."""
  num_train = len(splits.train_labels)
  size = round(train_fraction * num_train)
  if size < 1:
    raise DataError(f'train_fraction={train_fraction} of {num_train} train images keeps none; '
                    f'use a train_fraction of at least {1 / num_train:.2g}.')
  train, _ = stratified_choice(splits.train_labels, size, TRAIN_FRACTION_SEED)
  return dataclasses.replace(splits, train_images=splits.train_images[train],
                             train_labels=splits.train_labels[train])
