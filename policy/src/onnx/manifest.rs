//! The bundle manifest (`manifest.json`), as written by the JAX toolchain.

use crate::Camera;
use serde::{Deserialize, Serialize};

/// The bundle format this runtime reads.
pub const FORMAT_VERSION: u32 = 1;

/// Everything a bundle declares about its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; this runtime reads [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The policy's name.
    pub name: String,
    /// What produced the bundle (toolchain and versions).
    pub producer: String,
    /// Dimension of one action, as the graphs take it.
    pub action_dim: usize,
    /// How many of an action's dimensions (the first ones) the robot executes, when fewer than `action_dim`:
    /// the rest are the model's padding (LeRobot's `max_action_dim`), with mean 0 and std 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot_action_dim: Option<usize>,
    /// Prediction horizon H.
    pub horizon: usize,
    /// The control rate the policy was trained for, Hz.
    pub control_rate_hz: f64,
    /// The observation inputs, in order.
    pub observation: Vec<ObservationInput>,
    /// Camera images the prefix graph also takes (none when absent), in the order the robot sends them.
    #[serde(default)]
    pub cameras: Vec<Camera>,
    /// The prompt the prefix graph also takes (none when absent): token ids fixed at export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    /// Shape of the context of one observation (after the batch dimension).
    pub context_shape: Vec<usize>,
    /// The batch size the graphs were exported for; `None`: any (a symbolic batch dimension). A fixed batch
    /// lets ONNX Runtime fold the shape arithmetic away; larger batches are run in groups of it.
    #[serde(default)]
    pub batch: Option<usize>,
    /// Normalisation statistics.
    pub normalization: Statistics,
    /// Which end of the flow is noise.
    pub time_convention: TimeConvention,
    /// Suggested sampler settings.
    pub defaults: Defaults,
    /// What the graphs support.
    pub capabilities: Capabilities,
    /// The attention of the policy's transformer.
    pub attention: Attention,
    /// Floating-point type of the graphs' inputs and outputs.
    pub dtype: Dtype,
    /// Floating-point type of the flow graphs' `tau` input, when it differs from `dtype`: a float16 or bfloat16
    /// bundle whose time embedding needs the time in float32 (π0's, with periods down to 4 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_dtype: Option<Dtype>,
    /// What the policy was trained on, where the toolchain knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingData>,
    /// For reference policies exported through the toolchain: which closed-form policy the graphs compute.
    #[serde(default)]
    pub reference: Option<serde_json::Value>,
    /// The graph files and their SHA-256.
    pub graphs: Graphs,
}

impl Manifest {
    /// Values in one observation.
    pub fn observation_dim(&self) -> usize {
        self.observation
            .iter()
            .map(|o| o.shape.iter().product::<usize>())
            .sum()
    }

    /// Values in one context.
    pub fn context_len(&self) -> usize {
        self.context_shape.iter().product()
    }

    /// The element type of the flow graphs' `tau` input.
    pub fn tau_dtype(&self) -> Dtype {
        self.time_dtype.unwrap_or(self.dtype)
    }
}

/// What a policy was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingData {
    /// The half-open range `[first, end)` of simulator episode seeds its demonstrations were drawn from; an
    /// evaluation on these episodes measures recall, not generalisation.
    pub episode_seeds: [u64; 2],
}

/// One named observation input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationInput {
    /// Its name.
    pub name: String,
    /// Its shape (without the batch dimension).
    pub shape: Vec<usize>,
    /// Its element type.
    pub dtype: Dtype,
}

/// A language prompt, tokenised when the bundle was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// The prefix graph's input that takes the ids, `int64 [B, token_ids.len()]`.
    pub input: String,
    /// The prompt's token ids, fed with every observation.
    pub token_ids: Vec<i64>,
}

/// Mean and standard deviation per dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanStd {
    /// Means.
    pub mean: Vec<f32>,
    /// Standard deviations (non-zero).
    pub std: Vec<f32>,
}

/// Normalisation statistics of observations and actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statistics {
    /// Of the observation vector.
    pub observation: MeanStd,
    /// Of one action.
    pub action: MeanStd,
}

/// Which end of the flow is noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeConvention {
    /// The paper's: tau = 0 noise, tau = 1 data.
    TauOneIsData,
    /// openpi's and LeRobot's: t = 1 noise, t = 0 data.
    TOneIsNoise,
}

/// Suggested sampler settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Denoising steps n.
    pub steps: usize,
    /// Guidance clipping beta.
    pub beta: f64,
    /// The soft mask's schedule the policy's authors use (LeRobot's `prefix_attention_schedule`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<rtchunk_config::MaskSchedule>,
}

/// What the graphs support.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `velocity_vjp.onnx` is present: exact RTC guidance.
    pub exact_vjp: bool,
    /// Trained with clean prefix tokens at tau = 1 (training-time RTC).
    pub prefix_conditioned: bool,
}

/// The attention variant of the policy's transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    /// Grouped-tied attention.
    Gta,
    /// Grouped-query attention.
    Gqa,
    /// Multi-head attention.
    Mha,
    /// Grouped latent attention.
    Gla,
    /// No transformer (a closed-form reference policy).
    None,
}

/// Attention kind and dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    /// The variant.
    pub kind: AttentionKind,
    /// Layers.
    #[serde(default)]
    pub layers: Option<usize>,
    /// Query heads.
    #[serde(default)]
    pub heads: Option<usize>,
    /// Key-value heads (groups).
    #[serde(default)]
    pub kv_heads: Option<usize>,
    /// Head width d_h.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Width of the shared RoPE key d_R (GTA).
    #[serde(default)]
    pub rope_dim: Option<usize>,
    /// Model width.
    #[serde(default)]
    pub width: Option<usize>,
}

/// Floating-point types of graph inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit.
    Float32,
    /// IEEE half.
    Float16,
    /// bfloat16.
    Bfloat16,
}

/// The three graphs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graphs {
    /// observation -> context.
    pub prefix: GraphFile,
    /// (actions, tau, context) -> velocity.
    pub velocity: GraphFile,
    /// (actions, tau, context, cotangent) -> (velocity, vjp); required when `capabilities.exact_vjp`.
    #[serde(default)]
    pub velocity_vjp: Option<GraphFile>,
    /// (actions, tau, context, target, weights) -> (velocity, vjp): a guided RTC step in one call, the VJP
    /// taken against the weighted error `weights * (target - A1_hat)`; optional (without it a guided step
    /// runs the velocity and the VJP graph).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guided: Option<GraphFile>,
}

/// A graph file and its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    /// Path relative to the bundle directory (inside it).
    pub file: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// The external-data files the graph's tensors are stored in (ONNX's `location`, relative to the bundle
    /// directory), each with its hex SHA-256; every file the graph uses must be listed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub external_data: std::collections::BTreeMap<String, String>,
}
