//! The safety filter every command passes: it holds on NaN/Inf and keeps targets inside the position limits,
//! a velocity limit and a per-tick distance from the measured state.
//!
//! Where the rules conflict, they rank (highest first):
//! 1. **position limits** are hard: every output lies within them;
//! 2. **velocity limit**: every output lies within `max_velocity * period` of the previous output (which itself
//!    lies within the position limits, so rules 1 and 2 can always be met together);
//! 3. **per-tick delta** (`max_delta` around the measured position): met whenever it can be met together with
//!    rules 1 and 2. When it cannot (the robot is farther from the allowed region than `max_delta`, or its
//!    measured position is not finite), the output is the point of the allowed region nearest the measured
//!    position, and the tick is counted in [`SafetyCounters::conflicts`].

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

/// How often each rule intervened since start (each counts targets, not joints).
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
    /// Targets for which the per-tick delta could not be met without breaking a higher rule (see the module
    /// documentation); the higher rules won.
    pub conflicts: u64,
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

fn bound(limit: Option<&DVector<f64>>, joint: usize, open: f64) -> f64 {
    limit.map_or(open, |values| values[joint])
}

/// Which rules moved one joint.
#[derive(Default)]
struct JointOutcome {
    position: bool,
    velocity: bool,
    delta: bool,
    conflict: bool,
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

    /// Makes the measured position, clamped into the position limits, the last safe target (the hold used
    /// before any valid target). A joint whose measured position is not finite starts at its limits' middle
    /// (or 0 where it has no limits).
    pub fn reset(&mut self, measured: &RobotState) {
        for joint in 0..self.last_safe.len() {
            let low = bound(self.position_min.as_ref(), joint, f64::NEG_INFINITY);
            let high = bound(self.position_max.as_ref(), joint, f64::INFINITY);
            let position = measured.position[joint];
            self.last_safe[joint] = if position.is_finite() {
                position.max(low).min(high)
            } else if low.is_finite() && high.is_finite() {
                0.5 * (low + high)
            } else {
                0.0f64.max(low).min(high)
            };
        }
    }

    /// The last target the filter let through (what a hold holds).
    pub fn last_safe(&self) -> &DVector<f64> {
        &self.last_safe
    }

    /// The interventions so far.
    pub fn counters(&self) -> SafetyCounters {
        self.counters
    }

    /// Filters `target` in place against the `measured` state, ranking the rules as the module documentation
    /// says.
    pub fn filter(&mut self, target: &mut DVector<f64>, measured: &RobotState) -> SafetyVerdict {
        if target.iter().any(|v| !v.is_finite()) {
            target.copy_from(&self.last_safe);
            self.counters.rejected_non_finite += 1;
            return SafetyVerdict {
                rejected: true,
                clamped: false,
            };
        }
        let mut any = JointOutcome::default();
        for joint in 0..target.len() {
            let outcome = self.filter_joint(joint, &mut target[joint], measured.position[joint]);
            any.position |= outcome.position;
            any.velocity |= outcome.velocity;
            any.delta |= outcome.delta;
            any.conflict |= outcome.conflict;
        }
        let counters = &mut self.counters;
        counters.clamped_position += u64::from(any.position);
        counters.clamped_velocity += u64::from(any.velocity);
        counters.clamped_delta += u64::from(any.delta);
        counters.conflicts += u64::from(any.conflict);
        self.last_safe.copy_from(target);
        SafetyVerdict {
            rejected: false,
            clamped: any.position || any.velocity || any.delta,
        }
    }

