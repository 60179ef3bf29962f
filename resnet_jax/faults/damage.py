"""Damage done to files on disk the way crashes and bad disks do it: cut short, or with
bytes overwritten in the middle. The scenarios and tests/test_checkpoints.py share these."""
import hashlib
import pathlib
import random

from resnet_jax.run import workdir_lock


def truncate(path: pathlib.Path, rng: random.Random | None = None) -> str:
  """Cuts `path` to a random fraction of its length (half without `rng`); says how."""
  size = path.stat().st_size
  keep = size // 2 if rng is None else rng.randrange(size) if size else 0
  path.write_bytes(path.read_bytes()[:keep])
  return f'cut {path.name} from {size} to {keep} bytes'


def garble(path: pathlib.Path, rng: random.Random | None = None, count: int = 8) -> str:
  """Inverts `count` bytes of `path` at a random offset (the middle without `rng`); says how."""
  data = bytearray(path.read_bytes())
  count = min(count, len(data))
  start = (len(data) - count) // 2 if rng is None else rng.randrange(len(data) - count + 1)
  data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
  path.write_bytes(bytes(data))
  return f'inverted bytes {start}-{start + count - 1} of {path.name} ({len(data)} bytes)'


DAMAGE = {'truncate': truncate, 'garble': garble}


def array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """The files of an orbax checkpoint step that hold the arrays' bytes, largest first."""
  files = [p for p in (step_dir / 'state').rglob('*') if p.is_file() and p.parent.name == 'd']
  return sorted(files, key=lambda p: (-p.stat().st_size, str(p)))


def sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def file_digests(directory: pathlib.Path) -> dict[pathlib.Path, str]:
  """The sha256 of every file under `directory`, by path relative to it, but the workdir lock
  (every run writes its own pid there)."""
  return {p.relative_to(directory): sha256(p) for p in sorted(directory.rglob('*'))
          if p.is_file() and p.name != workdir_lock.LOCK_FILE}
