"""Exports the VLA of `rtchunk_train.vla` as an rtchunk policy bundle, in two steps that may run on two machines.

`skeleton` traces the three graphs with every weight as a named graph input, from shapes alone (no weight is
allocated, so the 3B preset traces on a laptop into a few megabytes). `attach` draws the weights from a seed,
writes them as ONNX external data (`prefix.weights`, and `expert.weights` shared by the velocity and VJP graphs),
turns the weight inputs into initializers that point there (after `rtchunk_train.simplify` has cut the graphs'
kernel count), records JAX's outputs on fixed inputs with the same
weights (`expected.json`) and writes the manifest with the hash of every graph and data file. `attach` needs JAX,
numpy and onnx but not the tracer, so a GPU host without a package registry builds a multi-gigabyte bundle from
a carried skeleton, and its JAX baseline runs on the very weights rtchunk loads.

    python -m rtchunk_train.vla_export skeleton --preset vla-3b --attention gta --cameras 1 --dtype bfloat16 --out S
    python -m rtchunk_train.vla_export attach S --seed 0 --out BUNDLE
    python -m rtchunk_train.vla_export bundle --preset vla-tiny --out BUNDLE   # both, checked in ONNX Runtime (CPU)

The prefix graph takes the state (`state`, the observation), one uint8 image [B, size, size, 3] per camera
(`camera0`, ...; scaling inside the graph) and the prompt's token ids (`prompt`, int64 [B, prompt_tokens]; the
manifest carries the ids) and returns the per-layer KV cache as the context.

`--attention-op fused` (the default for bfloat16) writes the attention of the prefix and of the plain step as
one ONNX `Attention` operator per layer, in the products' float type (GTA's keys: the tied vectors' nope channels
followed by the shared RoPE key); on an H200 it takes the `vla-3b` expert's 18 layers from 0.78 to 0.47 ms
(`rtchunk_train.attention_bench`). The VJP graphs write attention out: no ONNX operator has a backward pass.
"""

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import TensorProto, helper

from . import __version__
from .bundle import (
    EXPORT_TOLERANCE,
    FLOAT32_SLACK,
    NUMPY_DTYPES,
    check_against_jax,
    export_graph,
    guidance_inputs,
    guided_graph,
    in_float32,
    rename,
    record_rtc_with,
    sha256,
    vjp_graph,
)
from .model import ModelConfig, velocity
from .simplify import simplify
from .vla import VlaConfig, init_vla_params, parameter_counts, vla_prefix

GRAPHS = ("prefix", "velocity", "velocity_vjp", "guided")
# Where each graph's weights are stored: the expert's once for all three flow graphs.
WEIGHT_FILES = {"prefix": "prefix.weights", "velocity": "expert.weights", "velocity_vjp": "expert.weights", "guided": "expert.weights"}
ONNX_FLOAT = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}
# External data offsets are multiples of this (aligned reads of every tensor).
ALIGNMENT = 64
# Below this many parameters the weights are drawn with the model's own initialisation on the CPU.
SMALL_MODEL_PARAMETERS = 5e7


def graph_weights(params: dict, graph: str) -> dict:
    """The part of the VLA's parameters a graph uses: everything but the expert for the prefix, the expert for
    the flow graphs."""
    if graph == "prefix":
        return {key: value for key, value in params.items() if key != "expert"}
    return params["expert"]


