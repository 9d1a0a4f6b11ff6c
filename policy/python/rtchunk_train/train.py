"""Trains a flow-matching GTA transformer on demonstrations and exports it as a policy bundle.

    python -m rtchunk_train.train --dataset toy --out policy/fixtures/gta-toy --steps 1500 --seed 0

Several seeds and training-time RTC settings train together, one model each (vectorised; on a GPU they share
every step). With --checkpoint-only the parameters are saved for `python -m rtchunk_train.export` to turn into
bundles later (e.g. train on a GPU machine, export here with the pinned toolchain).

Flow matching in the paper's convention: x = tau A + (1 - tau) eps, target velocity A - eps. With
--training-rtc, each example also freezes a random prefix of d actions (P(d) proportional to exp(-d), or with
--delay-distribution uniform equally likely for every d <= the maximum), given clean at tau = 1, and the loss
covers the rest only (training-time RTC).
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import __version__, dataset as datasets
from .model import ATTENTION_KINDS, PRESETS, ModelConfig, init_params, parameter_count, prefix, preset, velocity


def normalize(values, stats):
    return (values - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)


def training_example(chunk, key, max_delay, tau_beta: bool, uniform_delay: bool = False):
    """Noised chunks, per-token tau, velocity targets and loss weights for clean chunks [B, H, A]. With
    max_delay > 0 a prefix of d actions, d <= max_delay with P(d) proportional to exp(-d) (or uniform with
    `uniform_delay`), is given clean at tau = 1 and weighted 0. `max_delay` may be a traced value (models trained
    together with different settings)."""
    b, h, _ = chunk.shape
    k_tau, k_noise, k_delay = jax.random.split(key, 3)
    tau = jax.random.beta(k_tau, 1.5, 1.0, (b, 1)) if tau_beta else jax.random.uniform(k_tau, (b, 1))
    tau = jnp.broadcast_to(tau * 0.999, (b, h))
    delays = jnp.arange(h)
    shape = jnp.ones(h) if uniform_delay else jnp.exp(-delays.astype(jnp.float32))
    weights = jnp.where(delays <= max_delay, shape, 0.0)
    delay = jax.random.choice(k_delay, h, (b, 1), p=weights / weights.sum())
    frozen = delays[None, :] < delay
    tau = jnp.where(frozen, 1.0, tau)
    noise = jax.random.normal(k_noise, chunk.shape)
    noised = tau[..., None] * chunk + (1.0 - tau[..., None]) * noise
    return noised, tau, chunk - noise, (~frozen).astype(jnp.float32)


def weighted_flow_loss(predict, chunk, key, max_delay, tau_beta: bool, uniform_delay: bool = False):
    """Flow-matching loss of `predict(noised, tau) -> velocity` on clean chunks [B, H, A], over the weighted (not
    frozen) tokens."""
    noised, tau, target, weight = training_example(chunk, key, max_delay, tau_beta, uniform_delay)
    error = jnp.sum((predict(noised, tau) - target) ** 2, axis=-1)
    return jnp.sum(error * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def flow_loss(config: ModelConfig, params, observation, chunk, key, max_delay, tau_beta: bool, uniform_delay: bool = False):
    """Flow-matching loss of the transformer conditioned on `observation`."""
    context = prefix(config, params, observation)
    predict = lambda noised, tau: velocity(config, params, noised, tau, context)  # noqa: E731
    return weighted_flow_loss(predict, chunk, key, max_delay, tau_beta, uniform_delay)


def optimizer_for(steps: int):
    """AdamW with warm-up and cosine decay over `steps`, gradients clipped to norm 1."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, 2e-3, min(100, steps // 10 + 1), steps, 1e-4)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))


