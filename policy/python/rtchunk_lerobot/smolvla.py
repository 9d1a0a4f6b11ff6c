"""LeRobot's SmolVLA (``type = "smolvla"``) as an rtchunk bundle, over LeRobot's own modules
(``SmolVLAPolicy.prepare_images``, ``VLAFlowMatching.embed_prefix``, ``SmolVLMWithExpertModel.forward``,
``VLAFlowMatching.denoise_step``). The state is a prefix token, so the context is the VLM's key and value cache of
every layer alone, ``[B, layers, 2, kv_heads, prefix_len, head_dim]`` (keys after RoPE, as LeRobot caches them).
"""

import torch
from lerobot.policies.common.vla_utils import make_att_2d_masks
from lerobot.policies.smolvla import smolvlm_with_expert
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

from .graphs import Architecture, FlowGraphs, Prefill, stacked_cache


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


class SmolVLAGraphs(FlowGraphs):
    """The bundle's functions for a SmolVLA ``policy``; ``sample`` (a state, the images and the prompt's tokens,
    batch 1) fixes which prefix tokens are real: the prompt is fixed per bundle, and cameras the checkpoint declares
    empty are masked."""

    def __init__(self, policy, camera_keys: list, sample: tuple):
        super().__init__(policy, camera_keys)
        with torch.no_grad():
            _, pad_masks, _ = self._embedded_prefix(*sample)
        self.pad_mask = pad_masks[:1]

    def _embedded_prefix(self, state: torch.Tensor, *images_and_tokens: torch.Tensor):
        """LeRobot's prefix embeddings, pad masks and attention masks for raw images and the prompt's tokens."""
        *images, tokens = images_and_tokens
        batch = self.lerobot_batch(state, images)
        return _embedded_prefix(self.policy, batch, tokens, torch.ones_like(tokens, dtype=torch.bool))

    def prefix(self, state: torch.Tensor, *images_and_tokens: torch.Tensor) -> torch.Tensor:
        cache = prefix_cache(self.model, *self._embedded_prefix(state, *images_and_tokens))
        return stacked_cache(cache)

    def velocity(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        pad_masks = self.pad_mask.expand(actions.shape[0], -1)
        return self.model.denoise_step(pad_masks, ContextCache(context), actions, t[:, 0])

    def cached(self, context: torch.Tensor) -> tuple:
        return context, self.pad_mask.expand(context.shape[0], -1)


def _embedded_prefix(policy, batch: dict, tokens: torch.Tensor, token_mask: torch.Tensor):
    """LeRobot's prefix embeddings, pad masks and attention masks of a batch (images in [0, 1])."""
    images, image_masks = policy.prepare_images(batch)
    return policy.model.embed_prefix(images, image_masks, tokens, token_mask, state=policy.prepare_state(batch))


def prefill(policy, processed: dict) -> Prefill:
    """LeRobot's cache and denoising step for a preprocessed batch."""
    embeddings, pad_masks, att_masks = _embedded_prefix(policy, processed, processed[OBS_LANGUAGE_TOKENS],
                                                        processed[OBS_LANGUAGE_ATTENTION_MASK])
    cache = prefix_cache(policy.model, embeddings, pad_masks, att_masks)

    def step(actions: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return policy.model.denoise_step(pad_masks, cache, actions, time)

    return Prefill(cache, pad_masks, step)


def attention(policy) -> dict:
    """The manifest's description of the expert's attention (GQA over the VLM's key-value heads)."""
    text = policy.model.vlm_with_expert.config.text_config
    return {"kind": "gqa", "layers": policy.model.vlm_with_expert.num_vlm_layers,
            "heads": text.num_attention_heads, "kv_heads": text.num_key_value_heads, "head_dim": text.head_dim,
            "rope_dim": text.head_dim, "width": policy.model.vlm_with_expert.expert_hidden_size}


ARCHITECTURE = Architecture(
    kind="smolvla",
    config_class=SmolVLAConfig,
    policy_class=SmolVLAPolicy,
    make_processors=make_smolvla_pre_post_processors,
    graphs=lambda checkpoint, cameras, sample, prompt: SmolVLAGraphs(checkpoint.policy, cameras, sample),
    prefill=prefill,
    steps_field="num_steps",
    attention=attention,
    unsupported_flags={
        "adapt_to_pi_aloha": "the Aloha joint conversion around the model",
        "use_delta_joint_actions_aloha": "Aloha joint actions relative to the state",
    },
    sizes={
        # The published SmolVLA: SmolVLM2-500M, 16 of its layers, 50 actions.
        "smolvla": dict(vlm="smolvlm2-500m", config=dict(num_vlm_layers=16, chunk_size=50, n_action_steps=50)),
        "smolvla-tiny": dict(vlm="tiny", config=dict(num_vlm_layers=4, chunk_size=10, n_action_steps=10,
                                                     resize_imgs_with_padding=(32, 32))),
    },
    vlm_field="vlm_model_name",
    rope_modules=(smolvlm_with_expert,),
)
