//! How a replayed quantity differs from the recorded one, and why a replay could not run: shared by the replay
//! of the schedule, of the commands and of the simulated task.

use crate::recording::check::LogInconsistency;
use serde::Serialize;

/// The largest difference found in one quantity, and where it first appeared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Divergence {
    /// Values compared.
    pub compared: u64,
    /// Items (chunks or ticks) that differ at all.
    pub differing: u64,
    /// The largest absolute difference.
    pub max_abs: f64,
    /// The first item that differs (request number or controller tick).
    pub first: Option<u64>,
}

impl Divergence {
    /// Compares one item's values bit for bit.
    pub(crate) fn compare(&mut self, item: u64, replayed: &[f32], recorded: &[f32]) {
        let mut differs = false;
        for (a, b) in replayed.iter().zip(recorded) {
            if a.to_bits() != b.to_bits() {
                differs = true;
                self.max_abs = self.max_abs.max((f64::from(*a) - f64::from(*b)).abs());
            }
        }
        self.count(item, replayed.len().min(recorded.len()) as u64, differs);
    }

    /// Counts one item of `values` compared values that differ or not.
    pub(crate) fn count(&mut self, item: u64, values: u64, differs: bool) {
        self.compared += values;
        if differs {
            self.differing += 1;
            self.first.get_or_insert(item);
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The policy of the log could not be loaded.
    #[error("loading the recorded policy: {0}")]
    Bundle(#[from] rtchunk_policy::onnx::BundleError),
    /// The policy failed on a recorded input.
    #[error("re-inferring request {seq}: {message}")]
    Inference {
        /// The request.
        seq: u64,
        /// What failed.
        message: String,
    },
    /// The log contradicts itself.
    #[error("the log is inconsistent: {0}")]
    Inconsistent(#[from] LogInconsistency),
    /// The simulator's report does not fit the log.
    #[error("the simulator's report: {0}")]
    Simulator(String),
    /// The log refers to a chunk it does not hold.
    #[error("controller tick {tick} executes chunk {seq}, which the log does not hold")]
    MissingChunk {
        /// The tick.
        tick: u64,
        /// The chunk's request number.
        seq: u64,
    },
}
