"""rebundle --add-guided: a guided graph cut from a bundle's VJP graph computes what the velocity and VJP graphs
compute together."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PACKAGE_ROOT.parent / "fixtures"


def rebundle(source: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtchunk_train.rebundle", str(source), str(out), *flags],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})


def test_the_added_guided_graph_is_the_vjp_of_the_weighted_error_of_its_own_velocity(tmp_path):
    done = rebundle(FIXTURES / "gta-toy", tmp_path, "--add-guided")
    assert done.returncode == 0, done.stderr
    run = lambda graph, feeds: ort.InferenceSession(str(tmp_path / graph)).run(None, feeds)  # noqa: E731
    rng = np.random.default_rng(4)
    session = ort.InferenceSession(str(tmp_path / "velocity.onnx"))
    shapes = {i.name: [d if isinstance(d, int) else 1 for d in i.shape] for i in session.get_inputs()}
    feeds = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    feeds["tau"] = rng.uniform(0, 1, shapes["tau"]).astype(np.float32)
    target = rng.standard_normal(shapes["actions"]).astype(np.float32)
    weights = rng.uniform(0, 1, shapes["tau"]).astype(np.float32)
    (velocity,) = run("velocity.onnx", feeds)
    cotangent = weights[:, :, None] * (target - (feeds["actions"] + (1 - feeds["tau"])[:, :, None] * velocity))
    expected_v, expected_vjp = run("velocity_vjp.onnx", {**feeds, "cotangent": cotangent})
    guided_v, guided_vjp = run("guided.onnx", {**feeds, "target": target, "weights": weights})
    np.testing.assert_allclose(guided_v, expected_v, atol=1e-6)
    np.testing.assert_allclose(guided_vjp, expected_vjp, atol=1e-6)
    assert np.abs(expected_vjp).max() > 1e-3


def test_a_bundle_that_cannot_take_a_guided_graph_is_refused_with_the_reason(tmp_path):
    for fixture, reason in (("gta-toy-fp16", "dtype is float16"), ("vla-tiny", "it has one")):
        done = rebundle(FIXTURES / fixture, tmp_path / fixture, "--add-guided")
        assert done.returncode != 0
        assert f"{fixture}/manifest.json" in done.stderr and reason in done.stderr, done.stderr
