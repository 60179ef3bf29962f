"""Tests of the launchers in launch/: what they run, their flags, and shellcheck.

Nothing here reaches a cloud or a cluster: `gcloud`, `scontrol`, `srun` and the
trainer's interpreter are fakes on a PATH built per test, and every fake logs
its argv so a test can check the exact commands a launcher ran.
"""
import configparser
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / 'launch'
SCRIPTS = ('local.sh', 'tpu_pod.sh', 'slurm_gpu.sbatch')
# The only programs of this machine the scripts may find on PATH; whatever else
# they call (gcloud, scontrol, srun) must be a fake, even where the real one exists.
SYSTEM_TOOLS = ('bash', 'env', 'dirname', 'basename', 'cat')

TPU_FLAGS = ['--name=resnet50-pod', '--zone=us-central2-b', '--project=my-project']
TPU_RUN = ['experiments/imagenet.py:resnet50', 'gs://bucket/runs/resnet50']
SLURM_ENV = {'SLURM_JOB_ID': '4321', 'SLURM_JOB_NODELIST': 'gpu-node-[07-08]',
             'SLURM_NTASKS': '4'}


def write_fake(path: pathlib.Path, body: str) -> pathlib.Path:
  """An executable Python script that logs its argv (JSON lines) to $FAKE_LOG."""
  path.write_text(f'#!{sys.executable}\n'
                  'import json, os, sys\n'
                  'with open(os.environ["FAKE_LOG"], "a") as log:\n'
                  '  log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")\n'
                  + body)
  path.chmod(0o755)
  return path


@pytest.fixture
def sandbox(tmp_path):
  """A checkout-like working directory (also --source for tpu_pod.sh) and a bin/ of fakes."""
  (tmp_path / 'experiments').mkdir()
  (tmp_path / 'experiments' / 'cifar10.py').touch()
  (tmp_path / 'experiments' / 'imagenet.py').touch()
  (tmp_path / 'resnet_jax').mkdir()
  for packaging in ('pyproject.toml', 'setup.cfg', 'README.md'):
    (tmp_path / packaging).touch()
  (tmp_path / 'bin').mkdir()
  (tmp_path / 'tools').mkdir()
  for tool in SYSTEM_TOOLS:
    (tmp_path / 'tools' / tool).symlink_to(shutil.which(tool))
  # Dry runs must never reach gcloud: this one fails any test that calls it.
  write_fake(tmp_path / 'bin' / 'gcloud', 'sys.exit(99)\n')
  write_fake(tmp_path / 'bin' / 'scontrol',
             'if sys.argv[1:3] == ["show", "hostnames"]:\n'
             '  print("gpu-node-07\\ngpu-node-08")\n')
  return tmp_path


def run(script, *args, sandbox, env=None):
  if script == 'tpu_pod.sh':
    args = (f'--source={sandbox}', *args)
  full_env = {'PATH': f'{sandbox / "bin"}{os.pathsep}{sandbox / "tools"}',
              'HOME': str(sandbox), 'FAKE_LOG': str(sandbox / 'calls.jsonl'), **(env or {})}
  return subprocess.run([str(LAUNCH / script), *args], cwd=sandbox, env=full_env,
                        capture_output=True, text=True, timeout=30)


def dry_run(script, *args, sandbox, **kwargs):
  """The commands a --dry-run prints, each parsed back into argv; comments as str."""
  result = run(script, '--dry-run', *args, sandbox=sandbox, **kwargs)
  assert result.returncode == 0, result.stderr
  # Reading SLURM's node list is the one query a dry run makes; nothing else runs.
  calls = [call for call in fake_calls(sandbox) if call[:3] != ['scontrol', 'show', 'hostnames']]
  assert calls == [], 'a dry run ran a command'
  return [line if line.startswith('#') else shlex.split(line)
          for line in result.stdout.splitlines()]


def fake_calls(sandbox):
  log = sandbox / 'calls.jsonl'
  return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def remote_command(ssh_argv):
  """The argv of the last command in a `tpu-vm ssh --command='cd DIR && ...'`."""
  [command] = [word.split('=', 1)[1] for word in ssh_argv if word.startswith('--command=')]
  return shlex.split(command.split(' && ')[-1])


