"""rtchunk runs in the Rerun viewer: `python -m rtchunk_rerun session.log` (or an `rtchunk export mcap` file)
writes a `.rrd` recording of the executed actions, every chunk over the ticks it covers with its frozen prefix
marked, seams, delays, lateness and the camera images."""

from rtchunk_rerun.view import log_run, read_mcap, write_rrd

__all__ = ["log_run", "read_mcap", "write_rrd"]
