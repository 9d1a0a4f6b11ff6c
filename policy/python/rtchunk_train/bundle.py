"""Writes and checks rtchunk policy bundles (see policy/BUNDLE.md): three ONNX graphs and a manifest."""

import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import onnxruntime as ort
from jax2onnx import to_onnx

FORMAT_VERSION = 1
# Largest difference between ONNX Runtime and JAX that an fp32 export may show.
EXPORT_TOLERANCE = 1e-5


def vjp_graph(velocity):
    """(A, tau, context, cotangent) -> (v, VJP of A1_hat = A + (1 - tau) v against the cotangent)."""

    def velocity_vjp(actions, tau, context, cotangent):
        def denoiser(a):
            v = velocity(a, tau, context)
            return a + (1.0 - tau[:, :, None]) * v, v

        _, pullback, v = jax.vjp(denoiser, actions, has_aux=True)
        return v, pullback(cotangent)[0]

    return velocity_vjp


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_graph(function, shapes, path: Path, input_names, output_names):
    """Exports a JAX function of float32 arrays with static shapes to ONNX with the given I/O names."""
    model = to_onnx(function, [tuple(s) for s in shapes], model_name=path.stem)
    for graph_input, name in zip(model.graph.input, input_names):
        rename(model.graph, graph_input.name, name)
    for graph_output, name in zip(model.graph.output, output_names):
        rename(model.graph, graph_output.name, name)
    path.write_bytes(model.SerializeToString())


def rename(graph, old: str, new: str):
    """Renames a graph input or output everywhere it appears."""
    if old == new:
        return
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def run_onnx(path: Path, inputs: dict) -> list:
    """Runs a graph in ONNX Runtime on the CPU."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()})


def check_against_jax(path: Path, inputs: dict, expected: list):
    """Refuses an export whose ONNX Runtime outputs differ from JAX's by more than EXPORT_TOLERANCE."""
    got = run_onnx(path, inputs)
    for name, (g, e) in enumerate(zip(got, expected)):
        error = float(np.max(np.abs(np.asarray(g) - np.asarray(e))))
        if not error <= EXPORT_TOLERANCE:
            raise ValueError(f"{path.name}: output {name} differs from JAX by {error:.3g} > {EXPORT_TOLERANCE}")


def write_manifest(directory: Path, manifest: dict, graph_files: dict):
    """Writes manifest.json with the SHA-256 of every graph."""
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["graphs"] = {role: {"file": name, "sha256": sha256(directory / name)} for role, name in graph_files.items()}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
