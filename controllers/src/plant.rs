//! The hardware interface: what the controller reads from and writes to.

use nalgebra::DVector;

/// The measured state of the robot's joints.
#[derive(Debug, Clone, PartialEq)]
pub struct RobotState {
    /// Joint positions.
    pub position: DVector<f64>,
    /// Joint velocities.
    pub velocity: DVector<f64>,
}

impl RobotState {
    /// A zero state of `dims` joints.
    pub fn zeros(dims: usize) -> Self {
        RobotState {
            position: DVector::zeros(dims),
            velocity: DVector::zeros(dims),
        }
    }
}

/// Whether the state a [`Plant::read`] returned may be acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fresh: execute the chunk.
    Fresh,
    /// Too old, or not there yet: pause the chunk and hold the last target.
    Stale,
    /// End the run (stop or emergency stop, or stale with `on_stale = "stop"`).
    Stop,
}

/// How one controller tick went, for a plant that reports the loop's health to the robot (e.g. in status
/// messages). Plain values, so reporting never allocates.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TickReport {
    /// How late the loop woke after this tick's deadline, nanoseconds.
    pub lateness_ns: u64,
    /// Periods skipped after an overrun.
    pub missed: u32,
    /// A new chunk was adopted at this tick, with this observed inference delay in policy ticks.
    pub swapped_with_delay: Option<u32>,
    /// The step |a_t - a_(t-1)| at the seam, when this tick swapped chunks while executing.
    pub seam_jump: Option<f32>,
    /// The chunk ran out before the next one arrived (starved).
    pub starved: bool,
}

/// A robot, real or simulated, as the controller thread sees it.
///
/// Real-time contract: `read` and `write` are called once per controller tick on the controller thread; they
/// must not allocate, lock, log or block. A real robot's implementation moves data through wait-free queues to
/// I/O threads.
pub trait Plant: Send {
    /// Number of joints (the length of a command).
    fn dims(&self) -> usize;
    /// Length of the observation vector given to the policy.
    fn observation_dim(&self) -> usize;
    /// Writes the newest measured state and the policy's observation vector.
    fn read(&mut self, state: &mut RobotState, observation: &mut [f32]);
    /// Applies one command for one controller period.
    fn write(&mut self, command: &DVector<f64>);
    /// Whether the state of the last `read` may be acted on (in-process plants always are).
    fn freshness(&self) -> Freshness {
        Freshness::Fresh
    }
    /// The sequence number of the state of the last `read` (0 where states are not numbered).
    fn state_seq(&self) -> u64 {
        0
    }
    /// Called once per controller tick after `write` with how the tick went (in-process plants ignore it).
    fn report(&mut self, tick: &TickReport) {
        let _ = tick;
    }
}
