"""What the command lines of resnet_jax (train, study, evaluate) share: the flags that join a
run's processes (jax.distributed), a quiet console, and one exit status per way a run stops."""
import logging
import os
import re
import signal
import sys
from collections.abc import Callable

import jax
from absl import flags
from etils import epath

from resnet_jax import errors
from resnet_jax.run import compilation_cache, console

flags.DEFINE_bool('distributed', False,
                  'Call jax.distributed.initialize() (auto-detected on Cloud TPU pods and SLURM; '
                  'implied by a JAX_COORDINATOR_ADDRESS environment variable).')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0 (implies --distributed).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process (with --coordinator_address).')
FLAGS = flags.FLAGS


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a mistake in --config reported in one line (exit status 2)."""
  try:
    remaining = FLAGS(argv)
    FLAGS.config.keys()  # ml_collections defers an unreadable config file's error to here.
    return remaining
  except flags.Error as error:  # Includes errors raised in the config file's get_config.
    problem = _missing_flag(str(error)) or _last_line(str(error))
  except OSError as error:  # The config file cannot be read.
    problem = f'cannot load {_config_arg(argv)}: {_last_line(str(error))}'
  except (AttributeError, KeyError) as error:  # ml_collections: --config.<unknown key>.
    problem = _unknown_config_key(str(error), argv)
  print(f'Config error: {problem}\nNothing was run. See the config file\'s docstring for its '
        'keys and variants.', file=sys.stderr)
  sys.exit(errors.ConfigError.exit_code)


def _missing_flag(message: str) -> str | None:
  """'--workdir is required ...' for absl's message about a required flag left out."""
  missing = re.search(r'Flag (--\w+) must have a value other than None', message)
  if not missing:
    return None
  main = getattr(sys.modules['__main__'], '__spec__', None)
  command = f'python -m {main.name}' if main else sys.argv[0]
  return f'{missing.group(1)} is required (`{command} --help` lists the flags).'


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


def run(task: Callable, config, workdir: str) -> None:
  """Joins the other processes if asked, then runs task(config, workdir), exiting with a
  stopped run's status (errors.py) and its message in one line."""
  console.quiet_libraries()
  compilation_cache.enable()
  if FLAGS.distributed or FLAGS.coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS'):
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if jax.process_count() > 1:
    logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(),
                 jax.devices())
  # Raised, not the default exit, so that cleanups run: grain's workers, shared memory.
  signal.signal(signal.SIGTERM, _raise_terminated)
  try:
    _check_storage(workdir)
    task(config, workdir)
  except errors.RunError as stopped:
    print(stopped, file=sys.stderr, flush=True)  # The message is the news: no log prefix.
    sys.exit(stopped.exit_code)
  except KeyboardInterrupt:  # Once training runs, Ctrl-C saves first (run/preemption.py).
    print('Interrupted (Ctrl-C) before training started or without saving.', file=sys.stderr)
    sys.exit(130)


def _check_storage(workdir: str) -> None:
  """Fails before anything runs if `workdir` is on cloud storage (gs://, s3://) whose file
  system package is not installed; without TensorFlow, etils reaches GCS through gcsfs."""
  if '://' not in workdir:
    return
  try:
    epath.Path(workdir).exists()
  except ImportError as missing:  # fsspec: 'Please install gcsfs to access Google Storage'.
    raise errors.MissingPackageError(
        f"--workdir={workdir} needs a package that is not installed: {missing}. For gs:// "
        "install it with `pip install '.[gcs]'` in the checkout (gcsfs).") from None


def _raise_terminated(signum, frame):
  del signum, frame
  raise errors.Terminated()
