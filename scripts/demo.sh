#!/usr/bin/env bash
# Builds rtchunk and runs the demo on the built-in defaults; extra arguments go to `rtchunk demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin rtchunk
exec ./target/release/rtchunk demo "$@"
