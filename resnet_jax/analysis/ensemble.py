"""Table 5's ensembles: several trained nets scored as one, their class probabilities averaged
over the nets (each net's own first averaged over its crops or scales), and the check that the
nets were tested on the same images with the same classes."""
import dataclasses

import numpy as np

from resnet_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TestSet:
  """What a member was tested on: its class names, data fingerprint and image count."""
  classes: tuple[str, ...]
  data: str
  images: int

  def difference(self, other: 'TestSet', other_name: str) -> str:
    """What differs from `other` (member `other_name`'s), in words ('' when nothing does)."""
    if self.classes != other.classes:
      return (f'{len(self.classes)} classes where {other_name} has {len(other.classes)} (or '
              'other class names)')
    if self.data != other.data or self.images != other.images:
      return (f'data {self.data} ({self.images} images) where {other_name} has {other.data} '
              f'({other.images})')
    return ''


def check_same_test_set(test_sets: dict[str, TestSet]) -> None:
  """Raises a one-line ConfigError naming the first member (by name) whose test set differs
  from the first one's."""
  (first, reference), *others = test_sets.items()
  for name, test_set in others:
    difference = test_set.difference(reference, first)
    if difference:
      raise ConfigError(f'Ensemble members disagree: {name} was tested on {difference}; an '
                        'ensemble averages nets over the same images and classes.')


def probabilities(scores: np.ndarray) -> np.ndarray:
  """Per image, `scores` (softmax scores summed over a net's scales) as class probabilities:
  the average over its views and scales."""
  return scores / scores.sum(axis=1, keepdims=True)


def average_probabilities(member_scores: list[np.ndarray]) -> np.ndarray:
  """The ensemble's class probabilities [n, classes]: the mean over the members of each
  one's probabilities (Table 5 averages nets of different depth, 4.1)."""
  return np.mean([probabilities(scores) for scores in member_scores], axis=0)
