"""Evaluates a run's latest checkpoint on its validation images the ways the paper tests its
ImageNet nets:

  python -m resnet_jax.evaluate --workdir=/tmp/resnet50 --config.eval.mode=10crop

Modes: center (the center 224 crop of the image resized to shorter side 256), 10crop (the 4
corners, the center and their flips; Tables 2 and 3) and multiscale (whole images at shorter
sides 224, 256, 384, 480 and 640, fully convolutional; Table 4). Every validation image counts
once over all hosts. Prints the top-1 and top-5 errors and writes WORKDIR/eval_<mode>.json.

An ensemble of several runs (Table 5), scored as one net, written to WORKDIR/ensemble_<mode>.json
with its members:

  python -m resnet_jax.evaluate --workdir=/tmp/ensemble --config.eval.mode=multiscale \
    --config.eval.members=/tmp/resnet152,/tmp/resnet101,/tmp/resnet50

Run it on every host of a multi-host job, with the same flags as the trainer's
(--distributed or --coordinator_address/--num_processes/--process_id).
"""
import dataclasses
import json
import logging

import jax
import ml_collections
import numpy as np
from absl import app, flags
from etils import epath
from ml_collections import config_flags

from resnet_jax import commands, sharding, train
from resnet_jax.analysis import ensemble
from resnet_jax.data import imagenet
from resnet_jax.data.imagenet import views
from resnet_jax.errors import ConfigError, WorkdirError
from resnet_jax.feeds import streamed_eval
from resnet_jax.run import checkpoints
from resnet_jax.run.record import read_config


def default_config() -> ml_collections.ConfigDict:
  """The evaluation's flags (--config.eval.mode=10crop, ...)."""
  placeholder = ml_collections.config_dict.placeholder
  return ml_collections.ConfigDict(dict(
      eval=dict(mode='center',  # One of data.imagenet.MODES.
                # Images a step over all hosts; 0: as many as hold the pixels of the run's
                # eval_batch_size center crops.
                batch_size=0,
                # Comma-separated workdirs of an ensemble's nets (Table 5), scored as one;
                # WORKDIR is then where ensemble_<mode>.json goes.
                members=''),
      # Where the data lives now, when it moved since training, and the decoding processes of
      # this machine (None: as trained).
      data=dict(path=placeholder(str), data_dir=placeholder(str), cache_dir=placeholder(str),
                num_workers=placeholder(int))))


