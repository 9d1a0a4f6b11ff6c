"""The GTA transformer: its cache layout, its attention against a direct definition, and training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtchunk_train import dataset as datasets
from rtchunk_train.model import ModelConfig, preset, _keys_values, _rope, _rope_tables, _split_cache, init_params, prefix, velocity
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


def test_gta_keys_and_values_follow_the_definition():
    config = ModelConfig(attention="gta")
    layer = init_params(config, jax.random.PRNGKey(1))["layers"][0]
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 5, config.width))
    positions = np.arange(5, dtype=np.float64)
    cos, sin = _rope_tables(positions, config.rope_dim)
    keys, values = _split_cache(config, _keys_values(config, layer, x, cos, sin), layer)
    d, r = config.head_dim, config.rope_dim
    tied = (x @ layer["kv"]).reshape(1, 5, config.kv_heads, d)
    shared_rope_key = _rope(x @ layer["key_rope"], cos, sin)
    for group in range(config.kv_heads):
        # V is the whole tied vector; K is its first d - r channels and the one RoPE key shared by all groups.
        np.testing.assert_allclose(values[0, :, group], tied[0, :, group], atol=1e-6)
        np.testing.assert_allclose(keys[0, :, group, : d - r], tied[0, :, group, : d - r], atol=1e-6)
        np.testing.assert_allclose(keys[0, :, group, d - r :], shared_rope_key[0], atol=1e-6)


def test_gla_up_projects_each_latent_head_to_the_keys_and_values_of_its_query_heads():
    config = ModelConfig(attention="gla")
    layer = init_params(config, jax.random.PRNGKey(1))["layers"][0]
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 5, config.width))
    cos, sin = _rope_tables(np.arange(5, dtype=np.float64), config.rope_dim)
    cache = _keys_values(config, layer, x, cos, sin)
    keys, values = _split_cache(config, cache, layer)
    d, r, per_head = config.head_dim, config.rope_dim, config.query_groups
    latent = (x @ layer["latent"]).reshape(1, 5, config.kv_heads, 2 * d)
    shared_rope_key = _rope(x @ layer["key_rope"], cos, sin)
    assert keys.shape == values.shape == (1, 5, config.heads, d)
    for head in range(config.heads):
        group, within = divmod(head, per_head)
        key_nope = latent[0, :, group] @ layer["up_key"][group][:, within * (d - r) : (within + 1) * (d - r)]
        value = latent[0, :, group] @ layer["up_value"][group][:, within * d : (within + 1) * d]
        np.testing.assert_allclose(keys[0, :, head, : d - r], key_nope, atol=1e-5)
        np.testing.assert_allclose(keys[0, :, head, d - r :], shared_rope_key[0], atol=1e-6)
        np.testing.assert_allclose(values[0, :, head], value, atol=1e-5)


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


def test_attention_is_softmax_of_scaled_dot_products_per_group():
    from rtchunk_train.model import _attend

    q = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 2, 2, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (2, 12, 2, 8))
    v = jax.random.normal(jax.random.PRNGKey(2), (2, 12, 2, 8))
    scores = jnp.einsum("bhgqd,btgd->bgqht", q, k) / np.sqrt(8)
    expected = jnp.einsum("bgqht,btgd->bhgqd", jax.nn.softmax(scores, axis=-1), v)
    np.testing.assert_allclose(_attend(q, k, v, 8), expected, atol=1e-6)


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