# local.sh


def test_local_dry_run_passes_main_flags_through_unchanged(sandbox):
  flags = ['--coordinator_address', 'localhost:1234', '--num_processes', '2', '--process_id',
           '1', "--config.note=it's a \"test\" $HOME", '--config.seed=3']
  commands = dry_run('local.sh', 'experiments/cifar10.py:resnet56,bf16', '/tmp/run dir', *flags,
                     sandbox=sandbox)
  assert commands == [['python3', '-m', 'resnet_jax.main',
                       '--config=experiments/cifar10.py:resnet56,bf16', '--workdir=/tmp/run dir',
                       *flags]]


def test_local_execs_the_trainer_and_returns_its_exit_status(sandbox):
  python = write_fake(sandbox / 'python', 'print(os.getppid())\nsys.exit(42)\n')
  result = run('local.sh', f'--python={python}', 'experiments/cifar10.py:resnet20', 'out',
               '--process_id', '0', sandbox=sandbox)
  assert result.returncode == 42  # Preempted: passed on so a caller reruns to resume.
  # The trainer replaced the launcher's shell, so a SIGTERM sent to the launcher
  # (preemption, `scancel`) reaches the trainer itself.
  assert result.stdout.strip() == str(os.getpid())
  assert fake_calls(sandbox) == [['python', '-m', 'resnet_jax.main',
                                  '--config=experiments/cifar10.py:resnet20', '--workdir=out',
                                  '--process_id', '0']]


def test_local_rejects_a_missing_config_before_running(sandbox):
  result = run('local.sh', 'experiments/cifar100.py:resnet20', 'out', sandbox=sandbox)
  assert result.returncode != 0
  assert 'experiments/cifar100.py not found' in result.stderr


# tpu_pod.sh


def test_tpu_dry_run_creates_the_slice_then_copies_installs_and_runs_on_all_workers(sandbox):
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--accelerator-type=v4-32', '--spot',
                     '--data-dir=gs://bucket/tfds', *TPU_RUN, '--config.seed=1',
                     "--config.note=a b'c", sandbox=sandbox)
  gcloud = ['gcloud', 'compute', 'tpus', 'tpu-vm']
  where = ['--zone=us-central2-b', '--project=my-project']
  create, clean, copy, install, train = commands
  assert create == [*gcloud, 'create', 'resnet50-pod', *where, '--accelerator-type=v4-32',
                    '--version=tpu-ubuntu2204-base', '--spot']
  assert clean[:5] == [*gcloud, 'ssh'] and '--worker=all' in clean
  assert copy == [*gcloud, 'scp', '--recurse', f'{sandbox}/pyproject.toml',
                  f'{sandbox}/setup.cfg', f'{sandbox}/README.md',
                  f'{sandbox}/resnet_jax', f'{sandbox}/experiments',
                  'resnet50-pod:resnet_jax_launch', *where, '--worker=all']
  assert remote_command(install) == ['python3', '-m', 'pip', 'install', '--quiet', 'jax[tpu]',
                                     '.[pod]']
  assert train[:6] == [*gcloud, 'ssh', 'resnet50-pod'] and '--worker=all' in train
  assert remote_command(train) == [
      'python3', '-m', 'resnet_jax.main', '--config=experiments/imagenet.py:resnet50',
      '--workdir=gs://bucket/runs/resnet50', '--distributed',
      '--config.data.data_dir=gs://bucket/tfds', '--config.seed=1', "--config.note=a b'c"]


def test_tpu_default_install_has_what_its_examples_need(sandbox):
  """Its examples write to gs:// (gcsfs, where TensorFlow is absent) and read TFDS data."""
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--reuse', *TPU_RUN, sandbox=sandbox)
  [extra] = [word[2:-1] for word in remote_command(commands[2]) if word.startswith('.[')]
  setup = configparser.ConfigParser()
  setup.read(REPO / 'setup.cfg')
  installed = setup['options.extras_require'][extra].split()
  assert 'etils[epath-gcs]' in installed  # etils' own extra for gcsfs.
  assert any(package.startswith('tensorflow-datasets') for package in installed)


