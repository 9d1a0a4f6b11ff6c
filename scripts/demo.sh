#!/usr/bin/env bash
# Builds rtchunk and runs the demo on the built-in defaults; extra arguments go to `rtchunk demo`.
# With --policy BUNDLE it first sets up the ONNX Runtime library (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " == *" --policy "* ]]; then
  ./scripts/setup.sh
fi
cargo build --release --bin rtchunk
exec ./target/release/rtchunk demo "$@"
