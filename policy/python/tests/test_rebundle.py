"""rebundle --add-guided: a guided graph cut from a bundle's VJP graph computes what the velocity and VJP graphs
compute together; --simplify leaves every output as it was."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PACKAGE_ROOT.parent / "fixtures"
# A bundle exported before guided graphs existed (symbolic batch, graphs as traced).
OLD_BUNDLE = PACKAGE_ROOT.parents[1] / "sim" / "policies" / "reach" / "base-s0"


def rebundle(source: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtchunk_train.rebundle", str(source), str(out), *flags],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})


def test_the_added_guided_graph_is_the_vjp_of_the_weighted_error_of_its_own_velocity(tmp_path):
    done = rebundle(OLD_BUNDLE, tmp_path, "--add-guided", "--simplify")
    assert done.returncode == 0, done.stderr
    run = lambda graph, feeds, at=tmp_path: ort.InferenceSession(str(at / graph)).run(None, feeds)  # noqa: E731
    rng = np.random.default_rng(4)
    session = ort.InferenceSession(str(tmp_path / "velocity.onnx"))
    shapes = {i.name: [d if isinstance(d, int) else 3 for d in i.shape] for i in session.get_inputs()}
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
    (original_velocity,) = run("velocity.onnx", feeds, OLD_BUNDLE)
    np.testing.assert_allclose(velocity, original_velocity, rtol=2e-6, atol=1e-6)
    _, original_vjp = run("velocity_vjp.onnx", {**feeds, "cotangent": cotangent}, OLD_BUNDLE)
    np.testing.assert_allclose(expected_vjp, original_vjp, rtol=2e-6, atol=1e-6)


def test_a_bundle_that_cannot_take_a_guided_graph_is_refused_with_the_reason(tmp_path):
    # A float16 bundle as exported before guided graphs: the committed one without its guided graph.
    float16 = tmp_path / "float16-without-guided"
    shutil.copytree(FIXTURES / "gta-toy-fp16", float16)
    manifest = json.loads((float16 / "manifest.json").read_text())
    del manifest["graphs"]["guided"]
    (float16 / "manifest.json").write_text(json.dumps(manifest))
    for source, reason in ((float16, "dtype is float16"), (FIXTURES / "vla-tiny", "it has one")):
        fixture = source.name
        done = rebundle(source, tmp_path / "out" / fixture, "--add-guided")
        assert done.returncode != 0
        assert f"{fixture}/manifest.json" in done.stderr and reason in done.stderr, done.stderr
