"""Puts the bridge package on the path and finds the rtchunk binary the tests run."""

import os
import sys
from pathlib import Path

BRIDGE = Path(__file__).resolve().parents[1]
REPO = BRIDGE.parents[1]
sys.path.insert(0, str(BRIDGE))


def rtchunk_binary() -> Path:
    """`RTCHUNK_BIN`, else the release build in the cargo target folder (`cargo build --release` makes it)."""
    if "RTCHUNK_BIN" in os.environ:
        return Path(os.environ["RTCHUNK_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release" / "rtchunk"
    if not binary.exists():
        raise FileNotFoundError(f"{binary}: build it first (cargo build --release) or set RTCHUNK_BIN")
    return binary
