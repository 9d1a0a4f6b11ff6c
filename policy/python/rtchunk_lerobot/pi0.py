"""LeRobot's π0 (``type = "pi0"``) as an rtchunk bundle: PaliGemma (SigLIP image tokens and the prompt) fills its
key-value cache once per chunk; a Gemma action expert reads it at every denoising step, with the state as its first
token (``PI0Pytorch.embed_suffix``).

The context is therefore the VLM's cache of every layer, flattened (``[layers, 2, kv_heads, prefix_len, head_dim]``,
keys after RoPE, as LeRobot caches them), followed by the normalised state padded to ``max_state_dim``: the velocity
graph splits it again and calls LeRobot's ``denoise_step``.

LeRobot builds π0 only at its published sizes (``gemma_2b`` / ``gemma_300m`` over SigLIP-so400m: 3.3B parameters).
For tests, :func:`building_in` lets LeRobot's own classes build reduced variants named in ``REDUCED_VARIANTS`` (two
layers, a small SigLIP and vocabulary): the same code, fewer and narrower layers.
"""

import contextlib

import torch
from lerobot.policies.common.vla_utils import make_att_2d_masks, prepare_attention_masks_4d
from lerobot.policies.pi0 import modeling_pi0
from lerobot.policies.pi0.configuration_pi0 import PI0Config
from lerobot.policies.pi0.modeling_pi0 import PI0Policy
from lerobot.policies.pi0.processor_pi0 import make_pi0_pre_post_processors
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

from .graphs import Architecture, FlowGraphs, Prefill, stacked_cache

# Gemma shapes LeRobot's π0 does not ship, for tests (the VLM's and the expert's depth, KV heads and head width
# must agree: the expert reads the VLM's cache layer by layer).
REDUCED_VARIANTS = {
    "rtchunk_tiny": dict(width=64, depth=2, mlp_dim=128, num_heads=8, num_kv_heads=1, head_dim=16),
    "rtchunk_tiny_expert": dict(width=32, depth=2, mlp_dim=64, num_heads=8, num_kv_heads=1, head_dim=16),
}
# The SigLIP tower and vocabulary of a reduced π0 (the published: 27 layers of width 1152, 257 152 tokens).
REDUCED_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
REDUCED_VOCAB = 512


@contextlib.contextmanager
def _reduced_variants(modeling, config_class):
    """Within the block LeRobot's ``modeling`` module (π0's or π0.5's, configured by ``config_class``) builds the
    variants of ``REDUCED_VARIANTS`` (its configuration accepts them, its model takes their shapes) with the
    reduced SigLIP tower and vocabulary."""
    get_config, post_init = modeling.get_gemma_config, config_class.__post_init__
    paligemma, expert = modeling.PaliGemmaForConditionalGenerationWithPiGemma, modeling.PiGemmaForCausalLM

    def reduced_config(variant):
        return modeling.GemmaConfig(**REDUCED_VARIANTS[variant]) if variant in REDUCED_VARIANTS \
            else get_config(variant)

    def checked(config):
        names = config.paligemma_variant, config.action_expert_variant
        config.paligemma_variant, config.action_expert_variant = (
            "gemma_300m" if name in REDUCED_VARIANTS else name for name in names)
        try:
            post_init(config)
        finally:
            config.paligemma_variant, config.action_expert_variant = names

    def reduced_paligemma(config):
        for key, value in REDUCED_VISION.items():
            setattr(config.vision_config, key, value)
        config.vision_config.projection_dim = config.text_config.hidden_size
        config.text_config.vocab_size = REDUCED_VOCAB
        return paligemma(config=config)

    def reduced_expert(config):
        config.vocab_size = REDUCED_VOCAB
        return expert(config=config)

    modeling.get_gemma_config, config_class.__post_init__ = reduced_config, checked
    modeling.PaliGemmaForConditionalGenerationWithPiGemma = reduced_paligemma
    modeling.PiGemmaForCausalLM = reduced_expert
    try:
        yield
    finally:
        modeling.get_gemma_config, config_class.__post_init__ = get_config, post_init
        modeling.PaliGemmaForConditionalGenerationWithPiGemma = paligemma
        modeling.PiGemmaForCausalLM = expert


