"""One trainer per workdir: the lock names its holder, and dies with it."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from resnet_jax.errors import WorkdirInUse
from resnet_jax.faults.runs import REPO
from resnet_jax.run import workdir_lock

HOLD = ('import sys, time; from etils import epath; from resnet_jax.run import workdir_lock\n'
        'with workdir_lock.held(epath.Path(sys.argv[1])):\n'
        '  print("held", flush=True); time.sleep(600)')


def test_a_held_workdir_is_refused_naming_the_holder_until_it_dies(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', HOLD, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline() == 'held\n'
    with pytest.raises(WorkdirInUse, match=rf'pid {holder.pid} on {socket.gethostname()}'):
      with workdir_lock.held(tmp_path):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with workdir_lock.held(tmp_path):  # The OS released the dead holder's lock.
    assert f'pid {os.getpid()} on' in (tmp_path / workdir_lock.LOCK_FILE).read_text()


def test_a_run_refused_before_it_wrote_anything_leaves_no_new_workdir(tmp_path):
  workdir = tmp_path / 'new' / 'run'
  found = workdir_lock.as_found(workdir)
  workdir.mkdir(parents=True)
  with pytest.raises(ValueError, match='bad data'):
    with workdir_lock.held(workdir, found):
      (workdir / 'checkpoints').mkdir()
      raise ValueError('bad data')
  assert list(tmp_path.iterdir()) == []


def test_a_refused_run_leaves_an_existing_workdir_as_it_was_and_a_written_one_whole(tmp_path):
  (tmp_path / 'notes.txt').write_text('mine')
  found = workdir_lock.as_found(tmp_path)
  with pytest.raises(ValueError):
    with workdir_lock.held(tmp_path, found):
      raise ValueError('bad data')
  assert [path.name for path in tmp_path.iterdir()] == ['notes.txt']
  with pytest.raises(ValueError):
    with workdir_lock.held(tmp_path, found):
      (tmp_path / 'config.json').write_text('{}')
      raise ValueError('stopped after it wrote')
  assert sorted(path.name for path in tmp_path.iterdir()) == [
      workdir_lock.LOCK_FILE, 'config.json', 'notes.txt']
