"""The Python bridge against the real runtime: `rtchunk run` with the committed reach policy over zenoh on
loopback, driven by the bridge (and by the example driver), and the protocol's refusals."""

import json
import math
import socket
import struct
import subprocess
import sys
import time

import pytest
from conftest import BRIDGE, REPO, rtchunk_binary

from rtchunk_bridge import Bridge, Control, Phase, ProtocolError
from rtchunk_bridge.protocol import Kind, decode, decode_command, decode_status, encode, state_body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_runtime(tmp_path, name: str, seconds: float):
    """`rtchunk run` of the reach policy at 30 Hz, listening on a free loopback port; returns the process, its
    endpoint and its namespace."""
    port, namespace = free_port(), f"bridge-{name}-{time.monotonic_ns()}"
    config = tmp_path / f"{name}.toml"
    config.write_text(f"""
[policy]
kind = "bundle"
bundle = "{REPO / 'sim/policies/reach/base-s0'}"
intra_threads = 1

[sampler]
mode = "rtc"

[clock]
kind = "real"
policy_rate_hz = 30.0

[controller]
kind = "passthrough"

[plant]
kind = "zenoh"

[io]
listen = ["tcp/127.0.0.1:{port}"]
namespace = "{namespace}"
stale_after_ms = 150.0
""")
    runtime = subprocess.Popen(
        [str(rtchunk_binary()), "run", str(config), "--json", "--seconds", str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return runtime, f"tcp/127.0.0.1:{port}", namespace


def finish(runtime: subprocess.Popen, limit: float = 20.0) -> dict:
    stdout, stderr = runtime.communicate(timeout=limit)
    assert runtime.returncode == 0, stderr
    return json.loads(stdout)


def test_state_encodes_as_the_protocol_says_and_bad_values_are_refused_naming_them():
    body = state_body([0.5, -0.5], [0.0, 0.1], [1.0, 2.0, 3.0], [(1, 2, 3, bytes(range(6)))])
    assert struct.unpack_from("<HH", body) == (2, 3)
    assert len(body) == 4 + 2 * 8 * 2 + 3 * 4 + 1 + 6 + 6
    message = encode(Kind.STATE, body, source=7, seq=1, stamp_ns=5)
    header, decoded = decode(message, Kind.STATE)
    assert (header.source, header.seq, header.stamp_ns, decoded) == (7, 1, 5, body)
    with pytest.raises(ProtocolError, match=r"observation\[1\] is nan"):
        state_body([0.0], [0.0], [0.0, math.nan])
    with pytest.raises(ProtocolError, match="2 velocities for 1 joint positions"):
        state_body([0.0], [0.0, 0.0], [])
    with pytest.raises(ProtocolError, match="needs 6 bytes, got 5"):
        state_body([], [], [], [(1, 2, 3, bytes(5))])
    with pytest.raises(ProtocolError, match="message kind 1, expected 2"):
        decode_command(message)
    with pytest.raises(ProtocolError, match="schema version 2, expected 3"):
        decode_status(message[:4] + struct.pack("<H", 2) + message[6:])
    with pytest.raises(ProtocolError, match="status body of 0 bytes"):
        decode_status(encode(Kind.STATUS, b"", source=1, seq=1, stamp_ns=0))
    with pytest.raises(ProtocolError, match="shorter than the 28-byte header"):
        decode_command(b"RTCK")


def test_a_driver_gets_the_runtimes_commands_reads_its_status_stops_it_and_then_brakes(tmp_path):
    runtime, endpoint, namespace = start_runtime(tmp_path, "drive", seconds=60)
    commands, published = [], []
    with Bridge(namespace, connect=[endpoint], command_timeout=0.2) as bridge:
        position = [0.0, 0.0]
        end = time.monotonic() + 30
        while len(commands) < 60 and time.monotonic() < end:
            published.append(bridge.publish_state(position, observation=position + [0.6, -0.4]))
            command = bridge.command()
            if command is not None and (not commands or command.tick > commands[-1].tick):
                commands.append(command)
                position = list(command.values)
            time.sleep(0.02)
        assert len(commands) >= 60, f"{len(commands)} commands in 30 s"
        status = bridge.status()
        assert status is not None and status.phase == Phase.RUNNING, status
        assert status.states_accepted > 0 and status.rejected == 0, status
        bridge.send(Control.STOP)
        report = finish(runtime)
        # Commands stop with the runtime: after the command timeout the driver is told to brake.
        time.sleep(0.3)
        assert bridge.command() is None
        assert bridge.rejected == 0
    ticks = [c.tick for c in commands]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    assert all(len(c.values) == 2 and all(math.isfinite(v) for v in c.values) for c in commands)
    assert all(0 < c.state_seq <= published[-1] for c in commands if not c.held)
    link = report["link"]
    assert link["states_accepted"] > 0 and sum(n for _, n in link["rejected"]) == 0, link
    assert report["metrics"]["swaps"] > 0, report["metrics"]


def test_the_example_driver_runs_against_the_runtime(tmp_path):
    runtime, endpoint, namespace = start_runtime(tmp_path, "example", seconds=6)
    driven = subprocess.run(
        [sys.executable, str(BRIDGE / "example_driver.py"), "--connect", endpoint, "--namespace", namespace,
         "--seconds", "4"],
        cwd=BRIDGE, capture_output=True, text=True, timeout=60, check=True)
    summary = json.loads(driven.stdout)
    finish(runtime)
    assert summary["commands"] > 50, summary
    assert summary["runtime_phase"] in ("running", "holding"), summary
