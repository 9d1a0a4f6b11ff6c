"""A ROS 2 robot as rmw_zenoh puts it on the wire, built only from PyPI packages: `eclipse-zenoh` (its
AdvancedPublisher and AdvancedSubscriber, as rmw_zenoh uses them), `rosbags` (ROS 2 message definitions, CDR and
RIHS01 type hashes) and `xxhash` (entity GIDs). It shares no code with rtchunk: it is the independent peer the
ROS 2 plant is tested against.

It opens a zenoh router (standing in for `rmw_zenohd`), announces a node that publishes
`sensor_msgs/msg/JointState` and subscribes to the commands, and simulates the reach task's point mass (joints
"x" and "y", driven by forces) at 30 Hz: each step applies the newest command and publishes the new joint state.
With `--bad` it also publishes malformed joint states, one of each kind, between good ones. It checks every
command it receives (key expression, CDR, attachment: sequence numbers, timestamps, the GID derived from the
publisher's liveliness token) and reads rtchunk's node, subscription and publisher from the ROS graph. It
writes what it saw as JSON.

    python robot.py --listen tcp/127.0.0.1:7447 --seconds 8 --report robot.json [--bad]
        [--command-type float64-multi-array|joint-trajectory]
"""

import argparse
import json
import math
import threading
import time

import numpy as np
import xxhash
import zenoh
from rosbags.typesys import Stores, get_typestore
from zenoh.ext import Int64, z_deserialize, z_serialize

TYPES = get_typestore(Stores.ROS2_JAZZY)
JOINT_STATE = "sensor_msgs/msg/JointState"
COMMAND_TYPES = {
    "float64-multi-array": "std_msgs/msg/Float64MultiArray",
    "joint-trajectory": "trajectory_msgs/msg/JointTrajectory",
}
# The reach task: unit mass, force 3 at full action, drag 1.
MAX_FORCE, DRAG, RATE_HZ = 3.0, 1.0, 30.0
# The names this robot publishes: an extra joint and "x", "y" in another order than rtchunk's configuration.
NAMES = ["gripper", "y", "x"]


def dds_name(ros_type: str) -> str:
    package, kind, name = ros_type.split("/")
    return f"{package}::{kind}::dds_::{name}_"


def data_key(domain: int, topic: str, ros_type: str) -> str:
    return f"{domain}/{topic.strip('/')}/{dds_name(ros_type)}/{TYPES.hash_rihs01(ros_type)}"


def token(domain: int, zid: str, entity: int, kind: str, node: str, topic: str = None, ros_type: str = None) -> str:
    """A liveliness token as rmw_zenoh writes it (enclave and namespace "/", mangled to "%")."""
    key = f"@ros2_lv/{domain}/{zid}/0/{entity}/{kind}/%/%/{node}"
    if topic is not None:
        key += f"/{topic.replace('/', '%')}/{dds_name(ros_type)}/{TYPES.hash_rihs01(ros_type)}/::,10:,:,:,,"
    return key


def gid_of(liveliness_key: str) -> bytes:
    """rmw_zenoh's GID: XXH3-128 of the token, low 64 bits then high 64 bits, little-endian."""
    return xxhash.xxh3_128_intdigest(liveliness_key.encode()).to_bytes(16, "little")


def attachment(sequence: int, gid: bytes) -> bytes:
    return z_serialize((Int64(sequence), Int64(time.time_ns()), gid)).to_bytes()


