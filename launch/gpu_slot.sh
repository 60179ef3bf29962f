#!/usr/bin/env bash
# One short GPU slot (about 9 minutes of wall time on one H100/H200) turned into measurements:
#   1. the train-step benchmark of ResNet-20 and ResNet-56 beside eager PyTorch
#      (python -m resnet_jax.bench train, float32, 100 steps a dispatch);
#   2. ResNet-20, 2 seeds, through the paper's CIFAR part (python -m resnet_jax.reproduce
#      --config=experiments/paper.py:cifar on the JPEG copy of CIFAR-10, which writes its report)
#      beside benchmarks/torch_resnet.py training the same 2 seeds on the same arrays with the
#      same recipe on the same GPU. The schedule is the paper's scaled to SLOT_STEPS (default
#      16000, lr /10 at 1/2 and 3/4), a deviation that lets both finish in the slot: it asks
#      whether the two implementations agree, not whether either reaches Table 6 (SLOT_STEPS=64000
#      for that). An unfinished JAX run keeps its checkpoint: the same reproduce command continues.
# OUT gets slot.log and the benchmark tables as soon as they exist, then results.tar.gz (every
# log, the PyTorch run, the step rates and the workdir without checkpoints) and checkpoints.tar.gz
# (each run's newest checkpoint): five files, as the device tool returns at most 8.
#
# Usage (from the repository root): launch/gpu_slot.sh OUT [SECONDS]
#   SECONDS: the wall time to stay within (default 500).
#   Needs, git-ignored: .whl/ (the wheels a GPU image without them lacks: ml_collections, clu,
#   grain, array_record, portpicker, importlib_resources; .whl/pinned/ holds flax, optax and
#   orbax-checkpoint at the tested versions, installed with SLOT_PINNED=1) and
#   .data/cifar10-jpeg.tar.gz. docs/performance.md says how to fill them.
#   SLOT_TINY=1 shrinks every step to CPU size (resnet8/14, a few steps) to try the script here.
set -uo pipefail
out=${1:?usage: launch/gpu_slot.sh OUT [SECONDS]}
seconds=${2:-500}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
began=$(date +%s)
logs=/tmp/slot_logs
workdir=/tmp/slot_paper
mkdir -p "$out" "$logs"
log() { echo "[gpu_slot +$(( $(date +%s) - began ))s] $*" | tee -a "$out/slot.log"; }
left() { echo $(( seconds - ($(date +%s) - began) )); }