def named_leaves(tree) -> tuple:
    """(names, leaves, treedef) of a parameter tree; a leaf's name is its path, e.g. `weight/backbone/3/query`."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(tree)

    def part(key):
        return str(key.key) if hasattr(key, "key") else str(key.idx)

    names = ["weight/" + "/".join(part(key) for key in path) for path, _ in paths]
    return names, [leaf for _, leaf in paths], treedef


def graph_functions(config: VlaConfig, dtype: str) -> dict:
    """Each graph as a function of (weights, inputs...) in the graph's float type `dtype`. With the expert's
    `fused_attention`, the prefix and the plain step use one attention operator per layer; the VJP graphs write
    attention out (their backward pass reads the softmax weights)."""
    expert = config.expert_config()
    written_out = replace(expert, fused_attention=False)
    io_dtype = NUMPY_DTYPES[dtype]

    def prefix(weights, state, *cameras_and_prompt):
        *cameras, prompt = cameras_and_prompt
        images = jnp.stack(cameras, axis=1)
        return vla_prefix(config, weights, images, prompt, state).astype(io_dtype)

    def flow(weights, actions, tau, context):
        return velocity(expert, weights, actions, tau, context)

    def differentiable(weights):
        return lambda a, t, c: velocity(written_out, weights, a, t, c)

    def flow_vjp(weights, actions, tau, context, cotangent):
        return vjp_graph(differentiable(weights))(actions, tau, context, cotangent)

    def flow_guided(weights, actions, tau, context, target, guidance_weights):
        return guided_graph(differentiable(weights))(actions, tau, context, target, guidance_weights)

    return {"prefix": prefix, "velocity": flow, "velocity_vjp": flow_vjp, "guided": flow_guided}


def graph_io(config: VlaConfig, dtype: str, batch) -> dict:
    """Per graph: its inputs as (name, shape, numpy dtype) and its output names. The prompt is traced as int32
    (JAX's integer) and widened to int64 at the graph's boundary afterwards."""
    expert = config.expert_config()
    float_type = NUMPY_DTYPES[dtype]
    h, a = expert.horizon, expert.action_dim
    context = (batch, expert.layers, config.prefix_tokens(), expert.cache_width())
    cameras = [(f"camera{i}", (batch, *config.image_shape(), 3), np.uint8) for i in range(config.cameras)]
    flow = [("actions", (batch, h, a), float_type), ("tau", (batch, h), float_type), ("context", context, float_type)]
    return {
        "prefix": ([("state", (batch, config.state_dim), float_type), *cameras, ("prompt", (batch, config.prompt_tokens), np.int32)], ["context"]),
        "velocity": (flow, ["velocity"]),
        "velocity_vjp": (flow + [("cotangent", (batch, h, a), float_type)], ["velocity", "vjp"]),
        "guided": (flow + [("target", (batch, h, a), float_type), ("weights", (batch, h), float_type)], ["velocity", "vjp"]),
    }


def widen_prompt(model: onnx.ModelProto, name: str = "prompt"):
    """Makes the graph's int32 input `name` an int64 input, narrowed inside the graph."""
    graph = model.graph
    source = next(i for i in graph.input if i.name == name)
    narrowed = f"{name}_int32"
    rename(graph, name, narrowed)
    shape = [d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim]
    index = list(graph.input).index(next(i for i in graph.input if i.name == narrowed))
    graph.input.remove(graph.input[index])
    graph.input.insert(index, helper.make_tensor_value_info(name, TensorProto.INT64, shape))
    graph.node.insert(0, helper.make_node("Cast", [name], [narrowed], to=TensorProto.INT32))


def export_skeleton(config: VlaConfig, dtype: str, out: Path, batch: int | None = None) -> dict:
    """Traces the three graphs with their weights as inputs into `out` and writes `skeleton.json` (the
    configuration and every graph's weight names); returns that description."""
    out.mkdir(parents=True, exist_ok=True)
    float_type = NUMPY_DTYPES[dtype]
    shapes = jax.eval_shape(lambda key: init_vla_params(config, key), jax.random.PRNGKey(0))
    graph_batch = "B" if batch is None else batch
    weights = {}
    for graph, function in graph_functions(config, dtype).items():
        names, leaves, treedef = named_leaves(graph_weights(shapes, graph))
        inputs, outputs = graph_io(config, dtype, graph_batch)[graph]
        count = len(leaves)

        def flat(*args, function=function, treedef=treedef, count=count):
            return function(jax.tree_util.tree_unflatten(treedef, args[:count]), *args[count:])

        specs = [SimpleNamespace(shape=tuple(leaf.shape), dtype=float_type) for leaf in leaves]
        specs += [SimpleNamespace(shape=tuple(shape), dtype=kind) for _, shape, kind in inputs]
        path = out / f"{graph}.onnx"
        export_graph(flat, specs, path, names + [name for name, _, _ in inputs], outputs)
        if graph == "prefix":
            model = onnx.load(str(path))
            widen_prompt(model)
            path.write_bytes(model.SerializeToString())
        weights[graph] = names
    description = {
        "config": asdict(config),
        "dtype": dtype,
        "batch": batch,
        "producer": f"rtchunk_train {__version__} (jax {jax.__version__})",
        "weights": weights,
    }
    (out / "skeleton.json").write_text(json.dumps(description, indent=1) + "\n")
    return description


def config_from(description: dict) -> VlaConfig:
    """The VlaConfig a skeleton was traced for."""
    fields = dict(description["config"])
    return VlaConfig(**{**fields, "expert": ModelConfig(**fields["expert"])})


class WeightsFile:
    """An external-data file being written: each named tensor once, at an aligned offset."""

    def __init__(self, path: Path):
        self.path = path
        self.file = path.open("wb")
        self.placed = {}

    def place(self, name: str, array: np.ndarray) -> tuple:
        """(offset, length) of `name` in the file, writing it the first time."""
        if name not in self.placed:
            offset = -self.file.tell() % ALIGNMENT
            self.file.write(b"\0" * offset)
            data = np.ascontiguousarray(array).tobytes()
            self.placed[name] = (self.file.tell(), len(data))
            self.file.write(data)
        return self.placed[name]

    def close(self):
        self.file.close()


def attach_weights(model: onnx.ModelProto, arrays: dict, dtype: str, data: WeightsFile | None):
    """Turns the graph's inputs named in `arrays` into initializers, stored in `data` (external) or inline; those
    no node reads (the last backbone layer's queries and MLP: only its keys and values reach the cache) are
    dropped."""
    graph = model.graph
    read = {name for node in graph.node for name in node.input}
    for graph_input in [i for i in graph.input if i.name in arrays]:
        if graph_input.name not in read:
            graph.input.remove(graph_input)
            continue
        array = np.asarray(arrays[graph_input.name], dtype=NUMPY_DTYPES[dtype])
        tensor = TensorProto(name=graph_input.name, dims=array.shape, data_type=ONNX_FLOAT[dtype])
        if data is None:
            tensor.raw_data = array.tobytes()
        else:
            offset, length = data.place(graph_input.name, array)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data.path.name), ("offset", str(offset)), ("length", str(length))):
                tensor.external_data.add(key=key, value=value)
        graph.initializer.append(tensor)
        graph.input.remove(graph_input)


