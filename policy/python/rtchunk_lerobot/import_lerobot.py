"""Exports a LeRobot SmolVLA, π0 or π0.5 checkpoint as an rtchunk policy bundle, and records what LeRobot itself
computes so that ``rtchunk inspect`` can check the bundle against it.

Usage::

    python -m rtchunk_lerobot.import_lerobot CHECKPOINT --prompt "pick up the cube" --out BUNDLE [--vlm FOLDER]
        [--control-rate HZ] [--dtype float32|bfloat16] [--resume]

The bundle (policy/BUNDLE.md) holds ``prefix.onnx`` (state, raw uint8 camera images and the prompt's token ids ->
the context: the VLM's key-value cache, and what else each architecture's step reads), ``velocity.onnx``,
``velocity_vjp.onnx`` (the exact VJP of the denoiser) and ``guided.onnx``, all in LeRobot's time convention (t = 1 is noise), with LeRobot's normalisation statistics, the
prompt tokenised by the checkpoint's own processor, and LeRobot's RTC settings as defaults. The model's actions
are ``max_action_dim`` wide; the robot executes the first ``robot_action_dim`` of them.

``expected.json`` records, from LeRobot's own modules on the same inputs: the velocity, the VJP through
``torch.autograd``, the guided step, a plain chunk (``predict_action_chunk``) and an RTC chunk from LeRobot's
``RTCProcessor`` (the identity-Jacobian guidance), each from recorded noise.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.utils.constants import OBS_STATE

from .checkpoint import IMAGE_PREFIX, camera_keys, load_checkpoint
from .graphs import FlowGraphs
from .tracing import export_function, external_data_files, functional_rope
from rtchunk_train.bundle_files import FORMAT_VERSION, sha256, write_expected

# Agreement with LeRobot that the recording promises, per value, by the bundle's dtype (bfloat16 keeps 8 bits of
# mantissa: the graphs' inputs and outputs are rounded to it, and ONNX Runtime's kernels round differently).
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}
# LeRobot's RTC settings when the checkpoint has none (RTCConfig's defaults).
DEFAULT_RTC = RTCConfig()


def _affine(apply, dim: int) -> tuple:
    """(mean, std) of the affine map ``apply`` (raw -> model space: ``(x - mean) / std``), probed at 0 and 1 in
    float64."""
    zero = apply(torch.zeros(dim, dtype=torch.float64))
    one = apply(torch.ones(dim, dtype=torch.float64))
    std = 1.0 / (one - zero)
    return (-zero * std).tolist(), std.tolist()


def normalization(checkpoint, model_action_dim: int) -> dict:
    """The state's and the action's statistics as the checkpoint's processors apply them: LeRobot's normaliser
    and unnormaliser probed, so every affine mode (mean/std with its epsilon, min/max, quantiles) carries over.
    The action's padding dimensions (model space only) get mean 0 and std 1."""
    normalizer = next(s for s in checkpoint.preprocessor.steps if type(s).__name__ == "NormalizerProcessorStep")
    unnormalizer = next(s for s in checkpoint.postprocessor.steps if type(s).__name__ == "UnnormalizerProcessorStep")
    config = checkpoint.policy.config
    state_feature = config.robot_state_feature
    state_mean, state_std = _affine(
        lambda x: normalizer._apply_transform(x, OBS_STATE, state_feature.type), state_feature.shape[0])
    action_feature = config.action_feature
    dim = action_feature.shape[0]
    zero = unnormalizer._apply_transform(torch.zeros(dim, dtype=torch.float64), "action", action_feature.type,
                                         inverse=True)
    one = unnormalizer._apply_transform(torch.ones(dim, dtype=torch.float64), "action", action_feature.type,
                                        inverse=True)
    padding = model_action_dim - dim
    return {
        "observation": {"mean": state_mean, "std": state_std},
        "action": {"mean": zero.tolist() + [0.0] * padding, "std": (one - zero).tolist() + [1.0] * padding},
    }


def sample_observation(checkpoint, seed: int) -> dict:
    """A raw observation as a robot sends it: a state and one uint8 ``[H, W, C]`` image per camera."""
    generator = np.random.default_rng(seed)
    config = checkpoint.policy.config
    observation = {OBS_STATE: generator.normal(size=config.robot_state_feature.shape).astype(np.float32)}
    for key in camera_keys(checkpoint.policy):
        channels, height, width = config.input_features[key].shape
        observation[key] = generator.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return observation