def test_tpu_copy_of_the_checkout_installs(sandbox, tmp_path):
  """What the launcher copies to the workers builds into a package, as `pip install .` there."""
  commands = run('tpu_pod.sh', '--dry-run', *TPU_FLAGS, '--reuse', f'--source={REPO}', *TPU_RUN,
                 sandbox=sandbox).stdout.splitlines()
  [copy] = [shlex.split(line) for line in commands if ' scp ' in line]
  copied = [pathlib.Path(word) for word in copy if word.startswith(str(REPO))]
  worker = tmp_path / 'worker'
  worker.mkdir()
  for path in copied:
    copy_path = shutil.copytree if path.is_dir() else shutil.copy
    copy_path(path, worker / path.name)
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                  '--no-build-isolation', '--wheel-dir', str(tmp_path / 'wheel'), str(worker)],
                 check=True, capture_output=True, timeout=120)
  [wheel] = (tmp_path / 'wheel').glob('resnet_jax-*.whl')
  with zipfile.ZipFile(wheel) as package:
    assert 'resnet_jax/train.py' in package.namelist()


def test_tpu_dry_run_works_without_gcloud_on_path(sandbox):
  (sandbox / 'bin' / 'gcloud').unlink()
  assert shutil.which('gcloud', path=f'{sandbox / "bin"}{os.pathsep}{sandbox / "tools"}') is None
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--accelerator-type=v4-8', *TPU_RUN,
                     sandbox=sandbox)
  assert [command[4] for command in commands] == ['create', 'ssh', 'scp', 'ssh', 'ssh']


def test_tpu_reuse_skips_creation(sandbox):
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--reuse', *TPU_RUN, sandbox=sandbox)
  assert [command[4] for command in commands] == ['ssh', 'scp', 'ssh', 'ssh']


def test_tpu_preemptible_and_runtime_version_reach_create(sandbox):
  create = dry_run('tpu_pod.sh', *TPU_FLAGS, '--accelerator-type=v5litepod-16', '--preemptible',
                   '--runtime-version', 'v2-alpha-tpuv5-lite', *TPU_RUN, sandbox=sandbox)[0]
  assert create[4] == 'create'
  assert '--preemptible' in create and '--spot' not in create
  assert '--version=v2-alpha-tpuv5-lite' in create


def test_tpu_delete_only_tears_down(sandbox):
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--delete', sandbox=sandbox)
  assert commands == [['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'resnet50-pod',
                       '--zone=us-central2-b', '--project=my-project', '--quiet']]


def test_tpu_delete_after_tears_down_last(sandbox):
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--reuse', '--delete-after', *TPU_RUN,
                     sandbox=sandbox)
  assert commands[-1][4:6] == ['delete', 'resnet50-pod']
  assert remote_command(commands[-2])[:3] == ['python3', '-m', 'resnet_jax.main']


def test_tpu_dry_run_shows_the_resume_path(sandbox):
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--accelerator-type=v4-32', '--spot',
                     '--max-restarts=3', *TPU_RUN, sandbox=sandbox)
  first_train = 4
  assert remote_command(commands[first_train])[:3] == ['python3', '-m', 'resnet_jax.main']
  notes = [line for line in commands if isinstance(line, str)]
  assert any('42' in note and '3 times' in note for note in notes)
  restart = [command for command in commands[first_train + 1:] if isinstance(command, list)]
  assert [command[4] for command in restart] == ['delete', 'create', 'ssh', 'scp', 'ssh', 'ssh']
  assert remote_command(restart[-1]) == remote_command(commands[first_train])


