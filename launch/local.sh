#!/usr/bin/env bash
# Trains on this machine, on whatever backend JAX finds (CPU, one or more GPUs,
# or a single-host TPU VM). Flags after WORKDIR go to resnet_jax.main unchanged,
# so several local processes can form one job with --coordinator_address etc.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'USAGE'
Usage: launch/local.sh [OPTIONS] CONFIG WORKDIR [MAIN_FLAGS...]

Runs `python -m resnet_jax.main --config=CONFIG --workdir=WORKDIR MAIN_FLAGS...`
on this machine, from the current directory (run it from the repository root).
MAIN_FLAGS are passed through unchanged, e.g. --config.seed=1, or
--coordinator_address=HOST:PORT --num_processes=2 --process_id=0 to make this
process one of several. Training resumes from the latest checkpoint in WORKDIR.
The exit status is the trainer's: 42 means it was preempted (SIGTERM) after
saving a checkpoint; rerun the same command to resume.

Options (before CONFIG):
  --python PYTHON   interpreter to run (default: python3)
  --dry-run         print the command instead of running it
  -h, --help        show this help

Example:
  launch/local.sh experiments/cifar10.py:resnet20 /tmp/resnet20 --config.seed=1
USAGE
}

python=python3
declare -A LAUNCH_VALUE_OPTIONS=([--python]=python)
declare -A LAUNCH_SWITCH_OPTIONS=()
launch::parse_args "$@"
launch::check_main_args
launch::check_config "${LAUNCH_ARGS[0]}"

launch::exec "$python" -m resnet_jax.main \
  --config="${LAUNCH_ARGS[0]}" --workdir="${LAUNCH_ARGS[1]}" "${LAUNCH_ARGS[@]:2}"
