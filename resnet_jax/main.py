"""Command line entry point: `python -m resnet_jax.main --config=... --workdir=...`."""
from absl import app, flags
from ml_collections import config_flags

from resnet_jax import commands, train

config_flags.DEFINE_config_file('config', None, 'Config file, e.g. experiments/cifar10.py:resnet20.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints and metrics go; a run resumes from it.')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def main(argv, task=train.train_and_evaluate):
  """Runs task(config, workdir): the trainer, or resnet_jax.study's run_study."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  commands.run(task, FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=commands.parse_flags)
