"""python -m resnet_jax.faults [--rounds N] [--seed S] [--output docs/reliability.md]

Runs every fault scenario N times (kill -9: N kills of one run) on tiny runs on the CPU
and prints a markdown report: per fault, how often it was tried and passed and what had
to hold, then every injection. Exits 1 when any failed.
"""
import argparse
import concurrent.futures
import datetime
import functools
import importlib.metadata
import random
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

from resnet_jax.bench.progress import say
from resnet_jax.bench.train_step import machine_description
from resnet_jax.faults import scenarios
from resnet_jax.faults.scenarios import Outcome

INTRODUCTION = """\
# Reliability: faults injected into training runs

Each row below is a fault injected into tiny runs of the real command line (`python -m
resnet_jax.main`: ResNet-8, {steps} steps of batch 16 on one fake CPU device, a checkpoint
every 2 steps, the learning rate dropping twice, reading a folder of 168 random 32x32 PNG
images), each in a fresh workdir. The faults: kill -9 at random moments (during a
checkpoint save, after a random step, at a random time after the start) with a restart
after each kill, SIGTERM, truncated and garbled checkpoints, a learning rate that makes the
loss NaN (stop and skip), invalid configs, a workdir holding another model's run, a second
trainer started on a run's workdir, and a disk that fills up between two saves.
Where a run is resumed, its end must equal one uninterrupted run of the same config bit
for bit: final parameters, BatchNorm statistics, optimizer state, step, train metrics and
every record of metrics.jsonl but its wall-clock fields. After all of them, the image
folder every run read is compared with how it was. The moments and damaged bytes come from
a seeded RNG; how far a run got when it was killed depends on the machine, so every
injection is listed below with what it did. Scenarios run two at a time (`--jobs`); the
runs share JAX's persistent compilation cache, filled by the reference run before any
kill. `tests/test_faults.py` runs the same scenarios with fewer rounds in the normal test
suite. Rerun this report with the command below."""


def run_all(lab: scenarios.Lab, rounds: int, seed: int, jobs: int = 2,
            report=lambda outcome: None) -> list[Outcome]:
  """Every scenario `rounds` times (kill -9: `rounds` kills of one run), `jobs` at a time,
  each with its own RNG seeded from `seed`; then the check of the data they all read.
  `report` sees each outcome as it comes."""
  calls = [('kill -9', functools.partial(scenarios.kill_9, rounds=rounds), 0)]
  for round_index in range(rounds):
    target = scenarios.DAMAGE_TARGETS[min(round_index, len(scenarios.DAMAGE_TARGETS) - 1)]
    calls += [(name, scenario, round_index) for name, scenario in (
        ("another model's workdir", scenarios.other_models_workdir),
        ('two trainers', scenarios.second_trainer),
        ('disk full', scenarios.disk_full),
        ('SIGTERM', scenarios.sigterm),
        ('NaN stop', scenarios.nonfinite_stop),
        ('NaN skip', scenarios.nonfinite_skip),
        ('invalid configs', scenarios.invalid_configs),
        ('truncate', functools.partial(scenarios.damaged_checkpoint, how='truncate',
                                       target=target)),
        ('garble', functools.partial(scenarios.damaged_checkpoint, how='garble', target=target)))]

  def attempt(name: str, scenario, round_index: int) -> list[Outcome]:
    try:
      outcomes = scenario(lab, random.Random(f'{seed}/{name}/{round_index}'))
    except Exception:  # A crash of the harness or of a check is a finding too.
      outcomes = [Outcome(name, f'round {round_index}', '', False, traceback.format_exc())]
    for outcome in outcomes:
      report(outcome)
    return outcomes

  lab.reference()  # Before any kill: it fills the compilation cache.
  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    results = list(pool.map(lambda call: attempt(*call), calls))
  results.append(attempt('the data', scenarios.data_untouched, 0))
  return [outcome for outcomes in results for outcome in outcomes]


def render(outcomes: list[Outcome], command: str, minutes: float) -> str:
  """The markdown report: the introduction, the summary table, every injection, failures."""
  rows = {}
  for outcome in outcomes:
    rows.setdefault(outcome.fault, []).append(outcome)
  versions = ', '.join(f'{name} {importlib.metadata.version(name)}'
                       for name in ('orbax-checkpoint', 'ml-collections'))
  lines = [INTRODUCTION.format(steps=scenarios.STEPS), '',
           f'    {command}', '',
           f'Run on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in '
           f'{minutes:.1f} min. Machine: {machine_description()}; {versions}.', '',
           '| fault | tried | passed | what had to hold |', '| --- | ---: | ---: | --- |']
  for fault, tries in rows.items():
    lines.append(f'| {fault} | {len(tries)} | {sum(o.passed for o in tries)} | '
                 f'{_cell(tries[0].checked)} |')
  lines += ['', '## Every injection', '', '| fault | injected | result |', '| --- | --- | --- |']
  for outcome in outcomes:
    result = f'passed: {outcome.detail}' if outcome.passed else (
        f'**FAILED**: {outcome.detail.splitlines()[0]}')
    lines.append(f'| {outcome.fault} | {_cell(outcome.injected)} | {_cell(result)} |')
  failures = [outcome for outcome in outcomes if not outcome.passed]
  if failures:
    lines += ['', '## Failures']
    for outcome in failures:
      lines += ['', f'### {outcome.fault}: {outcome.injected}', '', '```', outcome.detail, '```']
  return '\n'.join(lines) + '\n'


def _cell(text: str) -> str:
  return text.replace('|', '\\|').replace('\n', ' ')


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m resnet_jax.faults',
                                   description=__doc__.split('\n\n')[1])
  parser.add_argument('--rounds', type=int, default=5,
                      help='times each fault is injected (kill -9: kills of one run)')
  parser.add_argument('--seed', type=int, default=0, help='seeds the moments and damage')
  parser.add_argument('--jobs', type=int, default=2, help='scenarios run at once (each run '
                      'keeps about one CPU core busy)')
  parser.add_argument('--output', type=Path, help='also write the report here')
  args = parser.parse_args(argv)
  if min(args.rounds, args.jobs) < 1:
    parser.error(f'--rounds and --jobs must be at least 1, got {args.rounds} and {args.jobs}')
  command = shlex.join(['python', '-m', 'resnet_jax.faults', *(sys.argv[1:] if argv is None
                                                               else argv)])
  started = time.perf_counter()

  def report(outcome: Outcome) -> None:
    say(f'{"passed" if outcome.passed else "FAILED"}: {outcome.fault}: {outcome.injected}')

  say(f'Injecting every fault {args.rounds} times, {args.jobs} scenarios at a time, into tiny '
      'runs on the CPU (12 minutes on 2 cores for the default 5 rounds in docs/reliability.md); '
      'each result shows here as it comes, then the report.')
  with tempfile.TemporaryDirectory(prefix='resnet_jax_faults_') as root:
    outcomes = run_all(scenarios.Lab(root), args.rounds, args.seed, args.jobs, report)
  text = render(outcomes, command, (time.perf_counter() - started) / 60)
  print(text)
  if args.output:
    args.output.write_text(text)
  return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == '__main__':
  sys.exit(main())