def host_arrays(tree) -> dict:
    """A parameter tree's leaves by name, as numpy arrays."""
    names, leaves, _ = named_leaves(tree)
    return {name: np.asarray(leaf) for name, leaf in zip(names, leaves)}


def attach(skeleton: Path, params: dict, out: Path, external: bool = True) -> dict:
    """Writes the bundle's graphs into `out` from the skeleton in `skeleton` with `params` (the VLA's parameter
    tree, in the skeleton's dtype) as their weights; returns {graph: {file, sha256[, external_data]}}."""
    description = json.loads((skeleton / "skeleton.json").read_text())
    dtype = description["dtype"]
    out.mkdir(parents=True, exist_ok=True)
    files = {name: WeightsFile(out / name) for name in set(WEIGHT_FILES.values())} if external else {}
    graphs = {}
    for graph in GRAPHS:
        model = onnx.load(str(skeleton / f"{graph}.onnx"))
        simplify(model)
        arrays = host_arrays(graph_weights(params, graph))
        missing = sorted(set(description["weights"][graph]) - set(arrays))
        if missing:
            raise ValueError(f"{skeleton / 'skeleton.json'}: weights.{graph} names {missing[:3]}, which the parameters lack")
        data = files.get(WEIGHT_FILES[graph])
        attach_weights(model, arrays, dtype, data)
        (out / f"{graph}.onnx").write_bytes(model.SerializeToString())
        graphs[graph] = {"file": f"{graph}.onnx"}
    for data in files.values():
        data.close()
    data_hashes = {name: sha256(out / name) for name in files}
    for graph, entry in graphs.items():
        entry["sha256"] = sha256(out / entry["file"])
        if external:
            entry["external_data"] = {WEIGHT_FILES[graph]: data_hashes[WEIGHT_FILES[graph]]}
    return graphs


def fixed_vla_inputs(config: VlaConfig, batch: int, seed: int, prompt_ids=None) -> dict:
    """Deterministic inputs: state, each camera's images, prompt ids (`prompt_ids`, or drawn), noisy chunks, tau
    and cotangents."""
    rng = np.random.default_rng(seed)
    expert = config.expert_config()
    h, a = expert.horizon, expert.action_dim
    prompt = rng.integers(0, config.vocab, (1, config.prompt_tokens)) if prompt_ids is None else np.asarray([prompt_ids])
    inputs = {
        "state": rng.normal(size=(batch, config.state_dim)).astype(np.float32),
        "prompt": np.repeat(prompt, batch, axis=0).astype(np.int64),
        "actions": rng.normal(size=(batch, h, a)).astype(np.float32),
        "tau": np.repeat(rng.uniform(0.0, 0.9, size=(batch, 1)), h, axis=1).astype(np.float32),
        "cotangent": rng.normal(size=(batch, h, a)).astype(np.float32),
    }
    for i in range(config.cameras):
        inputs[f"camera{i}"] = rng.integers(0, 256, (batch, *config.image_shape(), 3), dtype=np.uint8)
    return inputs


