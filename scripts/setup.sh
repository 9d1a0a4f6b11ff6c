#!/usr/bin/env bash
# Sets up what rtchunk needs beyond cargo: the Python toolchain in .venv (pinned in
# policy/python/requirements.txt) and the official ONNX Runtime library, taken from that environment's
# onnxruntime wheel, in .cache/onnxruntime/. With --with-lerobot, also the LeRobot import toolchain in
# .venv-lerobot (Python 3.12, PyTorch, LeRobot; pinned in policy/python/requirements-lerobot.txt). With --runtime,
# only the ONNX Runtime library (what running a bundle needs: a robot computer needs no toolchain).
# Safe to run again: it does nothing when everything is current.
set -euo pipefail
cd "$(dirname "$0")/.."
with_lerobot=0
runtime_only=0
for argument in "$@"; do
  case "$argument" in
    --with-lerobot) with_lerobot=1 ;;
    --runtime) runtime_only=1 ;;
    *) echo "setup: unknown option $argument (known: --with-lerobot, --runtime)" >&2; exit 2 ;;
  esac
done
if [[ $runtime_only == 1 ]]; then
  version=$(sed -n 's/^onnxruntime==//p' policy/python/requirements.txt)
  if [[ "$(cat .cache/onnxruntime/version 2>/dev/null)" != "$version" || ! -f .cache/onnxruntime/libonnxruntime.so ]]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    python3 -m venv "$scratch/venv"
    "$scratch/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      "onnxruntime==$version" -d "$scratch"
    mkdir -p .cache/onnxruntime
    python3 - "$scratch"/onnxruntime-*.whl .cache/onnxruntime/libonnxruntime.so <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if "/capi/libonnxruntime.so." in n)
    with wheel.open(name) as source, open(sys.argv[2], "wb") as target:
        shutil.copyfileobj(source, target)
PY
    echo "$version" > .cache/onnxruntime/version
    echo "setup: ONNX Runtime $version in .cache/onnxruntime/ (runtime only)" >&2
  fi
  exit 0
fi
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

if [[ $with_lerobot == 1 ]]; then
  requirements=policy/python/requirements-lerobot.txt
  stamp=.venv-lerobot/.requirements.sha256
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [[ ! -x .venv-lerobot/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    python312=""
    for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3.12 "$(command -v python3.12 || true)"; do
      if [[ -x "$candidate" ]] && "$candidate" -c "import venv" >/dev/null 2>&1; then
        python312=$candidate
        break
      fi
    done
    if [[ -z "$python312" ]]; then
      echo "setup: --with-lerobot needs Python 3.12 (LeRobot 0.6 requires it): none on PATH or under pyenv" >&2
      exit 1
    fi
    echo "setup: installing the LeRobot import toolchain into .venv-lerobot ($python312)" >&2
    "$python312" -m venv .venv-lerobot
    .venv-lerobot/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  fi
fi
