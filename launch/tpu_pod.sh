#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: creates it (or reuses it), copies this
# checkout to every worker, installs it, and starts resnet_jax.main (or the
# study, --module=study, or the whole paper, --module=reproduce) on all workers at once. Checkpoints and metrics go to a gs:// WORKDIR, so a rerun on
# the same or a recreated slice resumes where the last one stopped.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'USAGE'
Usage: launch/tpu_pod.sh [OPTIONS] CONFIG gs://WORKDIR [MAIN_FLAGS...]
       launch/tpu_pod.sh --name NAME --zone ZONE --delete

Creates the TPU VM slice NAME (unless --reuse), copies pyproject.toml,
setup.cfg, README.md, resnet_jax/ and experiments/ from --source to
~/resnet_jax_launch on every worker, runs --install there, then runs on all
workers at once:
  PYTHON -m resnet_jax.MODULE --config=CONFIG --workdir=WORKDIR --distributed MAIN_FLAGS...
MODULE is main (one run), study (the degradation study, every net and seed of
experiments/degradation.py, then its tables and figures) or reproduce (every
part of experiments/paper.py, then WORKDIR/report.md and report.html). CONFIG is relative to --source. MAIN_FLAGS (e.g. --config.seed=1) are passed
through unchanged. WORKDIR must be on GCS: every worker writes its checkpoint
shards there, and a rerun with the same WORKDIR resumes from the latest one.

Preemption: the trainer saves a checkpoint on SIGTERM and exits with status 42.
With --max-restarts N, a run that exits 42, or whose slice is no longer READY,
is restarted up to N times: the slice is deleted and recreated unless it is
still READY, the code is copied and installed again, and training resumes.
Without it, rerun the same command (add --reuse if the slice is still READY).

