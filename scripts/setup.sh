#!/usr/bin/env bash
# Sets up what rtchunk needs beyond cargo: the Python toolchain in .venv (pinned in
# policy/python/requirements.txt) and the official ONNX Runtime library, taken from that environment's
# onnxruntime wheel, in .cache/onnxruntime/. Safe to run again: it does nothing when both are current.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=policy/python/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing the Python toolchain into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$stamp"
fi
library=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
mkdir -p .cache/onnxruntime
if ! cmp -s "$library" .cache/onnxruntime/libonnxruntime.so; then
  cp "$library" .cache/onnxruntime/libonnxruntime.so
  echo "setup: ONNX Runtime $(basename "$library") in .cache/onnxruntime/" >&2
fi