def building_in(modeling, config_class):
    """``Architecture.building`` for a PaliGemma policy of LeRobot's ``modeling`` module: reduced variants when
    ``config.json``'s fields name one."""

    def building(fields: dict):
        variants = (fields.get("paligemma_variant"), fields.get("action_expert_variant"))
        reduced = any(v in REDUCED_VARIANTS for v in variants)
        return _reduced_variants(modeling, config_class) if reduced else contextlib.nullcontext()

    return building


def prefix_cache(model, embeddings: torch.Tensor, pad_masks: torch.Tensor, att_masks: torch.Tensor):
    """PaliGemma's key-value cache of the prefix, as ``PI0Pytorch.sample_actions`` fills it."""
    masks = prepare_attention_masks_4d(make_att_2d_masks(pad_masks, att_masks))
    model.paligemma_with_expert.paligemma.model.language_model.config._attn_implementation = "eager"
    _, cache = model.paligemma_with_expert.forward(attention_mask=masks, position_ids=torch.cumsum(pad_masks, 1) - 1,
                                                   past_key_values=None, inputs_embeds=[embeddings, None],
                                                   use_cache=True)
    return cache


def embedded_prefix(policy, batch: dict, tokens: torch.Tensor, token_mask: torch.Tensor):
    """LeRobot's prefix embeddings, pad masks and attention masks of a batch (images in [0, 1])."""
    images, image_masks = policy._preprocess_images(batch)
    return policy.model.embed_prefix(images, image_masks, tokens, token_mask)


