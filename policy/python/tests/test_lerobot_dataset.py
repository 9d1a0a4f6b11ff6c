"""LeRobotDataset v3.0 directories as training data: frames written by pyarrow in the format's layout (shuffled
across two files, a PNG camera) load in `index` order with their images, and what the trainer cannot take (an
older version, video features, two cameras, a missing column) is refused naming the file and the feature."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rtchunk_train import dataset


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def write_dataset(root, features_extra=None, version="v3.0", drop=None):
    rng = np.random.default_rng(3)
    n = 6
    state = rng.normal(size=(n, 3)).astype(np.float32)
    action = rng.normal(size=(n, 2)).astype(np.float32)
    images = rng.integers(0, 256, (n, 4, 5, 3), dtype=np.uint8)
    features = {"observation.state": {"dtype": "float32", "shape": [3], "names": None},
                "action": {"dtype": "float32", "shape": [2], "names": None},
                "observation.images.front": {"dtype": "image", "shape": [4, 5, 3], "names": None},
                **(features_extra or {})}
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": version, "fps": 10, "features": features}))
    columns = {"observation.state": list(state), "action": list(action),
               "observation.images.front": [{"bytes": png(i), "path": None} for i in images],
               "episode_index": [0, 0, 0, 1, 1, 1], "index": list(range(n))}
    for key in drop or ():
        del columns[key]
    table = pa.table({k: [list(v) if isinstance(v, np.ndarray) else v for v in vs] for k, vs in columns.items()})
    order = [4, 1, 5, 0, 3, 2]  # rows out of order, across two files
    for file, rows in enumerate((order[:3], order[3:])):
        (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(rows), root / "data" / "chunk-000" / f"file-{file:03d}.parquet")
    return state, action, images


def test_frames_load_in_index_order_with_their_images(tmp_path):
    state, action, images = write_dataset(tmp_path)
    loaded = dataset.load(tmp_path)
    np.testing.assert_array_equal(loaded.observation, state)
    np.testing.assert_array_equal(loaded.action, action)
    np.testing.assert_array_equal(loaded.episode_index, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(loaded.camera, images)
    assert dataset.episode_seeds(tmp_path) is None


@pytest.mark.parametrize("extra, version, drop, message", [
    ({}, "v2.1", None, "codebase_version 'v2.1'"),
    ({"observation.images.wrist": {"dtype": "video", "shape": [4, 5, 3]}}, "v3.0", None, "stored as video"),
    ({"observation.images.side": {"dtype": "image", "shape": [4, 5, 3]}}, "v3.0", None, "one camera"),
    ({"action": {"dtype": "int64", "shape": [2]}}, "v3.0", None, "features.action must be a float32 vector"),
    ({}, "v3.0", ["episode_index"], "missing columns ['episode_index']"),
])
def test_what_the_trainer_cannot_take_is_refused_naming_it(tmp_path, extra, version, drop, message):
    write_dataset(tmp_path, extra, version, drop)
    with pytest.raises(ValueError, match=r".*") as error:
        dataset.load(tmp_path)
    assert message in str(error.value) and str(tmp_path) in str(error.value), str(error.value)
