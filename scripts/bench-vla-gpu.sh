#!/usr/bin/env bash
# rtchunk against JAX on one GPU (see docs/vla/README.md): the VLA presets in bfloat16 through ONNX Runtime's CUDA
# execution provider against the same models jitted in JAX, the attention kinds side by side, the toy bundles on
# the GPU against the CPU, and the GPU tests. Needs an NVIDIA GPU, JAX with CUDA, ONNX Runtime's CUDA build
# (ORT_DYLIB_PATH, e.g. from ../shared/gpu/stage-ort-cuda.sh) and an rtchunk built with `--features cuda`.
#
#   RTCHUNK=target/cuda/release/rtchunk [CUDA_TEST=path/to/cuda-test-binary] [SKELETONS=dir] [OUT=docs/vla] \
#     [TOYS=0] [BENCH_FLAGS=--no-uncaptured] scripts/bench-vla-gpu.sh [preset:attention:cameras[:fused] ...]
#
# Without arguments it measures the issue's configurations. SKELETONS: graphs traced beforehand by
# `python -m rtchunk_train.vla_export skeleton` (one folder per preset-attention-cameras); without it each
# configuration is traced here, or, where jax2onnx is missing, taken from docs/vla/skeletons.tar.xz.
set -euo pipefail
cd "$(dirname "$0")/.."
rtchunk=${RTCHUNK:-target/cuda/release/rtchunk}
out=${OUT:-docs/vla}
python=${PYTHON:-python3}
configurations=("$@")
if [[ ${#configurations[@]} -eq 0 ]]; then
  configurations=(vla-3b:gta:1 vla-500m:gta:1 vla-3b:gta:3 vla-500m:gta:3 vla-3b:gqa:1 vla-3b:gla:1 vla-3b:mha:1
                  vla-3b:gta:1:fused)
fi
mkdir -p "$out"
export PYTHONPATH=$PWD/policy/python${PYTHONPATH:+:$PYTHONPATH}

# The toy bundles: the same graphs on the CPU and on the GPU (with and without CUDA graphs).
if [[ ${TOYS:-1} == 1 ]]; then
  for bundle in gta-toy vla-tiny; do
    for device in "cpu" "cuda" "cuda --no-cuda-graphs"; do
      echo "== $bundle on $device"
      # shellcheck disable=SC2086
      timeout 120 "$rtchunk" bench policy "policy/fixtures/$bundle" --device $device --iterations 200 --json
    done
  done > "$out/toy-gpu-cpu.json.txt" 2>&1 || echo "toy benchmark failed (see $out/toy-gpu-cpu.json.txt)" >&2
fi

# The GPU tests: captured against uncaptured steps, and the GPU against JAX's recorded outputs.
if [[ -n ${CUDA_TEST:-} ]]; then
  # One test at a time: ONNX Runtime captures CUDA graphs in the global capture mode, which a copy made by
  # another thread of the process during a capture breaks.
  RTCHUNK_FIXTURES=$PWD/policy/fixtures timeout 300 "$CUDA_TEST" --ignored --nocapture --test-threads=1 > "$out/cuda-tests.txt" 2>&1 \
    || echo "GPU tests failed (see $out/cuda-tests.txt)" >&2
fi

skeletons=()
if [[ -z ${SKELETONS:-} ]] && ! "$python" -c "import jax2onnx" 2>/dev/null; then
  # No tracer here: the committed skeletons (traced from this repository's model by
  # `python -m rtchunk_train.vla_export skeleton ... --dtype bfloat16 --batch 1`, one folder per configuration).
  SKELETONS=$(mktemp -d)/skel
  tar -C "$(dirname "$SKELETONS")" -xJf docs/vla/skeletons.tar.xz
fi
[[ -n ${SKELETONS:-} ]] && skeletons=(--skeletons "$SKELETONS")
"$python" -m rtchunk_train.vla_bench --rtchunk "$rtchunk" --out "$out/results.json" --log "$out/bench.log" \
  "${skeletons[@]}" ${BENCH_FLAGS:-} "${configurations[@]}"
"$python" -m rtchunk_train.vla_figure "$out/results.json" "$out/latency.svg"
