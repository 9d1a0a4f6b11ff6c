"""Exports the exact Gaussian flow as a policy bundle, with the outputs JAX computed for fixed inputs.

    python -m rtchunk_train.export_gaussian --out policy/fixtures/gaussian
"""

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from . import __version__
from .bundle import EXPORT_TOLERANCE, check_against_jax, export_graph, vjp_graph, write_manifest
from .gaussian import GaussianFlow, GaussianSpec


def fixed_inputs(spec: GaussianSpec, batch: int, seed: int) -> dict:
    """Deterministic inputs for the recorded outputs: observations, noisy chunks, per-chunk tau, cotangents."""
    rng = np.random.default_rng(seed)
    h, a = spec.horizon, spec.action_dim
    tau = np.repeat(rng.uniform(0.0, 0.9, size=(batch, 1)), h, axis=1)
    return {
        "observation": rng.normal(size=(batch, spec.observation_dim)).astype(np.float32),
        "actions": rng.normal(size=(batch, h, a)).astype(np.float32),
        "tau": tau.astype(np.float32),
        "cotangent": rng.normal(size=(batch, h, a)).astype(np.float32),
    }


def export(spec: GaussianSpec, out: Path, batch: int = 3, seed: int = 0) -> dict:
    """Writes the bundle into `out` and returns the recorded inputs and outputs."""
    out.mkdir(parents=True, exist_ok=True)
    flow = GaussianFlow(spec)
    h, a, o = spec.horizon, spec.action_dim, spec.observation_dim
    inputs = fixed_inputs(spec, batch, seed)
    context = np.asarray(flow.prefix(inputs["observation"]))
    velocity = np.asarray(flow.velocity(inputs["actions"], inputs["tau"], context))
    v, vjp = (np.asarray(x) for x in jax.jit(vjp_graph(flow.velocity))(inputs["actions"], inputs["tau"], context, inputs["cotangent"]))
    chunk, context_shape = ("B", h, a), ("B", h, a)
    export_graph(flow.prefix, [("B", o)], out / "prefix.onnx", ["observation"], ["context"])
    export_graph(flow.velocity, [chunk, ("B", h), context_shape], out / "velocity.onnx", ["actions", "tau", "context"], ["velocity"])
    export_graph(
        vjp_graph(flow.velocity),
        [chunk, ("B", h), context_shape, chunk],
        out / "velocity_vjp.onnx",
        ["actions", "tau", "context", "cotangent"],
        ["velocity", "vjp"],
    )
    check_against_jax(out / "prefix.onnx", {"observation": inputs["observation"]}, [context])
    flow_inputs = {"actions": inputs["actions"], "tau": inputs["tau"], "context": context}
    check_against_jax(out / "velocity.onnx", flow_inputs, [velocity])
    check_against_jax(out / "velocity_vjp.onnx", {**flow_inputs, "cotangent": inputs["cotangent"]}, [v, vjp])
    write_manifest(
        out,
        {
            "name": "gaussian-reference",
            "producer": f"rtchunk_train {__version__} (jax {jax.__version__})",
            "action_dim": a,
            "horizon": h,
            "control_rate_hz": 50.0,
            "observation": [{"name": "observation", "shape": [o], "dtype": "float32"}],
            "context_shape": [h, a],
            "normalization": {
                "observation": {"mean": [0.0] * o, "std": [1.0] * o},
                "action": {"mean": [0.0] * a, "std": [1.0] * a},
            },
            "time_convention": "tau-one-is-data",
            "defaults": {"steps": 5, "beta": 5.0},
            "capabilities": {"exact_vjp": True, "prefix_conditioned": False},
            "attention": {"kind": "none"},
            "dtype": "float32",
            "reference": {"kind": "gaussian", "spread": spec.spread, "correlation_length": spec.correlation_length},
        },
        {"prefix": "prefix.onnx", "velocity": "velocity.onnx", "velocity_vjp": "velocity_vjp.onnx"},
    )
    recorded = {
        "tolerance": EXPORT_TOLERANCE,
        "inputs": {k: v.tolist() for k, v in inputs.items()},
        "context": context.tolist(),
        "velocity": velocity.tolist(),
        "vjp": vjp.tolist(),
        "mean": np.asarray(flow.mean).tolist(),
    }
    (out / "expected.json").write_text(json.dumps(recorded) + "\n")
    return recorded


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--action-dim", type=int, default=2)
    args = parser.parse_args()
    export(GaussianSpec(horizon=args.horizon, action_dim=args.action_dim), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
