//! The chunk-execution methods the delay benchmark compares, as scheduler and sampler settings.

use rtchunk_config::{Execution, MaskSchedule, SamplerConfig, SamplerMode};
use serde::Serialize;

/// A way of executing action chunks under inference delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Method {
    /// Pause (zero force) while inferring, then execute the new chunk from its start.
    Sync,
    /// Asynchronous; the new chunk is sampled independently and replaces the old one.
    Naive,
    /// Real-time chunking: ΠGDM guidance with the exact VJP and the exponential soft mask (beta = 5).
    Rtc,
    /// RTC with a hard mask (only the first d actions guided).
    RtcHard,
    /// RTC with the Jacobian taken as the identity (no VJP).
    RtcIdentity,
    /// The first d actions overwritten by their noised targets at every step.
    PrefixOverwrite,
    /// Bidirectional decoding: 16 candidates, backward coherence.
    Bid,
    /// Temporal ensembling: the average of every chunk covering the step.
    Ensemble,
    /// Training-time RTC: a policy trained with clean prefixes, given the first d actions at tau = 1.
    TrainedPrefix,
}

impl Method {
    /// Every method, in the order tables list them.
    pub const ALL: [Method; 9] = [
        Method::Sync,
        Method::Naive,
        Method::Rtc,
        Method::RtcHard,
        Method::RtcIdentity,
        Method::PrefixOverwrite,
        Method::Bid,
        Method::Ensemble,
        Method::TrainedPrefix,
    ];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Sync => "sync",
            Method::Naive => "naive",
            Method::Rtc => "rtc",
            Method::RtcHard => "rtc-hard",
            Method::RtcIdentity => "rtc-identity",
            Method::PrefixOverwrite => "prefix-overwrite",
            Method::Bid => "bid",
            Method::Ensemble => "ensemble",
            Method::TrainedPrefix => "trained-prefix",
        }
    }

    /// How the scheduler executes chunks.
    pub fn execution(self) -> Execution {
        match self {
            Method::Sync => Execution::Sync,
            Method::Ensemble => Execution::Ensemble,
            _ => Execution::Async,
        }
    }

    /// The sampler: n = 5 Euler steps, beta = 5, as in the paper.
    pub fn sampler(self) -> SamplerConfig {
        let (mode, schedule) = match self {
            Method::Sync | Method::Naive | Method::Ensemble => {
                (SamplerMode::Plain, MaskSchedule::Exp)
            }
            Method::Rtc => (SamplerMode::Rtc, MaskSchedule::Exp),
            Method::RtcHard => (SamplerMode::Rtc, MaskSchedule::Zeros),
            Method::RtcIdentity => (SamplerMode::RtcIdentity, MaskSchedule::Exp),
            Method::PrefixOverwrite => (SamplerMode::PrefixOverwrite, MaskSchedule::Exp),
            Method::Bid => (SamplerMode::Bid, MaskSchedule::Exp),
            Method::TrainedPrefix => (SamplerMode::TrainedPrefix, MaskSchedule::Exp),
        };
        SamplerConfig {
            mode,
            schedule,
            ..SamplerConfig::default()
        }
    }

    /// Whether the method runs the policy trained with training-time RTC.
    pub fn uses_trained_prefix_policy(self) -> bool {
        self == Method::TrainedPrefix
    }
}

impl From<Method> for &'static str {
    fn from(method: Method) -> Self {
        method.name()
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown method {name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
