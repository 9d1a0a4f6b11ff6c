#!/usr/bin/env bash
# Trains the delay benchmark's policies: for each task, expert demonstrations (rtchunk sim collect), then one
# GTA flow policy per training seed, plain and with training-time RTC (max delay 4), trained together, and
# exported as bundles under sim/policies/<task>/{base,trained-prefix}-s<seed>.
#
#   scripts/train-bench-policies.sh [train|export|all]   (default all)
#
# "train" needs only the rtchunk binary, python3 with jax and optax (a GPU machine: JAX uses its GPU) and writes
# checkpoints; "export" needs the project's .venv (./scripts/setup.sh) and turns them into bundles. The committed
# bundles were trained on one H200 with exactly these settings. Environment: TASKS, SEEDS (default 0 1 2), STEPS,
# OUT_DIR, DATA_DIR, MAX_STALE (default 0): demonstrations whose experts act on states up to that many steps
# old (`rtchunk sim collect --max-stale-steps`; sim/policies-stale was trained with MAX_STALE=7 SEEDS=0), and
# DELAY_DISTRIBUTION (exp or uniform, default exp): how training-time RTC draws its prefix length d <= 4
# (sim/policies-uniform was trained with DELAY_DISTRIBUTION=uniform SEEDS=0).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:-all}
tasks=${TASKS:-"reach cartpole lander catch"}
rtchunk=${RTCHUNK:-target/release/rtchunk}
out=${OUT_DIR:-sim/policies}
data=${DATA_DIR:-.cache/demonstrations}
python=${PYTHON:-.venv/bin/python}
steps=${STEPS:-12000}
seeds=${SEEDS:-0 1 2}
max_stale=${MAX_STALE:-0}
distribution=${DELAY_DISTRIBUTION:-exp}

if [[ $stage == train || $stage == all ]]; then
  mkdir -p "$data"
  for task in $tasks; do
    "$rtchunk" sim collect --task "$task" --episodes 4000 --seed 0 --max-stale-steps "$max_stale" \
      --out "$data/$task.npz" 2>/dev/null
  done
  for task in $tasks; do
    PYTHONPATH=policy/python XLA_PYTHON_CLIENT_PREALLOCATE=false "$python" -m rtchunk_train.train \
      --dataset "$data/$task.npz" --out "$out/$task" --size bench --steps "$steps" --batch 512 \
      --seed $seeds --training-rtc 0 4 --delay-distribution "$distribution" --graph-batch 0 --control-rate 30 \
      --checkpoint-only &
  done
  wait
fi
if [[ $stage == export || $stage == all ]]; then
  for task in $tasks; do
    PYTHONPATH=policy/python "$python" -m rtchunk_train.export "$out/$task"/*/
    rm -f "$out/$task"/*/checkpoint.npz
  done
fi
