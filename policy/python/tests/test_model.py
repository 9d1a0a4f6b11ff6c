"""The GTA transformer: its cache layout, its attention against a direct definition, and training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtchunk_train import dataset as datasets
from rtchunk_train.model import (
    ModelConfig,
    _cache_split,
    _keys_values,
    _memory,
    _rope_tables,
    attention_block,
    init_params,
    prefix,
    preset,
    velocity,
)
from rtchunk_train.train import train, training_example


def test_gta_caches_one_tied_vector_per_group_plus_one_shared_rope_key():
    gta = ModelConfig(attention="gta")
    gqa = ModelConfig(attention="gqa")
    assert gta.cache_width() == gta.kv_heads * gta.head_dim + gta.rope_dim
    assert gqa.cache_width() == 2 * gqa.kv_heads * gqa.head_dim
    assert ModelConfig(attention="gla").cache_width() == gta.kv_heads * 2 * gta.head_dim + gta.rope_dim
    params = init_params(gta, jax.random.PRNGKey(0))
    context = prefix(gta, params, jnp.ones((2, gta.observation_dim)))
    assert context.shape == (2, gta.layers, gta.prefix_tokens, gta.cache_width())


def rotated(x, positions):
    """RoPE by its definition: the channel pairs (i, i + r/2) of x [..., T, r] rotated by position * 10000^(-2i/r)."""
    half = x.shape[-1] // 2
    angles = np.asarray(positions)[:, None] * (1.0 / 10000.0 ** (np.arange(half) / half))[None, :]
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def definition_keys_values(config, layer, x, positions):
    """Every query head's key and value [B, T, heads, head_dim] for tokens x at `positions`, as the attention
    kind defines them, and the cache entries [B, T, cache_width] the model stores for them."""
    b, t, _ = x.shape
    d, r, g, h = config.head_dim, config.rope_dim, config.kv_heads, config.heads
    group = np.arange(h) // config.query_groups
    if config.attention in ("gta", "gla"):
        tied = x @ layer["kv" if config.attention == "gta" else "latent"]
        rope_key = rotated(x @ layer["key_rope"], positions)
        entries = jnp.concatenate([tied, rope_key], axis=-1)
        shared = jnp.broadcast_to(rope_key[:, :, None], (b, t, h, r))
        if config.attention == "gta":
            tied = tied.reshape(b, t, g, d)[:, :, group]
            return jnp.concatenate([tied[..., : d - r], shared], axis=-1), tied, entries
        latent = tied.reshape(b, t, g, 2 * d)
        within = np.arange(h) % config.query_groups
        key_nope = jnp.stack([latent[:, :, group[i]] @ layer["up_key"][group[i]][:, within[i] * (d - r) : (within[i] + 1) * (d - r)] for i in range(h)], axis=2)
        values = jnp.stack([latent[:, :, group[i]] @ layer["up_value"][group[i]][:, within[i] * d : (within[i] + 1) * d] for i in range(h)], axis=2)
        return jnp.concatenate([key_nope, shared], axis=-1), values, entries
    key = (x @ layer["key"]).reshape(b, t, g, d)
    key = jnp.concatenate([key[..., : d - r], jnp.swapaxes(rotated(jnp.swapaxes(key[..., d - r :], 1, 2), positions), 1, 2)], axis=-1)
    value = (x @ layer["value"]).reshape(b, t, g, d)
    return key[:, :, group], value[:, :, group], jnp.concatenate([key.reshape(b, t, -1), value.reshape(b, t, -1)], axis=-1)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("attention,kv_heads", [("gta", 2), ("gqa", 2), ("mha", 4), ("gla", 2)])
def test_cache_entries_and_attention_follow_the_definition(attention, kv_heads, fused):
    config = ModelConfig(attention=attention, kv_heads=kv_heads, fused_attention=fused)
    layer = init_params(config, jax.random.PRNGKey(1))["layers"][0]
    context_x = jax.random.normal(jax.random.PRNGKey(2), (2, 6, config.width))
    y = jax.random.normal(jax.random.PRNGKey(3), (2, 5, config.width))
    context_positions, positions = np.arange(6.0), 6 + np.arange(5.0)
    context_keys, context_values, context_entries = definition_keys_values(config, layer, context_x, context_positions)
    keys, values, entries = definition_keys_values(config, layer, y, positions)
    cos, sin = _rope_tables(context_positions, config.rope_dim)
    np.testing.assert_allclose(_keys_values(config, layer, context_x, cos, sin), context_entries, atol=1e-5)

    d, r, h = config.head_dim, config.rope_dim, config.heads
    query = (y @ layer["query"]).reshape(2, 5, h, d)
    query = jnp.concatenate([query[..., : d - r], jnp.swapaxes(rotated(jnp.swapaxes(query[..., d - r :], 1, 2), positions), 1, 2)], axis=-1)
    all_keys, all_values = jnp.concatenate([context_keys, keys], axis=1), jnp.concatenate([context_values, values], axis=1)
    weights = jax.nn.softmax(jnp.einsum("bthd,bshd->bhts", query, all_keys) / np.sqrt(d), axis=-1)
    expected = jnp.einsum("bhts,bshd->bthd", weights, all_values).reshape(2, 5, h * d) @ layer["out"]

    split = _cache_split(config)
    memory = _memory(config, layer, context_entries[..., :split], context_entries[..., split:])
    cos, sin = _rope_tables(positions, config.rope_dim)
    attended, parts = attention_block(config, layer, y, cos, sin, memory)
    np.testing.assert_allclose(jnp.concatenate(parts, axis=-1), entries, atol=1e-5)
    np.testing.assert_allclose(attended, expected, atol=1e-5)


@pytest.mark.parametrize("attention,kv_heads", [("gta", 2), ("gqa", 2), ("mha", 4), ("gla", 2)])
def test_every_attention_variant_runs_and_attends_to_the_prefix(attention, kv_heads):
    config = ModelConfig(attention=attention, kv_heads=kv_heads)
    params = init_params(config, jax.random.PRNGKey(0))
    actions = jnp.zeros((1, config.horizon, config.action_dim))
    tau = jnp.full((1, config.horizon), 0.5)
    one = velocity(config, params, actions, tau, prefix(config, params, jnp.ones((1, 4))))
    other = velocity(config, params, actions, tau, prefix(config, params, -jnp.ones((1, 4))))
    assert one.shape == (1, config.horizon, config.action_dim)
    assert float(jnp.max(jnp.abs(one - other))) > 1e-4, "the observation reaches the action tokens"


def test_chunks_hold_the_last_action_past_the_end_of_an_episode(tmp_path):
    path = tmp_path / "demo.npz"
    datasets.save(path, np.zeros((5, 1)), np.arange(5.0)[:, None], np.array([0, 0, 0, 1, 1]))
    _, chunks = datasets.load(path).chunks(3)
    np.testing.assert_array_equal(chunks[:, :, 0], [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]])
    bad = tmp_path / "bad.npz"
    np.savez(bad, observation=np.full((2, 1), np.nan), action=np.zeros((2, 1)), episode_index=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="bad.npz: observation holds NaN"):
        datasets.load(bad)


def test_training_time_rtc_gives_a_clean_prefix_at_tau_one_and_takes_no_loss_on_it():
    chunk = jax.random.normal(jax.random.PRNGKey(3), (4096, 8, 2))
    noised, tau, _, weight = training_example(chunk, jax.random.PRNGKey(4), 4, False)
    frozen = np.asarray(tau) == 1.0
    assert np.all(np.asarray(weight)[frozen] == 0) and np.all(np.asarray(weight)[~frozen] == 1)
    np.testing.assert_array_equal(np.asarray(noised)[frozen], np.asarray(chunk)[frozen])
    # Frozen prefixes are contiguous from the first token, with P(d) proportional to exp(-d), d in 0..4.
    delays = frozen.sum(axis=1)
    assert np.all(frozen == (np.arange(8)[None, :] < delays[:, None]))
    shares = np.bincount(delays, minlength=5) / len(delays)
    expected = np.exp(-np.arange(5)) / np.exp(-np.arange(5)).sum()
    np.testing.assert_allclose(shares, expected, atol=0.02)
    _, plain_tau, _, plain_weight = training_example(chunk, jax.random.PRNGKey(4), 0, False)
    assert np.all(np.asarray(plain_weight) == 1) and np.all(np.asarray(plain_tau) < 1)


def test_a_short_training_run_reduces_the_flow_matching_loss():
    data = datasets.toy_obstacle_demonstrations(20, seed=0)
    _, losses, stats = train(ModelConfig(), data, steps=150, seed=0, batch=64, max_delay=0, tau_beta=False)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    assert len(stats["action"]["std"]) == 2


def test_size_presets_span_a_toy_to_a_300m_action_expert():
    def count(config):
        shapes = jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0)))
        return sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes))

    assert count(preset("tiny")) < 50_000
    expert = count(preset("expert-300m", horizon=50, action_dim=32, observation_dim=64))
    assert 250e6 < expert < 350e6, expert
    gta, gqa = preset("expert-300m"), preset("expert-300m", attention="gqa")
    assert gta.cache_width() / gqa.cache_width() == (4 * 64 + 32) / (2 * 4 * 64)


def test_models_trained_together_checkpoint_and_export_like_one_trained_alone(tmp_path):
    from rtchunk_train.train import load_checkpoint, save_checkpoint, train_many

    data = datasets.toy_obstacle_demonstrations(10, seed=1)
    config = ModelConfig(layers=1)
    together, losses, stats = train_many(config, data, steps=20, seeds=[3, 4], batch=16, max_delays=[0, 2], tau_beta=False)
    alone, alone_losses, _ = train(config, data, steps=20, seed=4, batch=16, max_delay=2, tau_beta=False)
    assert losses.shape == (2, 20)
    np.testing.assert_allclose(losses[1], alone_losses, rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(together[1]), jax.tree_util.tree_leaves(alone)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    save_checkpoint(tmp_path, config, together[0], stats, {"seed": 3}, losses[0])
    loaded_config, loaded, loaded_stats, meta, _ = load_checkpoint(tmp_path)
    assert (loaded_config, loaded_stats, meta) == (config, stats, {"seed": 3})
    for a, b in zip(jax.tree_util.tree_leaves(together[0]), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(a, b)


def test_training_time_rtc_can_draw_every_prefix_length_equally_often():
    chunk = jax.random.normal(jax.random.PRNGKey(3), (4096, 8, 2))
    _, tau, _, _ = training_example(chunk, jax.random.PRNGKey(5), 4, False, uniform_delay=True)
    delays = (np.asarray(tau) == 1.0).sum(axis=1)
    np.testing.assert_allclose(np.bincount(delays, minlength=5) / len(delays), np.full(5, 0.2), atol=0.02)
