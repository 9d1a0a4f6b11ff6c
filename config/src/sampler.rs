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

/// Settings of the sampler. Two are equal when their settings are (where each came from does not count).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "SamplerFile")]
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
    /// The settings a configuration file left out, which a policy's own suggestions (a bundle's `defaults`) may
    /// fill: [`SamplerConfig::adopt_policy_defaults`]. Settings made in code count as given.
    #[serde(skip)]
    pub unset: UnsetSampling,
}

/// Which of the sampler's settings that policies suggest were left out of the configuration file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsetSampling {
    /// `steps` was not given.
    pub steps: bool,
    /// `beta` was not given.
    pub beta: bool,
    /// `schedule` was not given.
    pub schedule: bool,
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
            unset: UnsetSampling::default(),
        }
    }
}

impl PartialEq for SamplerConfig {
    fn eq(&self, other: &Self) -> bool {
        (self.mode, self.steps, self.beta, self.schedule)
            == (other.mode, other.steps, other.beta, other.schedule)
            && (self.bid_candidates, self.seed) == (other.bid_candidates, other.seed)
    }
}

impl SamplerConfig {
    /// The settings of a configuration file without a `[sampler]` section: the defaults, every one left unset.
    pub fn left_out() -> Self {
        SamplerFile::default().into()
    }

    /// Takes a policy's suggested steps, beta and (if it names one) schedule for each of them the configuration
    /// file left out; settings the file gives win.
    pub fn adopt_policy_defaults(
        &mut self,
        steps: usize,
        beta: f64,
        schedule: Option<MaskSchedule>,
    ) {
        if self.unset.steps {
            self.steps = steps;
        }
        if self.unset.beta {
            self.beta = beta;
        }
        if let (true, Some(schedule)) = (self.unset.schedule, schedule) {
            self.schedule = schedule;
        }
    }
}

/// `[sampler]` as a configuration file writes it: every setting optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplerFile {
    mode: Option<SamplerMode>,
    steps: Option<usize>,
    beta: Option<f64>,
    schedule: Option<MaskSchedule>,
    bid_candidates: Option<usize>,
    seed: Option<u64>,
}

impl From<SamplerFile> for SamplerConfig {
    fn from(file: SamplerFile) -> Self {
        let default = SamplerConfig::default();
        SamplerConfig {
            mode: file.mode.unwrap_or(default.mode),
            steps: file.steps.unwrap_or(default.steps),
            beta: file.beta.unwrap_or(default.beta),
            schedule: file.schedule.unwrap_or(default.schedule),
            bid_candidates: file.bid_candidates.unwrap_or(default.bid_candidates),
            seed: file.seed.unwrap_or(default.seed),
            unset: UnsetSampling {
                steps: file.steps.is_none(),
                beta: file.beta.is_none(),
                schedule: file.schedule.is_none(),
            },
        }
    }
}