def record_expected(config: VlaConfig, params: dict, dtype: str, inputs: dict) -> tuple:
    """JAX's outputs for `inputs` with `params` (passed to jitted functions, never baked in): the velocity, the
    VJP, the guided step's VJP and a full RTC inference in the layout of `expected.json`, and the context
    (returned apart: a 3B model's runs to millions of values)."""
    functions = graph_functions(config, dtype)
    cast = NUMPY_DTYPES[dtype]
    cameras = [inputs[f"camera{i}"] for i in range(config.cameras)]
    prefix = jax.jit(functions["prefix"])
    flow = jax.jit(functions["velocity"])
    flow_vjp = jax.jit(functions["velocity_vjp"])
    flow_guided = jax.jit(functions["guided"])
    prefix_weights, expert_weights = graph_weights(params, "prefix"), graph_weights(params, "velocity")
    context = prefix(prefix_weights, inputs["state"].astype(cast), *cameras, inputs["prompt"].astype(np.int32))
    flow_inputs = [inputs[k].astype(cast) for k in ("actions", "tau")] + [context]
    v = flow(expert_weights, *flow_inputs)
    _, vjp = flow_vjp(expert_weights, *flow_inputs, inputs["cotangent"].astype(cast))
    target, weights = guidance_inputs(inputs["actions"].astype(cast))
    _, guided_vjp = flow_guided(expert_weights, *flow_inputs, target, weights)
    expert = config.expert_config()
    velocity32 = in_float32(lambda a, t, c: flow(expert_weights, a, t, c), dtype)
    vjp32 = lambda a, t, c, g: tuple(  # noqa: E731
        x.astype(np.float32) for x in flow_vjp(expert_weights, a.astype(cast), t.astype(cast), c, g.astype(cast))
    )
    as_float32 = lambda x: np.asarray(x, dtype=np.float32).tolist()  # noqa: E731
    return {
        "tolerance": EXPORT_TOLERANCE[dtype],
        "inputs": {
            "observation": as_float32(inputs["state"]),
            **{k: as_float32(inputs[k]) for k in ("actions", "tau", "cotangent")},
            "target": as_float32(target),
            "weights": as_float32(weights),
            # Every camera's image of each observation, one observation after another (the runtime's layout).
            "images": np.concatenate([c.reshape(len(c), -1) for c in cameras], axis=1).tolist(),
        },
        "velocity": as_float32(v),
        "vjp": as_float32(vjp),
        "guided_vjp": as_float32(guided_vjp),
        "rtc": record_rtc_with(velocity32, vjp32, context[:1], expert.horizon, expert.action_dim),
    }, np.asarray(context)


def exact_outputs(config: VlaConfig, params: dict, inputs: dict, context) -> dict:
    """The float32 graphs' outputs for `inputs` computed in float64: per graph on JAX's float32 `context` (for the
    export check, `check_against_jax`'s `exact`), and the flow outputs on the float64 context ("end_to_end", as a
    replay computes them from its own prefix)."""
    with jax.enable_x64(True):
        functions = graph_functions(config, "float64")
        wide = lambda x: np.asarray(x, np.float64)  # noqa: E731
        params64 = jax.tree_util.tree_map(wide, params)
        prefix_weights, expert_weights = graph_weights(params64, "prefix"), graph_weights(params64, "velocity")
        cameras = [inputs[f"camera{i}"] for i in range(config.cameras)]
        exact_context = functions["prefix"](prefix_weights, wide(inputs["state"]), *cameras, inputs["prompt"].astype(np.int32))
        actions, tau, cotangent = (wide(inputs[k]) for k in ("actions", "tau", "cotangent"))
        target, weights = guidance_inputs(actions)

        def flows(on_context) -> dict:
            flow = [actions, tau, on_context]
            return {
                "velocity": [np.asarray(functions["velocity"](expert_weights, *flow))],
                "velocity_vjp": [np.asarray(x) for x in functions["velocity_vjp"](expert_weights, *flow, cotangent)],
                "guided": [np.asarray(x) for x in functions["guided"](expert_weights, *flow, target, weights)],
            }

        return {"prefix": [np.asarray(exact_context)], **flows(wide(context)), "end_to_end": flows(exact_context)}