def preprocess(checkpoint, observation: dict, prompt: str) -> dict:
    """LeRobot's preprocessor on a raw observation (images scaled to [0, 1] channel-first, as LeRobot's robot
    pipeline hands them over): the normalised state, the images, the prompt's tokens and mask, batch 1."""
    batch = {OBS_STATE: torch.from_numpy(observation[OBS_STATE]), "task": prompt}
    for key in camera_keys(checkpoint.policy):
        batch[key] = torch.from_numpy(observation[key]).permute(2, 0, 1).to(torch.float32) / 255.0
    return checkpoint.preprocessor(batch)


def graph_inputs(observation: dict, processed: dict, checkpoint, token_ids: list) -> tuple:
    """The prefix graph's inputs for a raw observation and its preprocessed batch: the normalised state, uint8
    images, token ids (batch 1)."""
    images = [torch.from_numpy(observation[key])[None] for key in camera_keys(checkpoint.policy)]
    return (processed[OBS_STATE], *images, torch.tensor([token_ids], dtype=torch.int64))


class LeRobotReference:
    """LeRobot's own computation for one preprocessed observation: its prefix cache (a ``DynamicCache``) and
    ``denoise_step``, with gradients through ``torch.autograd``."""

    def __init__(self, checkpoint, processed: dict):
        self.policy, self.processed = checkpoint.policy, processed
        self.steps_field = checkpoint.architecture.steps_field
        with torch.no_grad():
            self.prefill = checkpoint.architecture.prefill(checkpoint.policy, processed)
        self.cache = self.prefill.cache

    def velocity(self, actions: torch.Tensor, t: float) -> torch.Tensor:
        time = torch.full((actions.shape[0],), t, dtype=torch.float32, device=actions.device)
        return self.prefill.step(actions, time)

    def vjp(self, actions: torch.Tensor, t: float, cotangent) -> tuple:
        """The velocity and the VJP of the denoiser ``A - t v`` through ``torch.autograd`` against ``cotangent``, a
        tensor or a function of the (detached) denoised actions."""
        with torch.enable_grad():
            actions = actions.clone().requires_grad_(True)
            velocity = self.velocity(actions, t)
            denoised = actions - t * velocity
            if callable(cotangent):
                cotangent = cotangent(denoised.detach())
            (vjp,) = torch.autograd.grad(denoised, actions, cotangent)
        return velocity.detach(), vjp

    @property
    def steps(self) -> int:
        """The number of denoising steps LeRobot's chunks take."""
        return getattr(self.policy.config, self.steps_field)

    @steps.setter
    def steps(self, steps: int) -> None:
        setattr(self.policy.config, self.steps_field, steps)

    def chunk(self, noise: torch.Tensor, rtc: RTCConfig | None = None, **rtc_inputs) -> torch.Tensor:
        """``predict_action_chunk`` from ``noise`` (with LeRobot's RTC when ``rtc`` is given): the robot's action
        dimensions, in model space."""
        self.policy.config.rtc_config = rtc
        self.policy.init_rtc_processor()
        self.policy.reset()
        try:
            return self.policy.predict_action_chunk(dict(self.processed), noise=noise, **rtc_inputs)
        finally:
            self.policy.config.rtc_config = None
            self.policy.init_rtc_processor()


