"""Progress lines of the benchmarks and the fault report, on stderr, so that the table or
report on stdout stays clean."""
import sys
import time

_STARTED = time.perf_counter()


def say(message: str) -> None:
  """Prints `message` to stderr at once, after the minutes since the command started."""
  print(f'[{(time.perf_counter() - _STARTED) / 60:5.1f} min] {message}', file=sys.stderr,
        flush=True)