def test_tpu_study_module_runs_the_study_on_all_workers(sandbox):
  (sandbox / 'experiments' / 'degradation.py').touch()
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--reuse', '--module=study',
                     '--data-dir=gs://bucket/tfds', 'experiments/degradation.py:full',
                     'gs://bucket/table6', '--config.seeds=5', sandbox=sandbox)
  assert remote_command(commands[-1]) == [
      'python3', '-m', 'resnet_jax.study', '--config=experiments/degradation.py:full',
      '--workdir=gs://bucket/table6', '--distributed',
      '--config.base.data.data_dir=gs://bucket/tfds', '--config.seeds=5']


def test_tpu_reproduce_module_runs_the_paper_on_all_workers(sandbox):
  (sandbox / 'experiments' / 'paper.py').touch()
  commands = dry_run('tpu_pod.sh', *TPU_FLAGS, '--reuse', '--module=reproduce',
                     '--data-dir=gs://bucket/tfds', 'experiments/paper.py', 'gs://bucket/paper',
                     '--config.time_budget=6h', sandbox=sandbox)
  assert remote_command(commands[-1]) == [
      'python3', '-m', 'resnet_jax.reproduce', '--config=experiments/paper.py',
      '--workdir=gs://bucket/paper', '--distributed', '--config.data_dir=gs://bucket/tfds',
      '--config.time_budget=6h']


def fake_gcloud(sandbox, *, train_statuses, state):
  """A gcloud whose training runs exit with `train_statuses` in turn."""
  (sandbox / 'train_statuses').write_text(' '.join(map(str, train_statuses)))
  write_fake(sandbox / 'bin' / 'gcloud', f'''
if 'describe' in sys.argv:
  print({state!r})
elif any('resnet_jax.main' in word for word in sys.argv):
  path = {str(sandbox / 'train_statuses')!r}
  status, *rest = open(path).read().split()
  open(path, 'w').write(' '.join(rest))
  sys.exit(int(status))
''')


def gcloud_steps(sandbox):
  """Each gcloud call as its verb, with `ssh` named by what it ran."""
  steps = []
  for call in fake_calls(sandbox):
    verb = call[4]
    if verb == 'ssh':
      verb = 'train' if any('resnet_jax.main' in word for word in call) else 'ssh'
    steps.append(verb)
  return steps


def test_tpu_restarts_on_a_new_slice_after_preemption(sandbox):
  fake_gcloud(sandbox, train_statuses=[42, 0], state='PREEMPTED')
  result = run('tpu_pod.sh', *TPU_FLAGS, '--accelerator-type=v4-32', '--spot',
               '--max-restarts=2', *TPU_RUN, sandbox=sandbox)
  assert result.returncode == 0, result.stderr
  assert gcloud_steps(sandbox) == ['create', 'ssh', 'scp', 'ssh', 'train', 'describe',
                                   'delete', 'create', 'ssh', 'scp', 'ssh', 'train']


def test_tpu_restart_reuses_a_slice_that_is_still_ready(sandbox):
  fake_gcloud(sandbox, train_statuses=[42, 0], state='READY')
  result = run('tpu_pod.sh', *TPU_FLAGS, '--reuse', '--max-restarts=1', *TPU_RUN,
               sandbox=sandbox)
  assert result.returncode == 0, result.stderr
  assert gcloud_steps(sandbox) == ['ssh', 'scp', 'ssh', 'train', 'describe',
                                   'ssh', 'scp', 'ssh', 'train']


def test_tpu_stops_on_a_real_failure_or_when_out_of_restarts(sandbox):
  fake_gcloud(sandbox, train_statuses=[1], state='READY')
  result = run('tpu_pod.sh', *TPU_FLAGS, '--reuse', '--max-restarts=5', *TPU_RUN,
               sandbox=sandbox)
  assert result.returncode == 1
  assert gcloud_steps(sandbox)[-2:] == ['train', 'describe']

  (sandbox / 'calls.jsonl').unlink()
  fake_gcloud(sandbox, train_statuses=[42, 42], state='PREEMPTED')
  result = run('tpu_pod.sh', *TPU_FLAGS, '--reuse', '--max-restarts=1', '--delete-after',
               *TPU_RUN, sandbox=sandbox)
  assert result.returncode == 42
  assert gcloud_steps(sandbox).count('train') == 2
  assert gcloud_steps(sandbox)[-1] == 'delete'


