"""The VLA's export: a skeleton traced from shapes alone carries no weights; attaching weights from a seed gives a
bundle whose every graph matches JAX in ONNX Runtime (the check runs at export), with an int64 prompt, uint8
cameras, external data hashed in the manifest, and a guided graph equal to its two-graph composition."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from dataclasses import replace

from rtchunk_train.bundle import guided_graph, sha256, vjp_graph
from rtchunk_train.compact import expand_uniform_constants
from rtchunk_train.vla import vla_preset
from rtchunk_train.vla_export import build_bundle, export_skeleton


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    config = replace(vla_preset("vla-tiny"), cameras=2)
    skeleton, bundle = tmp_path_factory.mktemp("skeleton"), tmp_path_factory.mktemp("bundle")
    description = export_skeleton(config, "float32", skeleton)
    built = build_bundle(skeleton, bundle, seed=3, check_in_onnxruntime=True)
    return config, skeleton, bundle, description, built


def test_a_skeleton_holds_the_graphs_and_names_every_weight_but_no_weight_data(exported):
    config, skeleton, _, description, built = exported
    prefix = onnx.load(str(skeleton / "prefix.onnx"))
    inputs = {i.name: i for i in prefix.graph.input}
    assert set(description["weights"]["prefix"]) <= set(inputs)
    assert inputs["prompt"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert inputs["camera1"].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    weights = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(built["params"]))
    stored = sum(np.prod(t.dims) for t in prefix.graph.initializer if np.prod(t.dims) > 1024)
    assert stored < 0.01 * weights


def test_the_bundle_lists_its_weight_files_with_hashes_and_its_prompt(exported):
    config, _, bundle, _, built = exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    expert = config.expert_config()
    assert manifest["context_shape"] == [expert.layers, config.prefix_tokens(), expert.cache_width()]
    assert [c["name"] for c in manifest["cameras"]] == ["camera0", "camera1"]
    assert len(manifest["prompt"]["token_ids"]) == config.prompt_tokens
    for graph in manifest["graphs"].values():
        assert sha256(bundle / graph["file"]) == graph["sha256"]
        for location, digest in graph["external_data"].items():
            assert sha256(bundle / location) == digest
    assert manifest["graphs"]["velocity"]["external_data"] == manifest["graphs"]["guided"]["external_data"]
    # The last backbone layer's queries and MLP do not reach the cache: they are not stored.
    names = {t.name for t in onnx.load(str(bundle / "prefix.onnx"), load_external_data=False).graph.initializer}
    last = expert.layers - 1
    assert f"weight/backbone/{last}/kv" in names and f"weight/backbone/{last}/mlp_in" not in names


def test_the_prompt_ids_change_the_context_in_onnx_runtime(exported):
    config, _, bundle, _, _ = exported
    session = ort.InferenceSession(str(bundle / "prefix.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"state": rng.normal(size=(1, config.state_dim)).astype(np.float32),
             "prompt": np.arange(config.prompt_tokens, dtype=np.int64)[None]}
    for i in range(config.cameras):
        feeds[f"camera{i}"] = rng.integers(0, 256, (1, config.image_size, config.image_size, 3), dtype=np.uint8)
    (context,) = session.run(None, feeds)
    (other,) = session.run(None, {**feeds, "prompt": feeds["prompt"] + 1})
    assert np.max(np.abs(context - other)) > 1e-4


def test_the_guided_graph_is_the_vjp_of_the_weighted_error_of_its_own_velocity():
    weights_matrix = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
    velocity = lambda a, t, c: jnp.tanh(a @ weights_matrix) * (1.0 + t[:, :, None]) + c  # noqa: E731
    rng = np.random.default_rng(1)
    actions, target = (jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32) for _ in range(2))
    tau, context = jnp.full((2, 4), 0.3), jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)
    weights = jnp.asarray(rng.uniform(size=(2, 4)), jnp.float32)
    v, guided = guided_graph(velocity)(actions, tau, context, target, weights)
    error = weights[:, :, None] * (target - (actions + 0.7 * velocity(actions, tau, context)))
    v2, two_graphs = vjp_graph(velocity)(actions, tau, context, error)
    np.testing.assert_allclose(v, v2, atol=1e-6)
    np.testing.assert_allclose(guided, two_graphs, atol=1e-6)


def test_uniform_constants_are_expanded_in_the_graph_and_compute_the_same():
    zeros = onnx.numpy_helper.from_array(np.zeros((64, 64), np.float32), "zeros")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "zeros"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [64, 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [64, 64])], [zeros])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=9)
    before = len(model.SerializeToString())
    assert expand_uniform_constants(model) == 1
    assert len(model.SerializeToString()) < before / 10
    x = np.random.default_rng(2).normal(size=(64, 64)).astype(np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, x)


def test_the_exported_graphs_carry_no_identity_transpose_and_one_node_per_layer_norm(exported):
    _, _, bundle, _, _ = exported
    for graph in ("prefix", "velocity"):
        nodes = onnx.load(str(bundle / f"{graph}.onnx"), load_external_data=False).graph.node
        assert any(n.op_type == "LayerNormalization" for n in nodes)
        assert not any(n.op_type == "ReduceMean" for n in nodes)
        perms = [list(a.ints) for n in nodes if n.op_type == "Transpose" for a in n.attribute if a.name == "perm"]
        assert all(p != list(range(len(p))) for p in perms)
        assert len({n.name for n in nodes}) == len(nodes) and all(n.name for n in nodes)


def test_a_float16_bundle_matches_jax_in_onnx_runtime(tmp_path):
    skeleton, bundle = tmp_path / "skeleton", tmp_path / "bundle"
    export_skeleton(vla_preset("vla-tiny"), "float16", skeleton, batch=1)
    build_bundle(skeleton, bundle, seed=5, check_in_onnxruntime=True)  # refuses outputs off JAX's by > 2e-2
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["dtype"] == "float16"
    velocity = onnx.load(str(bundle / "velocity.onnx"), load_external_data=False)
    assert {i.name: i.type.tensor_type.elem_type for i in velocity.graph.input}["actions"] == onnx.TensorProto.FLOAT16


def test_fused_attention_is_one_operator_per_layer_in_the_forward_graphs_only(tmp_path):
    config = vla_preset("vla-tiny", fused_attention=True)
    skeleton, bundle = tmp_path / "skeleton", tmp_path / "bundle"
    export_skeleton(config, "float32", skeleton, batch=1)
    build_bundle(skeleton, bundle, seed=2, check_in_onnxruntime=True)  # refuses outputs off JAX's by > 1e-5
    counts = {graph: sum(node.op_type == "Attention" for node in onnx.load(str(bundle / f"{graph}.onnx"),
                                                                             load_external_data=False).graph.node)
              for graph in ("prefix", "velocity", "velocity_vjp", "guided")}
    # The prefix: every vision layer, and every backbone layer whose output is read (the last one's is not).
    assert counts == {"prefix": config.vision_layers + config.expert.layers - 1, "velocity": config.expert.layers,
                      "velocity_vjp": 0, "guided": 0}
