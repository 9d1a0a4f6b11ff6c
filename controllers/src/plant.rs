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
}
