"""Rewrites an exported bundle without changing what it computes, for robots whose graphs need it.

- ``--external-data``: moves every graph's tensors into one external-data file per graph (``<graph>.weights``),
  as ONNX stores models above 2 GB; the manifest lists each file with its SHA-256 (``graphs.*.external_data``).
- ``--split-observation NAME:SIZE:DTYPE,...``: the prefix graph takes the observation as several named inputs
  (e.g. joints and a float16 task vector) concatenated, in order, into the original observation vector.
- ``--noise-at-one``: the flow graphs take t = 1 - tau and return the velocity negated, the convention of
  openpi and LeRobot (``time_convention = "t-one-is-noise"``); the recorded outputs are converted alike. A
  runtime that honours the manifest computes the same chunks from it.
- ``--time-float32``: the flow graphs of a float16 or bfloat16 bundle take ``tau`` in float32 and cast it
  inside (``time_dtype = "float32"``), so the runtime hands them the time unrounded; the graphs compute the same.
- ``--add-guided``: a float32 bundle (tau = 1 data) without a guided graph gets one, cut from its VJP graph: the
  cotangent input becomes W (Y - (A + (1 - tau) v)) of the graph's own velocity v, with the target Y and the
  weights W as inputs. A guided RTC step is then one forward and one backward pass instead of a velocity call
  and a VJP call (which runs the forward pass again); the VJP is the same computation.
- ``--simplify``: every graph gets the rewrites that exports now apply (``rtchunk_train.simplify``: identity
  transposes dropped, layer norms written out as nine nodes made one where no backward pass reads them), for
  fewer GPU kernels per step; the outputs are the same.
- ``--host-only-node``: the velocity graph of a float32 bundle also takes the determinant of its actions (as
  2 x 2 blocks), an operator ONNX Runtime's CUDA provider has no kernel for, and adds it times zero to the
  velocity: the outputs stay the same, and a GPU load has a node that would run on the CPU on tensors copied
  there (the fixture that tests that such a load is refused with the node named).

Usage: ``python -m rtchunk_train.rebundle SOURCE OUT [--external-data] [--split-observation ...] [--noise-at-one]
[--time-float32] [--add-guided] [--simplify] [--host-only-node]``.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from rtchunk_train.bundle_files import sha256
from rtchunk_train.simplify import simplify

GRAPHS = ("prefix", "velocity", "velocity_vjp", "guided")
FLOW_GRAPHS = ("velocity", "velocity_vjp", "guided")
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

def rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Makes every node that reads or writes the tensor ``old`` read or write ``new``."""
    for node in graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new


def noise_at_one(model: onnx.ModelProto) -> None:
    """Turns a flow graph of the paper's convention into one taking ``t = 1 - tau`` and returning ``-velocity``
    under the same input and output names."""
    graph = model.graph
    tau = next(i for i in graph.input if i.name == "tau")
    rename_uses(graph, "tau", "tau_paper")
    rename_uses(graph, "velocity", "velocity_paper")
    one = helper.make_tensor("one", tau.type.tensor_type.elem_type, [], [1.0])
    first = [helper.make_node("Sub", ["one", "tau"], ["tau_paper"])]
    last = [helper.make_node("Neg", ["velocity_paper"], ["velocity"])]
    graph.initializer.append(one)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(first + nodes + last)


def time_float32(model: onnx.ModelProto) -> None:
    """Makes a flow graph take ``tau`` in float32, cast to the type its nodes read."""
    graph = model.graph
    tau = next(i for i in graph.input if i.name == "tau")
    elem_type = tau.type.tensor_type.elem_type
    if elem_type == TensorProto.FLOAT:
        return
    rename_uses(graph, "tau", "tau_cast")
    tau.type.tensor_type.elem_type = TensorProto.FLOAT
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([helper.make_node("Cast", ["tau"], ["tau_cast"], to=elem_type)] + nodes)


