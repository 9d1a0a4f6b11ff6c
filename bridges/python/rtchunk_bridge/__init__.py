"""A Python robot driver's bridge to the rtchunk runtime over zenoh (its wire protocol, schema version 3)."""

from .bridge import Bridge
from .protocol import Command, Control, Phase, ProtocolError, Status

__all__ = ["Bridge", "Command", "Control", "Phase", "ProtocolError", "Status"]
