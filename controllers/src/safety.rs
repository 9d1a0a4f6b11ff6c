//! The safety filter every command passes: it holds on NaN/Inf and clamps targets to position limits, to a
//! velocity limit and to a per-tick distance from the measured state.

use crate::RobotState;
use nalgebra::DVector;
use rtchunk_config::{Limit, SafetyConfig};

/// What the filter did to one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SafetyVerdict {
    /// The target held NaN or Inf and was replaced by the last safe target.
    pub rejected: bool,
    /// Some joint was clamped by a limit.
    pub clamped: bool,
}

/// How often each rule intervened since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SafetyCounters {
    /// Targets rejected for NaN or Inf (held).
    pub rejected_non_finite: u64,
    /// Targets clamped to the position limits.
    pub clamped_position: u64,
    /// Targets clamped by the velocity limit.
    pub clamped_velocity: u64,
    /// Targets clamped to the per-tick delta against the measured state.
    pub clamped_delta: u64,
}

/// Filters joint position targets. Real-time safe: `filter` does no allocation.
#[derive(Debug, Clone)]
pub struct SafetyFilter {
    position_min: Option<DVector<f64>>,
    position_max: Option<DVector<f64>>,
    /// Largest change of the target per controller tick (velocity limit times the period).
    max_step: Option<DVector<f64>>,
    max_delta: Option<DVector<f64>>,
    last_safe: DVector<f64>,
    counters: SafetyCounters,
}

fn expand(limit: &Option<Limit>, dims: usize, scale: f64) -> Option<DVector<f64>> {
    limit
        .as_ref()
        .map(|limit| DVector::from_vec(limit.expand(dims)) * scale)
}

impl SafetyFilter {
    /// A filter for `dims` joints from validated settings; `period` is the controller period in seconds.
    pub fn new(config: &SafetyConfig, dims: usize, period: f64) -> Self {
        SafetyFilter {
            position_min: expand(&config.position_min, dims, 1.0),
            position_max: expand(&config.position_max, dims, 1.0),
            max_step: expand(&config.max_velocity, dims, period),
            max_delta: expand(&config.max_delta, dims, 1.0),
            last_safe: DVector::zeros(dims),
            counters: SafetyCounters::default(),
        }
    }

    /// Makes the measured position the last safe target (the hold used before any valid target).
    pub fn reset(&mut self, measured: &RobotState) {
        self.last_safe.copy_from(&measured.position);
    }

    /// The interventions so far.
    pub fn counters(&self) -> SafetyCounters {
        self.counters
    }

    /// Filters `target` in place against the `measured` state.
    pub fn filter(&mut self, target: &mut DVector<f64>, measured: &RobotState) -> SafetyVerdict {
        if target.iter().any(|v| !v.is_finite()) {
            target.copy_from(&self.last_safe);
            self.counters.rejected_non_finite += 1;
            return SafetyVerdict {
                rejected: true,
                clamped: false,
            };
        }
        let mut verdict = SafetyVerdict::default();
        if clamp_between(
            target,
            self.position_min.as_ref(),
            self.position_max.as_ref(),
            None,
        ) {
            self.counters.clamped_position += 1;
            verdict.clamped = true;
        }
        if let Some(step) = &self.max_step
            && clamp_around(target, &self.last_safe, step)
        {
            self.counters.clamped_velocity += 1;
            verdict.clamped = true;
        }
        if let Some(delta) = &self.max_delta
            && clamp_around(target, &measured.position, delta)
        {
            self.counters.clamped_delta += 1;
            verdict.clamped = true;
        }
        self.last_safe.copy_from(target);
        verdict
    }
}

/// Clamps each joint into `[centre - radius, centre + radius]`; returns whether anything changed.
fn clamp_around(target: &mut DVector<f64>, centre: &DVector<f64>, radius: &DVector<f64>) -> bool {
    clamp_between(target, Some(centre), Some(centre), Some(radius))
}

/// Clamps each joint into `[low - pad, high + pad]` (a missing bound is open); returns whether anything changed.
fn clamp_between(
    target: &mut DVector<f64>,
    low: Option<&DVector<f64>>,
    high: Option<&DVector<f64>>,
    pad: Option<&DVector<f64>>,
) -> bool {
    let mut changed = false;
    for i in 0..target.len() {
        let pad = pad.map_or(0.0, |p| p[i]);
        let lower = low.map_or(f64::NEG_INFINITY, |l| l[i] - pad);
        let upper = high.map_or(f64::INFINITY, |h| h[i] + pad);
        let clamped = target[i].clamp(lower, upper);
        changed |= clamped != target[i];
        target[i] = clamped;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> SafetyFilter {
        let config = SafetyConfig {
            position_min: Some(Limit::All(-1.0)),
            position_max: Some(Limit::Each(vec![1.0, 0.5])),
            max_velocity: Some(Limit::All(10.0)),
            max_delta: Some(Limit::All(0.3)),
        };
        SafetyFilter::new(&config, 2, 0.01)
    }

    #[test]
    fn non_finite_targets_are_replaced_by_the_last_safe_target() {
        let mut filter = filter();
        let state = RobotState::zeros(2);
        let mut target = DVector::from_vec(vec![0.05, 0.05]);
        assert_eq!(filter.filter(&mut target, &state), SafetyVerdict::default());
        let mut bad = DVector::from_vec(vec![f64::NAN, 0.0]);
        assert!(filter.filter(&mut bad, &state).rejected);
        assert_eq!(bad, DVector::from_vec(vec![0.05, 0.05]));
        let mut infinite = DVector::from_vec(vec![0.0, f64::INFINITY]);
        assert!(filter.filter(&mut infinite, &state).rejected);
        assert_eq!(filter.counters().rejected_non_finite, 2);
    }

    #[test]
    fn position_velocity_and_delta_limits_clamp() {
        let mut filter = filter();
        let mut state = RobotState::zeros(2);
        // Velocity limit: at most 10 * 0.01 = 0.1 per tick from the last safe target (0).
        let mut target = DVector::from_vec(vec![0.25, -0.05]);
        assert!(filter.filter(&mut target, &state).clamped);
        assert_eq!(target, DVector::from_vec(vec![0.1, -0.05]));
        // Position limit on joint 1, then the delta clamp against the measured state.
        state.position = DVector::from_vec(vec![0.95, 0.45]);
        filter.reset(&state);
        let mut target = DVector::from_vec(vec![0.99, 0.9]);
        filter.filter(&mut target, &state);
        assert_eq!(target, DVector::from_vec(vec![0.99, 0.5]));
        state.position = DVector::from_vec(vec![0.0, 0.0]);
        filter.reset(&DVector::from_vec(vec![0.5, 0.0]).into_state());
        let mut target = DVector::from_vec(vec![0.55, 0.0]);
        filter.filter(&mut target, &state);
        assert_eq!(target, DVector::from_vec(vec![0.3, 0.0]));
        let counters = filter.counters();
        assert_eq!(
            (
                counters.clamped_position,
                counters.clamped_velocity,
                counters.clamped_delta
            ),
            (1, 1, 1)
        );
    }

    trait IntoState {
        fn into_state(self) -> RobotState;
    }

    impl IntoState for DVector<f64> {
        fn into_state(self) -> RobotState {
            let velocity = DVector::zeros(self.len());
            RobotState {
                position: self,
                velocity,
            }
        }
    }
}
