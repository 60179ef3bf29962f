"""Tiny trainings through the real command line, in subprocesses on fake CPU devices: the
tests and the fault scenarios start, watch, kill and compare runs with these helpers."""
import dataclasses
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np

from resnet_jax.run import checkpoints

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_FLAGS = ('--config.data.source=synthetic', '--config.batch_size=16',
              '--config.data.synthetic.num_train=128',
              '--config.data.train_fraction=1.0', '--config.data.synthetic.num_eval=40',
              '--config.eval_batch_size=16', '--config.log_every_steps=2',
              '--config.eval_every_steps=4', '--config.checkpoint_every_steps=2',
              # A small lr keeps float rounding differences between topologies small; no
              # decay, as the smoke config's boundaries lie past these short runs.
              '--config.optimizer.learning_rate=0.01', '--config.optimizer.lr_boundaries=()')
WALL_CLOCK_FIELDS = ('time', 'steps_per_sec', 'eta_seconds')


def start_main(workdir, *flags, devices: int = 1, config: str = 'smoke',
               through_launcher: bool = False, compilation_cache=None,
               experiment: str = 'cifar10.py', base_flags=TINY_FLAGS) -> subprocess.Popen:
  """Starts `python -m resnet_jax.main` (or `launch/local.sh`) on experiments/`experiment`
  with `base_flags`, less those `flags` set again, and `flags` on `devices` fake CPU devices
  (added to the caller's XLA_FLAGS; this checkout first on the caller's PYTHONPATH); its
  stdout carries stderr.

  `compilation_cache`: a folder for JAX's persistent compilation cache, so that runs of
  the same programs skip compiling (the compiled code, and so the numbers, are the same).
  """
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=_joined(os.environ.get('XLA_FLAGS'),
                               f'--xla_force_host_platform_device_count={devices}', sep=' '),
             PYTHONPATH=_joined(str(REPO), os.environ.get('PYTHONPATH'), sep=os.pathsep))
  if compilation_cache is not None:
    env.update(compilation_cache_env(compilation_cache))
  config_arg = f'{REPO}/experiments/{experiment}:{config}'
  if through_launcher:
    command = ['bash', str(REPO / 'launch' / 'local.sh'), '--python', sys.executable,
               config_arg, str(workdir)]
  else:
    command = [sys.executable, '-m', 'resnet_jax.main', f'--config={config_arg}',
               f'--workdir={workdir}']
  # A process group of its own, which signal_group() signals as a terminal or SLURM would.
  return subprocess.Popen([*command, *_last_of_each(tuple(base_flags) + flags)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          process_group=0)


def _joined(*values: str | None, sep: str) -> str:
  """The values that are set, joined: this run's settings added to the caller's."""
  return sep.join(value for value in values if value)


def compilation_cache_env(folder) -> dict[str, str]:
  """The environment that makes JAX keep every compiled program in `folder`."""
  return dict(JAX_COMPILATION_CACHE_DIR=str(folder), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')


def _last_of_each(flags: tuple[str, ...]) -> list[str]:
  """`flags` with only the last value of each flag: ml_collections appends a repeated
  tuple override (`--config.optimizer.lr_boundaries=...`) to the first instead of
  replacing it."""
  values = {}
  for flag in flags:
    values[flag.split('=', 1)[0]] = flag
  return list(values.values())


def run_main(workdir, *flags, wait: bool = True, **options):
  """Runs start_main(...) to its end and returns its output, raising if it failed; or,
  when not `wait`, returns the started process."""
  process = start_main(workdir, *flags, **options)
  if not wait:
    return process
  finished = Running(process).finish()
  if finished.returncode != 0:
    raise RuntimeError(f'The run in {workdir} exited with status {finished.returncode}:\n'
                       f'{finished.output[-4000:]}')
  return finished.output


@dataclasses.dataclass(frozen=True)
class Finished:
  """A run that ended: its exit status (negative: killed by that signal) and its output."""
  returncode: int
  output: str

  def tail(self, lines: int = 25) -> str:
    return ''.join(self.output.splitlines(keepends=True)[-lines:])


class Running:
  """A started run whose output is collected as it comes, so that a fault can be timed
  to a moment in its log."""

  def __init__(self, process: subprocess.Popen):
    self.process = process
    self._lines: list[str] = []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self) -> None:
    with self.process.stdout:
      for line in self.process.stdout:
        self._lines.append(line)

  def wait_for(self, pattern: str, timeout: float = 600) -> re.Match | None:
    """The first match of `pattern` in a line of the output, waiting for it to come;
    None when the process ends without printing one."""
    regex, seen, deadline = re.compile(pattern), 0, time.monotonic() + timeout
    while True:
      ended = not self._reader.is_alive()
      lines = self._lines[seen:]
      seen += len(lines)
      for line in lines:
        if match := regex.search(line):
          return match
      if ended:
        return None
      if time.monotonic() > deadline:
        raise TimeoutError(f'No line matching {pattern!r} within {timeout} s.')
      time.sleep(0.005)

  def finish(self, timeout: float = 600) -> Finished:
    """Waits for the process to end; on timeout it is killed and the error raised."""
    try:
      self.process.wait(timeout)
    except subprocess.TimeoutExpired:
      self.process.kill()
      raise
    finally:
      self._reader.join()
    return Finished(self.process.returncode, ''.join(self._lines))


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now, for a coordinator."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_processes(workdir, *flags, count: int = 2, **options) -> list[str]:
  """Runs one training as `count` local processes joined through a coordinator (each with
  start_main's `options`); returns their outputs, raising if any failed."""
  address = f'127.0.0.1:{free_port()}'
  processes = [start_main(workdir, *flags, f'--coordinator_address={address}',
                          f'--num_processes={count}', f'--process_id={index}', **options)
               for index in range(count)]
  outputs = [process.communicate(timeout=600)[0] for process in processes]
  if any(process.returncode for process in processes):
    raise RuntimeError('A process failed:\n' + '\n'.join(output[-3000:] for output in outputs))
  return outputs


def kill_after_save(running: Running, workdir, step: int, timeout: float = 600) -> None:
  """SIGKILLs the run as soon as its checkpoint of `step` is complete; raises if the run ends
  before that or saves nothing within `timeout` seconds."""
  saved = pathlib.Path(workdir) / checkpoints.CHECKPOINT_DIR / str(step)
  deadline = time.monotonic() + timeout
  while not saved.exists() and running.process.poll() is None:
    if time.monotonic() > deadline:
      raise TimeoutError(f'No checkpoint of step {step} in {workdir} within {timeout} s.')
    time.sleep(0.01)
  running.process.kill()
  finished = running.finish()
  if finished.returncode != -signal.SIGKILL:
    raise RuntimeError(f'The run ended (status {finished.returncode}) before the kill:\n'
                       f'{finished.tail()}')


def child_pids(pid: int) -> set[int]:
  """The processes that process `pid` started and that still run (Linux)."""
  pids = set()
  for children in pathlib.Path(f'/proc/{pid}/task').glob('*/children'):
    try:
      pids.update(int(child) for child in children.read_text().split())
    except OSError:  # The thread ended.
      continue
  return pids


def signal_group_when(running: Running, signum: int, moment) -> bool:
  """Sends `signum` to the run's process group (as Ctrl-C or SLURM do) as soon as
  moment() holds, polled every millisecond; False when the run ends first."""
  while running.process.poll() is None:
    if moment():
      os.killpg(running.process.pid, signum)
      return True
    time.sleep(0.001)
  return False


def metric_records(workdir, drop=WALL_CLOCK_FIELDS) -> list[dict]:
  """The run's metrics.jsonl without the wall-clock fields."""
  lines = (pathlib.Path(workdir) / 'metrics.jsonl').read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]