def topologically_sorted(graph: onnx.GraphProto) -> None:
    """Puts the graph's nodes in an order where every node follows the producers of its inputs (Kahn's algorithm,
    iterative: a VJP graph's longest path runs to thousands of nodes)."""
    produced_by = {output: i for i, node in enumerate(graph.node) for output in node.output}
    readers = [[] for _ in graph.node]
    waiting = [0] * len(graph.node)
    for i, node in enumerate(graph.node):
        for producer in {produced_by[name] for name in node.input if name in produced_by}:
            readers[producer].append(i)
            waiting[i] += 1
    ready = [i for i, count in enumerate(waiting) if count == 0]
    order = []
    while ready:
        i = ready.pop()
        order.append(i)
        for reader in readers[i]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if len(order) != len(graph.node):
        raise ValueError(f"{graph.name}: its nodes form a cycle")
    nodes = [onnx.NodeProto.FromString(graph.node[i].SerializeToString()) for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


def guided_from_vjp(model: onnx.ModelProto) -> onnx.ModelProto:
    """The guided graph of a float32 VJP graph: its cotangent input replaced by W (Y - (A + (1 - tau) v)) of its
    own velocity output v, with inputs `target` (like `actions`) and `weights` (like `tau`)."""
    guided = onnx.ModelProto.FromString(model.SerializeToString())
    graph = guided.graph
    inputs = {i.name: i for i in graph.input}
    cotangent = inputs["cotangent"]
    if cotangent.type.tensor_type.elem_type != TensorProto.FLOAT or inputs["tau"].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError("--add-guided: the VJP graph's cotangent and tau must be float32")
    target = onnx.ValueInfoProto.FromString(inputs["actions"].SerializeToString())
    target.name = "target"
    weights = onnx.ValueInfoProto.FromString(inputs["tau"].SerializeToString())
    weights.name = "weights"
    graph.input.remove(cotangent)
    graph.input.extend([target, weights])
    graph.initializer.extend([
        helper.make_tensor("guided_one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("guided_token_axis", TensorProto.INT64, [1], [2]),
    ])
    graph.node.extend([
        helper.make_node("Unsqueeze", ["tau", "guided_token_axis"], ["guided_tau"], name="guided_tau"),
        helper.make_node("Sub", ["guided_one", "guided_tau"], ["guided_remaining"], name="guided_remaining"),
        helper.make_node("Mul", ["guided_remaining", "velocity"], ["guided_step"], name="guided_step"),
        helper.make_node("Add", ["actions", "guided_step"], ["guided_denoised"], name="guided_denoised"),
        helper.make_node("Sub", ["target", "guided_denoised"], ["guided_error"], name="guided_error"),
        helper.make_node("Unsqueeze", ["weights", "guided_token_axis"], ["guided_weights"], name="guided_weights"),
        helper.make_node("Mul", ["guided_weights", "guided_error"], ["cotangent"], name="guided_cotangent"),
    ])
    topologically_sorted(graph)
    onnx.checker.check_model(guided)
    return guided


def host_only_node(model: onnx.ModelProto) -> None:
    """Adds ``0 * sum(det(actions as 2 x 2 blocks))`` to a float32 velocity graph's output."""
    graph = model.graph
    rename_uses(graph, "velocity", "velocity_plain")
    graph.initializer.extend([
        helper.make_tensor("blocks_shape", TensorProto.INT64, [3], [-1, 2, 2]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ])
    graph.node.extend([
        helper.make_node("Reshape", ["actions", "blocks_shape"], ["action_blocks"]),
        helper.make_node("Det", ["action_blocks"], ["determinants"], name="host_only_det"),
        helper.make_node("ReduceSum", ["determinants"], ["determinant_sum"], keepdims=0),
        helper.make_node("Mul", ["determinant_sum", "zero"], ["nothing"]),
        helper.make_node("Add", ["velocity_plain", "nothing"], ["velocity"]),
    ])


def noise_at_one_recording(recorded: dict) -> dict:
    """The recorded graph inputs and outputs (``expected.json``) in the t = 1 noise convention."""
    recorded["inputs"]["tau"] = (1.0 - np.asarray(recorded["inputs"]["tau"], np.float64)).tolist()
    recorded["velocity"] = (-np.asarray(recorded["velocity"], np.float64)).tolist()
    return recorded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--external-data", action="store_true")
    parser.add_argument("--split-observation", default="")
    parser.add_argument("--noise-at-one", action="store_true")
    parser.add_argument("--time-float32", action="store_true")
    parser.add_argument("--add-guided", action="store_true")
    parser.add_argument("--simplify", action="store_true")
    parser.add_argument("--host-only-node", action="store_true")
    args = parser.parse_args()
    manifest = json.loads((args.source / "manifest.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    flip = args.noise_at_one and manifest["time_convention"] == "tau-one-is-data"
    if (args.source / "expected.json").exists():
        recorded = json.loads((args.source / "expected.json").read_text())
        if flip:
            recorded = noise_at_one_recording(recorded)
        (args.out / "expected.json").write_text(json.dumps(recorded))
    if flip:
        manifest["time_convention"] = "t-one-is-noise"
    if args.time_float32 and manifest["dtype"] != "float32":
        manifest["time_dtype"] = "float32"
    if args.add_guided:
        problem = ("it has one" if "guided" in manifest["graphs"] else
                   "it has no VJP graph" if "velocity_vjp" not in manifest["graphs"] else
                   f"dtype is {manifest['dtype']}, expected float32" if manifest["dtype"] != "float32" else
                   "its time convention is t = 1 noise" if manifest["time_convention"] != "tau-one-is-data" else None)
        if problem:
            raise SystemExit(f"--add-guided: {args.source / 'manifest.json'}: {problem}")
        manifest["graphs"]["guided"] = {"file": "guided.onnx"}
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
        if args.add_guided and key == "guided":
            model = guided_from_vjp(onnx.load(args.source / manifest["graphs"]["velocity_vjp"]["file"]))
        else:
            model = onnx.load(args.source / entry["file"])
        if parts and key == "prefix":
            split_observation(model, original["name"], parts)
            onnx.checker.check_model(model)
        if flip and key in FLOW_GRAPHS:
            noise_at_one(model)
            onnx.checker.check_model(model)
        if args.host_only_node and key == "velocity":
            if manifest["dtype"] != "float32":
                raise SystemExit(f"--host-only-node: {args.source / 'manifest.json'}: dtype is {manifest['dtype']}, "
                                 "expected float32")
            host_only_node(model)
            onnx.checker.check_model(model)
        if args.time_float32 and key in FLOW_GRAPHS:
            time_float32(model)
            onnx.checker.check_model(model)
        if args.simplify:
            simplify(model)
        target = args.out / entry["file"]
        if args.external_data:
            weights = f"{Path(entry['file']).stem}.weights"
            onnx.save_model(model, target, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=weights, size_threshold=1024)
            entry["external_data"] = {weights: sha256(args.out / weights)}
        else:
            onnx.save_model(model, target)
            entry.pop("external_data", None)
        entry["sha256"] = sha256(target)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
