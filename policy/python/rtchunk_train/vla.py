"""A vision-language-action policy shaped like π0, as pure JAX functions over the action expert of `model`.

The prefix is a vision encoder (a SigLIP-shaped ViT over each camera's 8-bit image, 14 x 14 patches), the prompt's
token embeddings and one state token, run through a backbone decoder whose every layer leaves its keys and values
in the context: the per-layer KV cache, computed once per inference. The action expert (`model.velocity`) has as
many layers as the backbone and attends, layer by layer, to that cache and to its own H action tokens. Backbone and
expert share the attention's shape (query heads, KV groups, head width, RoPE key), so one cache layout serves both,
in any of `model.ATTENTION_KINDS`: GTA caches kv_heads * head_dim + rope_dim values per token and layer against
GQA's 2 * kv_heads * head_dim.

    python -m rtchunk_train.vla [--preset vla-3b]     # parameters per part and KV-cache bytes per attention kind

Weights here are random (for speed measurements; no checkpoint can be fetched on these machines).
"""

import argparse
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from .model import (
    ATTENTION_KINDS,
    ModelConfig,
    _dense,
    _layer_norm,
    _mm,
    _rope_tables,
    attention_block,
    attention_params,
    init_params,
)


@dataclass(frozen=True)
class VlaConfig:
    """Sizes of the VLA: the action expert's (which also fix the attention's shape), then the backbone's and the
    vision encoder's, and the prefix's inputs."""

    expert: ModelConfig
    backbone_width: int
    backbone_mlp_ratio: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_mlp_ratio: int = 4
    image_size: int = 224
    patch: int = 14
    cameras: int = 1
    prompt_tokens: int = 48
    vocab: int = 257_152
    state_dim: int = 32
    # The images' height when it differs from their width (`image_size`); 0: square.
    image_height: int = 0

    def image_shape(self) -> tuple:
        """(height, width) of every camera's image, in pixels."""
        return (self.image_height or self.image_size, self.image_size)

    def patch_grid(self) -> tuple:
        """(rows, columns) of patches per image; a side that is not a whole number of patches is padded."""
        height, width = self.image_shape()
        return -(-height // self.patch), -(-width // self.patch)

    def image_tokens(self) -> int:
        """Tokens of all cameras' images."""
        rows, columns = self.patch_grid()
        return self.cameras * rows * columns

    def prefix_tokens(self) -> int:
        """Images, prompt and the state token."""
        return self.image_tokens() + self.prompt_tokens + 1

    def expert_config(self) -> ModelConfig:
        """The action expert, reading a context of `prefix_tokens` tokens."""
        return replace(self.expert, prefix_tokens=self.prefix_tokens(), observation_dim=self.state_dim)

    def backbone_config(self) -> ModelConfig:
        """The attention shape of the backbone's layers (the expert's, at the backbone's width)."""
        return replace(self.expert_config(), width=self.backbone_width)

    def vision_config(self) -> ModelConfig:
        """The attention shape of the vision encoder's layers (multi-head, RoPE over half of each head)."""
        head_dim = self.vision_width // self.vision_heads
        return ModelConfig(
            width=self.vision_width,
            heads=self.vision_heads,
            kv_heads=self.vision_heads,
            head_dim=head_dim,
            rope_dim=head_dim // 2,
            attention="mha",
            fused_attention=self.expert.fused_attention,
        )

    def kv_bytes_per_token_layer(self, dtype_bytes: int = 2) -> int:
        """Bytes of the context per prefix token and layer (bfloat16 by default)."""
        return self.expert.cache_width() * dtype_bytes


def _expert(**dims) -> ModelConfig:
    return ModelConfig(**{"horizon": 50, "action_dim": 32, **dims})


# π0 (3.3B: SigLIP So400m, a Gemma-2B-shaped backbone, a 300M expert), SmolVLA (~500M) and one for CI. The backbone
# keeps 4 KV groups (Gemma-2B has one) so that GTA, GQA and GLA compare at equal query heads.
PRESETS = {
    "vla-3b": VlaConfig(
        expert=_expert(width=1024, layers=18, heads=8, kv_heads=4, head_dim=256, rope_dim=128, mlp_ratio=4),
        backbone_width=2048,
        backbone_mlp_ratio=8,
        vision_width=1152,
        vision_layers=27,
        vision_heads=16,
    ),
    "vla-500m": VlaConfig(
        expert=_expert(width=720, layers=16, heads=15, kv_heads=5, head_dim=64, rope_dim=32, mlp_ratio=4),
        backbone_width=960,
        backbone_mlp_ratio=4,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        vocab=49_280,
    ),
    "vla-tiny": VlaConfig(
        expert=ModelConfig(horizon=8, action_dim=2, width=32, layers=2, heads=4, kv_heads=2, head_dim=8, rope_dim=4),
        backbone_width=48,
        backbone_mlp_ratio=2,
        vision_width=32,
        vision_layers=2,
        vision_heads=2,
        image_size=28,
        prompt_tokens=4,
        vocab=64,
        state_dim=4,
    ),
}


def vla_preset(name: str, **expert_dims) -> VlaConfig:
    """The named VLA, with expert settings changed (e.g. attention="gqa")."""
    if name not in PRESETS:
        raise ValueError(f"VLA preset {name!r}: expected one of {sorted(PRESETS)}")
    config = PRESETS[name]
    return replace(config, expert=replace(config.expert, **expert_dims))


def _blocks(config: ModelConfig, keys, count: int, width: int, mlp_ratio: int) -> list:
    """`count` pre-norm transformer blocks of width `width` whose attention has `config`'s shape."""
    d = config.head_dim
    blocks = []
    for _ in range(count):
        block = {
            "query": _dense(next(keys), width, config.heads * d),
            "out": _dense(next(keys), config.heads * d, width),
            "mlp_in": _dense(next(keys), width, mlp_ratio * width),
            "mlp_out": _dense(next(keys), mlp_ratio * width, width),
        }
        block.update(attention_params(config, keys, width))
        blocks.append(block)
    return blocks


def init_vla_params(config: VlaConfig, key) -> dict:
    """Random parameters for `config` (use `jax.eval_shape` to size a large one without allocating it)."""
    expert, vision = config.expert_config(), config.vision_config()
    keys = iter(jax.random.split(key, 16 + 12 * (config.vision_layers + expert.layers)))
    expert_params = init_params(expert, next(keys))
    del expert_params["prefix_in"], expert_params["prefix_out"]
    per_patch = config.patch * config.patch * 3
    return {
        "patch_embed": _dense(next(keys), per_patch, config.vision_width),
        "vision_position": 0.02 * jax.random.normal(next(keys), (config.image_tokens() // config.cameras, config.vision_width)),
        "vision": _blocks(vision, keys, config.vision_layers, config.vision_width, config.vision_mlp_ratio),
        "vision_out": _dense(next(keys), config.vision_width, config.backbone_width),
        "embed": 0.02 * jax.random.normal(next(keys), (config.vocab, config.backbone_width)),
        "state_in": _dense(next(keys), config.state_dim, config.backbone_width),
        "backbone": _blocks(config.backbone_config(), keys, expert.layers, config.backbone_width, config.backbone_mlp_ratio),
        "expert": expert_params,
    }


def _encoder_layer(config: ModelConfig, block: dict, x, cos, sin):
    """One pre-norm block over all of x's tokens; returns x and the cache entries its attention read."""
    attended, parts = attention_block(config, block, _layer_norm(x), cos, sin)
    x = x + attended
    return x + _mm(jax.nn.gelu(_mm(_layer_norm(x), block["mlp_in"])), block["mlp_out"]), jnp.concatenate(parts, axis=-1)


def _patches(config: VlaConfig, images):
    """uint8 images [B, cameras, height, width, 3] -> patches [B, cameras, tokens, patch * patch * 3] in [-1, 1],
    the images padded with black at the bottom and the right to whole patches."""
    b, p, (rows, columns) = images.shape[0], config.patch, config.patch_grid()
    height, width = config.image_shape()
    if (rows * p, columns * p) != (height, width):
        images = jnp.pad(images, ((0, 0), (0, 0), (0, rows * p - height), (0, columns * p - width), (0, 0)))
    x = images.astype(jnp.float32) / 127.5 - 1.0
    x = x.reshape(b, config.cameras, rows, p, columns, p, 3).transpose(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, config.cameras, rows * columns, p * p * 3)


def vla_prefix(config: VlaConfig, params: dict, images, prompt, state):
    """images uint8 [B, cameras, height, width, 3], prompt token ids int [B, prompt_tokens], state [B, state_dim]
    -> context [B, layers, prefix_tokens, cache_width]: every backbone layer's cache entries."""
    b = state.shape[0]
    vision = config.vision_config()
    x = _mm(_patches(config, images), params["patch_embed"]) + params["vision_position"]
    x = x.reshape(b, config.image_tokens(), config.vision_width)
    cos, sin = _rope_tables(np.arange(config.image_tokens(), dtype=np.float64), vision.rope_dim)
    for block in params["vision"]:
        x, _ = _encoder_layer(vision, block, x, cos, sin)
    tokens = jnp.concatenate(
        [
            _mm(_layer_norm(x), params["vision_out"]),
            jnp.take(params["embed"], prompt, axis=0),
            _mm(state[:, None, :].astype(jnp.float32), params["state_in"]),
        ],
        axis=1,
    )
    backbone = config.backbone_config()
    cos, sin = _rope_tables(np.arange(config.prefix_tokens(), dtype=np.float64), backbone.rope_dim)
    caches = []
    for block in params["backbone"]:
        tokens, cache = _encoder_layer(backbone, block, tokens, cos, sin)
        caches.append(cache)
    return jnp.stack(caches, axis=1)


def parameter_counts(config: VlaConfig) -> dict:
    """Parameters per part (vision, embedding, backbone, expert), counted from shapes only."""
    shapes = jax.eval_shape(lambda key: init_vla_params(config, key), jax.random.PRNGKey(0))
    size = lambda tree: int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))  # noqa: E731
    return {
        "vision": size([shapes["patch_embed"], shapes["vision_position"], shapes["vision"], shapes["vision_out"]]),
        "embedding": size(shapes["embed"]),
        "backbone": size([shapes["state_in"], shapes["backbone"]]),
        "expert": size(shapes["expert"]),
    }


def main():
    parser = argparse.ArgumentParser(description="Parameters and KV-cache bytes of the VLA presets.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="vla-3b")
    args = parser.parse_args()
    config = vla_preset(args.preset)
    counts = parameter_counts(config)
    print(f"{args.preset}: {sum(counts.values()) / 1e9:.2f}B parameters "
          + ", ".join(f"{part} {count / 1e6:.0f}M" for part, count in counts.items())
          + f"; prefix {config.prefix_tokens()} tokens, horizon {config.expert.horizon}")
    gqa = vla_preset(args.preset, attention="gqa").kv_bytes_per_token_layer()
    for kind in ATTENTION_KINDS:
        kv_heads = config.expert.heads if kind == "mha" else config.expert.kv_heads
        variant = vla_preset(args.preset, attention=kind, kv_heads=kv_heads)
        per_token = variant.kv_bytes_per_token_layer()
        whole = per_token * config.prefix_tokens() * config.expert.layers
        label = f"{kind} ({kv_heads} latent heads)" if kind == "gla" else f"{kind} ({kv_heads} KV heads)"
        print(f"  {label}: {per_token} B per token and layer (bfloat16), {per_token / gqa:.3f}x GQA; "
              f"{whole / 2**20:.1f} MiB for the prefix")


if __name__ == "__main__":
    main()
