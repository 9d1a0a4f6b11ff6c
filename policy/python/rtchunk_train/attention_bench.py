"""A VLA expert's attention alone, in the forms ONNX Runtime could run it: the decomposed GTA attention the exporter
writes today against ONNX's fused `Attention` operator (opset 23) and ONNX Runtime's `MultiHeadAttention` (contrib).

Each graph runs the attention of every expert layer of a preset in turn, over the same inputs: queries
[1, H, heads * head_dim] (float32) and a context [1, layers, S, cache_width] (float32, the cache layout of the
velocity graph: every group's tied vector, then the shared RoPE key), S = the prefix's tokens plus the H action
tokens. A layer's output is the next layer's queries, so no layer can be merged with another. Only the attention
differs between the graphs:

- ``decomposed``: `rtchunk_train.model._attend` traced by jax2onnx as the exporter traces it (scores in two products
  against the tied vectors and the shared RoPE key, softmax, weighted values), in float32 as the bfloat16 models
  compute attention today;
- ``attention-bf16``: ONNX `Attention` with the query heads over the KV groups in bfloat16, each group's key built
  as its tied vector's first head_dim - rope_dim channels followed by the shared RoPE key, the tied vector as the
  value;
- ``mha-bf16``: `com.microsoft.MultiHeadAttention` in bfloat16 on the same keys and values repeated for every
  query head of a group;
- ``attention-f32``, ``mha-f32``: the same in float32.

``python -m rtchunk_train.attention_bench --preset vla-3b --out DIR`` writes the graphs and checks the float32
fused forms against the decomposed one in ONNX Runtime on the CPU; ``rtchunk bench graphs DIR/*.onnx`` times
them on a device with the same inputs and compares their outputs.
"""

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from .bundle import export_graph
from .model import _attend, _context_memories
from .simplify import simplify
from .vla import vla_preset

# The graphs written: the decomposed form, and each fused form in bfloat16 (for the GPU) and float32 (which the
# CPU runs as well).
FUSED = {"attention-bf16": ("attention", TensorProto.BFLOAT16), "mha-bf16": ("mha", TensorProto.BFLOAT16),
         "attention-f32": ("attention", TensorProto.FLOAT), "mha-f32": ("mha", TensorProto.FLOAT)}


def decomposed_function(config):
    """The layers' attention as the exported model computes it (float32 activations)."""
    h, d, r, layers = config.heads, config.head_dim, config.rope_dim, config.layers

    def attention_layers(queries, context):
        b, t, _ = queries.shape
        memories = _context_memories(config, {"layers": [{}] * layers}, context)
        for memory in memories:
            per_head = queries.reshape(b, t, h, d)
            queries = _attend(config, (per_head[..., : d - r], per_head[..., d - r :]), memory, jnp.float32)
        return queries

    return attention_layers


