"""A run in the Rerun viewer, from rtchunk's MCAP export (`rtchunk export mcap`, read with Foxglove's `mcap`).

Entities (timelines `tick`: policy ticks, `controller_tick`, and `time`: seconds since the run's first tick):

- `joint<j>/executed`: the action in force at each policy tick;
- `joint<j>/chunks/<seq>`: every chunk laid over the policy ticks it covers, as a line, and
  `joint<j>/chunks/<seq>/prefix`: its frozen prefix (the first d actions, executed while it was inferred) as
  points;
- `joint<j>/command`: the command written at each controller tick;
- `steps/seam` and `steps/within`: |a_t - a_(t-1)| at chunk seams and inside chunks;
- `timing/lateness_us` (each controller tick's wake-up lateness), `timing/observed_delay` (policy ticks a chunk
  took, at its adoption), `timing/forecast_delay` (the d it was sampled with, at its request),
  `timing/inference_ms` (at its end);
- `camera/<name>`: the images each inference saw, at its request.

A chunk's place on the `tick` timeline comes from the ticks that executed it (index i at tick T: index 0 at
T - i); a chunk never executed is placed after its request tick, where the scheduler would have started it.
"""

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rerun as rr
import rerun.blueprint as rrb
from mcap.reader import make_reader

PREFIX_COLOR = [230, 80, 60]


@dataclass
class Run:
    """What the MCAP export holds, in file order."""

    ticks: list = field(default_factory=list)
    inferences: list = field(default_factory=list)
    times: list = field(default_factory=list)
    #: Per inference (by seq): [(camera name, RawImage body)].
    images: dict = field(default_factory=dict)
    label: str = "rtchunk"


def read_mcap(path: Path) -> Run:
    """The ticks (with their times), inferences and images of an MCAP export."""
    run = Run()
    with open(path, "rb") as stream:
        reader = make_reader(stream)
        for record in reader.iter_metadata():
            if record.name == "rtchunk":
                run.label = record.metadata.get("label", run.label)
        last_inference = None
        for _, channel, message in reader.iter_messages(log_time_order=False):
            body = json.loads(message.data)
            if channel.topic == "/rtchunk/tick":
                run.ticks.append(body)
                run.times.append(message.log_time)
            elif channel.topic == "/rtchunk/inference":
                run.inferences.append(body)
                last_inference = body["seq"]
            elif channel.topic.startswith("/rtchunk/camera/") and last_inference is not None:
                name = channel.topic.removeprefix("/rtchunk/camera/")
                run.images.setdefault(last_inference, []).append((name, body))
    if not run.ticks:
        raise ValueError(f"{path}: no /rtchunk/tick messages; is it an `rtchunk export mcap` file?")
    return run


class PolicyClock:
    """Policy tick -> seconds since the run's first tick (measured where a tick was recorded, extrapolated at
    the policy period past the run's ends)."""

    def __init__(self, run: Run):
        start = run.times[0]
        pairs = sorted({t["policy"]["tick"]: (time - start) / 1e9
                        for t, time in zip(run.ticks, run.times) if t["policy"]}.items())
        self.ticks = np.array([p[0] for p in pairs], dtype=np.int64)
        self.seconds = np.array([p[1] for p in pairs], dtype=np.float64)
        if len(self.ticks) > 1:
            self.period = float(np.median(np.diff(self.seconds) / np.diff(self.ticks)))
        else:
            self.period = 0.0

    def __call__(self, ticks) -> np.ndarray:
        ticks = np.asarray(ticks, dtype=np.int64)
        if len(self.ticks) == 0:
            return np.zeros(len(ticks))
        inside = np.interp(ticks, self.ticks, self.seconds)
        before = self.seconds[0] + (ticks - self.ticks[0]) * self.period
        after = self.seconds[-1] + (ticks - self.ticks[-1]) * self.period
        return np.where(ticks < self.ticks[0], before, np.where(ticks > self.ticks[-1], after, inside))


def chunk_starts(run: Run) -> dict:
    """The policy tick of each chunk's index 0 (by seq)."""
    starts = {}
    for tick in run.ticks:
        policy = tick["policy"]
        if policy and policy["kind"] == "executed" and policy["chunk_seq"] not in starts:
            starts[policy["chunk_seq"]] = policy["tick"] - policy["index"]
    for inference in run.inferences:
        starts.setdefault(inference["seq"], inference["request_tick"] + 1)
    return starts


def _columns(rec, path, archetype_columns, tick=None, controller_tick=None, seconds=None):
    indexes = []
    if tick is not None:
        indexes.append(rr.TimeColumn("tick", sequence=np.asarray(tick, dtype=np.int64)))
    if controller_tick is not None:
        indexes.append(rr.TimeColumn("controller_tick", sequence=np.asarray(controller_tick, dtype=np.int64)))
    if seconds is not None:
        indexes.append(rr.TimeColumn("time", duration=np.asarray(seconds, dtype=np.float64)))
    rec.send_columns(path, indexes=indexes, columns=archetype_columns)


def _scalars(values) -> object:
    return rr.Scalars.columns(scalars=np.asarray(values, dtype=np.float64))


