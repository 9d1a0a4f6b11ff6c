"""rtchunk's wire protocol (schema version 3, docs/protocol.md) for a robot driver: state out, commands, status
and control. Every message is a 28-byte little-endian header (magic ``RTCK``, schema version, kind, flags,
source, sequence number, wall-clock stamp) and a body whose length must match exactly."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"RTCK"
SCHEMA_VERSION = 3
_HEADER = struct.Struct("<4sHBBIQQ")
HEADER_LEN = _HEADER.size
_STATUS = struct.Struct("<B11QfQQQ")
ACTION_HELD = 1


class Kind(IntEnum):
    """A message's kind, its byte in the header."""

    STATE = 1
    ACTION = 2
    STATUS = 3
    CONTROL = 4


class Control(IntEnum):
    """A control command to the runtime."""

    START = 1
    STOP = 2
    RESET = 3
    EMERGENCY_STOP = 4


class Phase(IntEnum):
    """The controller's phase, as the status reports it."""

    WAITING = 0
    RUNNING = 1
    HOLDING = 2
    STOPPED = 3


class ProtocolError(ValueError):
    """Bytes that are not a valid message of the expected kind, or values that cannot be sent."""


@dataclass(frozen=True)
class Header:
    """The common header."""

    kind: int
    flags: int
    source: int
    seq: int
    stamp_ns: int


@dataclass(frozen=True)
class Command:
    """One controller tick's command."""

    tick: int
    state_seq: int
    """The sequence number of the state the controller read at this tick."""
    values: tuple[float, ...]
    held: bool
    """The runtime's state was stale: the command holds the last target."""


@dataclass(frozen=True)
class Status:
    """The runtime's status and counters (docs/protocol.md, kind 3)."""

    phase: Phase
    ticks: int
    held_ticks: int
    states_accepted: int
    rejected: int
    emergency_stops: int
    actions_dropped: int
    swaps: int
    starved_ticks: int
    missed_periods: int
    max_lateness_us: int
    last_delay_ticks: int
    last_seam_jump: float
    inference_failures: int
    inference_panics: int
    inference_timeouts: int


def encode(kind: Kind, body: bytes, *, source: int, seq: int, stamp_ns: int, flags: int = 0) -> bytes:
    """A whole message: the header, then `body`."""
    return _HEADER.pack(MAGIC, SCHEMA_VERSION, int(kind), flags, source, seq, stamp_ns) + body


def decode(message: bytes, kind: Kind) -> tuple[Header, bytes]:
    """The header and body of `message`, which must be of `kind` and this schema version."""
    if len(message) < HEADER_LEN:
        raise ProtocolError(f"{len(message)} bytes, shorter than the {HEADER_LEN}-byte header")
    magic, version, got, flags, source, seq, stamp_ns = _HEADER.unpack_from(message)
    if magic != MAGIC:
        raise ProtocolError(f"magic {magic!r}, expected {MAGIC!r}")
    if version != SCHEMA_VERSION:
        raise ProtocolError(f"schema version {version}, expected {SCHEMA_VERSION}")
    if got != kind:
        raise ProtocolError(f"message kind {got}, expected {int(kind)} ({kind.name.lower()})")
    return Header(got, flags, source, seq, stamp_ns), message[HEADER_LEN:]


def _finite(name: str, values: list[float]) -> list[float]:
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise ProtocolError(f"{name}[{i}] is {value}: the runtime rejects NaN and Inf")
    return values


def state_body(
    position: list[float],
    velocity: list[float],
    observation: list[float],
    images: list[tuple[int, int, int, bytes]] | None = None,
) -> bytes:
    """A state body: joint positions and velocities (f64; both empty for a robot without joint feedback), the
    policy's observation (f32), and camera images as (height, width, channels, raw 8-bit pixels), in the
    policy's camera order."""
    position, velocity = _finite("position", list(position)), _finite("velocity", list(velocity))
    observation = _finite("observation", list(observation))
    if len(velocity) != len(position):
        raise ProtocolError(f"{len(velocity)} velocities for {len(position)} joint positions")
    body = struct.pack(f"<HH{len(position)}d{len(velocity)}d{len(observation)}f", len(position),
                       len(observation), *position, *velocity, *observation)
    if images:
        body += struct.pack("<B", len(images))
        for height, width, channels, pixels in images:
            if len(pixels) != height * width * channels:
                raise ProtocolError(
                    f"an image of {height} x {width} x {channels} needs {height * width * channels} bytes, "
                    f"got {len(pixels)}")
            body += struct.pack("<HHBB", height, width, channels, 0) + bytes(pixels)
    return body


def decode_command(message: bytes) -> Command:
    """A command message (kind 2)."""
    header, body = decode(message, Kind.ACTION)
    if len(body) < 18:
        raise ProtocolError(f"an action body of {len(body)} bytes, shorter than its 18-byte start")
    tick, state_seq, dims = struct.unpack_from("<QQH", body)
    if len(body) != 18 + 8 * dims:
        raise ProtocolError(f"an action body of {len(body)} bytes for {dims} values (expected {18 + 8 * dims})")
    values = struct.unpack_from(f"<{dims}d", body, 18)
    return Command(tick, state_seq, values, bool(header.flags & ACTION_HELD))


def decode_status(message: bytes) -> Status:
    """A status message (kind 3)."""
    _, body = decode(message, Kind.STATUS)
    if len(body) != _STATUS.size:
        raise ProtocolError(f"a status body of {len(body)} bytes, expected {_STATUS.size}")
    phase, *counters = _STATUS.unpack(body)
    if phase not in Phase._value2member_map_:
        raise ProtocolError(f"phase {phase}, expected 0..3")
    return Status(Phase(phase), *counters)