    /// One joint: position limits, then the velocity step around the last safe target, then the delta around
    /// the measured position inside what the first two allow.
    fn filter_joint(&self, joint: usize, value: &mut f64, measured: f64) -> JointOutcome {
        let mut outcome = JointOutcome::default();
        let step = bound(self.max_step.as_ref(), joint, f64::INFINITY);
        let low = bound(self.position_min.as_ref(), joint, f64::NEG_INFINITY);
        let high = bound(self.position_max.as_ref(), joint, f64::INFINITY);
        let last = self.last_safe[joint].max(low).min(high);
        let within_limits = value.max(low).min(high);
        outcome.position = within_limits != *value;
        // `last` lies within the limits, so this interval is never empty.
        let (low, high) = (low.max(last - step), high.min(last + step));
        let allowed = within_limits.max(low).min(high);
        outcome.velocity = allowed != within_limits;
        let mut filtered = allowed;
        if let Some(delta) = &self.max_delta {
            let (near_low, near_high) = (measured - delta[joint], measured + delta[joint]);
            if !measured.is_finite() || near_low > high || near_high < low {
                outcome.conflict = true;
                if measured.is_finite() {
                    filtered = measured.max(low).min(high);
                }
            } else {
                filtered = allowed.max(near_low).min(near_high);
            }
            outcome.delta = filtered != allowed;
        }
        *value = filtered;
        outcome
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn state(position: &[f64]) -> RobotState {
        RobotState {
            position: DVector::from_column_slice(position),
            velocity: DVector::zeros(position.len()),
        }
    }

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
    fn each_rule_clamps_when_it_alone_is_broken() {
        let mut filter = filter();
        // Velocity: at most 10 * 0.01 = 0.1 per tick from the last safe target (0).
        let mut target = DVector::from_vec(vec![0.25, -0.05]);
        assert!(filter.filter(&mut target, &state(&[0.0, 0.0])).clamped);
        assert_eq!(target, DVector::from_vec(vec![0.1, -0.05]));
        // Position limit on joint 1 (0.5), the step from the last safe target 0.45 being small.
        filter.reset(&state(&[0.95, 0.45]));
        let mut target = DVector::from_vec(vec![0.99, 0.52]);
        filter.filter(&mut target, &state(&[0.95, 0.45]));
        assert_eq!(target, DVector::from_vec(vec![0.99, 0.5]));
        // Delta: at most 0.3 from the measured position 0.2, inside the velocity step around 0.5.
        filter.reset(&state(&[0.5, 0.0]));
        let mut target = DVector::from_vec(vec![0.55, 0.0]);
        filter.filter(&mut target, &state(&[0.2, 0.0]));
        assert_eq!(target, DVector::from_vec(vec![0.5, 0.0]));
        let counters = filter.counters();
        assert_eq!(
            (
                counters.clamped_position,
                counters.clamped_velocity,
                counters.clamped_delta,
                counters.conflicts
            ),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn the_delta_rule_never_undoes_the_position_and_velocity_limits() {
        // Limits +-0.5, 0.1 a tick, max_delta 0.05; last safe 0, measured 1.0, target 0: the delta rule asks
        // for [0.95, 1.05], which the limits forbid, so the output moves the allowed 0.1 towards the robot.
        let config = SafetyConfig {
            position_min: Some(Limit::All(-0.5)),
            position_max: Some(Limit::All(0.5)),
            max_velocity: Some(Limit::All(10.0)),
            max_delta: Some(Limit::All(0.05)),
        };
        let mut filter = SafetyFilter::new(&config, 1, 0.01);
        filter.reset(&state(&[0.0]));
        let mut target = DVector::from_vec(vec![0.0]);
        filter.filter(&mut target, &state(&[1.0]));
        assert!((target[0] - 0.1).abs() < 1e-12, "{}", target[0]);
        assert_eq!(filter.counters().conflicts, 1);
        // A robot measured outside the limits: the hold starts inside them.
        filter.reset(&state(&[3.0]));
        assert_eq!(filter.last_safe()[0], 0.5);
    }

    /// A small deterministic generator for the property test.
    struct Draws(u64);

    impl Draws {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn between(&mut self, low: f64, high: f64) -> f64 {
            low + (high - low) * self.next()
        }
        /// Mostly ordinary values, sometimes extreme or not finite.
        fn wild(&mut self, scale: f64) -> f64 {
            match (self.next() * 20.0) as u32 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => 1e300,
                4 => -1e300,
                _ => self.between(-scale, scale),
            }
        }
        fn limit(&mut self, dims: usize, low: f64, high: f64) -> Option<Limit> {
            match (self.next() * 3.0) as u32 {
                0 => None,
                1 => Some(Limit::All(self.between(low, high))),
                _ => Some(Limit::Each(
                    (0..dims).map(|_| self.between(low, high)).collect(),
                )),
            }
        }
    }

    #[test]
    fn every_output_is_finite_and_within_every_hard_limit() {
        let mut draws = Draws(0x5eed_1234_abcd_0001);
        for case in 0..2000 {
            let dims = 1 + (draws.next() * 4.0) as usize;
            let centre = draws.between(-2.0, 2.0);
            let width = draws.between(0.01, 3.0);
            let config = SafetyConfig {
                position_min: (draws.next() < 0.8).then_some(Limit::All(centre - width)),
                position_max: (draws.next() < 0.8).then_some(Limit::All(centre + width)),
                max_velocity: draws.limit(dims, 0.01, 20.0),
                max_delta: draws.limit(dims, 0.001, 1.0),
            };
            let period = draws.between(0.001, 0.05);
            let mut filter = SafetyFilter::new(&config, dims, period);
            let (low, high) = (
                config.position_min.as_ref().map(|l| l.expand(dims)),
                config.position_max.as_ref().map(|l| l.expand(dims)),
            );
            let step = config.max_velocity.as_ref().map(|l| {
                l.expand(dims)
                    .iter()
                    .map(|v| v * period)
                    .collect::<Vec<_>>()
            });
            let start: Vec<f64> = (0..dims).map(|_| draws.wild(5.0)).collect();
            filter.reset(&state(&start));
            let mut previous = filter.last_safe().clone();
            for _ in 0..50 {
                let measured: Vec<f64> = (0..dims).map(|_| draws.wild(5.0)).collect();
                let mut target = DVector::from_iterator(dims, (0..dims).map(|_| draws.wild(5.0)));
                filter.filter(&mut target, &state(&measured));
                for joint in 0..dims {
                    let value = target[joint];
                    let context = format!("case {case} joint {joint}: {value} after {previous}");
                    assert!(value.is_finite(), "{context}");
                    if let Some(low) = &low {
                        assert!(value >= low[joint], "{context} below {}", low[joint]);
                    }
                    if let Some(high) = &high {
                        assert!(value <= high[joint], "{context} above {}", high[joint]);
                    }
                    if let Some(step) = &step {
                        let moved = (value - previous[joint]).abs();
                        assert!(
                            moved <= step[joint] * (1.0 + 1e-12) + 1e-12,
                            "{context} moved {moved}"
                        );
                    }
                }
                previous.copy_from(&target);
            }
        }
    }
}
