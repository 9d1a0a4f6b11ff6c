"""The exact flow of a Gaussian over chunks, in JAX: the same velocity field as rtchunk's Rust reference policy.

Chunks are A ~ N(mu, K (x) I): each joint's trajectory over the H tokens has the temporal covariance K (a
squared-exponential kernel plus a small diagonal, as in `policy/src/gaussian.rs`). Noised as
x = tau A + (1 - tau) eps with one tau per chunk, the denoiser is the posterior mean
A1_hat(x) = mu + K D C^-1 (x - tau mu), C = tau^2 K + (1 - tau)^2 I, written with K's eigendecomposition so that
the exported graph is matrix products and elementwise operations only. The velocity is (A1_hat - x) / (1 - tau).
"""

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class GaussianSpec:
    """Shape and prior of the Gaussian chunk policy."""

    horizon: int = 8
    action_dim: int = 2
    observation_dim: int = 4
    spread: float = 1.0
    correlation_length: float = 3.0


def smooth_covariance(horizon: int, spread: float, correlation_length: float) -> np.ndarray:
    """The temporal covariance K, identical to the Rust reference's."""
    lag = (np.arange(horizon)[:, None] - np.arange(horizon)[None, :]) / correlation_length
    return spread * spread * (np.exp(-0.5 * lag * lag) + 1e-3 * np.eye(horizon))


def mean_chunk(spec: GaussianSpec) -> np.ndarray:
    """The mean chunk mu (H x action_dim): a smooth, non-trivial trajectory."""
    t = np.arange(spec.horizon)[:, None]
    j = np.arange(spec.action_dim)[None, :]
    return 0.5 * np.sin(0.4 * t + 1.3 * j)


class GaussianFlow:
    """The velocity field and its denoiser's VJP, as pure functions of JAX arrays."""

    def __init__(self, spec: GaussianSpec):
        self.spec = spec
        eigenvalues, eigenvectors = np.linalg.eigh(smooth_covariance(spec.horizon, spec.spread, spec.correlation_length))
        self.eigenvalues = jnp.asarray(eigenvalues, dtype=jnp.float32)
        self.eigenvectors = jnp.asarray(eigenvectors, dtype=jnp.float32)
        self.mean = jnp.asarray(mean_chunk(spec), dtype=jnp.float32)

    def prefix(self, observation):
        """observation [B, obs_dim] -> context [B, H, action_dim]: the mean chunk (this prior ignores the
        observation; the graph still consumes it)."""
        batch = observation.shape[0]
        return jnp.broadcast_to(self.mean, (batch,) + self.mean.shape) + 0.0 * jnp.sum(observation) 

    def denoised(self, actions, tau, context):
        """A1_hat(actions) for actions [B, H, A], tau [B, H] (the first token's tau is the chunk's), context [B, H, A]."""
        t = tau[:, :1]  # [B, 1]
        residual = actions - t[:, :, None] * context
        spectral = jnp.einsum("hk,bha->bka", self.eigenvectors, residual)
        gain = t * self.eigenvalues[None, :] / (t * t * self.eigenvalues[None, :] + (1.0 - t) ** 2)
        return context + jnp.einsum("hk,bka->bha", self.eigenvectors, gain[:, :, None] * spectral)

    def velocity(self, actions, tau, context):
        """v(A, tau) = (A1_hat - A) / (1 - tau)."""
        return (self.denoised(actions, tau, context) - actions) / (1.0 - tau[:, :, None])


def camera_target(image):
    """The brightness-weighted centroid of each image (uint8 [B, rows, columns, channels]) in [-1, 1]^2, x to the
    right and y up: where the camera sees the most light."""
    grey = jnp.mean(image.astype(jnp.float32), axis=-1) / 255.0
    rows, columns = grey.shape[1], grey.shape[2]
    xs = jnp.asarray(np.linspace(-1.0, 1.0, columns), dtype=jnp.float32)
    ys = jnp.asarray(np.linspace(1.0, -1.0, rows), dtype=jnp.float32)
    total = jnp.sum(grey, axis=(1, 2)) + 1e-3
    cx = jnp.sum(grey * xs[None, None, :], axis=(1, 2)) / total
    cy = jnp.sum(grey * ys[None, :, None], axis=(1, 2)) / total
    return jnp.stack([cx, cy], axis=-1)


class CameraGaussianFlow(GaussianFlow):
    """The Gaussian flow whose mean chunk is shifted toward where its camera sees the most light: joint j moves
    by the centroid's x (even j) or y (odd j). A fixture for the camera path, not a trained policy."""

    def prefix(self, observation, image):
        """observation [B, obs_dim], image uint8 [B, rows, columns, channels] -> context [B, H, action_dim]."""
        target = camera_target(image)
        shift = target[:, jnp.arange(self.spec.action_dim) % 2]
        return super().prefix(observation) + shift[:, None, :]