if ! python3 -c 'import ml_collections, clu, grain' 2>/dev/null; then
  wheels=(.whl/*.whl)
  [ "${SLOT_PINNED:-0}" = 1 ] && wheels+=(.whl/pinned/*.whl)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/slot_site "${wheels[@]}" || { log 'installing .whl/ failed'; exit 1; }
  export PYTHONPATH=/tmp/slot_site:$repo
else
  export PYTHONPATH=$repo
fi
# Several processes share the GPU: none may take 75% of its memory at start.
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export RESNET_JAX_STEP_RATES=$logs/step_rates.json
archive=$repo/.data/cifar10-jpeg.tar.gz
[ -f "$archive" ] || { log "$archive is missing"; exit 1; }
{
  python3 -c 'import sys; print("python", sys.version.split()[0])'
  python3 -m pip list 2>/dev/null |
    grep -i -E '^(jax[a-z0-9-]*|flax|optax|orbax-checkpoint|grain|ml.collections|clu|numpy|torch) '
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c 'import jax; print("jax devices:", jax.devices())' 2>&1 | tail -1
} 2>&1 | tee -a "$out/slot.log"

steps=${SLOT_STEPS:-16000}  # The paper's 64k-step schedule shape, scaled: lr /10 at 1/2 and 3/4.
if [ "${SLOT_TINY:-0}" = 1 ]; then
  steps=24; depth=8; bench_models=resnet8; bench_steps=4; per_dispatch=2; num_eval=256
  tiny=(--config.cifar.base.eval_every_steps=10 --config.cifar.base.log_every_steps=10
    --config.cifar.base.checkpoint_every_steps=10 --config.cifar.base.data.train_fraction=0.1)
  torch_tiny=(--eval-every 10)
else
  depth=20; bench_models=resnet20,resnet56; bench_steps=300; per_dispatch=100; num_eval=10000
  tiny=(); torch_tiny=()
fi
boundaries="$(( steps / 2 )), $(( steps * 3 / 4 ))"

log "1. probe: the trainer on the GPU for a few steps"
python3 -m resnet_jax.main --config=experiments/cifar10.py:smoke --workdir=/tmp/slot_probe \
  --config.data.source=archive --config.data.path="$archive" > "$logs/probe.log" 2>&1
status=$?
tail -n 5 "$logs/probe.log" | tee -a "$out/slot.log"
[ $status = 0 ] || { log "the probe failed (exit $status): probe.log"; exit 1; }

log "2. benchmark ($bench_models, float32, beside eager PyTorch), each row in a fresh process"
timeout $(( $(left) / 3 )) python3 -m resnet_jax.bench train --models "$bench_models" \
  --steps $bench_steps --steps-per-dispatch $per_dispatch --num-eval $num_eval --torch \
  --no-torch-compile > "$out/bench.txt" 2>&1 || log "the benchmark ended early: exit $?"

budget=$(( $(left) - 60 ))
log "3. resnet$depth, 2 seeds, $steps steps (lr /10 at $boundaries) within ${budget}s: JAX (as one \
program, through reproduce) beside PyTorch (torch.compile, seed after seed) on the same GPU"
python3 -m resnet_jax.reproduce --config=experiments/paper.py:cifar --workdir="$workdir" \
  --config.cifar.base.data.source=archive --config.cifar.base.data.path="$archive" \
  --config.cifar.depths='()' "--config.cifar.resnet_only_depths=($depth,)" \
  --config.cifar.seeds=2 --config.cifar.base.num_train_steps="$steps" \
  "--config.cifar.base.optimizer.lr_boundaries=($boundaries)" \
  --config.cifar.base.steps_per_dispatch=$per_dispatch --config.time_budget=${budget}s \
  "${tiny[@]}" > "$logs/train.log" 2>&1 &
jax_run=$!
for seed in 0 1; do
  python3 benchmarks/torch_resnet.py --model "resnet$depth" --data "$archive" --compile \
    --steps "$steps" --boundaries "${boundaries/ /}" --seed $seed "${torch_tiny[@]}" \
    --output "$logs/torch_resnet${depth}_seed$seed.jsonl" --time-limit $(( $(left) - 80 )) \
    >> "$logs/torch_train.log" 2>&1
done
wait $jax_run
tail -n 4 "$logs/train.log" | tee -a "$out/slot.log"
grep -h "step $steps/" "$logs/torch_train.log" | tee -a "$out/slot.log"

# What comes back: logs and results in one tarball, each run's newest checkpoint in another.
cp "$out/bench.txt" "$logs"/ 2>/dev/null
tar -czf "$out/results.tar.gz" -C /tmp --exclude=checkpoints --exclude=compilation_cache \
  slot_logs slot_paper
newest_checkpoints=()
for run in "$workdir"/cifar/*/; do
  newest=$(cd /tmp && find "${run#/tmp/}checkpoints" -mindepth 1 -maxdepth 1 -name '[0-9]*' \
    2>/dev/null | sort -V | tail -n 1)
  [ -n "$newest" ] && newest_checkpoints+=("$newest")
done
[ ${#newest_checkpoints[@]} -gt 0 ] && tar -czf "$out/checkpoints.tar.gz" -C /tmp "${newest_checkpoints[@]}"
log "done: $(du -h "$out"/* | tr '\n' ' ')"
