"""The command line of the whole paper in one command:

  python -m resnet_jax.reproduce --config=experiments/paper.py --workdir=/tmp/paper [--dry_run]

What it runs lives in resnet_jax/paper/reproduce.py.
"""
import functools
import sys

from absl import app, flags

from resnet_jax import commands
from resnet_jax import main as entry_point
from resnet_jax.paper import reproduce

if __name__ == '__main__':
  if any(arg.startswith('--target') for arg in sys.argv):  # Before jax starts its plugins.
    from resnet_jax.bench import aot
    aot.prepare_environment()
  flags.DEFINE_bool('dry_run', False, 'Print the plan (with its estimate) and stop.')
  flags.DEFINE_string('target', None, 'Also compile every run for this TPU slice or GPU '
                      '(tpu:v5e:4x4, gpu:h200; bench/aot.py) and say whether it fits and its '
                      'floor; --config.estimate_steps=0 times nothing here.')
  app.run(functools.partial(entry_point.main, task=reproduce.reproduce_from_flags),
          flags_parser=commands.parse_flags)
