"""Loads a LeRobotDataset directory with LeRobot's own `LeRobotDataset` class (not rtchunk's code) and prints what
it holds as JSON: the metadata LeRobot read (fps, totals, features, per-episode rows) and every frame as LeRobot's
`__getitem__` returns it (images back to uint8 height x width x channels, as hex). It also recomputes every
statistic of `meta/stats.json` from the frames with numpy and fails when one differs."""

import json
import logging
import sys

import numpy as np
import torch

logging.disable(logging.WARNING)
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: E402

root = sys.argv[1]
dataset = LeRobotDataset("local/rtchunk-export", root=root)
meta = dataset.meta
frames = [dataset[i] for i in range(len(dataset))]
image_keys = [key for key, f in meta.features.items() if f["dtype"] == "image"]


def column(key):
    return np.stack([np.asarray(frame[key]) for frame in frames])


def image_uint8(tensor: torch.Tensor) -> np.ndarray:
    return np.round(tensor.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def summarise(values: np.ndarray) -> dict:
    """numpy's statistics over axis 0, as LeRobot keeps them."""
    quantiles = {f"q{int(q * 100):02d}": np.quantile(values, q, axis=0) for q in (0.01, 0.10, 0.50, 0.90, 0.99)}
    return {"min": values.min(axis=0), "max": values.max(axis=0), "mean": values.mean(axis=0),
            "std": values.std(axis=0), **quantiles}


expected = {key: summarise(column(key).reshape(len(frames), -1).astype(np.float64))
            for key in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
                        "task_index")}
for key in image_keys:
    pixels = np.concatenate([image_uint8(frame[key]).reshape(-1, frame[key].shape[0]) for frame in frames]) / 255.0
    expected[key] = {name: value.reshape(-1, 1, 1) for name, value in summarise(pixels).items()}
for key, stats in expected.items():
    for name, value in stats.items():
        stored = np.asarray(meta.stats[key][name], dtype=np.float64)
        if stored.shape != np.shape(value) and stored.size != np.size(value):
            sys.exit(f"stats {key}.{name}: shape {stored.shape}, expected {np.shape(value)}")
        if not np.allclose(stored.reshape(np.shape(value)), value, rtol=1e-6, atol=1e-9):
            sys.exit(f"stats {key}.{name}: {stored.ravel()[:4]} but the frames give {np.ravel(value)[:4]}")
    counts = np.asarray(meta.stats[key]["count"]).ravel().tolist()
    if counts != [len(frames)]:
        sys.exit(f"stats {key}.count: {counts}, expected [{len(frames)}]")

out = {
    "fps": meta.fps,
    "total_episodes": meta.total_episodes,
    "total_frames": meta.total_frames,
    "features": {key: {"dtype": f["dtype"], "shape": list(f["shape"]), "names": f["names"]}
                 for key, f in meta.features.items()},
    "episodes": [{key: meta.episodes[i][key] for key in ("episode_index", "length", "tasks", "dataset_from_index",
                                                          "dataset_to_index")}
                 for i in range(meta.total_episodes)],
    "frames": {
        "state": column("observation.state").tolist(),
        "action": column("action").tolist(),
        "episode_index": column("episode_index").tolist(),
        "frame_index": column("frame_index").tolist(),
        "index": column("index").tolist(),
        "timestamp": column("timestamp").tolist(),
        "task": [frame["task"] for frame in frames],
    },
    "images": {key: [image_uint8(frame[key]).tobytes().hex() for frame in frames] for key in image_keys},
}
json.dump(out, sys.stdout)