def prefill(policy, processed: dict) -> Prefill:
    """LeRobot's cache and denoising step for a preprocessed batch."""
    embedded = embedded_prefix(policy, processed, processed[OBS_LANGUAGE_TOKENS],
                                processed[OBS_LANGUAGE_ATTENTION_MASK])
    cache = prefix_cache(policy.model, *embedded)
    state, pad_masks = policy.prepare_state(processed), embedded[1]

    def step(actions: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        return policy.model.denoise_step(state, pad_masks, cache, actions, time)

    return Prefill(cache, pad_masks, step)


class Pi0Graphs(FlowGraphs):
    """The bundle's functions for a π0 ``policy``; ``sample`` (a state, the images and the prompt's tokens, batch
    1) fixes which prefix tokens are real (the prompt is fixed per bundle; empty cameras are masked) and the
    cache's shape. π0.5 (``pi05.Pi05Graphs``) changes the prompt and what follows the cache in the context."""

    def __init__(self, policy, camera_keys: list, sample: tuple):
        super().__init__(policy, camera_keys)
        with torch.no_grad():
            cache, pad_masks, _ = self._cache(*sample)
        self.pad_mask = pad_masks[:1]
        self.cache_shape = tuple(cache.shape[1:])
        self.cache_size = cache[0].numel()
        self.cache_dtype = cache.dtype

    def _prompt(self, state: torch.Tensor, tokens: torch.Tensor) -> tuple:
        """The prompt's tokens and which of them are real: π0's are the bundle's prompt, all real."""
        return tokens, torch.ones_like(tokens, dtype=torch.bool)

    def _cache(self, state: torch.Tensor, *images_and_tokens: torch.Tensor) -> tuple:
        """The VLM's cache ``[B, layers, 2, kv_heads, prefix_len, head_dim]``, the prefix's pad masks and the
        batch LeRobot's policy read."""
        *images, tokens = images_and_tokens
        batch = self.lerobot_batch(state, images)
        embedded = embedded_prefix(self.policy, batch, *self._prompt(state, tokens))
        cache = prefix_cache(self.model, *embedded)
        return stacked_cache(cache), embedded[1], batch

    def _after_cache(self, batch: dict, pad_masks: torch.Tensor) -> torch.Tensor:
        """What the context holds after the cache: π0's expert takes the state, padded to ``max_state_dim``."""
        return self.policy.prepare_state(batch)

    def prefix(self, state: torch.Tensor, *images_and_tokens: torch.Tensor) -> torch.Tensor:
        cache, pad_masks, batch = self._cache(state, *images_and_tokens)
        return torch.cat([cache.flatten(1), self._after_cache(batch, pad_masks).to(cache.dtype)], dim=1)

    def _cache_of(self, context: torch.Tensor) -> torch.Tensor:
        """The cache in the context, in the dtype the VLM made it (bfloat16 in LeRobot's bfloat16 mode)."""
        return context[:, : self.cache_size].reshape(context.shape[0], *self.cache_shape).to(self.cache_dtype)

    def split(self, context: torch.Tensor) -> tuple:
        """The context's cache as the layers LeRobot's step copies (keys, values, sliding window) and what follows
        it."""
        cache = self._cache_of(context)
        layers = [(cache[:, i, 0], cache[:, i, 1], None) for i in range(self.cache_shape[0])]
        return layers, context[:, self.cache_size:]

    def cached(self, context: torch.Tensor) -> tuple:
        return self._cache_of(context), self.pad_mask.expand(context.shape[0], -1)

    def velocity(self, actions: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        layers, state = self.split(context)
        return self.model.denoise_step(state, self.pad_mask.expand(actions.shape[0], -1), layers, actions, t[:, 0])


def paligemma_sizes(kind: str, tokenizer_max_length: int) -> dict:
    """The checkpoint presets of a PaliGemma policy ``kind``: the published size (PaliGemma 2B over SigLIP-so400m
    at 224 x 224, the 300M expert, 50 actions) and a tiny one (``REDUCED_VARIANTS``, 10 actions of 8 dimensions,
    28 x 28 images, prompts of ``tokenizer_max_length`` tokens)."""
    return {
        kind: dict(vlm="paligemma", config=dict(paligemma_variant="gemma_2b", action_expert_variant="gemma_300m")),
        f"{kind}-tiny": dict(vlm="paligemma", config=dict(
            paligemma_variant="rtchunk_tiny", action_expert_variant="rtchunk_tiny_expert", chunk_size=10,
            n_action_steps=10, max_state_dim=8, max_action_dim=8, image_resolution=(28, 28),
            tokenizer_max_length=tokenizer_max_length)),
    }


def to_bfloat16(policy) -> None:
    """LeRobot's bfloat16 mode of a PaliGemma policy (``dtype = "bfloat16"``): PaliGemma and the expert in bfloat16,
    the vision tower, its projector and the norms in float32."""
    policy.model.paligemma_with_expert.to_bfloat16_for_selected_params("bfloat16")


def attention(policy) -> dict:
    """The manifest's description of the expert's attention (PaliGemma's multi-query cache)."""
    vlm = policy.model.paligemma_with_expert.paligemma.config.text_config
    expert = policy.model.paligemma_with_expert.gemma_expert.config
    return {"kind": "gqa", "layers": vlm.num_hidden_layers, "heads": expert.num_attention_heads,
            "kv_heads": vlm.num_key_value_heads, "head_dim": vlm.head_dim, "rope_dim": vlm.head_dim,
            "width": expert.hidden_size}


ARCHITECTURE = Architecture(
    kind="pi0",
    config_class=PI0Config,
    policy_class=PI0Policy,
    make_processors=make_pi0_pre_post_processors,
    graphs=lambda checkpoint, cameras, sample, prompt: Pi0Graphs(checkpoint.policy, cameras, sample),
    prefill=prefill,
    steps_field="num_inference_steps",
    attention=attention,
    unsupported_flags={"use_relative_actions": "actions relative to the state, converted around the model"},
    sizes=paligemma_sizes("pi0", tokenizer_max_length=16),
    building=building_in(modeling_pi0, PI0Config),
    to_bfloat16=to_bfloat16,
)