def train_many(config: ModelConfig, data: datasets.Dataset, steps: int, seeds, batch: int, max_delays, tau_beta: bool,
               uniform_delay: bool = False):
    """Trains one model per (seed, max_delay) pair together (vectorised: on a GPU the models share each step's
    launches). Returns their parameters, loss curves [models, steps] and the dataset statistics."""
    stats = data.statistics()
    observations, chunks = data.chunks(config.horizon)
    observations = normalize(observations, stats["observation"])
    chunks = normalize(chunks, stats["action"])
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
    params = jax.vmap(lambda key: init_params(config, key))(keys)
    optimizer = optimizer_for(steps)
    state = jax.vmap(optimizer.init)(params)

    def update(params, state, observation, chunk, key, max_delay):
        loss, grads = jax.value_and_grad(
            lambda p: flow_loss(config, p, observation, chunk, key, max_delay, tau_beta, uniform_delay))(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    update = jax.jit(jax.vmap(update))
    split = jax.jit(jax.vmap(jax.random.split, out_axes=1))
    rngs = [np.random.default_rng(seed) for seed in seeds]
    delays = jnp.asarray(max_delays, jnp.int32)
    losses = []
    started = time.monotonic()
    for step in range(steps):
        if step and step % 2000 == 0:
            print(f"step {step}/{steps}: loss {np.asarray(losses[-1]).round(4).tolist()}, {time.monotonic() - started:.0f} s", flush=True)
        rows = np.stack([rng.integers(0, len(chunks), batch) for rng in rngs])
        keys, subs = split(keys)
        params, state, loss = update(params, state, jnp.asarray(observations[rows]), jnp.asarray(chunks[rows]), subs, delays)
        losses.append(loss)
    unstacked = [jax.tree_util.tree_map(lambda x, i=i: x[i], params) for i in range(len(seeds))]
    return unstacked, np.asarray(jnp.stack(losses, axis=1)), stats


def train(config: ModelConfig, data: datasets.Dataset, steps: int, seed: int, batch: int, max_delay: int, tau_beta: bool):
    """Returns trained parameters, the loss curve and the dataset statistics of one model."""
    params, losses, stats = train_many(config, data, steps, [seed], batch, [max_delay], tau_beta)
    return params[0], list(losses[0]), stats


def save_checkpoint(directory: Path, config: ModelConfig, params, stats, meta: dict, losses):
    """Writes trained parameters (checkpoint.npz) and what is needed to export them (train.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    np.savez(directory / "checkpoint.npz", **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves})
    summary = {"config": asdict(config), "stats": stats, "meta": meta, "losses": [float(np.mean(losses[:50])), float(np.mean(losses[-50:]))]}
    (directory / "train.json").write_text(json.dumps(summary, indent=1) + "\n")


def load_checkpoint(directory: Path):
    """The config, parameters, statistics, metadata and loss summary written by `save_checkpoint`."""
    summary = json.loads((directory / "train.json").read_text())
    config = ModelConfig(**summary["config"])
    template = init_params(config, jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten_with_path(template)
    with np.load(directory / "checkpoint.npz") as stored:
        params = jax.tree_util.tree_unflatten(tree, [jnp.asarray(stored[jax.tree_util.keystr(path)]) for path, _ in leaves])
    return config, params, summary["stats"], summary["meta"], summary["losses"]


def model_directory(out: Path, seed: int, max_delay: int, several: bool) -> Path:
    """Where one model of a run goes: `out` itself for a single model, else `out/base-s<seed>` or
    `out/trained-prefix-s<seed>` (training-time RTC)."""
    if not several:
        return out
    return out / f"{'base' if max_delay == 0 else 'trained-prefix'}-s{seed}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="toy",
                        help="a dataset .npz file or LeRobotDataset v3.0 directory, or 'toy' for the built-in toy "
                             "demonstrations")
    parser.add_argument("--out", type=Path, required=True, help="the bundle (several models: a folder of them)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="training seeds (one model each)")
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--attention", choices=list(ATTENTION_KINDS), default="gta")
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny", help="model size preset")
    parser.add_argument("--training-rtc", type=int, nargs="+", default=[0], metavar="MAX_DELAY", help="training-time RTC up to this delay (0: off); several values train one model each")
    parser.add_argument("--tau-beta", action="store_true", help="sample tau from Beta(1.5, 1) instead of uniformly")
    parser.add_argument("--delay-distribution", choices=["exp", "uniform"], default="exp",
                        help="training-time RTC's prefix length d: P(d) proportional to exp(-d), or uniform over 0..max")
    parser.add_argument("--graph-batch", type=int, default=1, help="fixed batch of the exported graphs (0: symbolic)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="float type of the exported graphs (bfloat16: weights and matrix products)")
    parser.add_argument("--control-rate", type=float, default=50.0, help="control rate (Hz) of the demonstrations, for the manifest")
    parser.add_argument("--checkpoint-only", action="store_true", help="write checkpoints (export later with rtchunk_train.export)")
    args = parser.parse_args()
    data = datasets.toy_obstacle_demonstrations(200, args.seed[0]) if args.dataset == "toy" else datasets.load(Path(args.dataset))
    config = preset(args.size, horizon=args.horizon, action_dim=data.action.shape[1], observation_dim=data.observation.shape[1], attention=args.attention)
    if args.attention == "mha":
        config = replace(config, kv_heads=config.heads)
    runs = [(seed, delay) for delay in args.training_rtc for seed in args.seed]
    params, losses, stats = train_many(config, data, args.steps, [s for s, _ in runs], args.batch, [d for _, d in runs], args.tau_beta,
                                       args.delay_distribution == "uniform")
    for (seed, delay), model, curve in zip(runs, params, losses):
        out = model_directory(args.out, seed, delay, len(runs) > 1)
        meta = {
            "dataset": args.dataset, "steps": args.steps, "seed": seed, "batch": args.batch, "training_rtc": delay,
            "attention": args.attention, "dtype": args.dtype, "graph_batch": args.graph_batch, "control_rate_hz": args.control_rate,
            "episode_seeds": None if args.dataset == "toy" else datasets.episode_seeds(Path(args.dataset)),
            "delay_distribution": args.delay_distribution,
        }
        print(f"{out}: {parameter_count(model)} parameters; loss {np.mean(curve[:50]):.4f} -> {np.mean(curve[-50:]):.4f}")
        if args.checkpoint_only:
            save_checkpoint(out, config, model, stats, meta, curve)
        else:
            from .bundle import write_expected

            write_expected(out, export_trained(out, config, model, stats, meta, [float(np.mean(curve[:50])), float(np.mean(curve[-50:]))]))
            print(f"wrote {out}")


def export_trained(out: Path, config: ModelConfig, params, stats, meta: dict, losses) -> dict:
    """Exports a trained model as a bundle in `out`; `meta` holds the training settings (dataset, steps, seed,
    batch, training_rtc, attention, dtype, graph_batch, control_rate_hz), `losses` the first and last loss.
    Returns the recorded outputs."""
    from .bundle import export_policy, fixed_inputs  # the export toolchain (jax2onnx, ONNX Runtime); training needs none

    rtc = meta["training_rtc"]
    inputs = fixed_inputs(config.horizon, config.action_dim, config.observation_dim, 3, meta["seed"], per_token=rtc > 0)
    dataset = meta["dataset"]
    manifest = {
        "name": f"{meta['attention']}-{'toy' if dataset == 'toy' else Path(dataset).stem}"
        + ("" if meta["dtype"] == "float32" else f"-{meta['dtype']}"),
        "producer": f"rtchunk_train {__version__} (jax {jax.__version__}); " + json.dumps(
            {"dataset": dataset, "steps": meta["steps"], "seed": meta["seed"], "batch": meta["batch"], "training_rtc": rtc,
             **({"delay_distribution": meta["delay_distribution"]} if rtc and meta.get("delay_distribution") != "exp" else {}),
             "final_loss": round(losses[-1], 5)}
        ),
        "control_rate_hz": meta["control_rate_hz"],
        **({"training": {"episode_seeds": meta["episode_seeds"]}} if meta.get("episode_seeds") else {}),
        "normalization": stats,
        "defaults": {"steps": 5, "beta": 5.0},
        "capabilities": {"exact_vjp": True, "prefix_conditioned": rtc > 0},
        "attention": {
            "kind": config.attention,
            "layers": config.layers,
            "heads": config.heads,
            "kv_heads": config.kv_heads,
            "head_dim": config.head_dim,
            "rope_dim": config.rope_dim if config.attention in ("gta", "gla") else None,
            "width": config.width,
        },
    }
    params = jax.tree_util.tree_map(lambda x: x.astype(meta["dtype"]), params)
    recorded = export_policy(
        out,
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
        batch=meta["graph_batch"] or None,
        dtype=meta["dtype"],
    )
    recorded["model"] = asdict(config)
    return recorded


if __name__ == "__main__":
    main()
