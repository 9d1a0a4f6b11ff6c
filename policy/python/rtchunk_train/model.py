"""A flow-matching transformer over action chunks with Grouped-Tied Attention (GTA), as pure JAX functions.

Observations become `prefix_tokens` tokens through a prefix encoder. Each layer's keys and values of those tokens
form the context (the prefix KV cache), computed once per inference. The H action tokens, conditioned on a
per-token tau through adaLN, attend to the prefix cache and to each other.

GTA (Zadouri, Strauss, Dao 2025): per KV group one tied projection `kv` (head_dim wide) serves whole as V and, for
its first head_dim - rope_dim channels, as K; the remaining rope_dim channels of K are one single-head RoPE key
shared by all groups. Queries are split the same way. The cache holds kv_heads * head_dim + rope_dim values per
token per layer, against 2 * kv_heads * head_dim for GQA. `attention = "gqa"` and `"mha"` (kv_heads = heads) use
separate K and V projections, with RoPE on the same channels, for comparison.

GLA (Grouped Latent Attention, same paper): per latent head (kv_heads of them) one latent of 2 * head_dim is cached,
plus the shared RoPE key; each query head of the latent head's group has its own up-projections from the latent to
its key's first head_dim - rope_dim channels and to its value. The cache holds kv_heads * 2 * head_dim + rope_dim.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the model; the defaults make a ~30k-parameter model that trains on two CPU cores."""

    horizon: int = 8
    action_dim: int = 2
    observation_dim: int = 4
    prefix_tokens: int = 4
    width: int = 32
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 8
    rope_dim: int = 4
    mlp_ratio: int = 2
    attention: str = "gta"

    @property
    def query_groups(self) -> int:
        return self.heads // self.kv_heads

    def cache_width(self) -> int:
        """Values cached per prefix token per layer."""
        if self.attention == "gta":
            return self.kv_heads * self.head_dim + self.rope_dim
        if self.attention == "gla":
            return self.kv_heads * 2 * self.head_dim + self.rope_dim
        return 2 * self.kv_heads * self.head_dim

    def attention_groups(self) -> int:
        """How many distinct keys each token has: one per KV group, or per query head for GLA (whose latent is
        up-projected per head)."""
        return self.heads if self.attention == "gla" else self.kv_heads


# Named sizes, from one that trains on two CPU cores to an action expert of about 300M parameters (GPU).
PRESETS = {
    "tiny": {},
    "bench": {"width": 64, "layers": 2, "heads": 4, "kv_heads": 2, "head_dim": 16, "rope_dim": 8},
    "small": {"width": 128, "layers": 4, "heads": 8, "kv_heads": 2, "head_dim": 16, "rope_dim": 8},
    "expert-300m": {"width": 1024, "layers": 18, "heads": 16, "kv_heads": 4, "head_dim": 64, "rope_dim": 32, "mlp_ratio": 4},
}


def preset(name: str, **dims) -> ModelConfig:
    """The named size, with the task's dimensions (horizon, action_dim, observation_dim, attention)."""
    if name not in PRESETS:
        raise ValueError(f"size {name!r}: expected one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **dims})


ATTENTION_KINDS = ("gta", "gqa", "mha", "gla")


def _dense(key, fan_in, fan_out, scale=1.0):
    return scale * jax.random.normal(key, (fan_in, fan_out), jnp.float32) / np.sqrt(fan_in)


def init_params(config: ModelConfig, key) -> dict:
    """Random parameters for `config`."""
    if config.heads % config.kv_heads:
        raise ValueError(f"heads = {config.heads} is not a multiple of kv_heads = {config.kv_heads}")
    if config.attention not in ATTENTION_KINDS:
        raise ValueError(f"attention = {config.attention!r}: expected one of {', '.join(ATTENTION_KINDS)}")
    if config.attention == "mha" and config.kv_heads != config.heads:
        raise ValueError("attention = 'mha' needs kv_heads == heads")
    w, d = config.width, config.head_dim
    keys = iter(jax.random.split(key, 16 + 16 * config.layers))
    params = {
        "prefix_in": _dense(next(keys), config.observation_dim, config.prefix_tokens * w),
        "prefix_out": _dense(next(keys), w, w),
        "action_in": _dense(next(keys), config.action_dim, w),
        "action_position": 0.02 * jax.random.normal(next(keys), (config.horizon, w)),
        "time_mlp": _dense(next(keys), w, w),
        "final_modulation": _dense(next(keys), w, 2 * w, scale=0.1),
        "action_out": _dense(next(keys), w, config.action_dim, scale=0.1),
        "layers": [],
    }
    for _ in range(config.layers):
        layer = {
            "query": _dense(next(keys), w, config.heads * d),
            "out": _dense(next(keys), config.heads * d, w),
            "mlp_in": _dense(next(keys), w, config.mlp_ratio * w),
            "mlp_out": _dense(next(keys), config.mlp_ratio * w, w),
            "modulation": _dense(next(keys), w, 6 * w, scale=0.1),
        }
        layer.update(attention_params(config, keys, w))
        params["layers"].append(layer)
    return params


def attention_params(config: ModelConfig, keys, width: int) -> dict:
    """The key and value projections of one layer for `config.attention`, from tokens `width` wide (`keys`: an
    iterator of random keys)."""
    d, g, r = config.head_dim, config.kv_heads, config.rope_dim
    layer = {}
    if config.attention == "gta":
        layer["kv"] = _dense(next(keys), width, g * d)
        layer["key_rope"] = _dense(next(keys), width, r)
    elif config.attention == "gla":
        per_head = config.query_groups
        layer["latent"] = _dense(next(keys), width, g * 2 * d)
        layer["key_rope"] = _dense(next(keys), width, r)
        layer["up_key"] = jax.random.normal(next(keys), (g, 2 * d, per_head * (d - r))) / np.sqrt(2 * d)
        layer["up_value"] = jax.random.normal(next(keys), (g, 2 * d, per_head * d)) / np.sqrt(2 * d)
    else:
        layer["key"] = _dense(next(keys), width, g * d)
        layer["value"] = _dense(next(keys), width, g * d)
    return layer




def parameter_count(params) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params)))