def final_state(workdir, step: int | None = None):
  """(step, train state as numpy arrays) of the run's latest checkpoint (or that of `step`)."""
  step, (state, _) = checkpoints.load_latest_arrays(workdir, step)
  return step, state


def first_difference(a, b, rtol: float = 0.0, atol: float = 0.0) -> str | None:
  """Where the pytrees of arrays `a` and `b` first differ beyond the tolerance (exactly,
  by default), or None when they do not."""
  flat_a, flat_b = (jax.tree_util.tree_flatten_with_path(tree)[0] for tree in (a, b))
  paths_a, paths_b = ([jax.tree_util.keystr(path) for path, _ in flat] for flat in (flat_a, flat_b))
  if paths_a != paths_b:
    return f'the trees hold different arrays: {sorted(set(paths_a) ^ set(paths_b))[:5]}'
  for path, (_, x), (_, y) in zip(paths_a, flat_a, flat_b):
    try:
      np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=path)
    except AssertionError as difference:
      return str(difference).strip()
  return None


def assert_same_records(records, expected):
  """The same (step, split) records, with loss and error equal to float tolerance."""
  assert [(r['step'], r['split']) for r in records] == [(r['step'], r['split']) for r in expected]
  for a, b in zip(records, expected):
    np.testing.assert_allclose([a['loss'], a['error']], [b['loss'], b['error']], rtol=1e-4)


def assert_same_training(workdir, reference, exact=False):
  """The run in `workdir` logged and ended like the one in `reference`: to float tolerance,
  or bit for bit when `exact`."""
  records, expected = metric_records(workdir), metric_records(reference)
  if exact:
    assert records == expected
  assert_same_records(records, expected)
  (step, state), (expected_step, expected_state) = final_state(workdir), final_state(reference)
  assert step == expected_step
  tolerance = dict(rtol=0, atol=0) if exact else dict(rtol=1e-4, atol=1e-5)
  assert_trees_close(state, expected_state, **tolerance)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  difference = first_difference(a, b, rtol, atol)
  assert difference is None, difference
