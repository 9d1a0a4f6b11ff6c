//! Linear interpolation between policy actions for a controller loop faster than the policy.

use nalgebra::DVector;

/// Spreads each policy action over `decimation` controller ticks, moving linearly from the previous action
/// (e.g. policy actions at 50 Hz, controller at 500 Hz: decimation 10). With decimation 1 it passes actions
/// through unchanged.
#[derive(Debug, Clone)]
pub struct Interpolator {
    decimation: usize,
    from: DVector<f64>,
    to: DVector<f64>,
    started: bool,
}

impl Interpolator {
    /// An interpolator for `dims` joints over `decimation` controller ticks per action.
    pub fn new(dims: usize, decimation: usize) -> Self {
        Interpolator {
            decimation: decimation.max(1),
            from: DVector::zeros(dims),
            to: DVector::zeros(dims),
            started: false,
        }
    }

    /// Starts the segment towards a new policy action. The first action is reached at once.
    pub fn set_action(&mut self, action: &[f64]) {
        if self.started {
            self.from.copy_from(&self.to);
        } else {
            self.from.copy_from_slice(action);
            self.started = true;
        }
        self.to.copy_from_slice(action);
    }

    /// Holds `target` from now on: every sub-tick samples it until the next [`Interpolator::set_action`], which
    /// ramps from it. Without this, sampling again after the last action would replay that action's ramp.
    pub fn hold(&mut self, target: &DVector<f64>) {
        self.from.copy_from(target);
        self.to.copy_from(target);
        self.started = true;
    }

    /// Writes the target of sub-tick `sub` (0-based) of the current segment; the last sub-tick is the action.
    pub fn sample(&self, sub: usize, out: &mut DVector<f64>) {
        let fraction = ((sub + 1) as f64 / self.decimation as f64).min(1.0);
        for i in 0..out.len() {
            out[i] = self.from[i] + fraction * (self.to[i] - self.from[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_from_the_previous_action() {
        let mut interpolator = Interpolator::new(1, 4);
        let mut out = DVector::zeros(1);
        interpolator.set_action(&[1.0]);
        interpolator.sample(0, &mut out);
        assert_eq!(out[0], 1.0);
        interpolator.set_action(&[3.0]);
        let ramp: Vec<f64> = (0..4)
            .map(|sub| {
                interpolator.sample(sub, &mut out);
                out[0]
            })
            .collect();
        assert_eq!(ramp, [1.5, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn a_hold_samples_one_target_and_the_next_action_ramps_from_it() {
        let mut interpolator = Interpolator::new(1, 4);
        let mut out = DVector::zeros(1);
        interpolator.set_action(&[0.0]);
        interpolator.set_action(&[4.0]);
        interpolator.sample(1, &mut out);
        interpolator.hold(&out.clone());
        for sub in [2, 3, 0, 1, 2, 3] {
            interpolator.sample(sub, &mut out);
            assert_eq!(out[0], 2.0);
        }
        interpolator.set_action(&[6.0]);
        interpolator.sample(0, &mut out);
        assert_eq!(out[0], 3.0);
    }
}
