"""Evaluation on streamed validation images, as in the paper: one center crop, 10 crops
(4 corners, the center and their flips; Tables 2 and 3) or fully convolutional multi-scale
testing (Table 4). The softmax scores of an image are averaged over its views and scales;
every image counts exactly once over all hosts."""
import contextlib

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from resnet_jax import sharding
from resnet_jax.data import imagenet

def make_scorer(model, mean: np.ndarray, std: np.ndarray):
  """A jitted (variables, uint8 images [b, views, h, w, 3]) -> softmax scores [b, classes],
  averaged over the views; compiled once per image shape."""
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)

  @jax.jit
  def score_batch(variables, images):
    batch, views = images.shape[:2]
    flat = images.reshape((batch * views,) + images.shape[2:])
    inputs = imagenet.normalize_on_device(flat, None, mean, std)
    logits = model.apply(variables, inputs, train=False)
    return jax.nn.softmax(logits).reshape(batch, views, -1).mean(axis=1)

  return score_batch


def evaluate(score_batch, mesh: jax.sharding.Mesh, source, mode: str, batch_size: int,
             state) -> list[dict]:
  """[{'loss', 'error', 'top5_error', 'images'}] of `state`'s net on `source`'s validation
  images with the views of `mode` (one dict: the streamed input trains one net)."""
  scores, labels = image_scores(score_batch, mesh, source, mode, batch_size, state)
  return [metrics_of(scores, labels)]


def image_scores(score_batch, mesh: jax.sharding.Mesh, source, mode: str, batch_size: int,
                 state) -> tuple[np.ndarray, np.ndarray]:
  """(summed softmax scores [n, classes], labels [n]) of this host's validation images:
  for each image, its views' average summed over the scales of `mode`."""
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  batch_sharding = NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS))
  scores = np.zeros((source.num_eval, source.num_classes), np.float32)
  labels = np.full(source.num_eval, -1, np.int32)
  # Closed on the way out of an exception too (Ctrl-C, SIGTERM): stops the workers at once.
  with contextlib.closing(source.eval_iterator(mode, batch_size, jax.process_index(),
                                               jax.process_count())) as batches:
    for batch in batches:
      images = jax.make_array_from_process_local_data(batch_sharding, batch['images'])
      host_scores = multihost_utils.global_array_to_host_local_array(
          score_batch(variables, images), mesh, PartitionSpec(sharding.DATA_AXIS))
      mask = batch['mask']
      index = batch['index'][mask]
      scores[index] += np.asarray(host_scores)[mask]
      labels[index] = batch['labels'][mask]
  seen = labels >= 0
  return scores[seen], labels[seen]


def metrics_of(scores: np.ndarray, labels: np.ndarray) -> dict:
  """Loss (of the averaged scores), top-1 and top-5 error over every host's images."""
  probabilities = scores / scores.sum(axis=1, keepdims=True)
  picked = probabilities[np.arange(len(labels)), labels]
  top5 = np.argsort(-probabilities, axis=1)[:, :5]
  loss_sum = np.float32(-np.log(np.maximum(picked, 1e-12)).sum())
  counts = np.array([(probabilities.argmax(axis=1) != labels).sum(),
                     (top5 != labels[:, None]).all(axis=1).sum(), len(labels)], np.int32)
  if jax.process_count() > 1:  # Counts stay exact; the loss is summed in float32.
    loss_sum = np.asarray(multihost_utils.process_allgather(loss_sum)).sum()
    counts = np.asarray(multihost_utils.process_allgather(counts)).sum(axis=0)
  errors, top5_errors, count = (int(c) for c in counts)
  return {'loss': float(loss_sum) / count, 'error': errors / count,
          'top5_error': top5_errors / count, 'images': count}
