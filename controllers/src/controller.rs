//! Controllers: from a (filtered) target to the command sent to the plant.

use crate::RobotState;
use nalgebra::DVector;

/// Turns the target of the current tick into a command.
///
/// Real-time contract: `update` runs on the controller thread every tick; it must not allocate, lock, log or
/// block.
pub trait Controller: Send {
    /// Writes the command for `target` given the measured `state`.
    fn update(&mut self, target: &DVector<f64>, state: &RobotState, command: &mut DVector<f64>);
}

/// The target is the command (position-controlled robots, or policies that output efforts).
#[derive(Debug, Clone, Default)]
pub struct Passthrough;

impl Controller for Passthrough {
    fn update(&mut self, target: &DVector<f64>, _state: &RobotState, command: &mut DVector<f64>) {
        command.copy_from(target);
    }
}

/// Joint PD for torque- or force-controlled plants: `kp (target - q) - kd q_dot`, clamped to `max_effort`.
#[derive(Debug, Clone)]
pub struct Pd {
    kp: DVector<f64>,
    kd: DVector<f64>,
    max_effort: DVector<f64>,
}

impl Pd {
    /// A PD controller with per-joint gains and effort limits.
    pub fn new(kp: DVector<f64>, kd: DVector<f64>, max_effort: DVector<f64>) -> Self {
        Pd { kp, kd, max_effort }
    }
}

impl Controller for Pd {
    fn update(&mut self, target: &DVector<f64>, state: &RobotState, command: &mut DVector<f64>) {
        for i in 0..command.len() {
            let effort =
                self.kp[i] * (target[i] - state.position[i]) - self.kd[i] * state.velocity[i];
            command[i] = effort.clamp(-self.max_effort[i], self.max_effort[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pd_pushes_towards_the_target_and_respects_the_effort_limit() {
        let mut pd = Pd::new(
            DVector::from_element(2, 10.0),
            DVector::from_element(2, 2.0),
            DVector::from_element(2, 5.0),
        );
        let mut state = RobotState::zeros(2);
        state.velocity[1] = 1.0;
        let mut command = DVector::zeros(2);
        pd.update(&DVector::from_vec(vec![0.3, 0.0]), &state, &mut command);
        assert_eq!(command, DVector::from_vec(vec![3.0, -2.0]));
        pd.update(&DVector::from_vec(vec![10.0, -10.0]), &state, &mut command);
        assert_eq!(command, DVector::from_vec(vec![5.0, -5.0]));
    }
}
