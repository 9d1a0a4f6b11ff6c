"""Keeps exported graphs small: jax2onnx writes a broadcast constant (the zeros of a gradient's `select`, say) as a
full tensor, which in a 3B model's VJP graph adds tens of megabytes of zeros. Each such constant becomes one
value expanded to its shape by the graph itself (ONNX Runtime folds it back at load, in memory)."""

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Constants with at least this many elements, all equal, are expanded in the graph instead of stored.
MIN_ELEMENTS = 256


def expand_uniform_constants(model: onnx.ModelProto) -> int:
    """Replaces every initializer of `MIN_ELEMENTS` or more equal values by an Expand of that one value; returns
    how many it replaced."""
    graph = model.graph
    replaced, nodes = [], []
    for tensor in graph.initializer:
        if np.prod(tensor.dims) < MIN_ELEMENTS or tensor.data_location == onnx.TensorProto.EXTERNAL:
            continue
        values = numpy_helper.to_array(tensor)
        if values.size == 0 or not np.all(values == values.flat[0]):
            continue
        scalar = numpy_helper.from_array(values.flat[:1].reshape(()), f"{tensor.name}_value")
        shape = numpy_helper.from_array(np.asarray(values.shape, np.int64), f"{tensor.name}_shape")
        replaced.append((tensor, scalar, shape))
        nodes.append(helper.make_node("Expand", [scalar.name, shape.name], [tensor.name], name=f"{tensor.name}_expand"))
    for tensor, scalar, shape in replaced:
        graph.initializer.remove(tensor)
        graph.initializer.extend([scalar, shape])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    return len(replaced)