def replay_tolerance(recorded: dict, end_to_end: dict) -> float:
    """The tolerance a replay of a float32 bundle's `recorded` outputs gets: the export tolerance, or
    `FLOAT32_SLACK` times JAX's own float32 error against the float64 pipeline where that is larger (a trained
    model's long prefix rounds differently in ONNX Runtime and XLA, and the velocity inherits it)."""
    pairs = [("velocity", end_to_end["velocity"][0]), ("vjp", end_to_end["velocity_vjp"][1]),
             ("guided_vjp", end_to_end["guided"][1])]
    own = max(float(np.max(np.abs(np.asarray(recorded[k], np.float64) - exact))) for k, exact in pairs)
    return max(EXPORT_TOLERANCE["float32"], FLOAT32_SLACK * own)


def manifest_for(config: VlaConfig, description: dict, prompt_ids, graphs: dict, name: str, normalization=None,
                 episode_seeds=None) -> dict:
    """The bundle's manifest; `normalization` as `dataset.Dataset.statistics` gives it (None: identity, for random
    weights); `episode_seeds`: the simulator episodes trained on (evaluation stays off them)."""
    expert, dtype = config.expert_config(), description["dtype"]
    identity = {
        "observation": {"mean": [0.0] * config.state_dim, "std": [1.0] * config.state_dim},
        "action": {"mean": [0.0] * expert.action_dim, "std": [1.0] * expert.action_dim},
    }
    return {
        "format_version": 1,
        "name": name,
        "producer": description["producer"],
        "action_dim": expert.action_dim,
        "horizon": expert.horizon,
        "control_rate_hz": 50.0,
        "observation": [{"name": "state", "shape": [config.state_dim], "dtype": dtype}],
        "cameras": [
            {"name": f"camera{i}", "height": config.image_shape()[0], "width": config.image_shape()[1], "channels": 3}
            for i in range(config.cameras)
        ],
        "prompt": {"input": "prompt", "token_ids": [int(i) for i in prompt_ids]},
        "context_shape": [expert.layers, config.prefix_tokens(), expert.cache_width()],
        "batch": description["batch"],
        "normalization": normalization or identity,
        "time_convention": "tau-one-is-data",
        "defaults": {"steps": 5, "beta": 5.0},
        "capabilities": {"exact_vjp": True, "prefix_conditioned": False},
        "attention": {
            "kind": expert.attention,
            "layers": expert.layers,
            "heads": expert.heads,
            "kv_heads": expert.kv_heads,
            "head_dim": expert.head_dim,
            "rope_dim": expert.rope_dim if expert.attention in ("gta", "gla") else None,
            "width": expert.width,
        },
        "dtype": dtype,
        "graphs": graphs,
        **({"training": {"episode_seeds": list(episode_seeds)}} if episode_seeds else {}),
    }


def random_vla_params(config: VlaConfig, seed: int, dtype: str) -> dict:
    """The VLA's weights drawn from `seed` in `dtype`: properly scaled on the CPU for small models, N(0, 0.02)
    leaf by leaf on the device for large ones (one jitted initialisation of billions of weights takes minutes)."""
    from .vla_timing import random_params

    if sum(parameter_counts(config).values()) < SMALL_MODEL_PARAMETERS:
        return jax.tree_util.tree_map(lambda x: x.astype(NUMPY_DTYPES[dtype]), init_vla_params(config, jax.random.PRNGKey(seed)))
    return random_params(config, seed, NUMPY_DTYPES[dtype])


@dataclass(frozen=True)
class TrainedVla:
    """What a bundle of trained weights carries beyond the graphs (`rtchunk_train.vla_train` makes one)."""

    params: dict
    # `dataset.Dataset.statistics` of the training data (None: identity).
    normalization: dict | None
    # The prompt's token ids (None: drawn).
    prompt_ids: tuple | None
    name: str
    # The simulator episodes trained on, [first, end) (None when the data does not say).
    episode_seeds: list | None = None