def joint_state(x: float, y: float, vx: float, vy: float, names=NAMES, nan: bool = False) -> bytes:
    Header, Time = TYPES.types["std_msgs/msg/Header"], TYPES.types["builtin_interfaces/msg/Time"]
    now = time.time_ns()
    by_name = {"gripper": (0.0, 0.0), "x": (x, vx), "y": (float("nan") if nan else y, vy)}
    message = TYPES.types[JOINT_STATE](
        header=Header(stamp=Time(sec=now // 10**9, nanosec=now % 10**9), frame_id="base"),
        name=list(names),
        position=np.array([by_name[n][0] for n in names], dtype=np.float64),
        velocity=np.array([by_name[n][1] for n in names], dtype=np.float64),
        effort=np.array([], dtype=np.float64))
    return bytes(TYPES.serialize_cdr(message, JOINT_STATE))


class Commands:
    """Checks and keeps the commands rtchunk publishes."""

    def __init__(self, ros_type: str, joints):
        self.ros_type, self.joints = ros_type, joints
        self.lock = threading.Lock()
        self.latest = [0.0] * len(joints)
        self.received = 0
        self.problems = []
        self.sequences = []
        self.gids = set()
        self.clock_offsets_ms = []

    def problem(self, text: str):
        if len(self.problems) < 20:
            self.problems.append(text)

    def on_sample(self, sample):
        raw = sample.attachment
        if raw is None:
            self.problem("a command without an attachment")
            return
        try:
            sequence, stamp, gid = z_deserialize(tuple[Int64, Int64, bytes], raw)
            message = TYPES.deserialize_cdr(sample.payload.to_bytes(), self.ros_type)
        except Exception as error:  # noqa: BLE001 - every failure is a finding
            self.problem(f"undecodable command: {error}")
            return
        if self.ros_type.endswith("Float64MultiArray"):
            values = [float(v) for v in message.data]
        else:
            if list(message.joint_names) != self.joints or len(message.points) != 1:
                self.problem(f"trajectory for {list(message.joint_names)} with {len(message.points)} points")
                return
            point = message.points[0]
            values = [float(v) for v in point.positions]
            step = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
            if not 0.0 < step < 1.0:
                self.problem(f"time_from_start {step} s")
        if len(values) != len(self.joints) or not all(math.isfinite(v) for v in values):
            self.problem(f"command {values}")
            return
        with self.lock:
            self.latest = values
            self.received += 1
            self.sequences.append(sequence)
            self.gids.add(gid)
            self.clock_offsets_ms.append((time.time_ns() - stamp) / 1e6)


def graph(session, domain: int):
    """Every liveliness token of `domain`, split into rmw_zenoh's parts."""
    tokens = []
    for reply in session.liveliness().get(f"@ros2_lv/{domain}/**", timeout=2.0):
        if reply.ok is not None:
            tokens.append(str(reply.ok.key_expr))
    return tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--report", required=True)
    parser.add_argument("--domain", type=int, default=0)
    parser.add_argument("--command-topic", default="/forward_command_controller/commands")
    parser.add_argument("--command-type", choices=sorted(COMMAND_TYPES), default="float64-multi-array")
    parser.add_argument("--bad", action="store_true", help="also publish one malformed joint state of each kind")
    args = parser.parse_args()

    config = zenoh.Config()
    config.insert_json5("mode", '"router"')
    config.insert_json5("listen/endpoints", json.dumps([args.listen]))
    config.insert_json5("scouting/multicast/enabled", "false")
    session = zenoh.open(config)
    zid = str(session.zid())
    domain, node = args.domain, "robot_driver"
    command_type = COMMAND_TYPES[args.command_type]

    own_tokens = [token(domain, zid, 0, "NN", node)]
    state_token = token(domain, zid, 1, "MP", node, "/joint_states", JOINT_STATE)
    own_tokens += [state_token, token(domain, zid, 2, "MS", node, args.command_topic, command_type)]
    alive = [session.liveliness().declare_token(key) for key in own_tokens]
    state_gid = gid_of(state_token)
    states = zenoh.ext.declare_advanced_publisher(session, data_key(domain, "/joint_states", JOINT_STATE))
    commands = Commands(command_type, ["x", "y"])
    subscriber = zenoh.ext.declare_advanced_subscriber(
        session, data_key(domain, args.command_topic, command_type), commands.on_sample)

    # The point mass of the reach task, stepped at 30 Hz on the newest command.
    x, y, vx, vy = 0.35, 0.0, 0.0, 0.0
    sequence = 0
    sent_bad = {}
    first_command_at = None
    positions = []
    started = time.monotonic()
    deadline = started
    rtchunk_tokens = []
    while time.monotonic() - started < args.seconds:
        deadline += 1.0 / RATE_HZ
        time.sleep(max(0.0, deadline - time.monotonic()))
        with commands.lock:
            force = list(commands.latest)
            if commands.received and first_command_at is None:
                first_command_at = time.monotonic() - started
        if first_command_at is not None:
            dt = 1.0 / RATE_HZ
            fx, fy = (max(-1.0, min(1.0, f)) for f in force)
            vx += (MAX_FORCE * fx - DRAG * vx) * dt
            vy += (MAX_FORCE * fy - DRAG * vy) * dt
            x, y = x + vx * dt, y + vy * dt
            positions.append([x, y])
        sequence += 1
        states.put(joint_state(x, y, vx, vy), attachment=attachment(sequence, state_gid))
        step = len(positions)
        if args.bad and first_command_at is not None and 10 <= step < 40 and step % 5 == 0:
            bad = {
                10: ("malformed", joint_state(x, y, vx, vy)[:30], attachment(sequence + 1, state_gid)),
                15: ("malformed", joint_state(x, y, vx, vy), None),
                20: ("nan_or_inf", joint_state(x, y, vx, vy, nan=True), attachment(sequence + 1, state_gid)),
                25: ("dimensions", joint_state(x, y, vx, vy, names=["gripper", "y"]),
                     attachment(sequence + 1, state_gid)),
                30: ("out_of_order", joint_state(x, y, vx, vy), attachment(sequence - 3, state_gid)),
                35: ("other_source", joint_state(x, y, vx, vy), attachment(1, gid_of(state_token + "/intruder"))),
            }[step]
            kind, payload, extra = bad
            if kind != "out_of_order" and kind != "other_source":
                sequence += 1
            states.put(payload, attachment=extra) if extra is not None else states.put(payload)
            sent_bad[kind] = sent_bad.get(kind, 0) + 1
        if not rtchunk_tokens and time.monotonic() - started > args.seconds / 2:
            rtchunk_tokens = [key for key in graph(session, domain) if f"/{zid}/" not in key]

    with commands.lock:
        sequences = list(commands.sequences)
        report = {
            "zid": zid,
            "states_published": sequence,
            "bad_sent": sent_bad,
            "commands_received": commands.received,
            "command_problems": commands.problems,
            "command_sequences_increase_by_one": all(b - a == 1 for a, b in zip(sequences, sequences[1:])),
            "first_command_sequence": sequences[0] if sequences else None,
            "command_gids": [gid.hex() for gid in commands.gids],
            "command_clock_offset_ms_max": max(commands.clock_offsets_ms, default=None),
            "first_command_after_s": first_command_at,
            "positions": positions,
            "graph": rtchunk_tokens,
            "expected_gid_of": {key: gid_of(key).hex() for key in rtchunk_tokens},
            "type_hashes": {name: TYPES.hash_rihs01(name) for name in [JOINT_STATE, command_type]},
        }
    subscriber.undeclare()
    states.undeclare()
    del alive
    session.close()
    with open(args.report, "w") as out:
        json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
