"""A robot driver's end of rtchunk over zenoh: publish the robot's state, take the newest command (or none when
commands have stopped, so that the driver brakes), read the runtime's status, send control commands."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Sequence

import zenoh

from .protocol import (
    Command,
    Control,
    Kind,
    ProtocolError,
    Status,
    decode_command,
    decode_status,
    encode,
    state_body,
)


class Bridge:
    """Connects a robot driver to an rtchunk runtime under `namespace` (topics ``<ns>/state``, ``/action``,
    ``/status``, ``/control``).

    `connect` and `listen` are zenoh endpoints (``tcp/host:port``; the runtime listens on its ``io.listen``).
    `command_timeout` is the driver's side of the bridge contract: :meth:`command` returns ``None`` once no
    command has arrived for that long, and the driver must then bring the robot to its safe state."""

    def __init__(self, namespace: str = "rtchunk", connect: Sequence[str] = (), listen: Sequence[str] = (),
                 command_timeout: float = 0.25, zenoh_config: zenoh.Config | None = None):
        config = zenoh_config or zenoh.Config()
        config.insert_json5("scouting/multicast/enabled", "false")
        if connect:
            config.insert_json5("connect/endpoints", json.dumps(list(connect)))
        if listen:
            config.insert_json5("listen/endpoints", json.dumps(list(listen)))
        self.namespace = namespace
        self.command_timeout = command_timeout
        self.rejected = 0
        """Messages from the runtime that did not decode (a schema mismatch shows here)."""
        self._source = random.getrandbits(32)
        self._seq = 0
        self._lock = threading.Lock()
        self._command: Command | None = None
        self._command_at = 0.0
        self._status: Status | None = None
        self._session = zenoh.open(config)
        self._state = self._session.declare_publisher(f"{namespace}/state")
        self._control = self._session.declare_publisher(f"{namespace}/control")
        self._subscribers = [
            self._session.declare_subscriber(f"{namespace}/action", self._on_command),
            self._session.declare_subscriber(f"{namespace}/status", self._on_status),
        ]

    def _decoded(self, sample: zenoh.Sample, decoder):
        """The sample's message decoded by `decoder`, or ``None`` (counted in `rejected`) if it does not decode."""
        try:
            return decoder(sample.payload.to_bytes())
        except ProtocolError:
            with self._lock:
                self.rejected += 1
            return None

    def _on_command(self, sample: zenoh.Sample) -> None:
        command = self._decoded(sample, decode_command)
        if command is None:
            return
        with self._lock:
            if self._command is None or command.tick > self._command.tick:
                self._command, self._command_at = command, time.monotonic()

    def _on_status(self, sample: zenoh.Sample) -> None:
        status = self._decoded(sample, decode_status)
        if status is not None:
            with self._lock:
                self._status = status

    def _next(self, kind: Kind, body: bytes) -> bytes:
        self._seq += 1
        return encode(kind, body, source=self._source, seq=self._seq, stamp_ns=time.time_ns())

    def publish_state(self, position: Sequence[float] = (), velocity: Sequence[float] | None = None,
                      observation: Sequence[float] = (),
                      images: Sequence[tuple[int, int, int, bytes]] | None = None) -> int:
        """Publishes the robot's state now; returns its sequence number (commands name the state they used).
        `velocity` defaults to zeros; `images` are (height, width, channels, pixels) in the policy's order."""
        velocity = [0.0] * len(position) if velocity is None else velocity
        self._state.put(self._next(Kind.STATE, state_body(position, velocity, observation, images)))
        return self._seq

    def command(self) -> Command | None:
        """The newest command, or ``None`` if none has arrived within `command_timeout` (brake)."""
        with self._lock:
            if self._command is None or time.monotonic() - self._command_at > self.command_timeout:
                return None
            return self._command

    def status(self) -> Status | None:
        """The runtime's newest status, if any arrived."""
        with self._lock:
            return self._status

    def send(self, control: Control) -> None:
        """Sends a control command (start, stop, reset, emergency stop)."""
        self._control.put(self._next(Kind.CONTROL, bytes([int(control)])))

    def close(self) -> None:
        """Closes the zenoh session."""
        for subscriber in self._subscribers:
            subscriber.undeclare()
        self._session.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
