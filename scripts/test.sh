#!/usr/bin/env bash
# Runs everything CI checks: formatting, lints (warnings are errors) and the whole test suite in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
