"""Trains a flow-matching GTA transformer on demonstrations and exports it as a policy bundle.

    python -m rtchunk_train.train --dataset toy --out policy/fixtures/gta-toy --steps 1500 --seed 0

Flow matching in the paper's convention: x = tau A + (1 - tau) eps, target velocity A - eps. With
--training-rtc, each example also freezes a random prefix of d actions (P(d) proportional to exp(-d)), given
clean at tau = 1, and the loss covers the rest only (training-time RTC).
"""

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import __version__, dataset as datasets
from .bundle import export_policy, fixed_inputs, write_expected
from .model import PRESETS, ModelConfig, init_params, parameter_count, prefix, preset, velocity


def normalize(values, stats):
    return (values - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)


def training_example(chunk, key, max_delay: int, tau_beta: bool):
    """Noised chunks, per-token tau, velocity targets and loss weights for clean chunks [B, H, A]. With
    max_delay > 0 a prefix of d ~ P(d) proportional to exp(-d) actions is given clean at tau = 1 and weighted 0."""
    b, h, _ = chunk.shape
    k_tau, k_noise, k_delay = jax.random.split(key, 3)
    tau = jax.random.beta(k_tau, 1.5, 1.0, (b, 1)) if tau_beta else jax.random.uniform(k_tau, (b, 1))
    tau = jnp.broadcast_to(tau * 0.999, (b, h))
    if max_delay > 0:
        weights = jnp.exp(-jnp.arange(max_delay + 1, dtype=jnp.float32))
        delay = jax.random.choice(k_delay, max_delay + 1, (b, 1), p=weights / weights.sum())
        frozen = jnp.arange(h)[None, :] < delay
        tau = jnp.where(frozen, 1.0, tau)
    else:
        frozen = jnp.zeros((b, h), bool)
    noise = jax.random.normal(k_noise, chunk.shape)
    noised = tau[..., None] * chunk + (1.0 - tau[..., None]) * noise
    return noised, tau, chunk - noise, (~frozen).astype(jnp.float32)


def flow_loss(config: ModelConfig, params, observation, chunk, key, max_delay: int, tau_beta: bool):
    """Flow-matching loss over the weighted (not frozen) tokens."""
    noised, tau, target, weight = training_example(chunk, key, max_delay, tau_beta)
    predicted = velocity(config, params, noised, tau, prefix(config, params, observation))
    error = jnp.sum((predicted - target) ** 2, axis=-1)
    return jnp.sum(error * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def train(config: ModelConfig, data: datasets.Dataset, steps: int, seed: int, batch: int, max_delay: int, tau_beta: bool):
    """Returns trained parameters and the loss curve."""
    stats = data.statistics()
    observations, chunks = data.chunks(config.horizon)
    observations = normalize(observations, stats["observation"])
    chunks = normalize(chunks, stats["action"])
    key = jax.random.PRNGKey(seed)
    params = init_params(config, key)
    schedule = optax.warmup_cosine_decay_schedule(0.0, 2e-3, min(100, steps // 10 + 1), steps, 1e-4)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))
    state = optimizer.init(params)

    @jax.jit
    def update(params, state, observation, chunk, key):
        loss, grads = jax.value_and_grad(lambda p: flow_loss(config, p, observation, chunk, key, max_delay, tau_beta))(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        rows = rng.integers(0, len(chunks), batch)
        key, sub = jax.random.split(key)
        params, state, loss = update(params, state, jnp.asarray(observations[rows]), jnp.asarray(chunks[rows]), sub)
        losses.append(float(loss))
    return params, losses, stats


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="toy", help="a dataset .npz file, or 'toy' for the built-in toy demonstrations")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--attention", choices=["gta", "gqa", "mha"], default="gta")
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny", help="model size preset")
    parser.add_argument("--training-rtc", type=int, default=0, metavar="MAX_DELAY", help="training-time RTC up to this delay")
    parser.add_argument("--tau-beta", action="store_true", help="sample tau from Beta(1.5, 1) instead of uniformly")
    parser.add_argument("--graph-batch", type=int, default=1, help="fixed batch of the exported graphs (0: symbolic)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="float type of the exported graphs (bfloat16: weights and matrix products)")
    args = parser.parse_args()
    data = datasets.toy_obstacle_demonstrations(200, args.seed) if args.dataset == "toy" else datasets.load(Path(args.dataset))
    config = preset(args.size, horizon=args.horizon, action_dim=data.action.shape[1], observation_dim=data.observation.shape[1], attention=args.attention)
    if args.attention == "mha":
        config = replace(config, kv_heads=config.heads)
    params, losses, stats = train(config, data, args.steps, args.seed, args.batch, args.training_rtc, args.tau_beta)
    print(f"{parameter_count(params)} parameters; loss {np.mean(losses[:50]):.4f} -> {np.mean(losses[-50:]):.4f}")
    recorded = export_trained(config, params, stats, args, losses)
    write_expected(args.out, recorded)
    print(f"wrote {args.out}")


def export_trained(config: ModelConfig, params, stats, args, losses) -> dict:
    """Exports the trained model as a bundle; returns the recorded outputs."""
    inputs = fixed_inputs(config.horizon, config.action_dim, config.observation_dim, 3, args.seed, per_token=args.training_rtc > 0)
    manifest = {
        "name": f"{args.attention}-{'toy' if args.dataset == 'toy' else Path(args.dataset).stem}"
        + ("" if args.dtype == "float32" else f"-{args.dtype}"),
        "producer": f"rtchunk_train {__version__} (jax {jax.__version__}); " + json.dumps(
            {"dataset": args.dataset, "steps": args.steps, "seed": args.seed, "batch": args.batch, "training_rtc": args.training_rtc,
             "final_loss": round(float(np.mean(losses[-50:])), 5)}
        ),
        "control_rate_hz": 50.0,
        "normalization": stats,
        "defaults": {"steps": 5, "beta": 5.0},
        "capabilities": {"exact_vjp": True, "prefix_conditioned": args.training_rtc > 0},
        "attention": {
            "kind": config.attention,
            "layers": config.layers,
            "heads": config.heads,
            "kv_heads": config.kv_heads,
            "head_dim": config.head_dim,
            "rope_dim": config.rope_dim if config.attention == "gta" else None,
            "width": config.width,
        },
    }
    params = jax.tree_util.tree_map(lambda x: x.astype(args.dtype), params)
    recorded = export_policy(
        args.out,
        lambda o: prefix(config, params, o),
        lambda a, t, c: velocity(config, params, a, t, c),
        {
            "horizon": config.horizon,
            "action_dim": config.action_dim,
            "observation_dim": config.observation_dim,
            "context_shape": [config.layers, config.prefix_tokens, config.cache_width()],
        },
        manifest,
        inputs,
        batch=args.graph_batch or None,
        dtype=args.dtype,
    )
    recorded["model"] = asdict(config)
    return recorded


if __name__ == "__main__":
    main()
