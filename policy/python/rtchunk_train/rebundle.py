"""Rewrites an exported bundle without changing what it computes, for robots whose graphs need it.

- ``--external-data``: moves every graph's tensors into one external-data file per graph (``<graph>.weights``),
  as ONNX stores models above 2 GB; the manifest lists each file with its SHA-256 (``graphs.*.external_data``).
- ``--split-observation NAME:SIZE:DTYPE,...``: the prefix graph takes the observation as several named inputs
  (e.g. joints and a float16 task vector) concatenated, in order, into the original observation vector.

Usage: ``python -m rtchunk_train.rebundle SOURCE OUT [--external-data] [--split-observation ...]``.
"""

import argparse
import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from rtchunk_train.bundle import sha256

GRAPHS = ("prefix", "velocity", "velocity_vjp")
ONNX_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}


def split_observation(model: onnx.ModelProto, original: str, parts: list) -> None:
    """Replaces the prefix graph's input ``original`` by ``parts`` (name, size, dtype) cast and concatenated."""
    graph = model.graph
    source = next(i for i in graph.input if i.name == original)
    graph.input.remove(source)
    pieces, nodes = [], []
    for name, size, dtype in parts:
        graph.input.append(helper.make_tensor_value_info(name, ONNX_TYPES[dtype], ["batch", size]))
        if dtype == "float32":
            pieces.append(name)
        else:
            cast = f"{name}_as_float32"
            nodes.append(helper.make_node("Cast", [name], [cast], to=TensorProto.FLOAT))
            pieces.append(cast)
    nodes.append(helper.make_node("Concat", pieces, [original], axis=1))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--external-data", action="store_true")
    parser.add_argument("--split-observation", default="")
    args = parser.parse_args()
    manifest = json.loads((args.source / "manifest.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.source / "expected.json").exists():
        shutil.copy(args.source / "expected.json", args.out / "expected.json")
    parts = []
    for part in filter(None, args.split_observation.split(",")):
        name, size, dtype = part.split(":")
        parts.append((name, int(size), dtype))
    if parts:
        (original,) = manifest["observation"]
        assert sum(size for _, size, _ in parts) == original["shape"][0], "the parts must add up to the observation"
        manifest["observation"] = [{"name": n, "shape": [s], "dtype": d} for n, s, d in parts]
    for key in GRAPHS:
        entry = manifest["graphs"].get(key)
        if entry is None:
            continue
        model = onnx.load(args.source / entry["file"])
        if parts and key == "prefix":
            split_observation(model, original["name"], parts)
            onnx.checker.check_model(model)
        target = args.out / entry["file"]
        if args.external_data:
            weights = f"{Path(entry['file']).stem}.weights"
            onnx.save_model(model, target, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=weights, size_threshold=1024)
            entry["external_data"] = {weights: sha256(args.out / weights)}
        else:
            onnx.save_model(model, target)
        entry["sha256"] = sha256(target)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
