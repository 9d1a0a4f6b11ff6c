//! `[policy]`: which flow policy produces the chunks.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The built-in reference policies (pure Rust, exact velocity fields and VJPs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Two Gaussian modes that steer the point mass above or below the obstacle towards the goal (the demo).
    #[default]
    ObstaclePaths,
    /// Two stationary Gaussian modes at `+separation` and `-separation` (seam and mode-switch tests).
    Bimodal,
    /// One stationary Gaussian around zero.
    Gaussian,
    /// A policy bundle run by ONNX Runtime (`policy.bundle`); H and the action dimension come from its manifest.
    Bundle,
    /// A policy server (`rtchunk serve-policy`) reached over the `[io]` zenoh session under `policy.server`; H
    /// and the dimensions come from the server. Needs `plant.kind = "zenoh"`.
    Remote,
}

/// Settings of the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Which policy.
    pub kind: PolicyKind,
    /// Prediction horizon H: actions per chunk.
    pub horizon: usize,
    /// Dimension of one action.
    pub action_dim: usize,
    /// Per-action standard deviation of the reference policies' chunks, in the model's normalised space
    /// (`obstacle-paths` normalises positions by a quarter of the box: 0.15 is 4.5 cm by default).
    pub spread: f64,
    /// Temporal correlation length of the reference chunks, in actions.
    pub correlation_length: f64,
    /// Distance of each mode from zero for `bimodal`.
    pub separation: f64,
    /// Speed along the path of `obstacle-paths`, in position units per second.
    pub path_speed: f64,
    /// The bundle directory for `kind = "bundle"` (relative paths are relative to the configuration file).
    pub bundle: Option<PathBuf>,
    /// The ONNX Runtime library; unset searches `ORT_DYLIB_PATH`, then `.cache/onnxruntime/` (scripts/setup.sh).
    pub onnxruntime: Option<PathBuf>,
    /// Threads of ONNX Runtime's intra-op pool per session (they never spin).
    pub intra_threads: usize,
    /// Where a bundle runs: "cpu", "cuda" or "cuda:N" (CUDA needs rtchunk built with --features cuda).
    pub device: String,
    /// On a GPU, capture the prefix and each denoising step's graph as a CUDA graph once and replay them
    /// (single-observation, single-chunk inference with the context kept in device memory); false for batched
    /// sampling on the GPU.
    pub cuda_graphs: bool,
    /// On a GPU, run nodes ONNX Runtime's CUDA provider would hand to the CPU there, each copying its tensors
    /// across, instead of refusing the bundle with those nodes named (nodes that only compute shapes are always
    /// allowed).
    pub allow_cpu_nodes: bool,
    /// The policy server's namespace (`policy.kind = "remote"`): it answers on `<server>/policy/infer`.
    pub server: String,
    /// How long to wait for the server's answer to one chunk query, in milliseconds; a timeout counts as a
    /// failed inference (the controller keeps executing its chunk).
    pub server_timeout_ms: f64,
    /// On the real clock, how long a local inference may take before it counts as failed, in milliseconds: the
    /// controller is told at once (it keeps executing its chunk, then holds), the policy's late answer is
    /// discarded, and the next request is served once the policy returns. The first inference (warm-up, CUDA
    /// graph capture) has no limit.
    pub inference_timeout_ms: f64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            kind: PolicyKind::default(),
            horizon: 16,
            action_dim: 2,
            spread: 0.15,
            correlation_length: 4.0,
            separation: 1.0,
            path_speed: 0.6,
            bundle: None,
            onnxruntime: None,
            intra_threads: 1,
            device: "cpu".into(),
            cuda_graphs: true,
            allow_cpu_nodes: false,
            server: "rtchunk".into(),
            server_timeout_ms: 1000.0,
            inference_timeout_ms: 1000.0,
        }
    }
}
