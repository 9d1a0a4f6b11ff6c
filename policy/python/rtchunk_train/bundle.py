"""Writes and checks rtchunk policy bundles (see policy/BUNDLE.md): three ONNX graphs and a manifest."""

from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator

from .bundle_files import FORMAT_VERSION, sha256, write_expected, write_manifest  # noqa: F401 (re-exported)
from .compact import expand_uniform_constants
from .einsum import einsum_to_matmul
from .rtc import guided_inference
from .simplify import simplify

# Largest difference between ONNX Runtime and JAX that an export may show, per graph dtype.
EXPORT_TOLERANCE = {"float32": 1e-5, "float16": 2e-2, "bfloat16": 5e-2}
# Given an exact (float64) reference, how many times JAX's own float32 error ONNX Runtime's may be.
FLOAT32_SLACK = 4.0
NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "uint8": np.uint8,
                "float64": np.float64}


def _denoiser_pullback(velocity, actions, tau, context):
    """(A1_hat, its pullback, v, the graph's float type, the work type) at `actions`: A1_hat = A + (1 - tau) v.
    For bfloat16 graphs the denoiser's own arithmetic runs in float32, like the model's elementwise work."""
    io_dtype = actions.dtype
    work = jnp.float32 if io_dtype == jnp.bfloat16 else io_dtype

    def denoiser(a):
        v = velocity(a.astype(io_dtype), tau, context).astype(work)
        return a + (1.0 - tau.astype(work)[:, :, None]) * v, v

    denoised, pullback, v = jax.vjp(denoiser, actions.astype(work), has_aux=True)
    return denoised, pullback, v, io_dtype, work


def vjp_graph(velocity):
    """(A, tau, context, cotangent) -> (v, VJP of A1_hat = A + (1 - tau) v against the cotangent)."""

    def velocity_vjp(actions, tau, context, cotangent):
        _, pullback, v, io_dtype, work = _denoiser_pullback(velocity, actions, tau, context)
        return v.astype(io_dtype), pullback(cotangent.astype(work))[0].astype(io_dtype)

    return velocity_vjp


def guided_graph(velocity):
    """(A, tau, context, target Y, weights W [B, H]) -> (v, VJP of A1_hat against W (Y - A1_hat)): a guided RTC
    step's model work in one pass forward and one back (the two-graph path runs the forward pass twice)."""

    def velocity_guided(actions, tau, context, target, weights):
        denoised, pullback, v, io_dtype, work = _denoiser_pullback(velocity, actions, tau, context)
        error = weights.astype(work)[:, :, None] * (target.astype(work) - denoised)
        return v.astype(io_dtype), pullback(error)[0].astype(io_dtype)

    return velocity_guided


def float_specs(shapes, dtype: str = "float32", camera_inputs: int = 0) -> list:
    """Input specs of `dtype` arrays of `shapes` (a dimension may be a symbol such as "B"), the last
    `camera_inputs` of them uint8 images."""
    dtypes = [NUMPY_DTYPES[dtype]] * (len(shapes) - camera_inputs) + [np.uint8] * camera_inputs
    return [SimpleNamespace(shape=tuple(s), dtype=d) for s, d in zip(shapes, dtypes)]


def export_graph(function, specs, path: Path, input_names, output_names):
    """Exports a JAX function of inputs with `specs` (each with a shape and a numpy dtype) to ONNX with the given
    I/O names, rewritten for fewer GPU kernels (`rtchunk_train.simplify`: same values)."""
    from jax2onnx import to_onnx  # the tracer; building a bundle from a traced skeleton does without it

    model = to_onnx(function, specs, model_name=path.stem)
    einsum_to_matmul(model)
    expand_uniform_constants(model)
    simplify(model)
    for graph_input, name in zip(model.graph.input, input_names):
        rename(model.graph, graph_input.name, name)
    for graph_output, name in zip(model.graph.output, output_names):
        rename(model.graph, graph_output.name, name)
    path.write_bytes(model.SerializeToString())