def record(checkpoint, graph_args: tuple, processed: dict, seed: int, rtc: RTCConfig, dtype: str) -> dict:
    """``expected.json``: the recorded inputs and LeRobot's outputs (see the module's documentation)."""
    config = checkpoint.policy.config
    h, a = config.chunk_size, config.max_action_dim
    robot_dim = config.action_feature.shape[0]
    generator = torch.Generator().manual_seed(seed)
    actions, cotangent, target = (torch.randn(1, h, a, generator=generator) for _ in range(3))
    t = 0.7
    weights = torch.linspace(1.0, 0.0, h)[None]
    reference = LeRobotReference(checkpoint, processed)
    velocity, vjp = reference.vjp(actions, t, cotangent)
    _, guided_vjp = reference.vjp(actions, t, lambda denoised: weights[:, :, None] * (target - denoised))
    plain_noise, rtc_noise = torch.randn(1, h, a, generator=generator), torch.randn(1, h, a, generator=generator)
    plain = reference.chunk(plain_noise)
    # The previous chunk's left-over: the plain chunk's first actions (robot dimensions, as LeRobot's queue keeps).
    delay, horizon = max(1, h // 5), min(rtc.execution_horizon, h // 2)
    previous = plain[:, :horizon]
    identity = reference.chunk(rtc_noise, rtc, inference_delay=delay, prev_chunk_left_over=previous,
                               execution_horizon=horizon)
    state, *images, _ = graph_args

    def listed(x):
        return x.detach().numpy().tolist()

    sampler = {"steps": reference.steps, "beta": rtc.max_guidance_weight,
               "schedule": str(rtc.prefix_attention_schedule.value).lower(), "dims": robot_dim}
    return {
        "tolerance": TOLERANCE[dtype],
        "source": "LeRobot",
        "inputs": {"observation": listed(state), "images": [[listed(i[0]) for i in images]],
                   "actions": listed(actions), "tau": [[t] * h], "cotangent": listed(cotangent),
                   "target": listed(target), "weights": listed(weights)},
        "velocity": listed(velocity), "vjp": listed(vjp), "guided_vjp": listed(guided_vjp),
        "chunks": [
            dict(sampler, mode="plain", noise=listed(plain_noise), committed=[], delay=0, chunk=listed(plain)),
            dict(sampler, mode="rtc-identity", noise=listed(rtc_noise), committed=listed(previous[0]),
                 delay=delay, chunk=listed(identity)),
        ],
    }


# Each graph: its inputs (the prefix's are the manifest's observation, cameras and prompt), its outputs, and
# whether it differentiates through the policy.
GRAPHS = {
    "prefix": (None, ["context"], False),
    "velocity": (["actions", "tau", "context"], ["velocity"], False),
    "velocity_vjp": (["actions", "tau", "context", "cotangent"], ["velocity", "vjp"], True),
    "guided": (["actions", "tau", "context", "target", "weights"], ["velocity", "vjp"], True),
}


def camera_name(key: str) -> str:
    """A camera's name in the bundle: its LeRobot feature key without ``observation.images.``."""
    return key.removeprefix(IMAGE_PREFIX)


def _with_io_dtype(function, dtype: torch.dtype):
    """``function`` with the bundle's input and output dtype: floating-point inputs arrive in ``dtype`` and are
    computed on in float32, as LeRobot's policy takes them; floating-point outputs leave in ``dtype``."""

    def bundled(*args):
        outputs = function(*(a.to(torch.float32) if a.is_floating_point() else a for a in args))
        if isinstance(outputs, tuple):
            return tuple(o.to(dtype) for o in outputs)
        return outputs.to(dtype)

    return bundled


def export_graphs(graphs: FlowGraphs, prefix_args: tuple, out: Path, prefix_names: list, rope_modules: tuple,
                  dtype: str = "float32", resume: bool = False) -> tuple:
    """Writes the four graphs (batch 1, inputs and outputs in ``dtype`` but for the prefix's observation, cameras
    and prompt and the flow graphs' time, float32) into ``out``; returns the manifest's ``graphs`` entries and the shape of one observation's context.
    With ``resume``, a graph already in ``out`` is kept (a graph file is written after its external data, so one
    that exists is whole): an interrupted export of a large model goes on where it stopped."""
    config = graphs.policy.config
    h, a = config.chunk_size, config.max_action_dim
    io_dtype = getattr(torch, dtype)
    with torch.no_grad():
        context = graphs.prefix(*prefix_args).to(io_dtype)
    # Distinct tensors for distinct inputs: the tracer would merge inputs given the same tensor into one. The time
    # stays float32 whatever the dtype (the manifest's time_dtype): sinusoidal time embeddings with periods of a
    # few milliseconds move by a tenth when 0.7 is rounded to bfloat16's 0.699.
    actions, cotangent, target = (torch.randn(1, h, a, dtype=io_dtype) for _ in range(3))
    flow_args = (actions, torch.full((1, h), 0.5, dtype=torch.float32), context)
    arguments = {"prefix": prefix_args, "velocity": flow_args, "velocity_vjp": (*flow_args, cotangent),
                 "guided": (*flow_args, target, torch.ones(1, h, dtype=io_dtype))}
    entries = {}
    with functional_rope(*rope_modules):
        for role, (inputs, outputs, differentiates) in GRAPHS.items():
            path = out / f"{role}.onnx"
            if not (resume and path.exists()):
                export_function(_with_io_dtype(getattr(graphs, role), io_dtype), arguments[role], path,
                                inputs or prefix_names, outputs, differentiates)
            entry = {"file": path.name, "sha256": sha256(path)}
            extra = external_data_files(path)
            if extra:
                entry["external_data"] = {name: sha256(out / name) for name in extra}
            entries[role] = entry
    return entries, list(context.shape[1:])


def import_checkpoint(checkpoint_dir: Path, prompt: str, out: Path, vlm: Path | None = None,
                      control_rate_hz: float = 30.0, seed: int = 0, dtype: str = "float32",
                      resume: bool = False) -> Path:
    """Writes the bundle of the LeRobot checkpoint in ``checkpoint_dir`` for ``prompt`` into ``out``, in ``dtype``
    (``bfloat16``: LeRobot's bfloat16 mode inside, bfloat16 inputs and outputs; it runs on ONNX Runtime's CUDA
    provider only); ``resume`` keeps the graphs an interrupted run already wrote there."""
    checkpoint = load_checkpoint(checkpoint_dir, vlm, dtype)
    policy = checkpoint.policy
    config = policy.config
    observation = sample_observation(checkpoint, seed)
    processed = preprocess(checkpoint, observation, prompt)
    architecture = checkpoint.architecture
    token_ids = architecture.prompt_ids(checkpoint, prompt, processed)
    prefix_args = graph_inputs(observation, processed, checkpoint, token_ids)
    cameras = camera_keys(policy)
    graphs = architecture.graphs(checkpoint, cameras, prefix_args, prompt)
    out.mkdir(parents=True, exist_ok=True)
    prefix_names = ["state", *(camera_name(key) for key in cameras), "prompt"]
    entries, context_shape = export_graphs(graphs, prefix_args, out, prefix_names, architecture.rope_modules,
                                           dtype, resume)
    rtc = config.rtc_config or DEFAULT_RTC
    schedule = str(rtc.prefix_attention_schedule.value).lower()
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": f"{config.type}-{checkpoint_dir.resolve().name}",
        "producer": f"rtchunk_lerobot (lerobot {_version('lerobot')}, torch {torch.__version__}, {dtype})",
        "action_dim": config.max_action_dim,
        "robot_action_dim": config.action_feature.shape[0],
        "horizon": config.chunk_size,
        "control_rate_hz": control_rate_hz,
        "observation": [{"name": "state", "shape": list(config.robot_state_feature.shape), "dtype": "float32"}],
        "cameras": [{"name": camera_name(key), "height": config.input_features[key].shape[1],
                     "width": config.input_features[key].shape[2], "channels": config.input_features[key].shape[0]}
                    for key in cameras],
        "prompt": {"input": "prompt", "token_ids": token_ids},
        "context_shape": context_shape,
        "batch": 1,
        "normalization": normalization(checkpoint, config.max_action_dim),
        "time_convention": "t-one-is-noise",
        "defaults": {"steps": getattr(config, architecture.steps_field), "beta": rtc.max_guidance_weight,
                     "schedule": schedule},
        "capabilities": {"exact_vjp": True, "prefix_conditioned": False},
        "attention": architecture.attention(policy),
        "dtype": dtype,
        "time_dtype": "float32",
        "graphs": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    write_expected(out, record(checkpoint, prefix_args, processed, seed, rtc, dtype))
    return out


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="the LeRobot checkpoint folder (config.json, model.safetensors)")
    parser.add_argument("--prompt", required=True, help="the task, tokenised with the checkpoint's processor")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vlm", type=Path, help="a local folder of the checkpoint's VLM (configuration, tokenizer)")
    parser.add_argument("--control-rate", type=float, default=30.0, help="the robot's control rate in Hz")
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32",
                        help="bfloat16: LeRobot's bfloat16 mode (π0 and π0.5), for ONNX Runtime's CUDA provider")
    parser.add_argument("--resume", action="store_true",
                        help="keep the graphs an interrupted export of the same checkpoint already wrote to --out")
    args = parser.parse_args()
    import_checkpoint(args.checkpoint, args.prompt, args.out, args.vlm, args.control_rate, dtype=args.dtype,
                      resume=args.resume)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
