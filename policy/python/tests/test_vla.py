"""The VLA: its prefix (vision, prompt, state through the backbone) fills the expert's per-layer cache, every input
reaches the action chunk, every attention kind runs, and the presets have π0's and SmolVLA's sizes."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rtchunk_train.model import ATTENTION_KINDS, velocity
from rtchunk_train.vla import init_vla_params, main, parameter_counts, vla_preset, vla_prefix


def inputs(config, seed=0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.integers(0, 256, (2, config.cameras, *config.image_shape(), 3), dtype=np.uint8))
    prompt = jnp.asarray(rng.integers(0, config.vocab, (2, config.prompt_tokens)), jnp.int32)
    state = jnp.asarray(rng.normal(size=(2, config.state_dim)), jnp.float32)
    return images, prompt, state


def chunk_velocity(config, params, images, prompt, state):
    expert = config.expert_config()
    context = vla_prefix(config, params, images, prompt, state)
    actions = jnp.full((2, expert.horizon, expert.action_dim), 0.3)
    return velocity(expert, params["expert"], actions, jnp.full((2, expert.horizon), 0.5), context)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
def test_every_input_reaches_the_chunk_through_the_per_layer_cache(attention):
    config = vla_preset("vla-tiny", attention=attention, kv_heads=4 if attention == "mha" else 2)
    params = init_vla_params(config, jax.random.PRNGKey(0))
    images, prompt, state = inputs(config)
    context = vla_prefix(config, params, images, prompt, state)
    expert = config.expert_config()
    assert context.shape == (2, expert.layers, config.prefix_tokens(), expert.cache_width())
    base = chunk_velocity(config, params, images, prompt, state)
    assert base.shape == (2, expert.horizon, expert.action_dim) and bool(jnp.all(jnp.isfinite(base)))
    for changed in [(255 - images, prompt, state), (images, (prompt + 1) % config.vocab, state), (images, prompt, -state)]:
        assert float(jnp.max(jnp.abs(chunk_velocity(config, params, *changed) - base))) > 1e-5


@pytest.mark.parametrize("patch", [2, 6])
def test_images_may_be_wider_than_high_and_are_padded_to_whole_patches(patch):
    config = replace(vla_preset("vla-tiny"), image_size=42, image_height=22, patch=patch)
    assert config.image_shape() == (22, 42) and config.image_tokens() == {2: 11 * 21, 6: 4 * 7}[patch]
    params = init_vla_params(config, jax.random.PRNGKey(7))
    images, prompt, state = inputs(config, 7)
    context = vla_prefix(config, params, images, prompt, state)
    assert context.shape[2] == config.prefix_tokens() and bool(jnp.all(jnp.isfinite(context)))
    # Each patch is its own token: changing one pixel at the bottom right changes the context.
    changed = images.at[:, :, -1, -1, :].set(255 - images[:, :, -1, -1, :])
    assert float(jnp.max(jnp.abs(vla_prefix(config, params, changed, prompt, state) - context))) > 1e-6


def test_the_exact_vjp_of_the_expert_is_finite_and_matches_finite_differences():
    config = vla_preset("vla-tiny")
    expert = config.expert_config()
    params = init_vla_params(config, jax.random.PRNGKey(1))
    context = vla_prefix(config, params, *inputs(config, 1))
    actions = jax.random.normal(jax.random.PRNGKey(2), (2, expert.horizon, expert.action_dim))
    tau = jnp.full((2, expert.horizon), 0.4)
    f = lambda a: velocity(expert, params["expert"], a, tau, context)  # noqa: E731
    _, vjp = jax.vjp(f, actions)
    cotangent = jax.random.normal(jax.random.PRNGKey(3), actions.shape)
    (gradient,) = vjp(cotangent)
    direction = jax.random.normal(jax.random.PRNGKey(4), actions.shape)
    epsilon = 1e-3
    numeric = jnp.sum(cotangent * (f(actions + epsilon * direction) - f(actions - epsilon * direction))) / (2 * epsilon)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    np.testing.assert_allclose(float(jnp.sum(gradient * direction)), float(numeric), rtol=2e-2)


def test_the_presets_have_the_anchors_sizes_and_gta_halves_the_cache():
    counts = parameter_counts(vla_preset("vla-3b"))
    assert 2.5e9 < sum(counts.values()) < 3.6e9, counts
    assert 3.5e8 < counts["vision"] < 4.6e8 and 2.5e8 < counts["expert"] < 4.0e8, counts
    small = parameter_counts(vla_preset("vla-500m"))
    assert 3.0e8 < sum(small.values()) < 7.0e8, small
    for name in ["vla-3b", "vla-500m"]:
        gta = vla_preset(name).kv_bytes_per_token_layer()
        gqa = vla_preset(name, attention="gqa").kv_bytes_per_token_layer()
        assert gta / gqa <= 0.57 if name == "vla-3b" else gta / gqa < 0.6, (name, gta, gqa)


def test_the_size_report_runs(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["vla", "--preset", "vla-tiny"])
    main()
    out = capsys.readouterr().out
    assert "vla-tiny:" in out and "gta (2 KV heads):" in out and "gla (2 latent heads):" in out


def test_the_timed_phases_compute_the_model():
    from rtchunk_train.vla_timing import measure, phases

    config = vla_preset("vla-tiny")
    expert = config.expert_config()
    params = init_vla_params(config, jax.random.PRNGKey(5))
    images, prompt, state = inputs(config, 5)
    timed = phases(config)
    context = timed["prefix"](params, images, prompt, state)
    np.testing.assert_allclose(context, vla_prefix(config, params, images, prompt, state), atol=1e-5)
    actions = jax.random.normal(jax.random.PRNGKey(6), (2, expert.horizon, expert.action_dim))
    tau = jnp.full((2, expert.horizon), 0.3)
    plain = timed["step"](params, actions, tau, context)
    guided_velocity, pullback = timed["guided"](params, actions, tau, context, actions)
    _, reference = jax.vjp(lambda a: velocity(expert, params["expert"], a, tau, context), actions)
    np.testing.assert_allclose(guided_velocity, plain, atol=1e-5)
    np.testing.assert_allclose(pullback, reference(actions)[0], atol=1e-5)
    # Five plain Euler steps from the prefix, as the timed inference runs them.
    chunk = actions
    for k in range(5):
        chunk = chunk + velocity(expert, params["expert"], chunk, jnp.full((2, expert.horizon), k / 5), context) / 5
    np.testing.assert_allclose(timed["plain5"](params, images, prompt, state, actions), chunk, atol=1e-4)
    result = measure("vla-tiny", 1, "gta", repeats=1)
    assert result["kv_bytes_per_token_layer"] == config.kv_bytes_per_token_layer()
    assert set(result) >= {"jax_prefix_ms", "jax_guided_step_ms", "jax_rtc_ms", "rtc_over_plain5"}