def log_run(rec: rr.RecordingStream, run: Run) -> dict:
    """Logs `run` to `rec`; returns how many of each thing it logged."""
    clock = PolicyClock(run)
    start = run.times[0]
    joints = len(run.ticks[0]["action"])
    controller_tick = [t["controller_tick"] for t in run.ticks]
    seconds = [(time - start) / 1e9 for time in run.times]
    commands = np.array([t["command"] for t in run.ticks], dtype=np.float64).reshape(len(run.ticks), joints)
    policy = [t for t in run.ticks if t["policy"]]
    policy_ticks = [t["policy"]["tick"] for t in policy]
    # The action in force; warm-up and held ticks hold the command instead.
    executed = np.array([t["action"] if t["policy"]["kind"] not in ("warmup", "held") else t["command"]
                         for t in policy], dtype=np.float64).reshape(len(policy), joints)
    for j in range(joints):
        rec.log(f"joint{j}/executed", rr.SeriesLines(names=f"executed {j}", widths=2.5), static=True)
        _columns(rec, f"joint{j}/executed", _scalars(executed[:, j]), tick=policy_ticks,
                 seconds=clock(policy_ticks))
        rec.log(f"joint{j}/command", rr.SeriesLines(names=f"command {j}", widths=1.0), static=True)
        _columns(rec, f"joint{j}/command", _scalars(commands[:, j]), controller_tick=controller_tick,
                 seconds=seconds)
    _columns(rec, "timing/lateness_us", _scalars([t["lateness_us"] for t in run.ticks]),
             controller_tick=controller_tick, seconds=seconds)
    steps = {"seam": [], "within": []}
    delays = []
    for t in policy:
        p = t["policy"]
        if p["step_class"] in steps:
            steps[p["step_class"]].append((p["tick"], p["step"]))
        if p["swapped"]:
            delays.append((p["tick"], p["observed_delay"]))
    rec.log("steps/seam", rr.SeriesPoints(names="seam", markers="circle", marker_sizes=4.0), static=True)
    rec.log("steps/within", rr.SeriesLines(names="within a chunk"), static=True)
    rec.log("timing/observed_delay", rr.SeriesPoints(names="observed delay (ticks)"), static=True)
    for path, points in (("steps/seam", steps["seam"]), ("steps/within", steps["within"]),
                         ("timing/observed_delay", delays)):
        if points:
            ticks, values = zip(*points)
            _columns(rec, path, _scalars(values), tick=ticks, seconds=clock(ticks))
    starts = chunk_starts(run)
    counts = {"chunks": 0, "prefix_actions": 0, "images": 0}
    for inference in run.inferences:
        seq, request = inference["seq"], inference["request_tick"]
        rec.set_time("tick", sequence=request)
        rec.set_time("time", duration=float(clock([request])[0]))
        rec.log("timing/forecast_delay", rr.Scalars(inference["delay"]))
        for name, body in run.images.get(seq, []):
            pixels = np.frombuffer(base64.b64decode(body["data"]), dtype=np.uint8)
            channels = 1 if body["encoding"] == "mono8" else 3
            image = pixels.reshape(body["height"], body["width"], channels)
            rec.log(f"camera/{name}", rr.Image(image, color_model="L" if channels == 1 else "RGB"))
            counts["images"] += 1
        if not inference["chunk"]:
            continue
        chunk = np.array(inference["chunk"], dtype=np.float64)
        ticks = starts[seq] + np.arange(len(chunk))
        d = min(inference["delay"], len(chunk))
        for j in range(joints):
            path = f"joint{j}/chunks/{seq:05d}"
            rec.log(path, rr.SeriesLines(names=f"chunk {seq}", widths=1.0), static=True)
            _columns(rec, path, _scalars(chunk[:, j]), tick=ticks, seconds=clock(ticks))
            if d > 0:
                rec.log(f"{path}/prefix", rr.SeriesPoints(names=f"chunk {seq} frozen prefix", colors=PREFIX_COLOR,
                                                          markers="cross", marker_sizes=3.0), static=True)
                _columns(rec, f"{path}/prefix", _scalars(chunk[:d, j]), tick=ticks[:d], seconds=clock(ticks[:d]))
        counts["chunks"] += 1
        counts["prefix_actions"] += d
    for inference in run.inferences:
        # Logged at its request tick and, on the time line, when it ended.
        request = inference["request_tick"]
        rec.set_time("tick", sequence=request)
        rec.set_time("time", duration=float(clock([request])[0] + inference["duration_us"] / 1e6))
        rec.log("timing/inference_ms", rr.Scalars(inference["duration_us"] / 1e3))
    rec.send_blueprint(blueprint(joints, sorted({name for images in run.images.values() for name, _ in images})))
    counts.update(policy_ticks=len(policy), controller_ticks=len(run.ticks), joints=joints)
    return counts


def blueprint(joints: int, cameras: list) -> rrb.Blueprint:
    """A plot per joint (executed actions, chunks, commands), the steps, the timing and the cameras."""
    plots = [rrb.TimeSeriesView(origin=f"joint{j}", name=f"joint {j}: executed, chunks, prefix")
             for j in range(joints)]
    side = [rrb.TimeSeriesView(origin="steps", name="|a_t - a_(t-1)|: seams and within chunks"),
            rrb.TimeSeriesView(origin="timing", name="lateness, delays, inference time")]
    side += [rrb.Spatial2DView(origin=f"camera/{name}", name=name) for name in cameras]
    return rrb.Blueprint(rrb.Horizontal(rrb.Vertical(*plots), rrb.Vertical(*side), column_shares=[2, 1]),
                         collapse_panels=True)


def write_rrd(mcap: Path, out: Path) -> dict:
    """Converts the MCAP export `mcap` into the Rerun recording `out`; returns what it logged."""
    run = read_mcap(mcap)
    rec = rr.RecordingStream(application_id="rtchunk", recording_id=run.label)
    rec.save(str(out))
    counts = log_run(rec, run)
    rec.flush()
    rec.disconnect()
    return counts
