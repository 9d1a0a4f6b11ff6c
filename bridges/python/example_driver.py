"""A robot driver on rtchunk in twenty lines: a toy two-joint arm that goes where each command says, sending its
state at 50 Hz and holding still (its safe state) whenever commands stop. Start a runtime first, e.g.
`rtchunk run config/examples/robot-zenoh.toml` (it listens on tcp/127.0.0.1:7450, namespace "rtchunk")."""

import argparse
import json
import time

from rtchunk_bridge import Bridge


def drive(connect: str, namespace: str, seconds: float, rate_hz: float = 50.0) -> dict:
    position, commands, braking = [0.0, 0.0], 0, 0
    with Bridge(namespace, connect=[connect]) as bridge:
        deadline = next_period = time.monotonic()
        deadline += seconds
        while time.monotonic() < deadline:
            # The reach policy observes where the arm is and where its target is.
            bridge.publish_state(position, observation=position + [0.6, -0.4])
            command = bridge.command()
            if command is None:
                braking += 1  # no command for command_timeout: stay put (a real arm would brake here)
            else:
                position, commands = list(command.values), commands + 1
            next_period += 1.0 / rate_hz
            time.sleep(max(0.0, next_period - time.monotonic()))
        status = bridge.status()
    return {"commands": commands, "braking_periods": braking, "position": position,
            "runtime_phase": status.phase.name.lower() if status else None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connect", default="tcp/127.0.0.1:7450")
    parser.add_argument("--namespace", default="rtchunk")
    parser.add_argument("--seconds", type=float, default=10.0)
    arguments = parser.parse_args()
    print(json.dumps(drive(arguments.connect, arguments.namespace, arguments.seconds)))
