"""Times the VLA in JAX on whatever device JAX has (the baseline rtchunk's ONNX Runtime path is measured against):
the prefix (vision + backbone), one plain velocity step, one guided step (velocity and its exact VJP, as RTC's
ΠGDM guidance needs), plain inference (prefix + n Euler steps) and RTC inference (prefix + n guided steps), each
jitted, batch 1, weights random in bfloat16 (matrix products in bfloat16, the rest in float32).

    python -m rtchunk_train.vla_timing [--preset vla-3b] [--cameras 1] [--attention gta] [--out results.json]

Prints one JSON object per configuration (milliseconds, median of --repeats runs after a warm-up).
"""

import argparse
import json
import time
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from .model import velocity
from .vla import init_vla_params, vla_preset, vla_prefix


def random_params(config, seed: int, dtype) -> dict:
    """Random weights N(0, 0.02) of `config` in `dtype`, drawn leaf by leaf on the device (one small program per
    shape, so billions of weights take seconds, where one jitted initialisation of them all takes minutes)."""
    shapes = jax.eval_shape(lambda key: init_vla_params(config, key), jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    draw = jax.jit(lambda key, shape: 0.02 * jax.random.normal(key, shape, dtype), static_argnums=1)
    return jax.tree_util.tree_unflatten(tree, [draw(key, leaf.shape) for key, leaf in zip(keys, leaves)])


def median_ms(function, *args, repeats: int) -> float:
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append((time.perf_counter() - started) * 1e3)
    return float(np.median(times))


def phases(config) -> dict:
    """The jitted functions timed, each taking the weights as its first argument (never closed over: a jitted
    closure would bake billions of them into the program): `prefix`, `step` (velocity), `guided` (velocity and its
    VJP for a cotangent) and the inferences `plain5`, `plain10` and `rtc5` (prefix, then Euler steps)."""
    expert = config.expert_config()

    def guided(w, a, t, c, cotangent):
        v, pullback = jax.vjp(lambda x: velocity(expert, w["expert"], x, t, c), a)
        return v, pullback(cotangent)[0]

    def inference(w, i, p, s, a, steps: int, guide: bool):
        context = vla_prefix(config, w, i, p, s)

        def euler(k, a):
            tau = jnp.full((a.shape[0], expert.horizon), k / steps, jnp.float32)
            if guide:
                # The cotangent's values do not change the work: the chunk itself stands in for RTC's weighted
                # error (a timing of the guided step, not a sampler).
                v, g = guided(w, a, tau, context, a)
                return a + (v + 0.01 * g) / steps
            return a + velocity(expert, w["expert"], a, tau, context) / steps

        # One compiled step body, looped: the step count does not multiply the compile time.
        return jax.lax.fori_loop(0, steps, euler, a)

    return {
        "prefix": jax.jit(lambda w, i, p, s: vla_prefix(config, w, i, p, s)),
        "step": jax.jit(lambda w, a, t, c: velocity(expert, w["expert"], a, t, c)),
        "guided": jax.jit(guided),
        "plain5": jax.jit(lambda w, i, p, s, a: inference(w, i, p, s, a, 5, False)),
        "plain10": jax.jit(lambda w, i, p, s, a: inference(w, i, p, s, a, 10, False)),
        "rtc5": jax.jit(lambda w, i, p, s, a: inference(w, i, p, s, a, 5, True)),
    }


def measure(preset: str, cameras: int, attention: str, repeats: int) -> dict:
    kv_heads = None if attention != "mha" else vla_preset(preset).expert.heads
    config = vla_preset(preset, attention=attention, **({"kv_heads": kv_heads} if kv_heads else {}))
    config = replace(config, cameras=cameras)
    expert = config.expert_config()
    params = random_params(config, 0, jnp.bfloat16)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.integers(0, 256, (1, cameras, *config.image_shape(), 3), dtype=np.uint8))
    prompt = jnp.asarray(rng.integers(0, config.vocab, (1, config.prompt_tokens)), jnp.int32)
    state = jnp.asarray(rng.normal(size=(1, config.state_dim)), jnp.float32)
    actions = jnp.asarray(rng.normal(size=(1, expert.horizon, expert.action_dim)), jnp.float32)
    timed = phases(config)
    prefix, step, guided_step = timed["prefix"], timed["step"], timed["guided"]
    plain5, plain10, rtc5 = timed["plain5"], timed["plain10"], timed["rtc5"]

    context = prefix(params, images, prompt, state)
    tau = jnp.full((1, expert.horizon), 0.5, jnp.float32)
    inputs = (params, images, prompt, state, actions)
    result = {
        "model": preset,
        "attention": attention,
        "cameras": cameras,
        "dtype": "bfloat16",
        "device": str(jax.devices()[0]),
        "prefix_tokens": config.prefix_tokens(),
        "kv_bytes_per_token_layer": config.kv_bytes_per_token_layer(),
        "jax_prefix_ms": median_ms(prefix, params, images, prompt, state, repeats=repeats),
        "jax_plain_step_ms": median_ms(step, params, actions, tau, context, repeats=repeats),
        "jax_guided_step_ms": median_ms(guided_step, params, actions, tau, context, actions, repeats=repeats),
        "jax_plain10_ms": median_ms(plain10, *inputs, repeats=repeats),
        "jax_plain5_ms": median_ms(plain5, *inputs, repeats=repeats),
        "jax_rtc_ms": median_ms(rtc5, *inputs, repeats=repeats),
    }
    result["guided_over_plain_step"] = result["jax_guided_step_ms"] / result["jax_plain_step_ms"]
    result["rtc_over_plain5"] = result["jax_rtc_ms"] / result["jax_plain5_ms"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vla-3b")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1])
    parser.add_argument("--attention", nargs="+", default=["gta"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = []
    for attention in args.attention:
        for cameras in args.cameras:
            result = measure(args.preset, cameras, attention, args.repeats)
            print(json.dumps(result), flush=True)
            results.append(result)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
