#!/usr/bin/env bash
# Remote inference on one host over loopback: for each device, `rtchunk serve-policy` serves the committed reach
# policy, one robot (`rtchunk run config/examples/robot-remote-policy.toml`) and `rtchunk sim serve`
# run 3 episodes against it; prints the episodes and the server's sampling time, then `rtchunk bench policy` on each device.
#
#   scripts/remote-inference.sh OUT [DEVICE...]      e.g. scripts/remote-inference.sh /tmp/remote cuda:0 cpu
#
# RTCHUNK (default target/release/rtchunk) is the binary (built with --features cuda for cuda devices).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/remote-inference.sh OUT [DEVICE...]}
shift
devices=("${@:-cpu}")
rtchunk=${RTCHUNK:-target/release/rtchunk}
policy=sim/policies/reach/base-s0
mkdir -p "$out"
for device in "${devices[@]}"; do
  tag=${device//:/}
  "$rtchunk" serve-policy "$policy" --device "$device" --listen tcp/127.0.0.1:7448 \
    --namespace gpu-box > "$out/server-$tag.json" 2> "$out/server-$tag.log" &
  server=$!
  "$rtchunk" run config/examples/robot-remote-policy.toml --json > "$out/robot-$tag.json" 2> "$out/robot-$tag.log" &
  robot=$!
  sleep 1
  "$rtchunk" sim serve --task reach --episodes 3 --stop-runtime-when-done --report "$out/sim-$tag.json"
  wait "$robot"
  kill -INT "$server"
  wait "$server"
  echo "== $device: server sampling time (ms)"
  grep -A4 '"inference_ms"' "$out/server-$tag.json"
  "$rtchunk" bench policy "$policy" --device "$device"
done
