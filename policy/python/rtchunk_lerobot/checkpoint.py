"""LeRobot checkpoints (SmolVLA, π0, π0.5): loading one (the policy and its processors, as LeRobot saves them) and making
one with random weights, for tests and benchmarks, without downloading anything.

Usage (a checkpoint with random weights)::

    python -m rtchunk_lerobot.checkpoint OUT [--size smolvla-tiny|smolvla|pi0-tiny|pi0|pi05-tiny|pi05] [--state-dim 6]
        [--action-dim 6] [--camera NAME:HEIGHTxWIDTH ...] [--seed 0]
"""

import argparse
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature, PreTrainedConfig
from lerobot.processor import (
    PolicyProcessorPipeline,
    TokenizerProcessorStep,
    policy_action_to_transition,
    transition_to_policy_action,
)

from . import pi0, pi05, smolvla
from .graphs import Architecture, UnsupportedCheckpoint
from .vlm_folder import write_vlm_folder

PREPROCESSOR = "policy_preprocessor.json"
POSTPROCESSOR = "policy_postprocessor.json"
# Where LeRobot's image features live and the prefix a camera's name follows.
IMAGE_PREFIX = "observation.images."


@dataclass
class Checkpoint:
    """A LeRobot policy, its processors and what the exporter knows of its architecture."""

    policy: object
    preprocessor: PolicyProcessorPipeline
    postprocessor: PolicyProcessorPipeline
    path: Path
    architecture: Architecture


# The architectures the exporter supports, by config.json's ``type``.
ARCHITECTURES = {architecture.kind: architecture for architecture in (smolvla.ARCHITECTURE, pi0.ARCHITECTURE,
                                                                               pi05.ARCHITECTURE)}
# Checkpoint presets (the published sizes, and tiny ones for CPU tests), with their architecture.
SIZES = {name: (architecture, preset) for architecture in ARCHITECTURES.values()
         for name, preset in architecture.sizes.items()}


@contextlib.contextmanager
def _local_tokenizer(folder: Path):
    """Within the block every LeRobot tokenizer step loads its tokenizer from ``folder``, not from the hub."""
    post_init = TokenizerProcessorStep.__post_init__

    def local(step):
        step.tokenizer_name = str(folder)
        post_init(step)

    TokenizerProcessorStep.__post_init__ = local
    try:
        yield
    finally:
        TokenizerProcessorStep.__post_init__ = post_init


def make_checkpoint(out: Path, size: str = "smolvla-tiny", state_dim: int = 6, action_dim: int = 6,
                    cameras: dict | None = None, seed: int = 0, vlm: Path | None = None) -> Path:
    """Writes a checkpoint of ``size`` (SIZES) with weights drawn from ``seed`` into ``out``, as ``save_pretrained``
    writes a trained one: ``config.json``, ``model.safetensors`` and its processors with random normalisation
    statistics. ``cameras`` maps names to ``(height, width)`` (default one 24 x 40 camera, ``top``). Its VLM folder
    (configuration and tokenizer, or the tokenizer alone) is written to ``vlm`` (default ``out/vlm``), which the
    configuration or the preprocessor names."""
    architecture, preset = SIZES[size]
    cameras = cameras or {"top": (24, 40)}
    vlm = write_vlm_folder(vlm or out / "vlm", preset["vlm"]).resolve()
    features = {"observation.state": PolicyFeature(FeatureType.STATE, (state_dim,))}
    for name, (height, width) in cameras.items():
        features[IMAGE_PREFIX + name] = PolicyFeature(FeatureType.VISUAL, (3, height, width))
    fields = dict(preset["config"])
    if architecture.vlm_field:
        fields[architecture.vlm_field] = str(vlm)
    generator = torch.Generator().manual_seed(seed + 1)

    def statistics(dim: int) -> dict:
        """Statistics for every normalisation mode: mean and std, and the range and quantiles around the mean."""
        mean, spread = torch.randn(dim, generator=generator), 0.5 + torch.rand(dim, generator=generator)
        return {"mean": mean, "std": spread, "min": mean - 3 * spread, "max": mean + 3 * spread,
                "q01": mean - 2 * spread, "q99": mean + 2 * spread}

    stats = {"observation.state": statistics(state_dim), "action": statistics(action_dim)}
    with architecture.building(fields), _local_tokenizer(vlm):
        config = architecture.config_class(
            device="cpu", input_features=features,
            output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))}, **fields)
        torch.manual_seed(seed)
        policy = architecture.policy_class(config)
        preprocessor, postprocessor = architecture.make_processors(config, dataset_stats=stats)
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out, config_filename=PREPROCESSOR)
    postprocessor.save_pretrained(out, config_filename=POSTPROCESSOR)
    return out


