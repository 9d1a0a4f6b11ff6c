"""The four functions of a LeRobot SmolVLA that an rtchunk bundle's graphs compute, written over LeRobot's own
modules (``SmolVLAPolicy.prepare_images``, ``VLAFlowMatching.embed_prefix``, ``SmolVLMWithExpertModel.forward``,
``VLAFlowMatching.denoise_step``), so the graphs compute what LeRobot computes:

- ``prefix(state, *images, tokens)``: the normalised state, each camera's raw ``uint8 [B, H, W, C]`` image and the
  prompt's token ids -> the context: the VLM's key and value cache of every layer, ``[B, layers, 2, kv_heads,
  prefix_len, head_dim]`` (keys after RoPE, as LeRobot caches them);
- ``velocity(actions, t, context)``: the expert's velocity at time ``t`` (LeRobot's convention: t = 1 is noise);
- ``velocity_vjp(actions, t, context, cotangent)``: the velocity and the VJP of the denoiser ``A - t v(A, t)``
  against ``cotangent``, through ``torch.func.vjp``: the exact Jacobian, where LeRobot's RTC takes the identity;
- ``guided(actions, t, context, target, weights)``: the velocity and the VJP against ``weights * (target - (A - t
  v))``, RTC's guidance from one forward and one backward pass.
"""

import torch
from lerobot.policies.common.vla_utils import make_att_2d_masks
from lerobot.policies.smolvla import smolvlm_with_expert
from lerobot.utils.constants import OBS_STATE


class _CachedLayer:
    """One layer's keys and values, ``[B, kv_heads, prefix_len, head_dim]``, as LeRobot's cache layers hold them."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values


class ContextCache:
    """The context as the key-value cache ``SmolVLMWithExpertModel.forward`` reads during a denoising step: it
    appends the action tokens' keys and values for self-attention layers without storing them (LeRobot's cache
    stores them and crops them away after the step: the same arithmetic)."""

    def __init__(self, context: torch.Tensor):
        self.layers = [_CachedLayer(context[:, i, 0], context[:, i, 1]) for i in range(context.shape[1])]

    def __len__(self) -> int:
        return len(self.layers)

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer: int):
        cached = self.layers[layer]
        return torch.cat([cached.keys, keys], dim=2), torch.cat([cached.values, values], dim=2)

    def crop(self, length: int) -> None:
        """Nothing to crop: ``update`` never grows the cache."""


def prefix_cache(model, embeddings: torch.Tensor, pad_masks: torch.Tensor, att_masks: torch.Tensor):
    """The VLM's key-value cache of the prefix, as ``VLAFlowMatching.sample_actions`` fills it."""
    _, cache = model.vlm_with_expert.forward(
        attention_mask=make_att_2d_masks(pad_masks, att_masks),
        position_ids=torch.cumsum(pad_masks, dim=1) - 1,
        past_key_values=None,
        inputs_embeds=[embeddings, None],
        use_cache=True,
    )
    return cache


class SmolVLAGraphs:
    """The bundle's functions for a SmolVLA ``policy`` whose cameras are ``camera_keys`` (its image features, in
    order). ``sample`` (a state, the images and the prompt's tokens, batch 1) fixes which prefix tokens are real: the
    prompt is fixed per bundle, and cameras the checkpoint declares empty are masked."""

    def __init__(self, policy, camera_keys: list, sample: tuple):
        self.policy = policy
        self.model = policy.model
        self.camera_keys = list(camera_keys)
        with torch.no_grad():
            _, pad_masks, _ = self._embedded_prefix(*sample)
        self.pad_mask = pad_masks[:1]

    def _embedded_prefix(self, state: torch.Tensor, *images_and_tokens: torch.Tensor):
        """LeRobot's prefix embeddings, pad masks and attention masks for raw images and the prompt's tokens."""
        *images, tokens = images_and_tokens
        batch = {OBS_STATE: state}
        for key, image in zip(self.camera_keys, images, strict=True):
            batch[key] = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        pictures, image_masks = self.policy.prepare_images(batch)
        prompt_mask = torch.ones_like(tokens, dtype=torch.bool)
        return self.model.embed_prefix(pictures, image_masks, tokens, prompt_mask,
                                       state=self.policy.prepare_state(batch))

    def prefix(self, state: torch.Tensor, *images_and_tokens: torch.Tensor) -> torch.Tensor:
        cache = prefix_cache(self.model, *self._embedded_prefix(state, *images_and_tokens))
        return torch.stack([torch.stack([layer.keys, layer.values], dim=1) for layer in cache.layers], dim=1)

    def velocity(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        pad_masks = self.pad_mask.expand(actions.shape[0], -1)
        return self.model.denoise_step(pad_masks, ContextCache(context), actions, t[:, 0])

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


# The LeRobot modules whose RoPE is traced in its functional form.
ROPE_MODULES = (smolvlm_with_expert,)
