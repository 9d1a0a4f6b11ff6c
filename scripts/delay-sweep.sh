#!/usr/bin/env bash
# The published delay benchmark: every task and method at d = 0..4 (s = max(d, 1)) and the execution-horizon
# sweep at d = 1, one `rtchunk bench delay` run per task and method in
# parallel lanes (one per task), each writing its own folder, then one combined report.
#
#   scripts/delay-sweep.sh OUT [ROLLOUTS] [DEVICE]        e.g. scripts/delay-sweep.sh delay-benchmark 2048 cuda:0
#
# RTCHUNK (default target/release/rtchunk) is the binary; POLICY_SEEDS (default 0) the training seeds; METHODS and
# HORIZON_METHODS choose the methods of the two sweeps (defaults: all nine, and naive,rtc,rtc-hard,trained-prefix).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/delay-sweep.sh OUT [ROLLOUTS] [DEVICE]}
rollouts=${2:-2048}
device=${3:-cpu}
rtchunk=${RTCHUNK:-target/release/rtchunk}
seeds=${POLICY_SEEDS:-0}
methods=${METHODS:-naive rtc rtc-hard trained-prefix rtc-identity prefix-overwrite sync ensemble bid}
horizon_methods=${HORIZON_METHODS:-naive,rtc,rtc-hard,trained-prefix}
mkdir -p "$out/runs"
lane() {
  local task=$1
  for method in $methods; do
    "$rtchunk" bench delay --task "$task" --methods "$method" --rollouts "$rollouts" --policy-seeds "$seeds" \
      --device "$device" --threads 1 --out "$out/runs/$task-$method" > "$out/runs/$task-$method.log" 2>&1
  done
  "$rtchunk" bench delay --task "$task" --methods "$horizon_methods" --delays none --horizon-sweep \
    --rollouts "$rollouts" --policy-seeds "$seeds" --device "$device" --threads 1 \
    --out "$out/runs/$task-horizon" > "$out/runs/$task-horizon.log" 2>&1
}
for task in reach cartpole lander catch; do lane "$task" & done
wait
"$rtchunk" bench delay-report "$out"/runs/*/ --out "$out"
