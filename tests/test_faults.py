"""Fault injection on tiny CPU runs: the scenarios of docs/reliability.md (resnet_jax.faults)
with fewer rounds. One reference run and one compilation cache serve the whole module."""
import concurrent.futures
import functools
import os
import random

import pytest

from resnet_jax import errors
from resnet_jax.faults import __main__ as faults_main
from resnet_jax.faults import scenarios
from resnet_jax.faults.runs import Finished
from resnet_jax.faults.scenarios import Outcome

SCENARIOS = {  # Longest first.
    'kill -9': functools.partial(scenarios.kill_9, rounds=3),
    "another model's workdir": scenarios.other_models_workdir,
    'SIGTERM': scenarios.sigterm,
    'invalid configs': scenarios.invalid_configs,
    'NaN stop': scenarios.nonfinite_stop,
    'NaN skip': scenarios.nonfinite_skip,
    'garble': functools.partial(scenarios.damaged_checkpoint, how='garble',
                                target='the largest array file'),
    'truncate': functools.partial(scenarios.damaged_checkpoint, how='truncate',
                                  target='every file'),
    'two trainers': scenarios.second_trainer,
    'disk full': scenarios.disk_full,
}


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
  return scenarios.Lab(tmp_path_factory.mktemp('faults'))


@pytest.fixture(scope='module')
def outcomes(lab):
  """Every scenario's outcomes (futures), two at a time after the reference run: each
  run keeps about one core busy, so two at once halve the module's time on 2 cores."""
  lab.reference()
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    yield {name: pool.submit(scenario, lab, random.Random(0))
           for name, scenario in SCENARIOS.items()}


def _passed(results: list[Outcome]) -> list[Outcome]:
  failed = [f'{o.fault} ({o.injected}): {o.detail}' for o in results if not o.passed]
  assert not failed, '\n\n'.join(failed)
  return results


def test_kill_9_at_random_moments_then_restarts_end_exactly_like_an_uninterrupted_run(outcomes):
  results = _passed(outcomes['kill -9'].result())
  assert [o.fault for o in results] == list(scenarios.KILL_FAULTS)
  during_save = results[0]
  assert 'left it partial' in during_save.injected
  assert 'warned about 1 partial save' in during_save.detail


def test_sigterm_saves_at_the_stop_step_exits_42_and_the_rerun_ends_the_same(outcomes):
  (outcome,) = _passed(outcomes['SIGTERM'].result())
  assert 'stopped at step' in outcome.injected


@pytest.mark.parametrize('how', ['garble', 'truncate'])
def test_damaged_newest_checkpoint_is_moved_aside_and_the_run_resumes_before_it(outcomes, how):
  (outcome,) = _passed(outcomes[how].result())
  assert f'moved to corrupt_checkpoints/{scenarios.STEPS}' in outcome.detail


def test_nan_loss_stops_with_its_message_and_keeps_the_good_checkpoint(outcomes):
  (outcome,) = _passed(outcomes['NaN stop'].result())
  assert 'good checkpoint' in outcome.detail


def test_nan_loss_with_skip_finishes_with_finite_parameters(outcomes):
  (outcome,) = _passed(outcomes['NaN skip'].result())
  assert 'steps skipped' in outcome.detail


def test_every_invalid_config_exits_with_its_message_and_writes_nothing(outcomes):
  results = _passed(outcomes['invalid configs'].result())
  assert len(results) == len(scenarios.INVALID_CONFIGS) + 1


def test_another_models_workdir_is_refused_or_moved_aside_intact(outcomes):
  _passed(outcomes["another model's workdir"].result())


def test_a_second_trainer_on_a_workdir_is_refused_naming_the_first(outcomes):
  (outcome,) = _passed(outcomes['two trainers'].result())
  assert 'naming the first' in outcome.detail


@pytest.mark.skipif(os.geteuid() != 0, reason='mounting the small tmpfs needs root')
def test_a_full_disk_stops_with_one_message_and_the_earlier_checkpoints_intact(outcomes):
  (outcome,) = _passed(outcomes['disk full'].result())
  assert f'exit {errors.DiskFull.exit_code} with one message' in outcome.detail


def test_the_data_folder_read_by_every_run_is_untouched(lab, outcomes):
  concurrent.futures.wait(outcomes.values())
  (outcome,) = _passed(scenarios.data_untouched(lab, random.Random(0)))
  assert 'killed with SIGKILL' in outcome.injected


def test_report_counts_tries_and_passes_per_fault_and_lists_failures():
  outcomes = [Outcome('kill -9', 'first', 'equal at the end', True, 'seen'),
              Outcome('kill -9', 'second', 'equal at the end', False, 'differs\nlog tail'),
              Outcome('SIGTERM', 'after step 3', 'exit 42', True, 'resumed')]
  report = faults_main.render(outcomes, 'python -m resnet_jax.faults --rounds 2', 1.5)
  assert report.startswith('# Reliability')
  assert '| kill -9 | 2 | 1 | equal at the end |' in report
  assert '| SIGTERM | 1 | 1 | exit 42 |' in report
  assert '| kill -9 | second | **FAILED**: differs |' in report
  assert '### kill -9: second' in report and 'log tail' in report
  assert '    python -m resnet_jax.faults --rounds 2' in report


def test_a_printed_traceback_fails_a_scenario_with_its_lines():
  """The outcome shows the tail of one log (often the rerun's): the failure itself must carry
  the traceback of the run that printed it."""
  checks = scenarios._Checks()
  printed = 'step 9/12\nTraceback (most recent call last):\n  File "x.py"\nOSError: no space\n'
  assert checks.require_no_traceback(Finished(0, 'step 12/12\n'), 'a traceback was printed')
  assert not checks.require_no_traceback(Finished(44, printed), 'a traceback was printed')
  assert checks.failures == ['a traceback was printed:\nTraceback (most recent call last):\n'
                             '  File "x.py"\nOSError: no space\n']
