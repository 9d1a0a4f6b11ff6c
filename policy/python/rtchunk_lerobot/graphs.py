"""What every exported bundle computes, whatever the LeRobot architecture, and what the exporter needs to know of
each architecture.

A bundle's four graphs (policy/BUNDLE.md) are four functions of an :class:`FlowGraphs` subclass, written over the
architecture's own LeRobot modules:

- ``prefix(state, *images, tokens)``: the normalised state, each camera's raw ``uint8 [B, H, W, C]`` image and the
  prompt's token ids -> the context the denoising steps read (the VLM's key-value cache, and whatever else the
  architecture's step takes);
- ``velocity(actions, t, context)``: the action expert's velocity at time ``t`` (LeRobot's convention: t = 1 is
  noise);
- ``velocity_vjp(actions, t, context, cotangent)``: the velocity and the VJP of the denoiser ``A - t v(A, t)``
  against ``cotangent`` through ``torch.func.vjp``: the exact Jacobian, where LeRobot's RTC takes the identity;
- ``guided(actions, t, context, target, weights)``: the velocity and the VJP against ``weights * (target - (A - t
  v))``, RTC's guidance from one forward and one backward pass.
"""

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE


class UnsupportedCheckpoint(ValueError):
    """A checkpoint uses something the exporter does not support; the message names the file and the field."""


class FlowGraphs:
    """The bundle's functions for a LeRobot ``policy`` whose cameras are ``camera_keys`` (its image features that
    the robot supplies, in order). Subclasses define ``prefix`` and ``velocity``."""

    def __init__(self, policy, camera_keys: list):
        self.policy = policy
        self.model = policy.model
        self.camera_keys = list(camera_keys)

    def lerobot_batch(self, state: torch.Tensor, images: list) -> dict:
        """The batch LeRobot's policy reads: the state and each camera's image scaled to [0, 1], channel first, as
        LeRobot's robot pipeline hands them over."""
        batch = {OBS_STATE: state}
        for key, image in zip(self.camera_keys, images, strict=True):
            batch[key] = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        return batch

    def prefix(self, state: torch.Tensor, *images_and_tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def velocity(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cached(self, context: torch.Tensor) -> tuple:
        """The VLM's cache in a context, ``[B, layers, 2, kv_heads, prefix_len, head_dim]``, and which of its
        positions are real (``[B, prefix_len]``)."""
        raise NotImplementedError

    def _pullback(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor):
        """The denoiser ``A - t v`` at ``actions``, its pullback and the velocity (``torch.func.vjp``)."""

        def denoiser(at: torch.Tensor):
            velocity = self.velocity(at, t, context)
            return at - t[:, :, None] * velocity, velocity

        return torch.func.vjp(denoiser, actions, has_aux=True)

    def velocity_vjp(self, actions, t, context, cotangent):
        _, pullback, velocity = self._pullback(actions, t, context)
        return velocity, pullback(cotangent)[0]

    def guided(self, actions, t, context, target, weights):
        denoised, pullback, velocity = self._pullback(actions, t, context)
        return velocity, pullback(weights[:, :, None] * (target - denoised))[0]


def stacked_cache(cache) -> torch.Tensor:
    """A LeRobot key-value cache as one tensor, ``[B, layers, 2, kv_heads, prefix_len, head_dim]``."""
    return torch.stack([torch.stack([layer.keys, layer.values], dim=1) for layer in cache.layers], dim=1)


@dataclass(frozen=True)
class Prefill:
    """LeRobot's own prefix computation for one preprocessed batch: the VLM's key-value cache as LeRobot keeps it
    (a ``DynamicCache``), which of its positions are real (``[B, prefix_len]``, false for padding) and
    ``step(actions, time)``, LeRobot's ``denoise_step`` over that cache."""

    cache: object
    real: torch.Tensor
    step: Callable


@dataclass(frozen=True)
class Architecture:
    """What the exporter needs to know of one LeRobot policy type (``config.json``'s ``type``)."""

    kind: str
    config_class: type
    policy_class: type
    # (config, dataset_stats) -> (preprocessor, postprocessor), LeRobot's own factory.
    make_processors: Callable
    # (checkpoint, camera keys, a sample of the prefix's inputs, the task) -> the FlowGraphs to export.
    graphs: Callable
    # (policy, preprocessed batch) -> Prefill.
    prefill: Callable
    # The configuration field that holds the number of denoising steps.
    steps_field: str
    # (policy) -> the manifest's ``attention`` entry.
    attention: Callable
    # Boolean settings the bundle cannot reproduce, each with what it does: a checkpoint that sets one is refused.
    unsupported_flags: dict
    # Checkpoint presets for ``make_checkpoint``: name -> {"config": the configuration's fields, "vlm": the
    # ``vlm_folder`` preset of its VLM's configuration and tokenizer}.
    sizes: dict
    # The configuration field naming the VLM's folder or hub name, when the policy builds its VLM from one.
    vlm_field: str | None = None
    # LeRobot modules whose in-place RoPE is traced in its functional form.
    rope_modules: tuple = ()
    # (config.json's fields) -> a context in which LeRobot can build that checkpoint's model.
    building: Callable = field(default=lambda fields: contextlib.nullcontext())
    # (policy) -> the policy in LeRobot's own bfloat16 mode, for bfloat16 bundles; None: not supported, because
    # of ``no_bfloat16``.
    to_bfloat16: Callable | None = None
    no_bfloat16: str = "LeRobot has no bfloat16 mode for it"
    # (checkpoint, prompt, preprocessed batch) -> the token ids the bundle's prefix takes as its prompt.
    prompt_ids: Callable = field(default=lambda checkpoint, prompt, processed: real_tokens(processed))


def real_tokens(processed: dict) -> list:
    """The preprocessed batch's prompt tokens without the padding its mask drops (batch 1)."""
    mask = processed[OBS_LANGUAGE_ATTENTION_MASK][0].bool()
    return processed[OBS_LANGUAGE_TOKENS][0][mask].tolist()