Options (before CONFIG):
  --name NAME              TPU VM name (required)
  --zone ZONE              zone, e.g. us-central2-b (required)
  --project PROJECT        GCP project (default: gcloud's configured project)
  --accelerator-type TYPE  slice type, e.g. v4-32 (required unless --reuse)
  --runtime-version V      TPU VM software version (default: tpu-ubuntu2204-base,
                           for v4; v5e: v2-alpha-tpuv5-lite, v6e: v2-alpha-tpuv6e)
  --spot                   create a Spot slice (cheaper, can be preempted)
  --preemptible            create a legacy preemptible slice
  --reuse                  use the existing slice NAME instead of creating it
  --module MODULE          main (default), study or reproduce
  --data-dir gs://DIR      TFDS data dir, passed as --config.data.data_dir
                           (--config.base.data.data_dir for the study,
                           --config.data_dir for reproduce)
  --source DIR             checkout to copy (default: this script's repository)
  --python PYTHON          the workers' interpreter, as a shell word that may
                           use ~ or $HOME (default: python3)
  --install CMD            shell command run in the copy on every worker
                           (default: PYTHON -m pip install --quiet 'jax[tpu]' '.[pod]',
                           which adds gcsfs for gs:// and TFDS to the base install)
  --max-restarts N         restart after preemption up to N times (default: 0)
  --delete-after           delete the slice when the launcher exits
  --delete                 only delete the slice NAME, then exit
  --dry-run                print the commands instead of running them
  --compile                first compile CONFIG's programs for --accelerator-type
                           here, with no TPU (python -m resnet_jax.bench aot; needs
                           pip install -e '.[aot]'), and stop if one does not
                           compile or fit (--module=main)
  -h, --help               show this help

Example:
  launch/tpu_pod.sh --name=resnet50 --zone=us-central2-b --accelerator-type=v4-32 \
    --spot --max-restarts=5 --data-dir=gs://my-bucket/tfds \
    experiments/imagenet.py:resnet50 gs://my-bucket/runs/resnet50

  # Table 6: depths 20-110, plain and residual, 5 seeds of each net in one
  # program per net (docs/running_at_scale.md):
  launch/tpu_pod.sh --name=table6 --zone=us-central1-a --accelerator-type=v5litepod-32 \
    --runtime-version=v2-alpha-tpuv5-lite --spot --max-restarts=10 --module=study \
    --data-dir=gs://my-bucket/tfds experiments/degradation.py:full gs://my-bucket/table6 \
    --config.seeds=5

  # The whole paper (Tables 1, 2, 6, 3, 4, Figures 1, 4, 6, 7) within 6 hours:
  launch/tpu_pod.sh --name=paper --zone=us-central2-b --accelerator-type=v4-32 \
    --spot --max-restarts=5 --module=reproduce --data-dir=gs://my-bucket/tfds \
    experiments/paper.py gs://my-bucket/paper --config.time_budget=6h
USAGE
}

REMOTE_DIR=resnet_jax_launch
# Where each module's config takes the TFDS data dir (the study's trainer config sits under
# `base`; reproduce passes one to both of its studies).
declare -A DATA_DIR_KEYS=([main]=config.data.data_dir [study]=config.base.data.data_dir
  [reproduce]=config.data_dir)
# What `pip install .` needs (setup.cfg names the package, README.md its description).
COPIED_PATHS=(pyproject.toml setup.cfg README.md resnet_jax experiments)

name=""
zone=""
project=""
accelerator_type=""
runtime_version=tpu-ubuntu2204-base
spot=0
preemptible=0
reuse=0
data_dir=""
source_dir=$(dirname "${BASH_SOURCE[0]}")/..
python=python3
module=main
install=""
max_restarts=0
delete_after=0
delete_only=0
compile=0
declare -A LAUNCH_VALUE_OPTIONS=(
  [--name]=name [--zone]=zone [--project]=project
  [--accelerator-type]=accelerator_type [--runtime-version]=runtime_version
  [--module]=module [--data-dir]=data_dir [--source]=source_dir [--python]=python [--install]=install
  [--max-restarts]=max_restarts
)
declare -A LAUNCH_SWITCH_OPTIONS=(
  [--spot]=spot [--preemptible]=preemptible [--reuse]=reuse
  [--delete-after]=delete_after [--delete]=delete_only [--compile]=compile
)
LAUNCH_OWNED_MAIN_FLAGS+=(--distributed --coordinator_address --num_processes --process_id)
launch::parse_args "$@"
if ((delete_only)); then
  ((${#LAUNCH_ARGS[@]} == 0)) || launch::die "--delete takes no CONFIG or WORKDIR, got ${LAUNCH_ARGS[*]}"
else
  launch::check_main_args
fi

[[ -n $name ]] || launch::die "--name is required"
[[ -n $zone ]] || launch::die "--zone is required"
if [[ ! $name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
  launch::die "--name must be lowercase letters, digits and hyphens, starting with a letter; got $name"
fi
gcloud_tpu=(gcloud compute tpus tpu-vm)
location=(--zone="$zone")
[[ -z $project ]] || location+=(--project="$project")

delete_slice() {
  launch::run "${gcloud_tpu[@]}" delete "$name" "${location[@]}" --quiet
}

if ((delete_only)); then
  delete_slice
  exit 0
fi

config=${LAUNCH_ARGS[0]}
workdir=${LAUNCH_ARGS[1]}
main_flags=("${LAUNCH_ARGS[@]:2}")
if ((spot && preemptible)); then
  launch::die "--spot and --preemptible are exclusive; --spot is the newer of the two"
fi
if ((!reuse)) && [[ -z $accelerator_type ]]; then
  launch::die "--accelerator-type is required to create a slice (or pass --reuse)"
fi
[[ -v DATA_DIR_KEYS[$module] ]] || launch::die "--module must be main, study or reproduce, got $module"
[[ $max_restarts =~ ^[0-9]+$ ]] || launch::die "--max-restarts must be a whole number, got $max_restarts"
# The workers share no disk: checkpoints, metrics and data must be on GCS.
[[ $workdir == gs://* ]] || launch::die "WORKDIR must be a gs:// path on a TPU pod, got $workdir"
if [[ -n $data_dir && $data_dir != gs://* ]]; then
  launch::die "--data-dir must be a gs:// path on a TPU pod, got $data_dir"
fi
[[ -d $source_dir ]] || launch::die "--source $source_dir is not a directory"
source_dir=$(cd "$source_dir" && pwd)
for path in "${COPIED_PATHS[@]}"; do
  [[ -e $source_dir/$path ]] || launch::die "--source $source_dir has no $path; is it a resnet_jax checkout?"
done
[[ $config != /* ]] || launch::die "CONFIG must be relative to --source (it runs on the workers), got $config"
launch::check_config "$config" "$source_dir"
[[ -n $install ]] || install="$python -m pip install --quiet 'jax[tpu]' '.[pod]'"
if ((compile)); then
  [[ -n $accelerator_type ]] || launch::die "--compile needs --accelerator-type (what to compile for)"
  [[ $module == main ]] || launch::die "--compile checks --module=main; for the study or the paper run python -m resnet_jax.reproduce --dry_run --target=tpu:$accelerator_type here"
  overrides=()
  for flag in "${main_flags[@]}"; do
    [[ $flag != --config.* ]] || overrides+=("$flag")
  done
  # Before any slice exists: a program that does not compile or fit stops here (exit status).
  (cd "$source_dir" && python3 -m resnet_jax.bench aot --config="$config" \
    --target="tpu:$accelerator_type" "${overrides[@]}") ||
    launch::die "CONFIG does not compile or fit on $accelerator_type (above); nothing was created"
fi

create_slice() {
  local create=("${gcloud_tpu[@]}" create "$name" "${location[@]}"
    --accelerator-type="$accelerator_type" --version="$runtime_version")
  ((!spot)) || create+=(--spot)
  ((!preemptible)) || create+=(--preemptible)
  launch::run "${create[@]}" ||
    launch::die "could not create slice $name (gcloud says why above); if it exists already, pass --reuse or --delete it first"
}

on_all_workers() {
  launch::run "${gcloud_tpu[@]}" ssh "$name" "${location[@]}" --worker=all --command="$1"
}

copy_and_install() {
  on_all_workers "rm -rf $REMOTE_DIR && mkdir $REMOTE_DIR"
  launch::run "${gcloud_tpu[@]}" scp --recurse "${COPIED_PATHS[@]/#/$source_dir/}" \
    "$name:$REMOTE_DIR" "${location[@]}" --worker=all
  on_all_workers "cd $REMOTE_DIR && $install"
}

train() {
  local main=(-m "resnet_jax.$module" --config="$config" --workdir="$workdir" --distributed)
  [[ -z $data_dir ]] || main+=("--${DATA_DIR_KEYS[$module]}=$data_dir")
  on_all_workers "cd $REMOTE_DIR && $python $(launch::join "${main[@]}" "${main_flags[@]}")"
}

slice_state() {
  "${gcloud_tpu[@]}" describe "$name" "${location[@]}" --format='value(state)' 2>/dev/null || true
}

# A Spot or preempted slice cannot be restarted, only deleted and recreated.
restart_slice() {
  local state=$1
  if [[ $state != READY ]]; then
    [[ -z $state ]] || delete_slice
    create_slice
  fi
  copy_and_install
}

if ((delete_after)); then
  trap 'delete_slice || launch::log "could not delete slice $name; delete it by hand"' EXIT
fi
((reuse)) || create_slice
copy_and_install

if ((LAUNCH_DRY_RUN)); then
  train
  if ((max_restarts > 0)); then
    launch::note "if that exits 42 (preempted) or the slice is no longer READY, up to $max_restarts times:"
    launch::note "$(launch::join "${gcloud_tpu[@]}" describe "$name" "${location[@]}" --format='value(state)')"
    launch::note "unless the state is READY:"
    restart_slice PREEMPTED
    train
  fi
  exit 0
fi

restarts=0
while true; do
  status=0
  train || status=$?
  ((status != 0)) || break
  state=$(slice_state)
  launch::log "training exited with status $status; slice $name is ${state:-gone}"
  if ((restarts >= max_restarts)) || { ((status != 42)) && [[ $state == READY ]]; }; then
    exit "$status"
  fi
  restarts=$((restarts + 1))
  launch::log "restart $restarts of $max_restarts, resuming from $workdir"
  restart_slice "$state"
done
