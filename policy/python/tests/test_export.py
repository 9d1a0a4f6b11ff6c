"""The export toolchain: bundles it writes match JAX in ONNX Runtime, carry correct hashes, and a mismatch is refused."""

import json

import numpy as np
import pytest

from rtchunk_train.bundle import EXPORT_TOLERANCE, check_against_jax, run_onnx, sha256
from rtchunk_train.export_gaussian import export
from rtchunk_train.gaussian import GaussianFlow, GaussianSpec, smooth_covariance

SPEC = GaussianSpec(horizon=6, action_dim=2)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gaussian")
    recorded = export(SPEC, directory, batch=2, seed=3)
    return directory, recorded


def test_manifest_lists_every_graph_with_its_hash(bundle):
    directory, _ = bundle
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert (manifest["horizon"], manifest["action_dim"]) == (6, 2)
    for graph in manifest["graphs"].values():
        assert sha256(directory / graph["file"]) == graph["sha256"]


def test_graphs_match_jax_in_onnx_runtime(bundle):
    directory, recorded = bundle
    inputs = {k: np.asarray(v, dtype=np.float32) for k, v in recorded["inputs"].items()}
    context = np.asarray(recorded["context"], dtype=np.float32)
    (velocity,) = run_onnx(directory / "velocity.onnx", {"actions": inputs["actions"], "tau": inputs["tau"], "context": context})
    assert np.max(np.abs(velocity - np.asarray(recorded["velocity"]))) <= EXPORT_TOLERANCE["float32"]
    _, vjp = run_onnx(
        directory / "velocity_vjp.onnx",
        {"actions": inputs["actions"], "tau": inputs["tau"], "context": context, "cotangent": inputs["cotangent"]},
    )
    assert np.max(np.abs(vjp - np.asarray(recorded["vjp"]))) <= EXPORT_TOLERANCE["float32"]


def test_the_velocity_is_the_exact_gaussian_flow():
    # At tau = 0 the denoiser is the prior mean; its Jacobian there is zero, at tau -> 1 the identity.
    flow = GaussianFlow(SPEC)
    actions = np.random.default_rng(0).normal(size=(1, 6, 2)).astype(np.float32)
    context = np.asarray(flow.prefix(np.zeros((1, 4), np.float32)))
    zero = np.zeros((1, 6), np.float32)
    np.testing.assert_allclose(flow.denoised(actions, zero, context), context, atol=1e-6)
    near_one = np.full((1, 6), 0.9999, np.float32)
    np.testing.assert_allclose(flow.denoised(actions, near_one, context), actions, atol=1e-2)
    assert np.all(np.linalg.eigvalsh(smooth_covariance(6, 1.0, 3.0)) > 0)


def test_an_export_that_differs_from_jax_is_refused(bundle):
    directory, recorded = bundle
    inputs = {k: np.asarray(v, dtype=np.float32) for k, v in recorded["inputs"].items()}
    context = np.asarray(recorded["context"], dtype=np.float32)
    wrong = np.asarray(recorded["velocity"], dtype=np.float32) + 1e-3
    with pytest.raises(ValueError, match="differs from JAX"):
        check_against_jax(directory / "velocity.onnx", {"actions": inputs["actions"], "tau": inputs["tau"], "context": context}, [wrong])


def test_an_exact_reference_allows_what_jaxs_own_float32_rounding_allows(bundle):
    # ONNX Runtime's velocity as it is; JAX's and an exact one placed around it. JAX 1e-4 off the exact result
    # allows ONNX Runtime 4e-4 (FLOAT32_SLACK x JAX's own error), which the plain check (1e-5 from JAX) refuses.
    directory, recorded = bundle
    inputs = {k: np.asarray(v, dtype=np.float32) for k, v in recorded["inputs"].items()}
    flow = {"actions": inputs["actions"], "tau": inputs["tau"], "context": np.asarray(recorded["context"], dtype=np.float32)}
    onnx_runtime = run_onnx(directory / "velocity.onnx", flow)[0].astype(np.float64)
    exact, jax_float32 = onnx_runtime + 3e-4, onnx_runtime + 2e-4
    check_against_jax(directory / "velocity.onnx", flow, [jax_float32], exact=[exact])
    with pytest.raises(ValueError, match="differs from JAX"):
        check_against_jax(directory / "velocity.onnx", flow, [jax_float32])
    with pytest.raises(ValueError, match="differs from the exact"):
        check_against_jax(directory / "velocity.onnx", flow, [onnx_runtime + 4e-4], exact=[onnx_runtime + 5e-4])


