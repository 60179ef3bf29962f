"""What the command lines of resnet_jax (train, study, evaluate) share: the flags that join a
run's processes (jax.distributed), a quiet console, and one exit status per way a run stops."""
import logging
import os
import signal
import sys
from collections.abc import Callable

import jax
from absl import flags
from etils import epath

from resnet_jax import console, errors

flags.DEFINE_bool('distributed', False,
                  'Call jax.distributed.initialize() (auto-detected on Cloud TPU pods and SLURM; '
                  'implied by a JAX_COORDINATOR_ADDRESS environment variable).')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0 (implies --distributed).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (with --coordinator_address).')
flags.DEFINE_integer('process_id', None, 'This process (with --coordinator_address).')
FLAGS = flags.FLAGS


def run(task: Callable, config, workdir: str) -> None:
  """Joins the other processes if asked, then runs task(config, workdir), exiting with a
  stopped run's status (errors.py) and its message in one line."""
  console.quiet_libraries()
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
  except KeyboardInterrupt:  # Once training runs, Ctrl-C saves first (preemption.py).
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