def build_bundle(skeleton: Path, out: Path, seed: int, external: bool = True, check_in_onnxruntime: bool = False,
                 trained: TrainedVla | None = None) -> dict:
    """A bundle in `out` from the skeleton in `skeleton`, weights drawn from `seed` (or `trained`'s, with its
    normalisation, prompt and name), with `expected.json`; with `check_in_onnxruntime` every graph is checked
    against JAX on the CPU (bfloat16 graphs in ONNX's reference evaluator: ONNX Runtime has no bfloat16 CPU kernels).
    Returns the recorded outputs, the context and the parameters as {"recorded", "context", "params"}."""
    description = json.loads((skeleton / "skeleton.json").read_text())
    config, dtype = config_from(description), description["dtype"]
    expert = config.expert_config()
    params = (random_vla_params(config, seed, dtype) if trained is None
              else jax.tree_util.tree_map(lambda x: np.asarray(x, NUMPY_DTYPES[dtype]), trained.params))
    trained = trained or TrainedVla(params, None, None, f"vla-{expert.attention}-{config.cameras}cam-{dtype}")
    graphs = attach(skeleton, params, out, external)
    inputs = fixed_vla_inputs(config, description["batch"] or 2, seed + 1, trained.prompt_ids)
    recorded, context = record_expected(config, params, dtype, inputs)
    exact = exact_outputs(config, params, inputs, context) if dtype == "float32" else {}
    if exact:
        recorded["tolerance"] = replay_tolerance(recorded, exact["end_to_end"])
    manifest = manifest_for(config, description, inputs["prompt"][0], graphs, trained.name, trained.normalization,
                            trained.episode_seeds)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "expected.json").write_text(json.dumps(recorded) + "\n")
    if check_in_onnxruntime:
        cast = NUMPY_DTYPES[dtype]
        cameras = {f"camera{i}": inputs[f"camera{i}"] for i in range(config.cameras)}
        prefix_inputs = {"state": inputs["state"], **cameras, "prompt": inputs["prompt"]}
        check_against_jax(out / "prefix.onnx", prefix_inputs, [context], dtype, exact.get("prefix"))
        flow = {"actions": inputs["actions"], "tau": inputs["tau"], "context": np.asarray(context, cast)}
        check_against_jax(out / "velocity.onnx", flow, [recorded["velocity"]], dtype, exact.get("velocity"))
        check_against_jax(out / "velocity_vjp.onnx", {**flow, "cotangent": inputs["cotangent"]},
                          [recorded["velocity"], recorded["vjp"]], dtype, exact.get("velocity_vjp"))
        guidance = {"target": recorded["inputs"]["target"], "weights": recorded["inputs"]["weights"]}
        check_against_jax(out / "guided.onnx", {**flow, **guidance}, [recorded["velocity"], recorded["guided_vjp"]],
                          dtype, exact.get("guided"))
    return {"recorded": recorded, "context": context, "params": params}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("skeleton", "bundle"):
        sub = commands.add_parser(command)
        sub.add_argument("--preset", default="vla-tiny")
        sub.add_argument("--attention", default="gta", choices=("gta", "gqa", "mha", "gla"))
        sub.add_argument("--cameras", type=int, default=1)
        sub.add_argument("--dtype", default="float32", choices=sorted(EXPORT_TOLERANCE))
        sub.add_argument("--batch", type=int, default=None, help="a fixed batch (default: symbolic)")
        sub.add_argument("--attention-op", choices=("fused", "written-out"), default=None,
                         help="attention in the prefix and the plain step: one ONNX Attention operator per layer "
                              "(the default for bfloat16, the GPU's type: faster there) or written out (the default "
                              "otherwise); the VJP graphs always write it out")
        sub.add_argument("--out", type=Path, required=True)
    attach_command = commands.add_parser("attach")
    attach_command.add_argument("skeleton", type=Path)
    attach_command.add_argument("--out", type=Path, required=True)
    for sub in (attach_command, commands.choices["bundle"]):
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--inline", action="store_true", help="weights inside the graphs instead of external data")
    args = parser.parse_args()
    if args.command == "attach":
        build_bundle(args.skeleton, args.out, args.seed, external=not args.inline)
        print(f"wrote {args.out}")
        return
    from .vla import vla_preset

    kv_heads = {"kv_heads": vla_preset(args.preset).expert.heads} if args.attention == "mha" else {}
    fused = args.attention_op == "fused" if args.attention_op else args.dtype == "bfloat16"
    if fused and args.dtype == "float16":
        parser.error("--attention-op fused: not for float16 (JAX on the CPU, which records the reference outputs, has "
                     "no float16 attention with float32 accumulation); use written-out")
    config = replace(vla_preset(args.preset, attention=args.attention, fused_attention=fused, **kv_heads),
                     cameras=args.cameras)
    if args.command == "skeleton":
        export_skeleton(config, args.dtype, args.out, args.batch)
    else:
        with tempfile.TemporaryDirectory() as skeleton:
            export_skeleton(config, args.dtype, Path(skeleton), args.batch)
            build_bundle(Path(skeleton), args.out, args.seed, external=not args.inline, check_in_onnxruntime=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
