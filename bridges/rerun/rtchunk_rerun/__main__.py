"""`python -m rtchunk_rerun RUN [--out FILE.rrd] [--spawn]`: a session log (`rtchunk run --record`) or its MCAP
export (`rtchunk export mcap`) as a Rerun recording; open it with `rerun FILE.rrd`, or pass --spawn to open the
viewer at once."""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import rerun as rr

from rtchunk_rerun.view import log_run, read_mcap, write_rrd


def mcap_of(run: Path, rtchunk: str, scratch: Path) -> Path:
    """`run` itself when it is MCAP, else its MCAP export made with the `rtchunk` binary."""
    with open(run, "rb") as stream:
        if stream.read(8) == b"\x89MCAP0\r\n":
            return run
    if shutil.which(rtchunk) is None and not Path(rtchunk).is_file():
        sys.exit(f"{run}: a session log; exporting it needs the rtchunk binary ({rtchunk!r} not found: "
                 f"pass --rtchunk PATH, or export it yourself with `rtchunk export mcap`)")
    out = scratch / (run.stem + ".mcap")
    result = subprocess.run([rtchunk, "export", "mcap", str(run), "--out", str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(result.stderr.strip() or f"rtchunk export mcap {run} failed")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m rtchunk_rerun", description=__doc__)
    parser.add_argument("run", type=Path, help="a session log or its MCAP export")
    parser.add_argument("--out", type=Path, help="the .rrd file to write (default: next to RUN)")
    parser.add_argument("--spawn", action="store_true", help="open the Rerun viewer instead of writing a file")
    parser.add_argument("--rtchunk", default="rtchunk", help="the rtchunk binary that exports a log (default: on PATH)")
    args = parser.parse_args()
    if not args.run.is_file():
        sys.exit(f"{args.run}: no such file")
    with tempfile.TemporaryDirectory() as scratch:
        mcap = mcap_of(args.run, args.rtchunk, Path(scratch))
        if args.spawn:
            run = read_mcap(mcap)
            rec = rr.RecordingStream(application_id="rtchunk", recording_id=run.label)
            rec.spawn()
            counts = log_run(rec, run)
            rec.flush()
            print(f"sent to the viewer: {counts}")
            return
        out = args.out or args.run.with_suffix(".rrd")
        counts = write_rrd(mcap, out)
    print(f"{out}: {counts['policy_ticks']} policy ticks, {counts['controller_ticks']} controller ticks, "
          f"{counts['chunks']} chunks ({counts['prefix_actions']} frozen-prefix actions), {counts['images']} images; "
          f"open it with: rerun {out}")


if __name__ == "__main__":
    main()
