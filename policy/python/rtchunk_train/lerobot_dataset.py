"""Reads a LeRobotDataset v3.0 directory (Hugging Face LeRobot's format: `meta/info.json`, parquet frames under
`data/`) as training demonstrations, so a team's existing LeRobot data trains an rtchunk policy.

`observation.state` becomes the observation, `action` the action, `episode_index` the episodes; one image feature
(`dtype: image`, PNG or JPEG bytes in the parquet files) becomes the camera. Frames are ordered by their global
`index`. Video features (`dtype: video`, frames in MP4 files) are not read: the error says which feature.
"""

import io
import json
from pathlib import Path

import numpy as np

REQUIRED = ("observation.state", "action", "episode_index", "index")


def is_lerobot_dataset(path: Path) -> bool:
    """Whether `path` is a LeRobotDataset directory (it holds `meta/info.json`)."""
    return (Path(path) / "meta" / "info.json").is_file()


def _features(root: Path) -> tuple[dict, str | None]:
    """The dataset's features, checked, and its single image feature (or None)."""
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise ValueError(f"{info_path}: codebase_version {version!r}; rtchunk reads LeRobotDataset v3.x "
                         f"(convert older datasets with LeRobot's convert_dataset_v21_to_v30)")
    features = info.get("features", {})
    for key in ("observation.state", "action"):
        feature = features.get(key)
        if feature is None or feature.get("dtype") not in ("float32", "float64") or len(feature.get("shape", ())) != 1:
            raise ValueError(f"{info_path}: features.{key} must be a float32 vector (dtype float32, shape [n]), "
                             f"got {feature}")
    videos = [key for key, f in features.items() if f.get("dtype") == "video"]
    if videos:
        raise ValueError(f"{info_path}: features {videos} are stored as video; rtchunk's trainer reads image "
                         f"features (dtype image) only")
    images = [key for key, f in features.items() if f.get("dtype") == "image"]
    if len(images) > 1:
        raise ValueError(f"{info_path}: image features {images}; rtchunk's trainer takes one camera")
    return features, (images[0] if images else None)


def _decode_image(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL raises several kinds for bad bytes
        raise ValueError(f"{where}: not a readable image ({error})") from error


def read(root: Path) -> dict[str, np.ndarray]:
    """The dataset's frames as arrays: `observation` float32 [N, O], `action` float32 [N, A], `episode_index`
    int64 [N] and, with an image feature, `camera0` uint8 [N, height, width, 3]; ordered by `index`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(root)
    _, image_key = _features(root)
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise ValueError(f"{root / 'data'}: no parquet files (expected data/chunk-*/file-*.parquet)")
    columns = list(REQUIRED) + ([image_key] if image_key else [])
    tables = []
    for file in files:
        table = pq.read_table(file)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValueError(f"{file}: missing columns {missing}")
        tables.append(table.select(columns))
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table["index"]))
    arrays = {"episode_index": table["episode_index"].to_numpy().astype(np.int64)}
    for key, name in (("observation.state", "observation"), ("action", "action")):
        column = table[key].combine_chunks()
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        lengths = set(pc.list_value_length(column).to_pylist())
        if len(lengths) != 1:
            raise ValueError(f"{root}: {key} rows have different lengths {sorted(lengths)}")
        arrays[name] = values.reshape(len(table), lengths.pop()).astype(np.float32)
    if image_key:
        images = table[image_key].to_pylist()
        arrays["camera0"] = np.stack([_decode_image(image["bytes"], f"{root}: {image_key} frame {row}")
                                      for row, image in enumerate(images)])
    return arrays
