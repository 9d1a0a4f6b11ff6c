"""Real-Time Chunking's guided inference (Algorithm 1's GUIDEDINFERENCE) in JAX: the reference the Rust sampler is
checked against, step for step (a velocity query, then the VJP of the denoiser against the weighted error)."""

import jax.numpy as jnp
import numpy as np


def soft_mask(delay: int, executed: int, horizon: int) -> np.ndarray:
    """Eq. 5 with the exponential schedule: 1 on the frozen prefix, decaying over the overlap, 0 on the tail."""
    end = horizon - executed
    start = min(delay, end)
    weights = np.zeros(horizon)
    for i in range(horizon):
        if i < start:
            weights[i] = 1.0
        elif i < end:
            c = (end - i) / (end - start + 1)
            weights[i] = c * np.expm1(c) / (np.e - 1.0)
    return weights.astype(np.float32)


def guidance_weight(tau: float, beta: float) -> float:
    """min(beta, (1 - tau) / (tau r^2)), r^2 = (1 - tau)^2 / (tau^2 + (1 - tau)^2); beta at tau = 0."""
    if tau <= 0.0:
        return beta
    r2 = (1.0 - tau) ** 2 / (tau**2 + (1.0 - tau) ** 2)
    return min(beta, (1.0 - tau) / (tau * r2))


def guided_inference(velocity, velocity_vjp, context, noise, committed, delay: int, steps: int, beta: float):
    """One RTC chunk [1, H, A] from `noise` [1, H, A], continuing `committed` [H - s, A] (model space)."""
    horizon = noise.shape[1]
    executed = horizon - committed.shape[0]
    target = np.concatenate([committed, np.repeat(committed[-1:], executed, axis=0)])[None]
    weights = jnp.asarray(soft_mask(min(delay, committed.shape[0]), executed, horizon))[None, :, None]
    x = jnp.asarray(noise)
    for step in range(steps):
        tau = step / steps
        taus = jnp.full((1, horizon), tau, jnp.float32)
        v = velocity(x, taus, context)
        error = weights * (target - (x + (1.0 - tau) * v))
        _, correction = velocity_vjp(x, taus, context, error)
        x = x + (v + guidance_weight(tau, beta) * correction) / steps
    return np.asarray(x)
