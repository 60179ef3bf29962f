"""Command line entry point: `python -m resnet_jax.main --config=... --workdir=...`."""
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from resnet_jax import commands, errors, train

config_flags.DEFINE_config_file('config', None, 'Config file, e.g. experiments/cifar10.py:resnet20.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Where checkpoints and metrics go; a run resumes from it.')
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
  """Runs task(config, workdir): the trainer, or resnet_jax.study's run_study."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  commands.run(task, FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
