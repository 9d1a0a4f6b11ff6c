"""Collects one run of ``scripts/bench-lerobot.sh`` into ``docs/lerobot/results.json``: one object per model and
device, LeRobot's timings beside rtchunk's and the bundle's agreement with LeRobot.

Usage::

    python -m rtchunk_lerobot.results RUN_DIR --model NAME --results docs/lerobot/results.json

``RUN_DIR`` holds ``lerobot.json`` (``rtchunk_lerobot.bench``), ``rtchunk.json`` (``rtchunk bench policy --json``),
``inspect.json`` (``rtchunk inspect --json``) and ``bundle/expected.json``. Agreement: the largest differences
``rtchunk inspect`` measured, the velocity's and the VJP's relative to their recorded scale (at least 1).
"""

import argparse
import json
from pathlib import Path

import numpy as np


def _scale(values) -> float:
    return max(1.0, float(np.abs(np.asarray(values, np.float64)).max()))


def collect(run: Path, model: str) -> dict:
    """The results object of the run in ``run``."""
    lerobot = json.loads((run / "lerobot.json").read_text())
    rtchunk = json.loads((run / "rtchunk.json").read_text())
    check = json.loads((run / "inspect.json").read_text())
    recorded = json.loads((run / "bundle" / "expected.json").read_text())
    chunks = {chunk["mode"]: chunk["error"] for chunk in check.get("chunks", [])}
    p50 = {key: value["p50"] for key, value in lerobot.items() if key.endswith("_ms")}
    ours = {key: rtchunk[key]["p50"] for key in ("prefix_ms", "plain_step_ms", "guided_step_ms", "plain5_ms",
                                                 "plain10_ms", "rtc5_ms", "rtc10_ms")}
    return {
        "model": model,
        "device": rtchunk["device"],
        "dtype": "float32",
        "cuda_graphs": rtchunk["cuda_graphs"],
        "lerobot_compiled": lerobot["compiled"],
        "lerobot_rtc_ms": p50["rtc10_ms"],
        "rtchunk_rtc_ms": ours["rtc10_ms"],
        "lerobot_plain_ms": p50["plain10_ms"],
        "rtchunk_plain_ms": ours["plain10_ms"],
        "rtc_ratio": ours["rtc10_ms"] / p50["rtc10_ms"],
        "lerobot_rtc5_ms": p50["rtc5_ms"],
        "rtchunk_rtc5_ms": ours["rtc5_ms"],
        "lerobot_prefix_ms": p50["prefix_ms"],
        "rtchunk_prefix_ms": ours["prefix_ms"],
        "lerobot_step_ms": p50["step_ms"],
        "rtchunk_plain_step_ms": ours["plain_step_ms"],
        "rtchunk_guided_step_ms": ours["guided_step_ms"],
        "max_rel_err_velocity": check["velocity_error"] / _scale(recorded["velocity"]),
        "max_rel_err_vjp": check["vjp_error"] / _scale(recorded["vjp"]),
        "max_abs_err_plain_chunk": chunks.get("plain"),
        "max_abs_err_identity_rtc_chunk": chunks.get("rtc-identity"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    row = collect(args.run, args.model)
    rows = json.loads(args.results.read_text()) if args.results.exists() else []
    key = ("model", "device", "lerobot_compiled")
    rows = [r for r in rows if [r[k] for k in key] != [row[k] for k in key]] + [row]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
