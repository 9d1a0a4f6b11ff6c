//! The task interface: what every benchmark task implements, and the timing all of them share.

use crate::canvas::Canvas;
use crate::expert::Expert;
use rtchunk_policy::NormalRng;

/// Control period of every task: 30 Hz, as in the RTC paper's Kinetix benchmark.
pub const CONTROL_PERIOD: f64 = 1.0 / 30.0;
/// Physics substeps per control step (dt = 1/60 s, frame skip 2).
pub const SUBSTEPS: usize = 2;
/// Standard deviation of the Gaussian noise added to every executed action (normalised action units).
pub const ACTION_NOISE: f64 = 0.1;
/// Control steps before an episode times out (8.5 s).
pub const MAX_STEPS: u32 = 256;

/// How an episode stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Still going.
    #[default]
    Running,
    /// The goal was reached.
    Success,
    /// A failure condition ended it (a collision, a fall, a miss, leaving the arena, a non-finite action).
    Failure,
    /// [`MAX_STEPS`] passed without success or failure.
    Timeout,
}

impl Status {
    /// Whether the episode has ended.
    pub fn is_done(self) -> bool {
        self != Status::Running
    }
}

/// The fixed description of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// Name used on the command line.
    pub name: &'static str,
    /// One line saying what the task is.
    pub summary: &'static str,
    /// Names of the observation vector's entries.
    pub observation: &'static [&'static str],
    /// Names of the action vector's entries.
    pub action: &'static [&'static str],
    /// Lowest value of each action entry (executed actions are clipped to it, after the noise).
    pub action_low: &'static [f32],
    /// Highest value of each action entry.
    pub action_high: &'static [f32],
}

impl TaskSpec {
    /// Length of the observation vector.
    pub fn observation_dim(&self) -> usize {
        self.observation.len()
    }

    /// Length of the action vector.
    pub fn action_dim(&self) -> usize {
        self.action.len()
    }
}

/// The dynamics of one task. [`crate::Env`] adds what all tasks share (action noise, clipping, substeps,
/// timeout), so a task only integrates its physics and judges its state.
pub trait Task: Send {
    /// The task's fixed description.
    fn spec(&self) -> &'static TaskSpec;
    /// Puts the task in a fresh initial state drawn from `rng`.
    fn reset(&mut self, rng: &mut NormalRng);
    /// Writes the observation (`spec().observation_dim()` values).
    fn observe(&self, out: &mut [f32]);
    /// Integrates one physics substep of `dt` seconds under the executed `action` and says how the episode stands.
    fn advance(&mut self, action: &[f64], dt: f64) -> Status;
    /// Draws the current state.
    fn draw(&self, canvas: &mut Canvas);
    /// A scripted expert for this task.
    fn expert(&self) -> Box<dyn Expert>;
}