def rename(graph, old: str, new: str):
    """Renames a graph input or output everywhere it appears."""
    if old == new:
        return
    for value in list(graph.input) + list(graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def run_onnx(path: Path, inputs: dict, dtype: str = "float32") -> list:
    """Runs a graph on the CPU (integer inputs as they are, the rest in `dtype`), in ONNX Runtime, or for bfloat16 graphs (ONNX Runtime has no bfloat16 CPU kernels)
    in ONNX's reference evaluator; outputs as float32."""
    feeds = {k: np.asarray(v) if np.asarray(v).dtype.kind in "iu" else np.asarray(v, dtype=NUMPY_DTYPES[dtype]) for k, v in inputs.items()}
    if dtype == "bfloat16":
        outputs = ReferenceEvaluator(onnx.load(str(path))).run(None, feeds)
    else:
        outputs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    return [np.asarray(o, dtype=np.float32) for o in outputs]


def check_against_jax(path: Path, inputs: dict, expected: list, dtype: str = "float32", exact: list | None = None):
    """Refuses an export whose ONNX Runtime outputs differ from JAX's by more than the dtype's tolerance, relative
    to the output's magnitude where it exceeds 1 (a VJP of size 10 carries float32 rounding of 1e-6 x 10).

    With `exact` (the same outputs computed in float64), ONNX Runtime's outputs are measured against it instead and
    may be off by `FLOAT32_SLACK` times JAX's own error where that exceeds the tolerance: long reductions (a trained
    model's prefix over hundreds of tokens) round differently in ONNX Runtime and XLA while both stay as close to
    the exact result."""
    got = run_onnx(path, inputs, dtype)
    for name, (g, e) in enumerate(zip(got, expected)):
        e = np.asarray(e, dtype=np.float32)
        tolerance = EXPORT_TOLERANCE[dtype] * max(1.0, float(np.max(np.abs(e))))
        reference = e
        if exact is not None:
            reference = np.asarray(exact[name], dtype=np.float64)
            tolerance = max(tolerance, FLOAT32_SLACK * float(np.max(np.abs(e - reference))))
        error = float(np.max(np.abs(np.asarray(g, dtype=np.float64) - reference)))
        if not error <= tolerance:
            against = "the exact (float64) result" if exact is not None else "JAX"
            raise ValueError(f"{path.name}: output {name} differs from {against} by {error:.3g} > {tolerance:.3g}")


def export_policy(
    out: Path,
    prefix,
    velocity,
    dims: dict,
    manifest: dict,
    inputs: dict,
    batch: int | None = None,
    dtype: str = "float32",
    cameras: list | None = None,
) -> dict:
    """Exports prefix, velocity and velocity_vjp graphs of a policy into `out`, checks each in ONNX Runtime
    against JAX on `inputs` (observation, actions, tau, cotangent), writes the manifest, and returns the recorded
    outputs. `dims` gives horizon, action_dim, observation_dim and context_shape. `batch` fixes the graphs'
    batch size (ONNX Runtime then folds the shape arithmetic away: several times faster for small models, and
    the runtime calls them in groups); `None` leaves it symbolic. `inputs` must hold a multiple of it. `dtype`
    is the graphs' float type ("float32", "float16" or "bfloat16"; the functions take and return it). `cameras`
    lists `{name, height, width, channels}`: the prefix then also takes one uint8 image per camera, `inputs[name]`
    of shape [B, height, width, channels]."""
    cameras = cameras or []
    names = [c["name"] for c in cameras]
    out.mkdir(parents=True, exist_ok=True)
    graph_batch = "B" if batch is None else batch
    if batch is not None:
        inputs = {k: v[:batch] for k, v in inputs.items()}
    inputs = {k: np.asarray(v, dtype=np.uint8 if k in names else NUMPY_DTYPES[dtype]) for k, v in inputs.items()}
    h, a, o = dims["horizon"], dims["action_dim"], dims["observation_dim"]
    chunk, context_shape = (graph_batch, h, a), (graph_batch,) + tuple(dims["context_shape"])
    images = [inputs[name] for name in names]
    context = np.asarray(prefix(inputs["observation"], *images))
    v = np.asarray(velocity(inputs["actions"], inputs["tau"], context))
    _, vjp = (np.asarray(x) for x in jax.jit(vjp_graph(velocity))(inputs["actions"], inputs["tau"], context, inputs["cotangent"]))
    image_shapes = [(graph_batch, c["height"], c["width"], c["channels"]) for c in cameras]
    prefix_specs = float_specs([(graph_batch, o)] + image_shapes, dtype, len(cameras))
    export_graph(prefix, prefix_specs, out / "prefix.onnx", ["observation"] + names, ["context"])
    flow_specs = float_specs([chunk, (graph_batch, h), context_shape], dtype)
    export_graph(velocity, flow_specs, out / "velocity.onnx", ["actions", "tau", "context"], ["velocity"])
    export_graph(
        vjp_graph(velocity),
        flow_specs + float_specs([chunk], dtype),
        out / "velocity_vjp.onnx",
        ["actions", "tau", "context", "cotangent"],
        ["velocity", "vjp"],
    )
    export_graph(
        guided_graph(velocity),
        flow_specs + float_specs([chunk, (graph_batch, h)], dtype),
        out / "guided.onnx",
        ["actions", "tau", "context", "target", "weights"],
        ["velocity", "vjp"],
    )
    check_against_jax(out / "prefix.onnx", {"observation": inputs["observation"], **dict(zip(names, images))}, [context], dtype)
    flow_inputs = {"actions": inputs["actions"], "tau": inputs["tau"], "context": context}
    check_against_jax(out / "velocity.onnx", flow_inputs, [v], dtype)
    check_against_jax(out / "velocity_vjp.onnx", {**flow_inputs, "cotangent": inputs["cotangent"]}, [v, vjp], dtype)
    target, weights = guidance_inputs(inputs["actions"])
    guided = [np.asarray(x) for x in jax.jit(guided_graph(velocity))(inputs["actions"], inputs["tau"], context, target, weights)]
    check_against_jax(out / "guided.onnx", {**flow_inputs, "target": target, "weights": weights}, guided, dtype)
    manifest = {
        **manifest,
        "action_dim": a,
        "horizon": h,
        "observation": [{"name": "observation", "shape": [o], "dtype": dtype}],
        **({"cameras": cameras} if cameras else {}),
        "context_shape": list(dims["context_shape"]),
        "batch": batch,
        "time_convention": "tau-one-is-data",
        "dtype": dtype,
    }
    graphs = {"prefix": "prefix.onnx", "velocity": "velocity.onnx", "velocity_vjp": "velocity_vjp.onnx", "guided": "guided.onnx"}
    write_manifest(out, manifest, graphs)
    as_float32 = lambda x: np.asarray(x, dtype=np.float32).tolist()  # noqa: E731
    recorded = {
        "tolerance": EXPORT_TOLERANCE[dtype],
        "inputs": {k: as_float32(x) for k, x in {**inputs, "target": target, "weights": weights}.items() if k not in names},
        "context": as_float32(context),
        "velocity": as_float32(v),
        "vjp": as_float32(vjp),
        "guided_vjp": as_float32(guided[1]),
        "rtc": record_rtc(in_float32(velocity, dtype), context[:1], h, a),
    }
    if cameras:
        # Every camera's image of each observation, one observation after another (the runtime's layout).
        recorded["inputs"]["images"] = np.concatenate([i.reshape(len(i), -1) for i in images], axis=1).tolist()
    return recorded


def guidance_inputs(actions: np.ndarray) -> tuple:
    """A target Y and per-token weights W for recorded guided steps: the chunk shifted by a ramp, weights
    decaying along it as RTC's soft mask does."""
    batch, horizon, _ = actions.shape
    ramp = np.linspace(-0.5, 0.5, horizon, dtype=np.float32)[None, :, None]
    weights = np.repeat(np.exp(-np.arange(horizon, dtype=np.float32) / (horizon / 3))[None], batch, axis=0)
    return (actions.astype(np.float32) + ramp).astype(actions.dtype), weights.astype(actions.dtype)


def in_float32(velocity, dtype: str):
    """The velocity as the runtime drives a graph of `dtype`: float32 in and out, cast at the boundary."""
    if dtype == "float32":
        return velocity
    cast = NUMPY_DTYPES[dtype]
    return lambda a, t, c: velocity(a.astype(cast), t.astype(cast), c).astype(np.float32)


def record_rtc(velocity, context, horizon: int, action_dim: int) -> dict:
    """A full guided RTC inference from fixed noise (n = 5, beta = 5, d = 2, s = H / 2), recorded for comparison."""
    return record_rtc_with(jax.jit(velocity), jax.jit(vjp_graph(velocity)), context, horizon, action_dim)


def record_rtc_with(velocity, velocity_vjp, context, horizon: int, action_dim: int) -> dict:
    """`record_rtc` with the velocity and its VJP graph function given (already jitted, float32 in and out)."""
    rng = np.random.default_rng(7)
    noise = rng.normal(size=(1, horizon, action_dim)).astype(np.float32)
    executed = horizon // 2
    committed = (0.5 * np.sin(0.5 * np.arange((horizon - executed) * action_dim))).reshape(-1, action_dim).astype(np.float32)
    chunk = guided_inference(velocity, velocity_vjp, context, noise, committed, 2, 5, 5.0)
    return {
        "noise": noise.tolist(),
        "committed": committed.tolist(),
        "delay": 2,
        "steps": 5,
        "beta": 5.0,
        "chunk": chunk.tolist(),
    }


def fixed_inputs(horizon: int, action_dim: int, observation_dim: int, batch: int, seed: int, per_token: bool) -> dict:
    """Deterministic inputs for recorded outputs: observations, noisy chunks, tau, cotangents. With `per_token`
    the tau varies along the chunk (a clean prefix at tau = 1, as training-time RTC drives it)."""
    rng = np.random.default_rng(seed)
    tau = np.repeat(rng.uniform(0.0, 0.9, size=(batch, 1)), horizon, axis=1)
    if per_token:
        tau[:, : horizon // 4] = 1.0
    return {
        "observation": rng.normal(size=(batch, observation_dim)).astype(np.float32),
        "actions": rng.normal(size=(batch, horizon, action_dim)).astype(np.float32),
        "tau": tau.astype(np.float32),
        "cotangent": rng.normal(size=(batch, horizon, action_dim)).astype(np.float32),
    }