def fused_graph(config, tokens: int, kind: str, dtype: int) -> onnx.ModelProto:
    """The layers' attention through one fused node per layer (`kind`: "attention" or "mha") in `dtype`."""
    h, g, d, r, layers = config.heads, config.kv_heads, config.head_dim, config.rope_dim, config.layers
    t, s = config.horizon, tokens
    split = g * d
    nodes, initializers = [], []

    def constant(name, values):
        initializers.append(helper.make_tensor(f"c_{name}", TensorProto.INT64, [len(values)], values))
        return f"c_{name}"

    def node(op, inputs, outputs, domain="", **attributes):
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}_{len(nodes)}", domain=domain, **attributes))
        return outputs[0]

    queries = node("Cast", ["queries"], ["queries_cast"], to=dtype)
    context = node("Cast", ["context"], ["context_cast"], to=dtype)
    per_layer = [f"context_{i}" for i in range(layers)]
    node("Split", [context, constant("layer_sizes", [1] * layers)], per_layer, axis=1)
    for i, layer in enumerate(per_layer):
        layer = node("Squeeze", [layer, constant(f"axis_{i}", [1])], [f"layer_{i}"])
        tied = node("Slice", [layer, constant(f"zero_{i}", [0]), constant(f"split_{i}", [split]),
                              constant(f"last_{i}", [2])], [f"tied_{i}"])
        rope_key = node("Slice", [layer, constant(f"split_from_{i}", [split]), constant(f"end_{i}", [split + r]),
                                  constant(f"last_axis_{i}", [2])], [f"rope_key_{i}"])
        grouped = node("Reshape", [tied, constant(f"grouped_{i}", [1, s, g, d])], [f"grouped_{i}"])
        nope_key = node("Slice", [grouped, constant(f"nope_from_{i}", [0]), constant(f"nope_to_{i}", [d - r]),
                                  constant(f"head_axis_{i}", [3])], [f"nope_key_{i}"])
        shared = node("Unsqueeze", [rope_key, constant(f"group_axis_{i}", [2])], [f"shared_{i}"])
        shared = node("Expand", [shared, constant(f"groups_{i}", [1, s, g, r])], [f"shared_groups_{i}"])
        keys = node("Concat", [nope_key, shared], [f"keys_grouped_{i}"], axis=3)
        values = tied
        if kind == "mha":
            # One key and value per query head: every group's repeated for its query heads.
            repeat = lambda x, name: node(  # noqa: E731
                "Reshape",
                [node("Expand", [node("Unsqueeze", [x, constant(f"{name}_axis_{i}", [3])], [f"{name}_u_{i}"]),
                                 constant(f"{name}_shape_{i}", [1, s, g, h // g, d])], [f"{name}_e_{i}"]),
                 constant(f"{name}_flat_{i}", [1, s, h * d])],
                [f"{name}_heads_{i}"],
            )
            keys, values = repeat(keys, "keys"), repeat(grouped, "values")
            queries = node("MultiHeadAttention", [queries, keys, values], [f"out_{i}"], domain="com.microsoft",
                           num_heads=h, scale=d**-0.5)
        else:
            keys = node("Reshape", [keys, constant(f"keys_flat_{i}", [1, s, g * d])], [f"keys_{i}"])
            queries = node("Attention", [queries, keys, values], [f"out_{i}"], q_num_heads=h, kv_num_heads=g,
                           scale=d**-0.5)
    node("Cast", [queries], ["output"], to=TensorProto.FLOAT)
    graph = helper.make_graph(
        nodes, f"attention_{kind}",
        [helper.make_tensor_value_info("queries", TensorProto.FLOAT, [1, t, h * d]),
         helper.make_tensor_value_info("context", TensorProto.FLOAT, [1, layers, s, config.cache_width()])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, t, h * d])],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", 23)] + ([helper.make_opsetid("com.microsoft", 1)] if kind == "mha" else [])
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    onnx.checker.check_model(model)
    return model


def write_graphs(preset: str, out: Path) -> dict:
    """Writes the three forms' graphs for `preset`'s expert into `out`; returns {form: path}."""
    vla = vla_preset(preset)
    config = vla.expert_config()
    if config.attention != "gta":
        raise ValueError(f"{preset}: the fused forms are written for GTA, not {config.attention}")
    tokens = vla.prefix_tokens() + config.horizon
    out.mkdir(parents=True, exist_ok=True)
    paths = {form: out / f"{form}.onnx" for form in ["decomposed", *FUSED]}
    specs = [jax.ShapeDtypeStruct((1, config.horizon, config.heads * config.head_dim), jnp.float32),
             jax.ShapeDtypeStruct((1, config.layers, tokens, config.cache_width()), jnp.float32)]
    export_graph(decomposed_function(config), specs, paths["decomposed"], ["queries", "context"], ["output"])
    model = onnx.load(str(paths["decomposed"]))
    simplify(model)
    paths["decomposed"].write_bytes(model.SerializeToString())
    for form, (kind, dtype) in FUSED.items():
        onnx.save(fused_graph(config, tokens, kind, dtype), str(paths[form]))
    return paths


def check_on_cpu(preset: str, seed: int = 0) -> dict:
    """The fused forms in float32 against the decomposed one, in ONNX Runtime on the CPU (it has no bfloat16
    attention kernels): the largest absolute difference per form."""
    vla = vla_preset(preset)
    config = vla.expert_config()
    tokens = vla.prefix_tokens() + config.horizon
    rng = np.random.default_rng(seed)
    feeds = {"queries": rng.standard_normal((1, config.horizon, config.heads * config.head_dim), np.float32),
             "context": rng.standard_normal((1, config.layers, tokens, config.cache_width()), np.float32)}
    expected = np.asarray(jax.jit(decomposed_function(config))(feeds["queries"], feeds["context"]))
    errors = {}
    for form, (kind, dtype) in FUSED.items():
        if dtype == TensorProto.FLOAT:
            model = fused_graph(config, tokens, kind, dtype)
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            errors[form] = float(np.max(np.abs(session.run(None, feeds)[0] - expected)))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vla-3b")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-check", action="store_true", help="skip the float32 check on the CPU")
    args = parser.parse_args()
    for form, path in write_graphs(args.preset, args.out).items():
        print(f"{form}: {path} ({len(onnx.load(str(path)).graph.node)} nodes)")
    if not args.no_check:
        for form, error in check_on_cpu(args.preset).items():
            print(f"{form} (CPU) against decomposed: max difference {error:.2e}")


if __name__ == "__main__":
    main()
