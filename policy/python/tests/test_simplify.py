"""The graph rewrites compute what the traced graphs compute, with fewer nodes, and leave alone what they must."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from rtchunk_train.simplify import simplify

WIDTH = 16


def layer_norm_nodes(x: str, out: str, prefix: str) -> tuple:
    """A layer norm over the last axis written out as the tracer writes it, and its constants."""
    nodes = [
        helper.make_node("ReduceMean", [x, f"{prefix}axes"], [f"{prefix}mean"], keepdims=1),
        helper.make_node("Sub", [x, f"{prefix}mean"], [f"{prefix}centred"]),
        helper.make_node("Pow", [f"{prefix}centred", f"{prefix}two"], [f"{prefix}square"]),
        helper.make_node("ReduceMean", [f"{prefix}square", f"{prefix}axes"], [f"{prefix}variance"], keepdims=1),
        helper.make_node("Add", [f"{prefix}variance", f"{prefix}epsilon"], [f"{prefix}shifted"]),
        helper.make_node("Sqrt", [f"{prefix}shifted"], [f"{prefix}root"]),
        helper.make_node("Div", [f"{prefix}centred", f"{prefix}root"], [out]),
    ]
    constants = [
        numpy_helper.from_array(np.array([-1], np.int64), f"{prefix}axes"),
        numpy_helper.from_array(np.array(2.0, np.float32), f"{prefix}two"),
        numpy_helper.from_array(np.array(1e-6, np.float32), f"{prefix}epsilon"),
    ]
    return nodes, constants


def model_of(nodes, constants, outputs) -> onnx.ModelProto:
    """A float32 model of `nodes` over input x [2, 5, WIDTH] with `outputs` (name -> shape)."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, WIDTH])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs.items()], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)


def run(model: onnx.ModelProto, x: np.ndarray) -> list:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_identity_transposes_are_dropped_and_a_graph_output_keeps_its_name():
    nodes = [
        helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 1, 2]),
        helper.make_node("Relu", ["t0"], ["r"]),
        helper.make_node("Transpose", ["r"], ["y"], perm=[0, 1, 2]),
        helper.make_node("Transpose", ["x"], ["swapped"], perm=[0, 2, 1]),
    ]
    model = model_of(nodes, [], {"y": [2, 5, WIDTH], "swapped": [2, WIDTH, 5]})
    x = np.random.default_rng(0).normal(size=(2, 5, WIDTH)).astype(np.float32)
    before = run(model, x)
    assert simplify(model)["identity_transposes"] == 2
    assert [n.op_type for n in model.graph.node] == ["Relu", "Transpose"]
    after = run(model, x)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_a_written_out_layer_norm_becomes_one_node_with_the_same_values():
    nodes, constants = layer_norm_nodes("x", "normed", "ln_")
    nodes.append(helper.make_node("Mul", ["normed", "x"], ["y"]))  # a modulation that is not a constant
    model = model_of(nodes, constants, {"y": [2, 5, WIDTH]})
    x = np.random.default_rng(1).normal(size=(2, 5, WIDTH)).astype(np.float32) * 3 + 1
    before = run(model, x)[0]
    assert simplify(model)["layer_norms"] == 1
    assert [n.op_type for n in model.graph.node] == ["LayerNormalization", "Mul"]
    assert {t.name for t in model.graph.initializer} == {f"layer_norm_unit_scale_{WIDTH}_{TensorProto.FLOAT}"}
    np.testing.assert_allclose(run(model, x)[0], before, rtol=1e-5, atol=1e-5)


def test_a_layer_norm_whose_intermediates_a_backward_pass_reads_stays_written_out():
    nodes, constants = layer_norm_nodes("x", "normed", "ln_")
    nodes.append(helper.make_node("Mul", ["normed", "ln_root"], ["y"]))  # reads the standard deviation
    model = model_of(nodes, constants, {"y": [2, 5, WIDTH]})
    assert simplify(model)["layer_norms"] == 0
    assert len(model.graph.node) == 8


def test_a_mean_over_another_axis_is_not_a_layer_norm():
    nodes, constants = layer_norm_nodes("x", "y", "ln_")
    constants[0] = numpy_helper.from_array(np.array([1], np.int64), "ln_axes")
    model = model_of(nodes, constants, {"y": [2, 5, WIDTH]})
    assert simplify(model)["layer_norms"] == 0


def test_every_node_ends_up_with_a_name_of_its_own():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"], name="same"),
             helper.make_node("Relu", ["b"], ["y"], name="same")]
    model = model_of(nodes, [], {"y": [2, 5, WIDTH]})
    simplify(model)
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == 3 and names[1] == "same"
