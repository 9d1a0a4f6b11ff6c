"""Trains the tiny VLA on a simulator task's demonstrations, camera images included, and exports it as a bundle:
a VLA whose weights do something, so that the export's check against JAX runs on trained weights.

    rtchunk sim collect --task reach --episodes 200 --camera-width 42 --out reach.npz
    python -m rtchunk_train.vla_train --dataset reach.npz --out vla-reach --steps 2000

The model is `vla-tiny` with the dataset's image size (its camera's height and width, in patches of `--patch`
pixels, padded to whole patches), state size and action size, and one fixed instruction as its prompt. The last tenth of the episodes is
held out; the flow-matching loss on it is reported before and after training (`training.json` in the bundle).
"""

import argparse
import json
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import dataset as datasets
from .model import velocity
from .train import normalize, optimizer_for, weighted_flow_loss
from .vla import VlaConfig, init_vla_params, vla_prefix, vla_preset
from .vla_export import TrainedVla, build_bundle, export_skeleton

# The task's one instruction, as token ids of vla-tiny's vocabulary.
PROMPT_IDS = (1, 2, 3, 4)
HELD_OUT_FRACTION = 0.1


def config_for(data: datasets.Dataset, patch: int) -> VlaConfig:
    """vla-tiny sized for `data`: its camera's images, its state and its actions."""
    if data.camera is None:
        raise ValueError("the dataset has no camera images (collect it with `rtchunk sim collect --camera-width W`)")
    height, width = data.camera.shape[1:3]
    base = vla_preset("vla-tiny")
    return replace(base, image_size=width, image_height=height, patch=patch, cameras=1,
                   prompt_tokens=len(PROMPT_IDS), state_dim=data.observation.shape[1],
                   expert=replace(base.expert, action_dim=data.action.shape[1]))


def vla_flow_loss(config: VlaConfig, params, state, images, chunk, key):
    """Flow-matching loss of the VLA on clean chunks given states and uint8 images [B, 1, H, W, 3]."""
    prompt = jnp.broadcast_to(jnp.asarray(PROMPT_IDS, jnp.int32), (state.shape[0], len(PROMPT_IDS)))
    context = vla_prefix(config, params, images, prompt, state)
    expert = config.expert_config()
    predict = lambda noised, tau: velocity(expert, params["expert"], noised, tau, context)  # noqa: E731
    return weighted_flow_loss(predict, chunk, key, 0, tau_beta=True)


def split_episodes(data: datasets.Dataset) -> tuple:
    """Row indices of the training episodes and of the held-out last tenth."""
    episodes = int(data.episode_index[-1]) + 1
    first_held_out = episodes - max(1, int(round(episodes * HELD_OUT_FRACTION)))
    rows = np.arange(len(data.action))
    return rows[data.episode_index < first_held_out], rows[data.episode_index >= first_held_out]


def train_vla(data: datasets.Dataset, steps: int, seed: int, batch: int, patch: int) -> dict:
    """Trained parameters, the configuration, the dataset statistics and the held-out loss before and after."""
    config = config_for(data, patch)
    expert = config.expert_config()
    stats = data.statistics()
    observations, chunks = data.chunks(expert.horizon)
    observations = normalize(observations, stats["observation"]).astype(np.float32)
    chunks = normalize(chunks, stats["action"]).astype(np.float32)
    images = data.camera[:, None]
    train_rows, held_out_rows = split_episodes(data)
    params = init_vla_params(config, jax.random.PRNGKey(seed))
    optimizer = optimizer_for(steps)
    state = optimizer.init(params)
    loss_of = jax.jit(partial(vla_flow_loss, config))

    @jax.jit
    def update(params, state, rows_state, rows_images, rows_chunks, key):
        loss, grads = jax.value_and_grad(loss_of)(params, rows_state, rows_images, rows_chunks, key)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    def held_out_loss(params):
        key = jax.random.PRNGKey(10_000)  # the same noise and tau before and after training
        picked = held_out_rows[:: max(1, len(held_out_rows) // 512)]
        return float(loss_of(params, observations[picked], images[picked], chunks[picked], key))

    before = held_out_loss(params)
    rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed + 1)
    started, losses = time.monotonic(), []
    for _ in range(steps):
        rows = rng.choice(train_rows, batch)
        key, sub = jax.random.split(key)
        params, state, loss = update(params, state, observations[rows], images[rows], chunks[rows], sub)
        losses.append(float(loss))
    return {
        "params": params,
        "config": config,
        "normalization": stats,
        "held_out_loss_before": before,
        "held_out_loss_after": held_out_loss(params),
        "final_training_loss": float(np.mean(losses[-50:])) if losses else before,
        "seconds": time.monotonic() - started,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="demonstrations with camera images (.npz)")
    parser.add_argument("--out", type=Path, required=True, help="the bundle to write")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch", type=int, default=6, help="patch size in pixels (images are padded to whole patches)")
    args = parser.parse_args()
    data = datasets.load(args.dataset)
    result = train_vla(data, args.steps, args.seed, args.batch, args.patch)
    config = result["config"]
    trained = TrainedVla(result["params"], result["normalization"], PROMPT_IDS, f"vla-tiny-{args.dataset.stem}",
                         datasets.episode_seeds(args.dataset))
    with tempfile.TemporaryDirectory() as skeleton:
        export_skeleton(config, "float32", Path(skeleton), batch=1)
        build_bundle(Path(skeleton), args.out, args.seed, check_in_onnxruntime=True, trained=trained)
    report = {k: v for k, v in result.items() if k not in ("params", "config", "normalization")}
    report.update({"dataset": str(args.dataset), "steps": args.steps, "image_shape": list(config.image_shape()),
                   "patch": config.patch, "episode_seeds": datasets.episode_seeds(args.dataset)})
    (args.out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