def load_checkpoint(path: Path, vlm: Path | None = None, dtype: str = "float32") -> Checkpoint:
    """Loads the LeRobot checkpoint in ``path`` (SmolVLA, π0 or π0.5) in ``dtype``: ``float32``, or ``bfloat16``
    (LeRobot's own bfloat16 mode, π0 and π0.5); ``vlm`` replaces the folder or hub name of its VLM
    (configuration and tokenizer; π0: its tokenizer), for a machine that has it elsewhere. Refuses what the exporter
    does not support, naming the field."""
    config_file = path / "config.json"
    if not config_file.exists():
        raise UnsupportedCheckpoint(f"{config_file}: missing (a LeRobot checkpoint has config.json, model.safetensors "
                                    f"and {PREPROCESSOR})")
    fields = json.loads(config_file.read_text())
    kind = fields.get("type")
    if kind not in ARCHITECTURES:
        raise UnsupportedCheckpoint(f"{config_file}: type = {kind!r}; this exporter supports "
                                    f"{', '.join(map(repr, ARCHITECTURES))}")
    architecture = ARCHITECTURES[kind]
    overrides = {}
    with architecture.building(fields):
        config = PreTrainedConfig.from_pretrained(path)
        if vlm is not None:
            if architecture.vlm_field:
                setattr(config, architecture.vlm_field, str(vlm))
            overrides = {"tokenizer_processor": {"tokenizer_name": str(vlm)}}
        _refuse_unsupported(config, config_file, architecture)
        if getattr(config, "dtype", "float32") != "float32":
            config.dtype = "float32"  # built in float32; ``dtype`` says what the bundle is exported in
        if dtype == "bfloat16" and architecture.to_bfloat16 is None:
            raise UnsupportedCheckpoint(f"{config_file}: type = {kind!r} cannot be exported in bfloat16 "
                                        f"({architecture.no_bfloat16}); export it with --dtype float32")
        policy = architecture.policy_class.from_pretrained(path, config=config).eval()
        if dtype == "bfloat16":
            architecture.to_bfloat16(policy)
    preprocessor = PolicyProcessorPipeline.from_pretrained(path, config_filename=PREPROCESSOR, overrides=overrides)
    postprocessor = PolicyProcessorPipeline.from_pretrained(path, config_filename=POSTPROCESSOR,
                                                            to_transition=policy_action_to_transition,
                                                            to_output=transition_to_policy_action)
    return Checkpoint(policy, preprocessor, postprocessor, path, architecture)


def _refuse_unsupported(config, config_file: Path, architecture: Architecture) -> None:
    """Raises for settings the bundle cannot reproduce."""
    for flag, meaning in architecture.unsupported_flags.items():
        if getattr(config, flag, False):
            raise UnsupportedCheckpoint(f"{config_file}: {flag} = true ({meaning}) is not supported")
    visual = config.normalization_mapping.get("VISUAL")
    if visual is not None and str(getattr(visual, "value", visual)) != "IDENTITY":
        raise UnsupportedCheckpoint(f"{config_file}: normalization_mapping.VISUAL = {visual}; images must be "
                                    "IDENTITY (the graph scales raw pixels itself)")
    states = [key for key, feature in config.input_features.items() if feature.type == FeatureType.STATE]
    if len(states) != 1:
        raise UnsupportedCheckpoint(f"{config_file}: input_features has {len(states)} STATE features; one is "
                                    "supported")


def camera_keys(policy) -> list:
    """The policy's image features that a robot supplies, in the checkpoint's order (not the empty cameras
    SmolVLA adds itself)."""
    return [key for key in policy.config.image_features if not key.startswith(IMAGE_PREFIX + "empty_camera_")]


def _camera(text: str) -> tuple:
    """``NAME:HEIGHTxWIDTH`` -> (name, (height, width))."""
    name, size = text.split(":")
    height, width = size.split("x")
    return name, (int(height), int(width))


def main() -> None:
    parser = argparse.ArgumentParser(description="Writes a LeRobot checkpoint with random weights.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="smolvla-tiny")
    parser.add_argument("--state-dim", type=int, default=6)
    parser.add_argument("--action-dim", type=int, default=6)
    parser.add_argument("--camera", action="append", type=_camera, help="NAME:HEIGHTxWIDTH (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cameras = dict(args.camera) if args.camera else None
    make_checkpoint(args.out, args.size, args.state_dim, args.action_dim, cameras, args.seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
