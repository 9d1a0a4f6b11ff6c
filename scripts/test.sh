#!/usr/bin/env bash
# Runs everything CI checks: set-up (Python toolchain, ONNX Runtime library), formatting, lints (warnings are
# errors), the Python toolchain's tests and the whole Rust test suite in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
.venv/bin/python -m pytest -q policy/python
cargo test --workspace --release