def _compute_dtype(io_dtype):
    """Activations' float type for graphs of `io_dtype`. A bfloat16 model keeps its weights and matrix products in
    bfloat16 and everything else (normalisation, softmax, elementwise) in float32: the mixed precision that
    ONNX Runtime's CUDA kernels support (they lack bfloat16 reductions)."""
    return jnp.float32 if io_dtype == jnp.bfloat16 else io_dtype


def _mm(x, weight):
    """x @ weight, the product in the weight's float type, the result in x's."""
    return (x.astype(weight.dtype) @ weight).astype(x.dtype)


def _rope_tables(positions: np.ndarray, dim: int, dtype=jnp.float32):
    """cos and sin [T, dim/2] of the rotary angles at `positions`, computed in the graph (float32) from the
    positions and frequencies: an exported graph then holds two short vectors, not a table per use."""
    half = dim // 2
    frequencies = jnp.asarray(1.0 / (10000.0 ** (np.arange(half) / half)), jnp.float32)
    angles = jnp.asarray(positions, jnp.float32)[:, None] * frequencies[None, :]
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def _rope(x, cos, sin):
    """Rotary embedding over the last axis of x [..., T, dim]; cos/sin [T, dim/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def _layer_norm(x):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    variance = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(variance + 1e-6)


def _keys_values(config: ModelConfig, layer: dict, x, cos, sin):
    """Cache entries [B, T, cache_width] of tokens x [B, T, width] at the positions of cos/sin."""
    b, t, _ = x.shape
    d, r = config.head_dim, config.rope_dim
    if config.attention in ("gta", "gla"):
        tied = _mm(x, layer["kv" if config.attention == "gta" else "latent"])
        key_rope = _rope(_mm(x, layer["key_rope"]), cos, sin)
        return jnp.concatenate([tied, key_rope], axis=-1)
    key = _mm(x, layer["key"]).reshape(b, t, config.kv_heads, d)
    key = jnp.concatenate([key[..., : d - r], _rope(jnp.swapaxes(key[..., d - r :], 1, 2), cos, sin).swapaxes(1, 2)], axis=-1)
    return jnp.concatenate([key.reshape(b, t, -1), _mm(x, layer["value"])], axis=-1)


def _split_cache(config: ModelConfig, cache, layer: dict):
    """Keys and values [B, T, attention_groups, head_dim] from cache entries [B, T, cache_width]."""
    b, t, _ = cache.shape
    g, d, r = config.kv_heads, config.head_dim, config.rope_dim
    if config.attention == "gla":
        latent = cache[..., : g * 2 * d].reshape(b, t, g, 2 * d).transpose(0, 2, 1, 3)  # [B, G, T, 2d]
        heads = config.heads
        key_nope = _mm(latent, layer["up_key"]).reshape(b, g, t, config.query_groups, d - r)
        key_nope = key_nope.transpose(0, 2, 1, 3, 4).reshape(b, t, heads, d - r)
        key_rope = jnp.broadcast_to(cache[..., None, g * 2 * d :], (b, t, heads, r))
        values = _mm(latent, layer["up_value"]).reshape(b, g, t, config.query_groups, d)
        return jnp.concatenate([key_nope, key_rope], axis=-1), values.transpose(0, 2, 1, 3, 4).reshape(b, t, heads, d)
    if config.attention == "gta":
        kv = cache[..., : g * d].reshape(b, t, g, d)
        key_rope = jnp.broadcast_to(cache[..., None, g * d :], (b, t, g, r))
        return jnp.concatenate([kv[..., : d - r], key_rope], axis=-1), kv
    return cache[..., : g * d].reshape(b, t, g, d), cache[..., g * d :].reshape(b, t, g, d)


def _attend(query, keys, values, head_dim: int):
    """Softmax attention of query [B, H, G, Q, d] (G KV groups of Q query heads) over keys and values
    [B, T, G, d], as batched matrix products (ONNX MatMul: every float type, fast CPU kernels)."""
    query = query.transpose(0, 2, 3, 1, 4)  # [B, G, Q, H, d]
    keys = keys.transpose(0, 2, 3, 1)[:, :, None]  # [B, G, 1, d, T]
    values = values.transpose(0, 2, 1, 3)[:, :, None]  # [B, G, 1, T, d]
    weights = jax.nn.softmax((query @ keys) * head_dim**-0.5, axis=-1)
    return (weights @ values).transpose(0, 3, 1, 2, 4)  # [B, H, G, Q, d]


def _prefix_positions(config):
    return np.arange(config.prefix_tokens, dtype=np.float64)


def _action_positions(config):
    return config.prefix_tokens + np.arange(config.horizon, dtype=np.float64)


def prefix(config: ModelConfig, params: dict, observation):
    """observation [B, observation_dim] -> context [B, layers, prefix_tokens, cache_width]."""
    b, io_dtype = observation.shape[0], observation.dtype
    observation = observation.astype(_compute_dtype(io_dtype))
    # A token axis before the product keeps every matrix product batched (jax2onnx's 2-D Gemm lowering mixes float
    # types in float16 graphs).
    tokens = jax.nn.gelu(_mm(observation[:, None, :], params["prefix_in"])).reshape(b, config.prefix_tokens, config.width)
    tokens = _layer_norm(_mm(tokens, params["prefix_out"]))
    cos, sin = _rope_tables(_prefix_positions(config), config.rope_dim, observation.dtype)
    context = jnp.stack([_keys_values(config, layer, tokens, cos, sin) for layer in params["layers"]], axis=1)
    return context.astype(io_dtype)


def _time_embedding(width: int, tau):
    """Sinusoidal embedding of tau [B, H] -> [B, H, width]."""
    half = width // 2
    frequencies = jnp.asarray(np.exp(np.linspace(np.log(1.0), np.log(1000.0), half)), tau.dtype)
    angles = tau[..., None] * frequencies
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def attend_to_cache(config: ModelConfig, layer: dict, y, cache, cos, sin):
    """The attention output [B, T, width] of tokens y [B, T, width] (RoPE at cos/sin) over cache entries
    [B, S, cache_width]: queries with RoPE on their last rope_dim channels, grouped as the attention kind says."""
    b, t, _ = y.shape
    d, r = config.head_dim, config.rope_dim
    keys, values = _split_cache(config, cache, layer)
    query = _mm(y, layer["query"]).reshape(b, t, config.heads, d)
    query_rope = _rope(jnp.swapaxes(query[..., d - r :], 1, 2), cos, sin).swapaxes(1, 2)
    query = jnp.concatenate([query[..., : d - r], query_rope], axis=-1)
    groups = config.attention_groups()
    attended = _attend(query.reshape(b, t, groups, config.heads // groups, d), keys, values, d)
    return _mm(attended.reshape(b, t, config.heads * d), layer["out"])


def velocity(config: ModelConfig, params: dict, actions, tau, context):
    """v(A, tau) for actions [B, H, action_dim], tau [B, H] (per token), context from `prefix`."""
    w = config.width
    io_dtype = actions.dtype
    compute = _compute_dtype(io_dtype)
    actions, tau, context = actions.astype(compute), tau.astype(compute), context.astype(compute)
    x = _mm(actions, params["action_in"]) + params["action_position"].astype(compute)
    condition = jax.nn.silu(_mm(_time_embedding(w, tau), params["time_mlp"]))
    cos, sin = _rope_tables(_action_positions(config), config.rope_dim, actions.dtype)
    for index, layer in enumerate(params["layers"]):
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(_mm(condition, layer["modulation"]), 6, axis=-1)
        y = _layer_norm(x) * (1.0 + scale1) + shift1
        cache = jnp.concatenate([context[:, index], _keys_values(config, layer, y, cos, sin)], axis=1)
        x = x + gate1 * attend_to_cache(config, layer, y, cache, cos, sin)
        y = _layer_norm(x) * (1.0 + scale2) + shift2
        x = x + gate2 * _mm(jax.nn.gelu(_mm(y, layer["mlp_in"])), layer["mlp_out"])
    shift, scale = jnp.split(_mm(condition, params["final_modulation"]), 2, axis=-1)
    return _mm(_layer_norm(x) * (1.0 + scale) + shift, params["action_out"]).astype(io_dtype)
