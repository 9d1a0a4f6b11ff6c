"""Exports the exact Gaussian flow as a policy bundle, with the outputs JAX computed for fixed inputs.

    python -m rtchunk_train.export_gaussian --out policy/fixtures/gaussian
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from . import __version__
from .bundle import export_policy, fixed_inputs, write_expected
from .gaussian import GaussianFlow, GaussianSpec


def export(spec: GaussianSpec, out: Path, batch: int = 3, seed: int = 0) -> dict:
    """Writes the bundle into `out` and returns the recorded inputs and outputs."""
    flow = GaussianFlow(spec)
    inputs = fixed_inputs(spec.horizon, spec.action_dim, spec.observation_dim, batch, seed, per_token=False)
    recorded = export_policy(
        out,
        flow.prefix,
        flow.velocity,
        {
            "horizon": spec.horizon,
            "action_dim": spec.action_dim,
            "observation_dim": spec.observation_dim,
            "context_shape": [spec.horizon, spec.action_dim],
        },
        {
            "name": "gaussian-reference",
            "producer": f"rtchunk_train {__version__} (jax {jax.__version__})",
            "control_rate_hz": 50.0,
            "normalization": {
                "observation": {"mean": [0.0] * spec.observation_dim, "std": [1.0] * spec.observation_dim},
                "action": {"mean": [0.0] * spec.action_dim, "std": [1.0] * spec.action_dim},
            },
            "defaults": {"steps": 5, "beta": 5.0},
            "capabilities": {"exact_vjp": True, "prefix_conditioned": False},
            "attention": {"kind": "none"},
            "reference": {"kind": "gaussian", "spread": spec.spread, "correlation_length": spec.correlation_length},
        },
        inputs,
    )
    recorded["mean"] = np.asarray(flow.mean).tolist()
    write_expected(out, recorded)
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