def evaluate_run(eval_config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The errors of the run in `workdir`, at its latest checkpoint, with the views of
  eval_config.eval.mode; process 0 also writes them to WORKDIR/eval_<mode>.json. With
  eval_config.eval.members, the errors of that ensemble instead (evaluate_ensemble)."""
  if eval_config.eval.members:
    return evaluate_ensemble(eval_config, workdir)
  mode = _checked_mode(eval_config)
  run = ScoredRun.build(epath.Path(workdir), eval_config)
  step, scores, labels = run.scores(mode, run.batch_size(eval_config.eval.batch_size, mode))
  metrics = streamed_eval.metrics_of(scores, labels)
  result = {'step': step, 'mode': mode, **metrics}
  written = run.workdir / f'eval_{mode}.json'
  if jax.process_index() == 0:
    written.write_text(json.dumps(result, indent=2))
  config = run.setup.config
  logging.info('%s at step %d, %s testing: top-1 error %.2f%%, top-5 error %.2f%% '
               '(%d images)%s; written to %s', config.model, step, mode,
               100 * metrics['error'], 100 * metrics['top5_error'], metrics['images'],
               _not_the_papers_views(mode, config.data), written)
  return result


def evaluate_ensemble(eval_config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The errors of the ensemble of the runs eval_config.eval.members (comma-separated
  workdirs), each at its latest checkpoint: their class probabilities averaged over the nets
  and, in 10crop and multiscale modes, over each net's crops or scales (Table 5). Members
  tested on other images or classes are refused before any is restored. Process 0 writes the
  errors and the members to WORKDIR/ensemble_<mode>.json."""
  mode = _checked_mode(eval_config)
  members = [ScoredRun.build(epath.Path(path.strip()), eval_config)
             for path in eval_config.eval.members.split(',') if path.strip()]
  ensemble.check_same_test_set({str(member.workdir): member.test_set() for member in members})
  # One batch size for all, so that every host scores the same images of each member.
  batch_size = min(member.batch_size(eval_config.eval.batch_size, mode) for member in members)
  scores, labels, described = [], None, []
  for member in members:  # One net's state in memory at a time.
    step, member_scores, member_labels = member.scores(mode, batch_size)
    if labels is not None and not np.array_equal(labels, member_labels):
      raise ConfigError(f'Ensemble members disagree: {member.workdir} has other labels than '
                        f'{members[0].workdir} for the same images; check their data.')
    scores.append(member_scores)
    labels = member_labels
    described.append(member.describe(step))
  metrics = streamed_eval.metrics_of(ensemble.average_probabilities(scores), labels)
  result = {'mode': mode, 'members': described, **metrics}
  workdir = epath.Path(workdir)
  written = workdir / f'ensemble_{mode}.json'
  if jax.process_index() == 0:
    workdir.mkdir(parents=True, exist_ok=True)
    written.write_text(json.dumps(result, indent=2))
  logging.info('Ensemble of %d nets (%s), %s testing: top-1 error %.2f%%, top-5 error %.2f%% '
               '(%d images); written to %s', len(members),
               ', '.join(member['model'] for member in described), mode,
               100 * metrics['error'], 100 * metrics['top5_error'], metrics['images'], written)
  return result


def _checked_mode(eval_config) -> str:
  mode = eval_config.eval.mode
  if mode not in imagenet.MODES:
    raise ConfigError(f'eval.mode={mode!r} is not one of {imagenet.MODES}; e.g. '
                      '--config.eval.mode=10crop.')
  return mode


@dataclasses.dataclass(frozen=True)
class ScoredRun:
  """A trained ImageNet run to score on its validation images: its workdir and built setup."""
  workdir: epath.Path
  setup: train.Setup

  @classmethod
  def build(cls, workdir: epath.Path, eval_config) -> 'ScoredRun':
    """The run in `workdir` as trained, its data where eval_config.data says it moved."""
    config = _trained_config(workdir, eval_config)
    setup = train.build(config)
    if not setup.feed.streamed:
      raise ConfigError(f'{workdir} holds a {config.model} run, evaluated on its whole test '
                        'set during training (metrics.jsonl); 10-crop and multi-scale testing '
                        'are the ImageNet protocol of Tables 2-5, for the ImageNet nets.')
    return cls(workdir, setup)

  def test_set(self) -> ensemble.TestSet:
    source = self.setup.feed.source
    return ensemble.TestSet(tuple(source.class_names), str(source.origin.fingerprint),
                            source.num_eval)

  def batch_size(self, requested: int, mode: str) -> int:
    return images_per_step(requested, mode, self.setup.config, self.setup.mesh)

  def scores(self, mode: str, batch_size: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(step of the latest checkpoint, softmax scores [n, classes] summed over the scales of
    `mode` of each image's views' average, labels [n]) of this host's validation images."""
    step, state = _latest_state(self.workdir, self.setup)
    source = self.setup.feed.source
    scorer = streamed_eval.make_scorer(self.setup.model, source.mean, source.std)
    return step, *streamed_eval.image_scores(scorer, self.setup.mesh, source, mode, batch_size,
                                             state)

  def describe(self, step: int) -> dict:
    config = self.setup.config
    return {'workdir': str(self.workdir), 'model': config.model, 'shortcut': config.shortcut,
            'step': step}


def images_per_step(requested: int, mode: str, config, mesh) -> int:
  """Images a step: as asked, or as many as hold the pixels of the run's center-crop eval
  batch (1,024 crops in the ImageNet recipe are 1,024 images in center mode but only about
  100 in 10crop mode and 60 whole 640-px images in multiscale mode)."""
  data = config.data
  sized = views.images_per_batch(mode, config.eval_batch_size, data.crop_size,
                                 tuple(data.eval_scales), mesh.shape[sharding.DATA_AXIS])
  if requested:
    if requested > sized:
      logging.warning('eval.batch_size=%d holds %.1fx the pixels of the run\'s eval_batch_size '
                      '(%d center crops); if the device runs out of memory, lower it to %d.',
                      requested, requested / sized, config.eval_batch_size, sized)
    return requested
  logging.info('%s testing, %d images a step: the pixels of eval_batch_size=%d center crops '
               '(--config.eval.batch_size sets it).', mode, sized, config.eval_batch_size)
  return sized


def _not_the_papers_views(mode: str, data) -> str:
  """A caveat for multi-scale errors of a run whose crops and scales are not the paper's."""
  paper = imagenet.default_imagenet_data_config()
  if mode != 'multiscale' or (data.crop_size == paper.crop_size and
                              tuple(data.eval_scales) == tuple(paper.eval_scales)):
    return ''
  return (f'; this run\'s views are not the paper\'s (crop {data.crop_size}, scales '
          f'{tuple(data.eval_scales)} against {paper.crop_size} and {tuple(paper.eval_scales)}): '
          f'its multi-scale error checks the plumbing, not Table 4')


def _trained_config(workdir: epath.Path, eval_config) -> ml_collections.ConfigDict:
  try:
    config = read_config(workdir)
  except FileNotFoundError as error:
    raise WorkdirError(str(error)) from None
  for key, value in eval_config.data.items():
    if value is not None:
      config.data[key] = value
  return config


def _latest_state(workdir: epath.Path, setup: train.Setup):
  if not (workdir / checkpoints.CHECKPOINT_DIR).exists():
    raise WorkdirError(f'{workdir} has no checkpoints to evaluate; train first.')
  ckpt = checkpoints.Checkpoints(
      workdir, every_steps=setup.config.checkpoint_every_steps, keep=setup.config.keep_checkpoints,
      fingerprint=checkpoints.model_fingerprint(setup.config.model, setup.abstract_state.params))
  try:
    step = ckpt.latest_step()
    if step is None:
      raise WorkdirError(f'{ckpt.directory} holds no complete checkpoint; train first.')
    return step, ckpt.restore_latest(train.initial_state(setup))[0]
  finally:
    ckpt.close()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  commands.run(evaluate_run, flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  config_flags.DEFINE_config_dict('config', default_config())
  flags.DEFINE_string('workdir', None, 'The run to evaluate (its config.json and checkpoints).')
  flags.mark_flags_as_required(['workdir'])
  app.run(main, flags_parser=commands.parse_flags)
