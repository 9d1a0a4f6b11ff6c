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

The functions are written for few kernels in an exported graph, where a GPU's step time is the kernel count (see
`rtchunk_train.simplify`): one matrix product per layer for all projections of its tokens (RoPE inputs also come
with their halves exchanged, so RoPE is two products and a sum); GTA scores its tied vectors and its shared RoPE
key in two products instead of building every head's key; the context is cut into layers once per step; all
layers' adaLN modulations come from one product; layer norm and softmax have closed-form VJPs, so a VJP graph
stays about twice its forward graph.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


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
    # Attention as one fused operator (an exported graph's ONNX `Attention`, its query, keys and values in the
    # matrix products' float type) instead of written out; for forward graphs (a VJP graph is traced without it).
    fused_attention: bool = False

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
    """cos and sin [T, dim] of the rotary angles at `positions` for `_rope` (cos repeated over both halves, sin
    negated over the first), computed in the graph (float32) from the positions and frequencies: an exported
    graph then holds two short vectors, not a table per use."""
    half = dim // 2
    frequencies = jnp.asarray(1.0 / (10000.0 ** (np.arange(half) / half)), jnp.float32)
    angles = jnp.asarray(positions, jnp.float32)[:, None] * frequencies[None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    return jnp.concatenate([cos, cos], axis=-1).astype(dtype), jnp.concatenate([-sin, sin], axis=-1).astype(dtype)


def _swap_halves(x):
    """x with the two halves of its last axis exchanged."""
    half = x.shape[-1] // 2
    return jnp.concatenate([x[..., half:], x[..., :half]], axis=-1)


def _rope(x, swapped, cos, sin):
    """Rotary embedding over the last axis of x [..., T, dim] (the halves rotated as pairs) with tables from
    `_rope_tables`, given x with its halves exchanged (`swapped`, made by the projection: no slicing here)."""
    return x * cos + swapped * sin


def _head_columns(weight, heads: int, head_dim: int, start: int, stop: int):
    """Columns start..stop of every head of a per-head projection [width, heads * head_dim]."""
    width = weight.shape[0]
    return weight.reshape(width, heads, head_dim)[..., start:stop].reshape(width, heads * (stop - start))


def _swapped_columns(weight, groups: int):
    """A projection [width, groups * dim] whose outputs come with the halves of each group's dim exchanged."""
    width = weight.shape[0]
    return _swap_halves(weight.reshape(width, groups, -1)).reshape(width, weight.shape[1])


def _project(x, weights: dict) -> dict:
    """x @ w for every named weight, as one matrix product over the weights side by side (one kernel instead of
    one per weight; an exported graph's weight concatenation folds into one constant)."""
    sizes = [w.shape[1] for w in weights.values()]
    merged = _mm(x, jnp.concatenate(list(weights.values()), axis=1))
    return dict(zip(weights, jnp.split(merged, np.cumsum(sizes)[:-1], axis=-1)))


@jax.custom_vjp
def _layer_norm(x):
    """x normalised over its last axis (no scale or shift; the models modulate it themselves). Its VJP is the
    closed form, a handful of kernels in an exported VJP graph instead of the two dozen autodiff writes out."""
    return _layer_norm_forward(x)[0]


def _layer_norm_forward(x):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    root = jnp.sqrt(jnp.mean(centred**2, axis=-1, keepdims=True) + 1e-6)
    normalised = centred / root
    return normalised, (normalised, root)


def _layer_norm_backward(residuals, cotangent):
    normalised, root = residuals
    mean = lambda v: jnp.mean(v, axis=-1, keepdims=True)  # noqa: E731
    return ((cotangent - mean(cotangent) - normalised * mean(cotangent * normalised)) / root,)


_layer_norm.defvjp(_layer_norm_forward, _layer_norm_backward)


@jax.custom_vjp
def _softmax(x):
    """Softmax over the last axis, whose VJP reads only its output (one Softmax node in an exported VJP graph, not
    the exponentials written out)."""
    return jax.nn.softmax(x, axis=-1)


def _softmax_forward(x):
    weights = jax.nn.softmax(x, axis=-1)
    return weights, weights


def _softmax_backward(weights, cotangent):
    return (weights * (cotangent - jnp.sum(cotangent * weights, axis=-1, keepdims=True)),)


_softmax.defvjp(_softmax_forward, _softmax_backward)


def _projection_weights(config: ModelConfig, layer: dict, queries: bool) -> dict:
    """The weights of a layer's projections of its input tokens, for one `_project`: the queries' channels with and
    without RoPE (`queries`), then the cache entries' two parts, the RoPE inputs also with their halves exchanged
    (RoPE is then two products and a sum, no slicing)."""
    d, r, g, h = config.head_dim, config.rope_dim, config.kv_heads, config.heads
    weights = {}
    if queries:
        query_rope = _head_columns(layer["query"], h, d, d - r, d)
        weights.update(query_nope=_head_columns(layer["query"], h, d, 0, d - r), query_rope=query_rope,
                       query_rope_swapped=_swapped_columns(query_rope, h))
    if config.attention in ("gta", "gla"):
        tied = layer["kv" if config.attention == "gta" else "latent"]
        weights.update(tied=tied, key_rope=layer["key_rope"], key_rope_swapped=_swap_halves(layer["key_rope"]))
    else:
        key_rope = _head_columns(layer["key"], g, d, d - r, d)
        weights.update(key_nope=_head_columns(layer["key"], g, d, 0, d - r), key_rope=key_rope,
                       key_rope_swapped=_swapped_columns(key_rope, g), value=layer["value"])
    return weights


def _cache_split(config: ModelConfig) -> int:
    """Where a cache entry's first part (tied vectors, latents or keys) ends and its second (the shared RoPE key,
    or the values) begins."""
    per_group = 2 * config.head_dim if config.attention == "gla" else config.head_dim
    return config.kv_heads * per_group


def _token_projections(config: ModelConfig, layer: dict, x, cos, sin, queries: bool = True):
    """Tokens x [B, T, width] at the positions of cos/sin -> (queries, cache entries' two parts): queries as
    (nope [B, T, heads, head_dim - rope_dim], rope [B, T, heads, rope_dim]) or None; the parts as `_cache_split`
    divides an entry (keys with RoPE applied)."""
    b, t, _ = x.shape
    d, r, g, h = config.head_dim, config.rope_dim, config.kv_heads, config.heads
    p = _project(x, _projection_weights(config, layer, queries))

    def roped(name: str, heads: int):
        """The projection `name` with RoPE, per head [B, T, heads, r]."""
        per_head = lambda v: v.reshape(b, t, heads, r)  # noqa: E731
        return _rope(per_head(p[name]), per_head(p[f"{name}_swapped"]), cos[:, None], sin[:, None])

    query = (p["query_nope"].reshape(b, t, h, d - r), roped("query_rope", h)) if queries else None
    if config.attention in ("gta", "gla"):
        return query, (p["tied"], _rope(p["key_rope"], p["key_rope_swapped"], cos, sin))
    keys = jnp.concatenate([p["key_nope"].reshape(b, t, g, d - r), roped("key_rope", g)], axis=-1).reshape(b, t, g * d)
    return query, (keys, p["value"])


def _keys_values(config: ModelConfig, layer: dict, x, cos, sin):
    """Cache entries [B, T, cache_width] of tokens x [B, T, width] at the positions of cos/sin."""
    return jnp.concatenate(_token_projections(config, layer, x, cos, sin, queries=False)[1], axis=-1)


def _head_major(x, groups: int):
    """[..., S, groups * dim] -> [..., groups, S, dim]."""
    return jnp.swapaxes(x.reshape(*x.shape[:-1], groups, -1), -2, -3)


def _memory(config: ModelConfig, layer: dict, first, second):
    """What queries attend to, from cache entries [B, S, ...] given as their two parts (`_cache_split`): keys and
    values [B, groups, S, dim] (one tensor for both in GTA) and the RoPE key [B, S, rope_dim] shared by all heads
    (None for GQA and MHA, whose keys carry their RoPE channels)."""
    g, d, r = config.kv_heads, config.head_dim, config.rope_dim
    if config.attention == "gta":
        tied = _head_major(first, g)
        return tied, tied, second
    if config.attention == "gla":
        b, s, _ = first.shape
        latent = _head_major(first, g)  # [B, G, S, 2d]
        per_head = lambda up, dim: jnp.swapaxes(_mm(latent, up).reshape(b, g, s, config.query_groups, dim), 2, 3).reshape(b, config.heads, s, dim)  # noqa: E731
        return per_head(layer["up_key"], d - r), per_head(layer["up_value"], d), second
    return _head_major(first, g), _head_major(second, g), None


def _joined(memories):
    """Memories of consecutive token spans as one (keys and values along S; GTA's shared tensor joined once)."""
    keys = jnp.concatenate([m[0] for m in memories], axis=-2)
    values = keys if all(m[0] is m[1] for m in memories) else jnp.concatenate([m[1] for m in memories], axis=-2)
    rope = None if memories[0][2] is None else jnp.concatenate([m[2] for m in memories], axis=-2)
    return keys, values, rope


def _attend(config: ModelConfig, query, memory, product_dtype):
    """Softmax attention of queries (nope [B, T, heads, d - r], rope [B, T, heads, r]) over a memory (`_memory`)
    -> [B, T, heads * head_dim]. GTA and GLA score nope channels against the keys and RoPE channels against the
    shared RoPE key in two products (GTA's keys are its tied vectors, the query's last r channels zero against
    them); GQA and MHA against keys that hold both. With `config.fused_attention`, one attention operator in
    `product_dtype` instead (`_attend_fused`)."""
    if config.fused_attention:
        return _attend_fused(config, query, memory, product_dtype)
    keys, values, rope_key = memory
    nope, rope = query
    b, t, h, _ = nope.shape
    groups = keys.shape[1]
    if config.attention == "gta":
        # (zeros joined, not padded: a pad's VJP is a pad by negative amounts, which ONNX's reference evaluator lacks)
        nope = jnp.concatenate([nope, jnp.zeros((b, t, h, config.rope_dim), nope.dtype)], axis=-1)
    if rope_key is None:
        nope, rope = jnp.concatenate([nope, rope], axis=-1), None
    nope = nope.reshape(b, t, groups, h // groups, -1)
    scores = jnp.einsum("btgqd,bgsd->bgtqs", nope, keys)
    if rope is not None:
        scores = scores + jnp.einsum("btgqr,bsr->bgtqs", rope.reshape(b, t, groups, h // groups, -1), rope_key)
    weights = _softmax(scores * config.head_dim**-0.5)
    return jnp.einsum("bgtqs,bgsd->btgqd", weights, values).reshape(b, t, -1)


def _attend_fused(config: ModelConfig, query, memory, product_dtype):
    """`_attend` as one attention operator (flax's, which jax2onnx writes as ONNX `Attention` with the query heads
    over the KV groups): GTA's and GLA's keys become their nope channels followed by the shared RoPE key, so the
    whole query scores against them in one product; query, keys and values in `product_dtype`."""
    keys, values, rope_key = memory
    nope, rope = query
    b, t, _, _ = nope.shape
    if config.attention == "gta":
        keys = keys[..., : config.head_dim - config.rope_dim]
    if rope_key is not None:
        shared = jnp.broadcast_to(rope_key[:, None], (b, keys.shape[1], *rope_key.shape[1:]))
        keys = jnp.concatenate([keys, shared], axis=-1)
    sequence_major = lambda x: jnp.swapaxes(x, 1, 2).astype(product_dtype)  # noqa: E731
    attended = nnx.dot_product_attention(
        jnp.concatenate([nope, rope], axis=-1).astype(product_dtype), sequence_major(keys), sequence_major(values)
    )
    return attended.astype(nope.dtype).reshape(b, t, -1)


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


def attention_block(config: ModelConfig, layer: dict, y, cos, sin, context_memory=None):
    """One layer's attention: tokens y [B, T, width] (RoPE at cos/sin) attend to a context's memory (`_memory`,
    if any) and to each other -> (output [B, T, width], their cache entries' two parts)."""
    query, parts = _token_projections(config, layer, y, cos, sin)
    memory = _memory(config, layer, *parts)
    if context_memory is not None:
        memory = _joined([context_memory, memory])
    return _mm(_attend(config, query, memory, layer["out"].dtype), layer["out"]), parts


def _context_memories(config: ModelConfig, params: dict, context):
    """Every layer's memory (`_memory`) of the context [B, layers, S, cache_width], cut out of the whole context
    at once (one transpose and one split per part, not one per layer)."""
    split, layers = _cache_split(config), params["layers"]
    first, second = context[..., :split], context[..., split:]
    if config.attention == "gla":
        return [_memory(config, layer, first[:, i], second[:, i]) for i, layer in enumerate(layers)]
    keys, values, rope = _memory(config, {}, first, second)
    per_layer = lambda x: [jnp.squeeze(part, 1) for part in jnp.split(x, len(layers), axis=1)]  # noqa: E731
    key_layers = per_layer(keys)
    value_layers = key_layers if values is keys else per_layer(values)
    rope_layers = [None] * len(layers) if rope is None else per_layer(rope)
    return list(zip(key_layers, value_layers, rope_layers))


def _modulations(config: ModelConfig, params: dict, condition) -> list:
    """adaLN's shift, scale and gate of every layer (six each) and the final shift and scale from the time
    condition [B, H, width], in one matrix product; each scale comes as 1 + scale."""
    weights = [layer["modulation"] for layer in params["layers"]] + [params["final_modulation"]]
    pieces = 6 * len(params["layers"]) + 2
    unit_scales = np.tile(np.repeat(np.array([0, 1, 0, 0, 1, 0], np.float32), config.width), len(params["layers"]))
    offsets = np.concatenate([unit_scales, np.repeat(np.array([0, 1], np.float32), config.width)])
    merged = _mm(condition, jnp.concatenate(weights, axis=1)) + offsets.astype(condition.dtype)
    parts = jnp.split(merged, pieces, axis=-1)
    return [parts[6 * i : 6 * i + 6] for i in range(len(params["layers"]))] + [parts[-2:]]


def velocity(config: ModelConfig, params: dict, actions, tau, context):
    """v(A, tau) for actions [B, H, action_dim], tau [B, H] (per token), context from `prefix`."""
    w = config.width
    io_dtype = actions.dtype
    compute = _compute_dtype(io_dtype)
    actions, tau, context = actions.astype(compute), tau.astype(compute), context.astype(compute)
    x = _mm(actions, params["action_in"]) + params["action_position"].astype(compute)
    condition = jax.nn.silu(_mm(_time_embedding(w, tau), params["time_mlp"]))
    *modulations, (shift, scale) = _modulations(config, params, condition)
    cos, sin = _rope_tables(_action_positions(config), config.rope_dim, actions.dtype)
    memories = _context_memories(config, params, context)
    for layer, memory, (shift1, scale1, gate1, shift2, scale2, gate2) in zip(params["layers"], memories, modulations):
        attended, _ = attention_block(config, layer, _layer_norm(x) * scale1 + shift1, cos, sin, memory)
        x = x + gate1 * attended
        y = _layer_norm(x) * scale2 + shift2
        x = x + gate2 * _mm(jax.nn.gelu(_mm(y, layer["mlp_in"])), layer["mlp_out"])
    return _mm(_layer_norm(x) * scale + shift, params["action_out"]).astype(io_dtype)
