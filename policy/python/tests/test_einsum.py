"""Einsum products rewritten as MatMul compute the same values in ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from rtchunk_train.einsum import einsum_to_matmul

SIZES = {"z": 2, "a": 3, "b": 4, "c": 5, "d": 6}
# The products jax2onnx emits for the transformer and its VJP.
EQUATIONS = ["abc,cd->abd", "zabc,zcd->zabd", "abc,dc->abd", "zabc,zabd->zcd", "zabc,zdc->zabd"]


def einsum_model(equation: str) -> onnx.ModelProto:
    operands, output = equation.split("->")
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [SIZES[c] for c in labels]) for i, labels in enumerate(operands.split(","))]
    result = helper.make_tensor_value_info("y", TensorProto.FLOAT, [SIZES[c] for c in output])
    node = helper.make_node("Einsum", ["x0", "x1"], ["y"], equation=equation)
    model = helper.make_model(helper.make_graph([node], "einsum", inputs, [result]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def run(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("equation", EQUATIONS)
def test_products_become_matmul_with_the_same_values(equation):
    model = einsum_model(equation)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32) for i in model.graph.input}
    expected = run(model, feeds)
    assert einsum_to_matmul(model) == 1
    assert {n.op_type for n in model.graph.node} == {"Transpose", "Reshape", "MatMul"}
    np.testing.assert_allclose(run(model, feeds), expected, atol=1e-5)
