"""A recorded run as a Rerun recording, read back with Rerun's own reader and compared with the run's MCAP export
read with Foxglove's `mcap` package: every executed action, command and lateness; every chunk over the ticks it
covers (checked against the ticks that executed it), its frozen prefix; seams and observed delays."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))
from read_rrd import read  # noqa: E402


def rtchunk() -> str:
    """`RTCHUNK_BIN`, else the release build in the cargo target folder."""
    binary = os.environ.get("RTCHUNK_BIN") or str(Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
                                                   / "release" / "rtchunk")
    if not Path(binary).exists():
        pytest.skip(f"{binary}: build it first (cargo build --release) or set RTCHUNK_BIN")
    return binary


def viewer(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtchunk_rerun", *map(str, args), "--rtchunk", rtchunk()],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(HERE.parent)})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2 s recorded run of the point-mass example, its MCAP export's messages and its Rerun recording."""
    scratch = tmp_path_factory.mktemp("run")
    log, mcap, rrd = scratch / "run.log", scratch / "run.mcap", scratch / "run.rrd"
    config = REPO / "config/examples/point-mass-rtc.toml"
    subprocess.run([rtchunk(), "run", str(config), "--seconds", "2", "--record", str(log)], check=True,
                   capture_output=True)
    subprocess.run([rtchunk(), "export", "mcap", str(log), "--out", str(mcap)], check=True, capture_output=True)
    ticks, inferences = [], {}
    with open(mcap, "rb") as stream:
        for _, channel, message in make_reader(stream).iter_messages(log_time_order=False):
            body = json.loads(message.data)
            if channel.topic == "/rtchunk/tick":
                ticks.append(body)
            elif channel.topic == "/rtchunk/inference":
                inferences[body["seq"]] = body
    converted = viewer(log, "--out", rrd)
    assert converted.returncode == 0, converted.stderr
    assert "chunks" in converted.stdout and str(rrd) in converted.stdout, converted.stdout
    return ticks, inferences, read(rrd)


def test_executed_actions_commands_and_lateness_read_back_value_for_value(run):
    ticks, _, recording = run
    entities = recording["entities"]
    policy = [t for t in ticks if t["policy"]]
    joints = len(ticks[0]["action"])
    for j in range(joints):
        executed = entities[f"/joint{j}/executed"]
        assert executed["tick"] == [t["policy"]["tick"] for t in policy]
        expected = [(t["command"] if t["policy"]["kind"] in ("warmup", "held") else t["action"])[j] for t in policy]
        assert executed["scalars"] == expected
        command = entities[f"/joint{j}/command"]
        assert command["controller_tick"] == [t["controller_tick"] for t in ticks]
        assert command["scalars"] == [t["command"][j] for t in ticks]
    assert entities["/timing/lateness_us"]["scalars"] == [t["lateness_us"] for t in ticks]
    times = entities["/joint0/executed"]["time"]
    assert times == sorted(times) and times[0] >= 0, "seconds since the run's first tick, increasing"


def test_every_chunk_lies_over_the_ticks_that_executed_it_with_its_frozen_prefix_marked(run):
    ticks, inferences, recording = run
    entities = recording["entities"]
    joints = len(ticks[0]["action"])
    sampled = {seq: i for seq, i in inferences.items() if i["chunk"]}
    assert len(sampled) >= 5, "a 2 s run samples several chunks"
    for seq, inference in sampled.items():
        for j in range(joints):
            chunk = entities[f"/joint{j}/chunks/{seq:05d}"]
            assert chunk["scalars"] == [row[j] for row in inference["chunk"]]
            assert chunk["tick"] == list(range(chunk["tick"][0], chunk["tick"][0] + len(inference["chunk"])))
            prefix = entities.get(f"/joint{j}/chunks/{seq:05d}/prefix", {"tick": [], "scalars": []})
            d = inference["delay"]
            assert prefix["scalars"] == [row[j] for row in inference["chunk"][:d]]
            assert prefix["tick"] == chunk["tick"][:d]
    executed = [t for t in ticks if t["policy"] and t["policy"]["kind"] == "executed"]
    assert executed
    for tick in executed:
        chunk = entities[f"/joint0/chunks/{tick['policy']['chunk_seq']:05d}"]
        at = chunk["tick"].index(tick["policy"]["tick"])
        assert chunk["scalars"][at] == tick["action"][0], "the chunk's value at a tick is what that tick executed"
    assert any(inference["delay"] > 0 for inference in sampled.values()), "RTC froze a prefix somewhere"
    styles = recording["static"]
    assert "SeriesPoints:markers" in styles[next(p for p in styles if p.endswith("/prefix"))]


def test_seams_and_observed_delays_are_where_the_run_had_them(run):
    ticks, _, recording = run
    entities = recording["entities"]
    policy = [t["policy"] for t in ticks if t["policy"]]
    seams = [p for p in policy if p["step_class"] == "seam"]
    assert seams, "chunks were swapped"
    assert entities["/steps/seam"]["tick"] == [p["tick"] for p in seams]
    assert entities["/steps/seam"]["scalars"] == [p["step"] for p in seams]
    swaps = [p for p in policy if p["swapped"]]
    assert entities["/timing/observed_delay"]["scalars"] == [p["observed_delay"] for p in swaps]


def test_a_file_that_is_not_a_run_is_refused_naming_it(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a log at all")
    result = viewer(junk, "--out", tmp_path / "junk.rrd")
    assert result.returncode != 0 and "junk.bin" in result.stderr, result.stderr