@pytest.mark.parametrize('compiles', [True, False])
def test_tpu_compile_checks_the_config_for_the_slice_before_creating_it(sandbox, compiles):
  write_fake(sandbox / 'bin' / 'python3', '' if compiles else 'sys.exit(1)\n')
  result = run('tpu_pod.sh', '--dry-run', '--compile', *TPU_FLAGS, '--accelerator-type=v4-32',
               *TPU_RUN, '--config.seed=1', '--config.data.data_dir=gs://b/tfds', sandbox=sandbox)
  assert fake_calls(sandbox) == [[
      'python3', '-m', 'resnet_jax.bench', 'aot', '--config=experiments/imagenet.py:resnet50',
      '--target=tpu:v4-32', '--config.seed=1', '--config.data.data_dir=gs://b/tfds']]
  if compiles:
    assert result.returncode == 0 and 'tpu-vm create resnet50-pod' in result.stdout
  else:
    assert result.returncode == 2 and 'does not compile or fit on v4-32' in result.stderr
    assert result.stdout == ''  # Nothing created.


@pytest.mark.parametrize('args, message', [
    ([*TPU_FLAGS, '--reuse', 'experiments/imagenet.py', '/tmp/run'], 'WORKDIR must be a gs:// path'),
    ([*TPU_FLAGS, '--reuse', '--data-dir=/data', *TPU_RUN], '--data-dir must be a gs:// path'),
    ([*TPU_FLAGS, *TPU_RUN], '--accelerator-type is required'),
    ([*TPU_FLAGS, '--reuse', '--spot', '--preemptible', *TPU_RUN], 'exclusive'),
    (['--zone=z', '--reuse', *TPU_RUN], '--name is required'),
    ([*TPU_FLAGS, '--reuse', *TPU_RUN, '--distributed'], '--distributed is set by tpu_pod.sh'),
    ([*TPU_FLAGS, '--reuse', '--max-restarts=many', *TPU_RUN], '--max-restarts must be'),
    ([*TPU_FLAGS, '--reuse', '--module=train', *TPU_RUN], '--module must be main, study or reproduce'),
    ([*TPU_FLAGS, '--reuse', '--compile', *TPU_RUN], '--compile needs --accelerator-type'),
    ([*TPU_FLAGS, '--accelerator-type=v4-8', '--compile', '--module=study', *TPU_RUN],
     'resnet_jax.reproduce --dry_run --target=tpu:v4-8'),
])
def test_tpu_rejects_bad_settings_before_any_command(sandbox, args, message):
  result = run('tpu_pod.sh', '--dry-run', *args, sandbox=sandbox)
  assert result.returncode != 0
  assert message in result.stderr
  assert result.stdout == ''


# slurm_gpu.sbatch


def test_slurm_batch_dry_run_starts_one_task_per_process_through_srun(sandbox):
  commands = dry_run('slurm_gpu.sbatch', '--max-requeues=3', 'experiments/cifar10.py:resnet110',
                     '/shared/runs/r110', '--config.seed=2', sandbox=sandbox,
                     env={**SLURM_ENV, 'SLURM_RESTART_COUNT': '1'})
  srun, note, requeue = commands
  assert srun == ['srun', '--kill-on-bad-exit=1', 'bash', str(LAUNCH / 'slurm_gpu.sbatch'),
                  '--task', '--coordinator=gpu-node-07:24321', '--python=python3',
                  'experiments/cifar10.py:resnet110', '/shared/runs/r110', '--config.seed=2']
  assert '42' in note and '2 of 3' in note
  assert requeue == ['scontrol', 'requeue', '4321']


def test_slurm_task_dry_run_passes_coordinator_and_process_ids(sandbox):
  commands = dry_run('slurm_gpu.sbatch', '--task', '--coordinator=gpu-node-07:24321',
                     'experiments/cifar10.py:resnet110', '/shared/runs/r110', '--config.seed=2',
                     sandbox=sandbox, env={**SLURM_ENV, 'SLURM_PROCID': '3'})
  assert commands == [['python3', '-m', 'resnet_jax.main',
                       '--config=experiments/cifar10.py:resnet110', '--workdir=/shared/runs/r110',
                       '--coordinator_address=gpu-node-07:24321', '--num_processes=4',
                       '--process_id=3', '--config.seed=2']]


