"""Fewer GPU kernels per denoising step: rewrites of a traced graph that compute the same values with fewer nodes.

On the GPU a VLA's step is bound by how many kernels it launches, not by arithmetic (each kernel costs a couple of
microseconds even replayed from a CUDA graph), and the tracer writes every `einsum` with transposes that permute
nothing and every layer norm as nine elementwise nodes. ONNX Runtime fuses neither (its LayerNorm fusion wants the
scale and shift as constants; here they are the time modulation). The rewrites:

- a Transpose whose permutation is the identity is dropped (its readers read its input);
- mean -> subtract -> square -> mean -> add epsilon -> sqrt -> divide over the last axis becomes one
  `LayerNormalization` (unit scale; the modulation's multiply and add stay), where none of the intermediates is
  read elsewhere (a VJP graph keeps the nodes whose outputs its backward pass reads: ONNX Runtime's CUDA kernel
  does not give LayerNormalization's optional inverse standard deviation).

Every node also gets a unique name, so that a profile's time per node can be attributed (`rtchunk_train.ort_profile`).
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

# The opset that introduced LayerNormalization.
LAYER_NORM_OPSET = 17


class GraphIndex:
    """Who produces and who reads each value of a graph, and the constant values of its initializers."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer = {output: node for node in graph.node for output in node.output}
        self.readers = {}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {output.name for output in graph.output}
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}

    def constant(self, name: str):
        """The value of initializer `name` (None when it is not an initializer with its data inline)."""
        tensor = self.initializers.get(name)
        if tensor is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            return None
        return numpy_helper.to_array(tensor)

    def only_reader(self, name: str):
        """The one node reading `name`, when exactly one does and `name` is not a graph output."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None


def drop_identity_transposes(model: onnx.ModelProto) -> int:
    """Drops every Transpose that permutes nothing; returns how many it dropped. One that writes a graph output
    stays unless the value it copies has no other reader (then its producer writes the output itself)."""
    graph = model.graph
    index = GraphIndex(graph)
    renamed, dropped = {}, set()
    for node in graph.node:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if node.op_type != "Transpose" or perm is None or perm != list(range(len(perm))):
            continue
        source, result = renamed.get(node.input[0], node.input[0]), node.output[0]
        if result in index.outputs:
            producer = index.producer.get(source)
            if producer is None or index.only_reader(source) is not node:
                continue
            producer.output[list(producer.output).index(source)] = result
        else:
            renamed[result] = source
        dropped.add(id(node))
    kept = [node for node in graph.node if id(node) not in dropped]
    for node in kept:
        for position, name in enumerate(node.input):
            node.input[position] = renamed.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    return len(dropped)


def last_axis_reduction(index: GraphIndex, node: onnx.NodeProto, rank: int) -> bool:
    """Whether `node` is a ReduceMean over the last of `rank` axes that keeps its dimensions."""
    if node.op_type != "ReduceMean":
        return False
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attributes.get("keepdims", 1) != 1:
        return False
    axes = attributes.get("axes")
    if axes is None and len(node.input) > 1:
        axes = index.constant(node.input[1])
    return axes is not None and [int(a) % rank for a in np.ravel(axes)] == [rank - 1]


def fuse_layer_norms(model: onnx.ModelProto) -> int:
    """Replaces each layer norm written out as nine nodes (see the module's doc) by one LayerNormalization;
    returns how many it replaced. Needs the graph's shapes (it runs ONNX's shape inference)."""
    if max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0) < LAYER_NORM_OPSET:
        return 0
    graph = model.graph
    typed = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    types = {v.name: v.type.tensor_type for v in list(typed.value_info) + list(typed.input) + list(typed.output)}
    index = GraphIndex(graph)
    removed, added, scales = set(), [], {}

    def reader(name, op_type):
        node = index.only_reader(name)
        return node if node is not None and node.op_type == op_type else None

    for mean in graph.node:
        source = mean.input[0] if mean.input else None
        value_type = types.get(source)
        if value_type is None or not value_type.HasField("shape") or mean.op_type != "ReduceMean":
            continue
        dims = value_type.shape.dim
        if not dims or not dims[-1].HasField("dim_value") or not last_axis_reduction(index, mean, len(dims)):
            continue
        centred = reader(mean.output[0], "Sub")
        if centred is None or list(centred.input) != [source, mean.output[0]]:
            continue
        centred_readers = index.readers.get(centred.output[0], [])
        square = next((n for n in centred_readers if n.op_type == "Pow"), None)
        divide = next((n for n in centred_readers if n.op_type == "Div"), None)
        if len(centred_readers) != 2 or square is None or divide is None or centred.output[0] in index.outputs:
            continue
        exponent = index.constant(square.input[1])
        if exponent is None or exponent.size != 1 or float(exponent.flat[0]) != 2.0:
            continue
        variance = reader(square.output[0], "ReduceMean")
        if variance is None or not last_axis_reduction(index, variance, len(dims)):
            continue
        shifted = reader(variance.output[0], "Add")
        if shifted is None:
            continue
        epsilon_name = next((n for n in shifted.input if n != variance.output[0]), None)
        epsilon = index.constant(epsilon_name)
        root = reader(shifted.output[0], "Sqrt")
        if epsilon is None or epsilon.size != 1 or root is None or reader(root.output[0], "Div") is not divide:
            continue
        if list(divide.input) != [centred.output[0], root.output[0]]:
            continue
        width, element = dims[-1].dim_value, value_type.elem_type
        scale = scales.get((width, element))
        if scale is None:
            scale = f"layer_norm_unit_scale_{width}_{element}"
            ones = np.ones(width, dtype=onnx.helper.tensor_dtype_to_np_dtype(element))
            graph.initializer.append(numpy_helper.from_array(ones, scale))
            scales[(width, element)] = scale
        fused = helper.make_node("LayerNormalization", [source, scale], [divide.output[0]], name=f"{mean.name or source}_layer_norm",
                                 axis=-1, epsilon=float(epsilon.flat[0]))
        added.append((divide, fused))
        removed.update(id(n) for n in (mean, centred, square, variance, shifted, root, divide))
    if not added:
        return 0
    replacement = {id(old): new for old, new in added}
    nodes = [replacement.get(id(n), n) for n in graph.node if id(n) not in removed or id(n) in replacement]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(added)


def drop_unread_initializers(model: onnx.ModelProto) -> int:
    """Drops the initializers no node reads any more (a fused layer norm's axes and epsilon); returns how many."""
    graph = model.graph
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    unread = [tensor for tensor in graph.initializer if tensor.name not in read]
    for tensor in unread:
        graph.initializer.remove(tensor)
    return len(unread)


def name_nodes(model: onnx.ModelProto) -> int:
    """Gives every node without a name, or with one an earlier node has, a name of its own (profiles report
    time by node name); returns how many it named."""
    taken, named = set(), 0
    for position, node in enumerate(model.graph.node):
        if not node.name or node.name in taken:
            node.name = f"{node.op_type}_{position}"
            while node.name in taken:
                node.name += "_"
            named += 1
        taken.add(node.name)
    return named


def simplify(model: onnx.ModelProto) -> dict:
    """Applies every rewrite to `model` in place, then names its nodes; returns how many times each rewrite
    applied."""
    counts = {"identity_transposes": drop_identity_transposes(model), "layer_norms": fuse_layer_norms(model)}
    drop_unread_initializers(model)
    name_nodes(model)
    return counts
