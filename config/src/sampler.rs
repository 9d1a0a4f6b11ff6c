//! `[sampler]`: how a chunk is drawn from the flow policy.

use serde::{Deserialize, Serialize};

/// The guidance mode of the Euler sampler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerMode {
    /// No guidance: naive chunking.
    Plain,
    /// Real-Time Chunking: soft-masked ΠGDM guidance through the denoiser's exact VJP.
    #[default]
    Rtc,
    /// RTC with the denoiser's Jacobian taken as the identity (forward passes only): an approximation.
    RtcIdentity,
    /// Replace the frozen prefix by its noised value at every step (Diffuser-style inpainting).
    PrefixOverwrite,
    /// Training-time RTC: the frozen prefix is given clean with tau = 1 per token; no guidance.
    TrainedPrefix,
    /// Bidirectional decoding: N candidates, the most coherent with the committed actions wins.
    Bid,
}

impl SamplerMode {
    /// The name used in configuration files and reports.
    pub fn name(self) -> &'static str {
        match self {
            SamplerMode::Plain => "plain",
            SamplerMode::Rtc => "rtc",
            SamplerMode::RtcIdentity => "rtc-identity (approximation: J = I)",
            SamplerMode::PrefixOverwrite => "prefix-overwrite",
            SamplerMode::TrainedPrefix => "trained-prefix",
            SamplerMode::Bid => "bid",
        }
    }
}

/// The decay of the soft mask W over the overlap between the frozen prefix and the free tail (Eq. 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskSchedule {
    /// Exponential decay (the paper's default).
    #[default]
    Exp,
    /// Linear decay.
    Linear,
    /// Weight 1 over the whole overlap.
    Ones,
    /// Hard mask: weight 1 on the frozen prefix only.
    Zeros,
}

/// Settings of the sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Guidance mode.
    pub mode: SamplerMode,
    /// Number of Euler denoising steps n.
    pub steps: usize,
    /// Guidance weight clipping beta.
    pub beta: f64,
    /// Soft-mask schedule.
    pub schedule: MaskSchedule,
    /// Number of candidates for `bid`.
    pub bid_candidates: usize,
    /// Seed of the sampler's noise; each inference derives its own stream from it.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            mode: SamplerMode::default(),
            steps: 5,
            beta: 5.0,
            schedule: MaskSchedule::default(),
            bid_candidates: 16,
            seed: 0,
        }
    }
}
