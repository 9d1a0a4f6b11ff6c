#!/usr/bin/env bash
# Runs everything CI checks: set-up (Python toolchains, ONNX Runtime library), formatting, lints (warnings are
# errors), the Python toolchains' tests (JAX, and the LeRobot import against LeRobot itself), the whole Rust
# test suite in release mode, the Python driver bridge against the runtime, the Rerun view of a recorded run, and
# the zenoh link's tests again over zenoh's shared-memory transport.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --with-lerobot
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
.venv/bin/python -m pytest -q policy/python/tests
.venv-lerobot/bin/python -m pytest -q policy/python/tests_lerobot
cargo test --workspace --release
# The Python robot-driver bridge against the runtime just built.
.venv/bin/python -m pytest -q bridges/python/tests
# The Rerun view of a recorded run, read back with Rerun's own reader.
.venv/bin/python -m pytest -q bridges/rerun/tests
# The shared-memory transport (a second build of zenoh with its shm feature, in the same target folder).
cargo test --release -p rtchunk-runtime --features shm --test zenoh_link
