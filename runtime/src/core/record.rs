//! What a run records: per-tick records, written by the controller into a wait-free ring and collected off the
//! controller thread, and the inference worker's record of each inference.

use serde::Serialize;

/// What the controller did at a policy tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TickKind {
    /// An action of the current chunk (or, when ensembling, the average of all chunks covering the tick).
    Executed,
    /// No chunk yet: the robot holds its measured position while the first (cold) inference runs.
    Warmup,
    /// Synchronous execution: the robot holds while the model infers.
    Paused,
    /// The chunk ran out before the next one arrived: the last action (or the safe action) is held.
    Starved,
    /// The robot state was stale (or not there yet): the chunk pauses and the last target is held.
    Held,
}

impl TickKind {
    /// Whether a tick of this kind has an action (the executor's): all but warm-up and held ticks, which hold
    /// the last target instead.
    pub fn carries_action(self) -> bool {
        !matches!(self, TickKind::Warmup | TickKind::Held)
    }
}

/// How the step |a_t - a_(t-1)| of a policy tick is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepClass {
    /// The first action of a newly adopted chunk, after an executed action of the previous one.
    Seam,
    /// Consecutive actions of the same chunk.
    Within,
    /// Anything else (holds, the first action).
    Other,
}

/// What happened at a policy tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PolicyTick {
    /// T: policy ticks so far, this one included.
    pub tick: u64,
    /// What the controller did.
    pub kind: TickKind,
    /// The request number of the chunk in use (0: none yet).
    pub chunk_seq: u64,
    /// The index of the executed action in that chunk (meaningful when `kind` is `Executed`).
    pub index: u32,
    /// A new chunk was adopted at this tick.
    pub swapped: bool,
    /// The observed delay of the adopted chunk: policy ticks consumed while it was inferred.
    pub observed_delay: u32,
    /// A request was issued at this tick (its number; 0: none).
    pub request_seq: u64,
    /// |a_t - a_(t-1)|, Euclidean over the action's joints.
    pub step: f32,
    /// How `step` is classified.
    pub step_class: StepClass,
}

impl PolicyTick {
    /// A policy tick of `kind` at policy tick `tick` in which nothing was executed, requested or adopted (yet).
    pub fn idle(tick: u64, kind: TickKind) -> Self {
        PolicyTick {
            tick,
            kind,
            chunk_seq: 0,
            index: 0,
            swapped: false,
            observed_delay: 0,
            request_seq: 0,
            step: 0.0,
            step_class: StepClass::Other,
        }
    }
}

/// The most action, command or observation values a tick record keeps (the policy's action dimension is at most
/// 64; a longer observation is kept in part).
pub const MAX_VALUES: usize = 64;

/// One controller tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TickRecord {
    /// Controller ticks before this one.
    pub controller_tick: u64,
    /// How late the tick woke after its deadline, in nanoseconds.
    pub lateness_ns: u64,
    /// Whole periods skipped before this tick.
    pub missed: u32,
    /// Present on policy ticks (every `decimation` controller ticks).
    pub policy: Option<PolicyTick>,
    /// The safety filter replaced a NaN/Inf target by a hold.
    pub safety_rejected: bool,
    /// The safety filter clamped the target.
    pub safety_clamped: bool,
    /// The sequence number of the state the plant read (0 for in-process plants).
    pub state_seq: u64,
    /// Monotonic time of the tick's wake-up, in nanoseconds (the clock's time base).
    pub time_ns: u64,
    /// The policy action in force at this tick (the first action_dim values).
    #[serde(skip)]
    pub action: [f32; MAX_VALUES],
    /// The command written to the plant (the first action_dim values, as f32).
    #[serde(skip)]
    pub command: [f32; MAX_VALUES],
    /// On policy ticks, the observation the controller read (its first `MAX_VALUES` values); zeros on other
    /// ticks.
    #[serde(skip)]
    pub observation: [f32; MAX_VALUES],
}

/// One inference, as the worker saw it.
#[derive(Debug, Clone, Serialize)]
pub struct InferenceRecord {
    /// The request number.
    pub seq: u64,
    /// The policy tick of the request, T_s.
    pub tick: u64,
    /// s: actions of the previous chunk executed at the request.
    pub executed: usize,
    /// d: the forecast delay used by the sampler.
    pub delay: usize,
    /// Wall-clock time of the inference, in microseconds.
    pub duration_us: u64,
    /// The failure, if any.
    pub error: Option<String>,
    /// The sampled chunk (H x action_dim, token-major), empty on failure.
    pub chunk: Vec<f32>,
    /// The observation it was sampled from.
    pub observation: Vec<f32>,
    /// The camera images it was sampled from (every camera, in the policy's order; empty without cameras).
    #[serde(skip)]
    pub images: Vec<u8>,
    /// The sequence number of the state message the images came with (0: none).
    pub image_seq: u64,
    /// The committed actions it continued (empty for the first chunk).
    pub committed: Vec<f32>,
}