def export_small_transformer(directory, config, params, name: str, **options) -> dict:
    """Exports a small `model` transformer (H = 8, two action values, four observation values) into `directory`
    through the toolchain's checked export; returns the recorded outputs."""
    from rtchunk_train.bundle import export_policy, fixed_inputs
    from rtchunk_train.model import prefix, velocity

    dims = {"horizon": 8, "action_dim": 2, "observation_dim": 4, "context_shape": [1, config.prefix_tokens, config.cache_width()]}
    return export_policy(
        directory,
        lambda o: prefix(config, params, o),
        lambda a, t, c: velocity(config, params, a, t, c),
        dims,
        {"name": name},
        fixed_inputs(8, 2, 4, 1, 0, per_token=False),
        batch=1,
        **options,
    )


def test_a_bfloat16_export_keeps_only_weights_and_matrix_products_in_bfloat16(tmp_path):
    # ONNX Runtime's CUDA provider has bfloat16 MatMul and Cast but no bfloat16 reductions (softmax, layer norm):
    # those must run in float32. The export's own check (ONNX's reference evaluator) matched JAX.
    import jax
    import onnx
    from onnx import TensorProto

    from rtchunk_train.model import ModelConfig, init_params

    config = ModelConfig(layers=1, width=16, heads=2, kv_heads=1)
    params = jax.tree_util.tree_map(lambda x: x.astype("bfloat16"), init_params(config, jax.random.PRNGKey(0)))
    recorded = export_small_transformer(tmp_path, config, params, "bf16", dtype="bfloat16")
    assert recorded["tolerance"] == EXPORT_TOLERANCE["bfloat16"]
    for graph in ("prefix", "velocity", "velocity_vjp"):
        model = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / f"{graph}.onnx")))
        values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        types = {v.name: v.type.tensor_type.elem_type for v in values}
        types.update({i.name: i.data_type for i in model.graph.initializer})
        # Values computed from weights alone (the weights side by side, their columns rearranged): ONNX Runtime
        # folds them into constants when it loads the graph.
        constant = {i.name for i in model.graph.initializer}
        for node in model.graph.node:
            if all(name in constant for name in node.input if name):
                constant.update(node.output)
        in_bfloat16 = {
            node.op_type
            for node in model.graph.node
            if any(types.get(name) == TensorProto.BFLOAT16 for name in [*node.input, *node.output])
            and not all(name in constant for name in node.output)
        }
        assert in_bfloat16 <= {"Cast", "MatMul", "Transpose", "Reshape"}, (graph, in_bfloat16)
        assert "MatMul" in in_bfloat16


def test_a_camera_bundle_takes_uint8_images_and_moves_toward_the_light(tmp_path):
    export(SPEC, tmp_path, batch=2, seed=3, camera=(6, 10, 3))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["cameras"] == [{"name": "front", "height": 6, "width": 10, "channels": 3}]
    observation = np.zeros((2, SPEC.observation_dim), dtype=np.float32)
    image = np.zeros((2, 6, 10, 3), dtype=np.uint8)
    image[0, :, -1, :] = 255  # light at the right edge
    image[1, 0, :, :] = 255  # light along the top row
    (context,) = run_onnx(tmp_path / "prefix.onnx", {"observation": observation, "front": image})
    mean = np.asarray(GaussianFlow(SPEC).mean)
    shift = context - mean[None]
    assert np.allclose(shift[0, :, 0], 1.0, atol=1e-3) and np.allclose(shift[0, :, 1], 0.0, atol=1e-3)
    assert np.allclose(shift[1, :, 0], 0.0, atol=1e-3) and np.allclose(shift[1, :, 1], 1.0, atol=1e-3)


def test_a_grouped_latent_attention_policy_exports_and_matches_jax(tmp_path):
    import jax

    from rtchunk_train.model import ModelConfig, init_params

    config = ModelConfig(layers=1, width=16, heads=4, kv_heads=2, attention="gla")
    recorded = export_small_transformer(tmp_path, config, init_params(config, jax.random.PRNGKey(0)), "gla")
    assert recorded["tolerance"] == EXPORT_TOLERANCE["float32"]
    assert all((tmp_path / f"{graph}.onnx").exists() for graph in ("prefix", "velocity", "velocity_vjp"))
