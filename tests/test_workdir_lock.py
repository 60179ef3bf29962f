"""One trainer per workdir: the lock names its holder, and dies with it."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from resnet_jax import workdir_lock
from resnet_jax.errors import WorkdirInUse
from resnet_jax.faults.runs import REPO

HOLD = ('import sys, time; from etils import epath; from resnet_jax import workdir_lock\n'
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
