"""The command line of the degradation studies (Sections 4.1 and 4.2):

  python -m resnet_jax.study --config=experiments/degradation.py --workdir=/tmp/degradation
  python -m resnet_jax.study --config=experiments/figure4.py --workdir=/tmp/figure4

What it runs lives in resnet_jax/paper/study.py.
"""
import functools

from absl import app

from resnet_jax import commands
from resnet_jax import main as entry_point
from resnet_jax.paper import study

if __name__ == '__main__':
  app.run(functools.partial(entry_point.main, task=study.run_study),
          flags_parser=commands.parse_flags)
