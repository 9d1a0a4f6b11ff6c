"""The demonstration dataset format shared by the simulator (which writes it) and the trainer (which reads it).
The trainer also reads a LeRobotDataset v3.0 directory (`rtchunk sim collect --format lerobot`, `rtchunk export
lerobot`, or a team's own LeRobot data; see `lerobot_dataset.py`) into the same arrays.

One `.npz` file with three arrays, one row per control step, episodes stored one after another in time order:

- `observation`: float32 [N, observation_dim]
- `action`: float32 [N, action_dim], the action taken at that step
- `episode_index`: int64 [N], non-decreasing
- `episode_seeds` (optional): int64 [2], the half-open range of simulator episode seeds the demonstrations came
  from; training records it in the bundle's manifest (`training.episode_seeds`)
- `camera0` (optional): uint8 [N, height, width, 3], what the task's camera saw at each step (`rtchunk sim collect
  --camera-width W`: the images `rtchunk sim serve --camera-width W` sends)

Training chunks are the H actions from each step on, within its episode; past the episode's end the last action is
held (never zeros, which would decode to the dataset mean).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtchunk_train import lerobot_dataset


@dataclass(frozen=True)
class Dataset:
    """Demonstrations, validated."""

    observation: np.ndarray
    action: np.ndarray
    episode_index: np.ndarray
    camera: np.ndarray | None = None

    def chunks(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Observations [N, O] and their action chunks [N, H, A]."""
        n = len(self.action)
        index = np.arange(n)[:, None] + np.arange(horizon)[None, :]
        ends = np.searchsorted(self.episode_index, self.episode_index, side="right") - 1
        index = np.minimum(index, ends[:, None])
        return self.observation, self.action[index]

    def statistics(self) -> dict:
        """Mean and standard deviation per dimension, as the bundle manifest stores them."""

        def stats(x):
            std = np.maximum(x.std(axis=0), 1e-6)
            return {"mean": x.mean(axis=0).astype(float).tolist(), "std": std.astype(float).tolist()}

        return {"observation": stats(self.observation), "action": stats(self.action)}


def save(path: Path, observation, action, episode_index):
    """Writes a dataset file after validating it."""
    dataset = validate(path, np.asarray(observation), np.asarray(action), np.asarray(episode_index))
    np.savez_compressed(path, observation=dataset.observation, action=dataset.action, episode_index=dataset.episode_index)


def episode_seeds(path: Path):
    """The `[first, end)` episode seeds a dataset file was collected from, or None when it does not say."""
    if lerobot_dataset.is_lerobot_dataset(path):
        return None
    with np.load(path) as data:
        if "episode_seeds" not in data.files:
            return None
        first, end = (int(v) for v in data["episode_seeds"])
        return [first, end]


def load(path: Path) -> Dataset:
    """Reads and validates a dataset file (or LeRobotDataset directory); errors name the file and the array."""
    if lerobot_dataset.is_lerobot_dataset(path):
        return _from_arrays(path, lerobot_dataset.read(path))
    with np.load(path) as data:
        return _from_arrays(path, {name: data[name] for name in data.files})


def _from_arrays(path: Path, data: dict) -> Dataset:
    """Validates the arrays of a dataset (a camera is optional)."""
    missing = {"observation", "action", "episode_index"} - set(data)
    if missing:
        raise ValueError(f"{path}: missing arrays {sorted(missing)}")
    dataset = validate(path, data["observation"], data["action"], data["episode_index"])
    if "camera0" not in data:
        return dataset
    camera = data["camera0"]
    if camera.dtype != np.uint8 or camera.ndim != 4 or camera.shape[3] != 3 or len(camera) != len(dataset.action):
        raise ValueError(f"{path}: camera0 must be uint8 [{len(dataset.action)}, height, width, 3] (one RGB image "
                         f"per row), got {camera.dtype} {list(camera.shape)}")
    return Dataset(dataset.observation, dataset.action, dataset.episode_index, camera)


def validate(path, observation, action, episode_index) -> Dataset:
    """Checks shapes, types and finiteness."""
    if observation.ndim != 2 or action.ndim != 2 or episode_index.ndim != 1:
        raise ValueError(f"{path}: observation and action must be 2-D, episode_index 1-D")
    if not len(observation) == len(action) == len(episode_index):
        raise ValueError(f"{path}: observation, action and episode_index have different lengths")
    for name, values in (("observation", observation), ("action", action)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{path}: {name} holds NaN or infinite values")
    if np.any(np.diff(episode_index) < 0):
        raise ValueError(f"{path}: episode_index must be non-decreasing")
    return Dataset(observation.astype(np.float32), action.astype(np.float32), episode_index.astype(np.int64))


def toy_obstacle_demonstrations(episodes: int, seed: int, rate_hz: float = 50.0) -> Dataset:
    """A toy two-mode dataset: a point moves from x = -0.9 to 0.9 at 0.6 m/s, passing an obstacle at the origin
    above or below (chosen at random per episode), with small tracking noise. Observation [x, y, vx, vy];
    action: the next position target."""
    rng = np.random.default_rng(seed)
    step = 0.6 / rate_hz
    observations, actions, index = [], [], []
    for episode in range(episodes):
        side = rng.choice([-1.0, 1.0])
        x = np.arange(-0.9, 0.9, step)
        bump = np.where(np.abs(x) < 0.7, 0.37 * np.cos(0.5 * np.pi * x / 0.7) ** 2, 0.0)
        path = np.stack([x, side * bump], axis=1) + rng.normal(scale=0.005, size=(len(x), 2))
        velocity = np.vstack([np.zeros((1, 2)), np.diff(path, axis=0) * rate_hz])
        observations.append(np.hstack([path, velocity]))
        actions.append(np.vstack([path[1:], path[-1:]]))
        index.append(np.full(len(x), episode))
    return validate("toy", np.vstack(observations), np.vstack(actions), np.concatenate(index))
