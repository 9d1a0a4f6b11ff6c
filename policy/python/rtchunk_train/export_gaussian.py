"""Exports the exact Gaussian flow as a policy bundle, with the outputs JAX computed for fixed inputs.

    python -m rtchunk_train.export_gaussian --out policy/fixtures/gaussian
    python -m rtchunk_train.export_gaussian --out policy/fixtures/gaussian-camera --camera 22x42x3

With `--camera ROWSxCOLUMNSxCHANNELS` the prefix also takes a uint8 image from a camera named "front" and shifts
the mean chunk toward the image's brightest region (a fixture for the camera path).
"""

import argparse
from pathlib import Path

import jax
import numpy as np

from . import __version__
from .bundle import export_policy, fixed_inputs, write_expected
from .gaussian import CameraGaussianFlow, GaussianFlow, GaussianSpec


def export(spec: GaussianSpec, out: Path, batch: int = 3, seed: int = 0, camera: tuple | None = None) -> dict:
    """Writes the bundle into `out` and returns the recorded inputs and outputs; `camera` (rows, columns,
    channels) adds a camera input named "front"."""
    flow = CameraGaussianFlow(spec) if camera else GaussianFlow(spec)
    inputs = fixed_inputs(spec.horizon, spec.action_dim, spec.observation_dim, batch, seed, per_token=False)
    cameras = []
    if camera:
        rows, columns, channels = camera
        cameras = [{"name": "front", "height": rows, "width": columns, "channels": channels}]
        inputs["front"] = np.random.default_rng(seed + 1).integers(0, 256, size=(batch, rows, columns, channels), dtype=np.uint8)
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
            "name": "gaussian-camera" if camera else "gaussian-reference",
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
        cameras=cameras,
    )
    recorded["mean"] = np.asarray(flow.mean).tolist()
    write_expected(out, recorded)
    return recorded


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--action-dim", type=int, default=2)
    parser.add_argument("--camera", help="ROWSxCOLUMNSxCHANNELS of a camera input named front")
    args = parser.parse_args()
    camera = tuple(int(v) for v in args.camera.split("x")) if args.camera else None
    export(GaussianSpec(horizon=args.horizon, action_dim=args.action_dim), args.out, camera=camera)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
