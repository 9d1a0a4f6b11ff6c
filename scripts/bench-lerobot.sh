#!/usr/bin/env bash
# LeRobot against rtchunk on one device, same checkpoint, same inputs: makes a LeRobot checkpoint with random
# weights (SIZE: smolvla or pi0, the published sizes, or smolvla-tiny, pi0-tiny), exports it, checks the bundle against LeRobot
# (rtchunk inspect), times LeRobot (PyTorch eager; COMPILE=1 adds torch.compile of its denoising step) and rtchunk
# (rtchunk bench policy), and adds the row to docs/lerobot/results.json (RESULTS to write elsewhere).
#
#   scripts/bench-lerobot.sh [cpu|cuda] OUT
#
# Environment: SIZE (default smolvla), ITERATIONS (20), RTCHUNK (the rtchunk binary; default target/release/rtchunk,
# built with --features cuda for cuda), PYTHON (a Python with LeRobot; default .venv-lerobot/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:?usage: scripts/bench-lerobot.sh [cpu|cuda] OUT}
out=${2:?usage: scripts/bench-lerobot.sh [cpu|cuda] OUT}
size=${SIZE:-smolvla}
iterations=${ITERATIONS:-20}
rtchunk=${RTCHUNK:-target/release/rtchunk}
python=${PYTHON:-.venv-lerobot/bin/python}
results=${RESULTS:-docs/lerobot/results.json}
export PYTHONPATH=$PWD/policy/python${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
run_on=cpu
compile=()
[[ $device == cuda ]] && run_on=cuda:0
[[ ${COMPILE:-0} == 1 ]] && compile=(--compile)
if [[ ! -f $out/checkpoint/config.json ]]; then
  "$python" -m rtchunk_lerobot.checkpoint "$out/checkpoint" --size "$size" --camera top:480x640
fi
if [[ ! -f $out/bundle/manifest.json ]]; then
  "$python" -m rtchunk_lerobot.import_lerobot "$out/checkpoint" --prompt "pick up the cube" --out "$out/bundle"
fi
"$rtchunk" inspect "$out/bundle" --json --device "$run_on" > "$out/inspect.json" || echo "bench-lerobot: the bundle differs from LeRobot beyond the tolerance on $device (inspect.json)" >&2
"$rtchunk" bench policy "$out/bundle" --json --device "$run_on" --iterations "$iterations" > "$out/rtchunk.json"
lerobot_device=cpu
[[ $device == cuda ]] && lerobot_device=cuda
"$python" -m rtchunk_lerobot.bench "$out/checkpoint" --device "$lerobot_device" --iterations "$iterations" \
  "${compile[@]}" > "$out/lerobot.json"
"$python" -m rtchunk_lerobot.results "$out" --model "$size" --results "$results"
