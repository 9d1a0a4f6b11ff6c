//! `[scheduler]`: when inference runs and how the controller switches chunks (Algorithm 1).

use serde::{Deserialize, Serialize};

/// How chunks are executed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Execution {
    /// Algorithm 1: infer while executing, switch to the new chunk at the observed delay.
    #[default]
    Async,
    /// The robot pauses (holds) while the model infers, then executes the new chunk from its start.
    Sync,
    /// Temporal ensembling: the executed action is the average of all chunks that cover the tick.
    Ensemble,
}

impl Execution {
    /// The name used in configuration files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Execution::Async => "async",
            Execution::Sync => "sync",
            Execution::Ensemble => "ensemble",
        }
    }
}

/// What the controller commands when the chunk runs out before a new one arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Starvation {
    /// Repeat the last action of the chunk.
    #[default]
    HoldLast,
    /// Command `scheduler.safe_action`.
    SafeAction,
}

/// Settings of the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Chunk execution.
    pub execution: Execution,
    /// Minimum execution horizon s_min: actions executed from a chunk before the next inference starts.
    /// Unset means H / 2.
    pub execution_horizon: Option<usize>,
    /// Delay buffer size b: the inference delay d is the maximum of the last b observed delays.
    pub delay_buffer: usize,
    /// Initial delay estimate d_init, in policy ticks.
    pub initial_delay: usize,
    /// Behaviour on starvation.
    pub on_starvation: Starvation,
    /// The action commanded on starvation with `on_starvation = "safe-action"`.
    pub safe_action: Option<Vec<f64>>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            execution: Execution::default(),
            execution_horizon: None,
            delay_buffer: 10,
            initial_delay: 0,
            on_starvation: Starvation::default(),
            safe_action: None,
        }
    }
}

impl SchedulerConfig {
    /// s_min for a horizon H: the configured value, or H / 2.
    pub fn resolved_execution_horizon(&self, horizon: usize) -> usize {
        self.execution_horizon.unwrap_or((horizon / 2).max(1))
    }
}
