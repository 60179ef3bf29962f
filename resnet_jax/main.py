"""Command line entry point: `python -m resnet_jax.main --config=... --workdir=...`."""
import logging
import os
import re
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from resnet_jax import console, errors, train

config_flags.DEFINE_config_file('config', None, 'Config file, e.g. experiments/cifar10.py:resnet20.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints and metrics go; a run resumes from it.')
flags.DEFINE_bool('distributed', False,
                  'Call jax.distributed.initialize() (auto-detected on Cloud TPU pods and SLURM; '
                  'implied by a JAX_COORDINATOR_ADDRESS environment variable).')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0 (implies --distributed).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process (with --coordinator_address).')
flags.mark_flags_as_required(['config', 'workdir'])
FLAGS = flags.FLAGS


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a mistake in --config reported in one line (exit status 2)."""
  try:
    remaining = FLAGS(argv)
    FLAGS.config.keys()  # ml_collections defers an unreadable config file's error to here.
    return remaining
  except flags.Error as error:  # Includes errors raised in the config file's get_config.
    problem = _last_line(str(error))
  except OSError as error:  # The config file cannot be read.
    problem = f'cannot load {_config_arg(argv)}: {_last_line(str(error))}'
  except (AttributeError, KeyError) as error:  # ml_collections: --config.<unknown key>.
    problem = _unknown_config_key(str(error), argv)
  print(f'Config error: {problem}\nNothing was run. See the config file\'s docstring for its '
        'keys and variants.', file=sys.stderr)
  sys.exit(errors.ConfigError.exit_code)


def _last_line(message: str) -> str:
  """The last line of a (possibly embedded) traceback, without its exception's name."""
  last = [line.strip() for line in message.splitlines() if line.strip()][-1]
  return re.sub(r'^(\w+\.)*\w+(Error|Exception): ', '', last)


def _config_arg(argv: list[str]) -> str:
  return next((arg for arg in argv if arg.startswith('--config=')), '--config')


def _unknown_config_key(message: str, argv: list[str]) -> str:
  key = re.search(r"'([^'\\]+)\\?'", message)
  key = key.group(1) if key else '?'
  given = [arg for arg in argv if arg.startswith('--config.') and key in arg]
  hint = re.search(r'Did you mean .*\?', message)
  return (f'{given[0] if given else key}: the config has no key {key!r}.'
          + (f' {hint.group(0)}' if hint else ''))


def main(argv, task=train.train_and_evaluate):
  """Joins the other processes if asked, then runs task(config, workdir) (the trainer, or
  resnet_jax.study's run_study), exiting with a stopped run's status."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.quiet_libraries()
  if FLAGS.distributed or FLAGS.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS'):
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if jax.process_count() > 1:
    logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(),
                 jax.devices())
  try:
    task(FLAGS.config, FLAGS.workdir)
  except errors.RunError as stopped:
    logging.error('%s', stopped)
    sys.exit(stopped.exit_code)
  except KeyboardInterrupt:  # Once training runs, Ctrl-C saves first (preemption.py).
    logging.error('Interrupted (Ctrl-C) before training started or without saving.')
    sys.exit(130)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
