#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted bytes with AFL++: builds the rtchunk-fuzz harness with
# cargo-afl (installing cargo-afl, which builds AFL++, when it is missing), writes each target's seeds, and runs
# afl-fuzz on each target in turn for SECONDS (default 600). Prints, and writes to target/afl/summary.json, each
# target's executions, coverage (edges of the instrumented code reached), crashes and hangs. A crash is a file
# under target/afl/out/<target>/default/crashes/; `target/afl/release/rtchunk-fuzz <target> FILE` reproduces it.
# Usage: scripts/fuzz-afl.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(protocol session-log configuration manifest sim-report)
command -v cargo-afl >/dev/null 2>&1 || cargo install cargo-afl
# Builds AFL++ for this toolchain once (it says so, and fails, when it already has).
cargo afl config --build >/dev/null 2>&1 || true
work=target/afl
cargo afl build --release -p rtchunk-fuzz --features afl --target-dir "$work"
harness="$work/release/rtchunk-fuzz"
rm -rf "$work/seeds"
"$harness" seeds "$work/seeds"
export AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SUPPRESS_TARGET_OUTPUT=1
mkdir -p "$work/out"
lines=()
for target in "${targets[@]}"; do
  rm -rf "$work/out/$target"
  cargo afl fuzz -i "$work/seeds/$target" -o "$work/out/$target" -V "$seconds" -- "$harness" "$target" \
    > "$work/$target.log" 2>&1
  stats="$work/out/$target/default/fuzzer_stats"
  value() { awk -F' *: *' -v key="$1" '$1 == key { print $2 }' "$stats"; }
  line=$(printf '{"target": "%s", "seconds": %s, "executions": %s, "per_second": %s, "edges_found": %s, "total_edges": %s, "corpus": %s, "crashes": %s, "hangs": %s}' \
    "$target" "$(value run_time)" "$(value execs_done)" "$(value execs_per_sec)" "$(value edges_found)" \
    "$(value total_edges)" "$(value corpus_count)" "$(value saved_crashes)" "$(value saved_hangs)")
  echo "$line"
  lines+=("$line")
done
(IFS=,; echo "[${lines[*]}]") > "$work/summary.json"
echo "summary: $work/summary.json"