def test_slurm_runs_every_task_and_requeues_when_preempted(sandbox):
  # srun starts the task command once per task, as SLURM would on the nodes.
  write_fake(sandbox / 'bin' / 'srun', '''
import subprocess
command = [word for word in sys.argv[1:] if not word.startswith('--kill')]
statuses = [subprocess.run(command, env={**os.environ, 'SLURM_PROCID': str(i)}).returncode
            for i in range(int(os.environ['SLURM_NTASKS']))]
sys.exit(max(statuses))
''')
  python = write_fake(sandbox / 'python', 'sys.exit(42)\n')
  result = run('slurm_gpu.sbatch', f'--python={python}', '--max-requeues=1', '--port=5555',
               'experiments/cifar10.py:resnet20', 'run', sandbox=sandbox, env=SLURM_ENV)
  assert result.returncode == 42, result.stderr
  calls = fake_calls(sandbox)
  trainers = [call for call in calls if call[0] == 'python']
  assert [call[-1] for call in trainers] == [f'--process_id={i}' for i in range(4)]
  assert all('--coordinator_address=gpu-node-07:5555' in call and '--num_processes=4' in call
             for call in trainers)
  assert calls[-1] == ['scontrol', 'requeue', '4321']


def test_slurm_needs_a_slurm_job(sandbox):
  result = run('slurm_gpu.sbatch', 'experiments/cifar10.py', 'run', sandbox=sandbox)
  assert result.returncode != 0
  assert 'SLURM_JOB_ID is not set' in result.stderr


# All scripts

SCRIPT_FLAGS = {
    'local.sh': ['--python', '--dry-run', '--help'],
    'tpu_pod.sh': ['--name', '--zone', '--project', '--accelerator-type', '--runtime-version',
                   '--spot', '--preemptible', '--reuse', '--data-dir', '--source', '--python',
                   '--install', '--max-restarts', '--delete-after', '--delete', '--dry-run',
                   '--help'],
    'slurm_gpu.sbatch': ['--python', '--port', '--max-requeues', '--task', '--coordinator',
                         '--dry-run', '--help'],
}


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_exits_zero_and_names_every_flag(sandbox, script):
  result = run(script, '--help', sandbox=sandbox)
  assert result.returncode == 0
  assert result.stdout.startswith('Usage:')
  missing = [flag for flag in SCRIPT_FLAGS[script] if f'{flag} ' not in result.stdout]
  assert missing == []


@pytest.mark.parametrize('script', SCRIPTS)
def test_unknown_flag_fails_naming_it(sandbox, script):
  result = run(script, '--dry-run', '--bogus-flag=1', 'experiments/cifar10.py', 'run',
               sandbox=sandbox, env=SLURM_ENV)
  assert result.returncode != 0
  assert 'unknown flag --bogus-flag' in result.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_launcher_flag_after_config_fails_naming_it(sandbox, script):
  result = run(script, 'experiments/cifar10.py', 'run', '--dry-run', sandbox=sandbox,
               env=SLURM_ENV)
  assert result.returncode != 0
  assert '--dry-run is an option of' in result.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_value_flag_without_value_fails_naming_it(sandbox, script):
  result = run(script, '--python', sandbox=sandbox)
  assert result.returncode != 0
  assert '--python needs a value' in result.stderr


def test_shellcheck_finds_nothing():
  if shutil.which('shellcheck') is None:
    pytest.skip('shellcheck is not installed (apt-get install -y shellcheck)')
  scripts = sorted([*LAUNCH.glob('*.sh'), *LAUNCH.glob('*.sbatch')])
  assert {*SCRIPTS, 'common.sh', 'gpu_slot.sh'} <= {script.name for script in scripts}
  result = subprocess.run(['shellcheck', *map(str, scripts)], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr
