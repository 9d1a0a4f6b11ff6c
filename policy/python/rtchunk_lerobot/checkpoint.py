"""LeRobot checkpoints: loading one (the policy and its processors, as LeRobot saves them) and making one with random
weights, for tests and benchmarks, without downloading anything.

Usage (a checkpoint with random weights)::

    python -m rtchunk_lerobot.checkpoint OUT [--size smolvla-tiny|smolvla] [--state-dim 6] [--action-dim 6]
        [--camera NAME:HEIGHTxWIDTH ...] [--seed 0]
"""

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature, PreTrainedConfig
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
from lerobot.processor import PolicyProcessorPipeline, policy_action_to_transition, transition_to_policy_action

from .vlm_folder import write_vlm_folder

PREPROCESSOR = "policy_preprocessor.json"
POSTPROCESSOR = "policy_postprocessor.json"
# Where LeRobot's image features live and the prefix a camera's name follows.
IMAGE_PREFIX = "observation.images."


class UnsupportedCheckpoint(ValueError):
    """A checkpoint uses something the exporter does not support; the message names the file and the field."""


@dataclass
class Checkpoint:
    """A LeRobot policy and its processors."""

    policy: object
    preprocessor: PolicyProcessorPipeline
    postprocessor: PolicyProcessorPipeline
    path: Path


# SmolVLA sizes: the published model (SmolVLM2-500M, 16 of its layers) and a tiny one for CPU tests.
SIZES = {
    "smolvla": dict(vlm="smolvlm2-500m", config=dict(num_vlm_layers=16, chunk_size=50, n_action_steps=50)),
    "smolvla-tiny": dict(vlm="tiny", config=dict(num_vlm_layers=4, chunk_size=10, n_action_steps=10,
                                                 resize_imgs_with_padding=(32, 32))),
}


def make_checkpoint(out: Path, size: str = "smolvla-tiny", state_dim: int = 6, action_dim: int = 6,
                    cameras: dict | None = None, seed: int = 0, vlm: Path | None = None) -> Path:
    """Writes a SmolVLA checkpoint of ``size`` with weights drawn from ``seed`` into ``out``, as ``save_pretrained``
    writes a trained one: ``config.json``, ``model.safetensors`` and its processors with random normalisation
    statistics. ``cameras`` maps names to ``(height, width)`` (default one 24 x 40 camera, ``top``). Its VLM folder
    (configuration, tokenizer) is written to ``vlm`` (default ``out/vlm``), which the configuration names."""
    preset = SIZES[size]
    cameras = cameras or {"top": (24, 40)}
    vlm = write_vlm_folder(vlm or out / "vlm", preset["vlm"])
    features = {"observation.state": PolicyFeature(FeatureType.STATE, (state_dim,))}
    for name, (height, width) in cameras.items():
        features[IMAGE_PREFIX + name] = PolicyFeature(FeatureType.VISUAL, (3, height, width))
    config = SmolVLAConfig(vlm_model_name=str(vlm.resolve()), device="cpu", input_features=features,
                           output_features={"action": PolicyFeature(FeatureType.ACTION, (action_dim,))},
                           **preset["config"])
    torch.manual_seed(seed)
    policy = SmolVLAPolicy(config)
    generator = torch.Generator().manual_seed(seed + 1)

    def statistics(dim: int) -> dict:
        return {"mean": torch.randn(dim, generator=generator),
                "std": 0.5 + torch.rand(dim, generator=generator)}

    stats = {"observation.state": statistics(state_dim), "action": statistics(action_dim)}
    preprocessor, postprocessor = make_smolvla_pre_post_processors(config, dataset_stats=stats)
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out, config_filename=PREPROCESSOR)
    postprocessor.save_pretrained(out, config_filename=POSTPROCESSOR)
    return out


def load_checkpoint(path: Path, vlm: Path | None = None) -> Checkpoint:
    """Loads the LeRobot checkpoint in ``path`` (a SmolVLA); ``vlm`` replaces the folder or hub name of its VLM
    (configuration and tokenizer), for a machine that has it elsewhere. Refuses what the exporter does not support,
    naming the field."""
    config_file = path / "config.json"
    if not config_file.exists():
        raise UnsupportedCheckpoint(f"{config_file}: missing (a LeRobot checkpoint has config.json, model.safetensors "
                                    f"and {PREPROCESSOR})")
    kind = json.loads(config_file.read_text()).get("type")
    if kind != "smolvla":
        raise UnsupportedCheckpoint(f"{config_file}: type = {kind!r}; this exporter supports 'smolvla'")
    config = PreTrainedConfig.from_pretrained(path)
    overrides = {}
    if vlm is not None:
        config.vlm_model_name = str(vlm)
        overrides = {"tokenizer_processor": {"tokenizer_name": str(vlm)}}
    _refuse_unsupported(config, config_file)
    policy = SmolVLAPolicy.from_pretrained(path, config=config).eval()
    preprocessor = PolicyProcessorPipeline.from_pretrained(path, config_filename=PREPROCESSOR, overrides=overrides)
    postprocessor = PolicyProcessorPipeline.from_pretrained(path, config_filename=POSTPROCESSOR,
                                                            to_transition=policy_action_to_transition,
                                                            to_output=transition_to_policy_action)
    return Checkpoint(policy, preprocessor, postprocessor, path)


def _refuse_unsupported(config, config_file: Path) -> None:
    """Raises for settings the bundle cannot reproduce."""
    if config.adapt_to_pi_aloha:
        raise UnsupportedCheckpoint(f"{config_file}: adapt_to_pi_aloha = true (the Aloha joint conversion around the "
                                    "model) is not supported")
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
    parser = argparse.ArgumentParser(description="Writes a SmolVLA checkpoint with random weights.")
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
