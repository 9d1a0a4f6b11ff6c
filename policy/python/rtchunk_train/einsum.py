"""Rewrites two-operand Einsum nodes of an exported graph as Transpose, Reshape and MatMul.

jax2onnx lowers every matrix product to Einsum, which ONNX defines for float, double and float16 only (MatMul also
takes bfloat16), and MatMul is what ONNX Runtime's fusions and fastest kernels expect. Needs static shapes (a fixed
graph batch); products with a symbolic dimension stay Einsum.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


def _shapes(model: onnx.ModelProto) -> dict:
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for initializer in model.graph.initializer:
        shapes[initializer.name] = list(initializer.dims)
    return shapes


def _equation(node) -> str:
    return next(a.s.decode() for a in node.attribute if a.name == "equation")


def _as_matmul(node, shapes: dict, fresh):
    """The nodes and initializers computing `node` with MatMul, or None if it is not a plain two-operand product."""
    equation = _equation(node).replace(" ", "")
    inputs, output = equation.split("->")
    operands = inputs.split(",")
    if len(operands) != 2 or "." in equation or any(n not in shapes for n in node.input):
        return None
    lhs, rhs = operands
    size = {}
    for labels, name in zip(operands, node.input):
        size.update(zip(labels, shapes[name]))
    batch = [c for c in output if c in lhs and c in rhs]
    left = [c for c in output if c in lhs and c not in rhs]
    right = [c for c in output if c in rhs and c not in lhs]
    summed = [c for c in lhs if c in rhs and c not in output]
    if sorted(batch + left + right) != sorted(output) or any(c not in output and c not in summed for c in lhs + rhs):
        return None
    nodes, initializers = [], []

    def arrange(name, labels, order, shape):
        permuted = fresh("t")
        nodes.append(helper.make_node("Transpose", [name], [permuted], perm=[labels.index(c) for c in order]))
        reshaped, target = fresh("r"), fresh("s")
        initializers.append(numpy_helper.from_array(np.asarray(shape, dtype=np.int64), target))
        nodes.append(helper.make_node("Reshape", [permuted, target], [reshaped]))
        return reshaped

    product = lambda labels: int(np.prod([size[c] for c in labels])) if labels else 1  # noqa: E731
    batch_shape = [size[c] for c in batch]
    a = arrange(node.input[0], lhs, batch + left + summed, batch_shape + [product(left), product(summed)])
    b = arrange(node.input[1], rhs, batch + summed + right, batch_shape + [product(summed), product(right)])
    multiplied, target, unshaped = fresh("m"), fresh("s"), fresh("u")
    nodes.append(helper.make_node("MatMul", [a, b], [multiplied]))
    initializers.append(numpy_helper.from_array(np.asarray(batch_shape + [size[c] for c in left + right], dtype=np.int64), target))
    nodes.append(helper.make_node("Reshape", [multiplied, target], [unshaped]))
    produced = batch + left + right
    nodes.append(helper.make_node("Transpose", [unshaped], [node.output[0]], perm=[produced.index(c) for c in output]))
    return nodes, initializers


def einsum_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrites, in place, every Einsum node that is a plain product; returns how many it rewrote."""
    shapes = _shapes(model)
    counter = iter(range(1 << 30))
    fresh = lambda prefix: f"einsum_{prefix}_{next(counter)}"  # noqa: E731
    rewritten, kept = 0, []
    for node in model.graph.node:
        replacement = _as_matmul(node, shapes, fresh) if node.op_type == "Einsum" else None
        if replacement is None:
            kept.append(node)
            continue
        nodes, initializers = replacement
        kept.extend(nodes)
        model.graph.initializer.extend(initializers)
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return rewritten
