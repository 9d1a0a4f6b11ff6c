//! The per-tick chain from a policy action to a plant command.

use crate::{Controller, Interpolator, Passthrough, Pd, RobotState, SafetyFilter, SafetyVerdict};
use nalgebra::DVector;
use rtchunk_config::{Config, ControllerKind};

/// Interpolator, then safety filter, then controller. Buffers are sized at construction; per-tick calls do not
/// allocate.
pub struct ActionPipeline {
    interpolator: Interpolator,
    safety: SafetyFilter,
    controller: Box<dyn Controller>,
    action: DVector<f64>,
    target: DVector<f64>,
    command: DVector<f64>,
}

impl ActionPipeline {
    /// A pipeline for `dims` joints.
    pub fn new(
        controller: Box<dyn Controller>,
        safety: SafetyFilter,
        interpolator: Interpolator,
        dims: usize,
    ) -> Self {
        ActionPipeline {
            interpolator,
            safety,
            controller,
            action: DVector::zeros(dims),
            target: DVector::zeros(dims),
            command: DVector::zeros(dims),
        }
    }

    /// The pipeline that `config` describes.
    pub fn from_config(config: &Config) -> Self {
        let dims = config.policy.action_dim;
        let period = 1.0 / config.clock.controller_rate();
        let controller: Box<dyn Controller> = match config.controller.kind {
            ControllerKind::Passthrough => Box::new(Passthrough),
            ControllerKind::Pd => Box::new(Pd::new(
                DVector::from_vec(config.controller.kp.expand(dims)),
                DVector::from_vec(config.controller.kd.expand(dims)),
                DVector::from_vec(config.controller.max_effort.expand(dims)),
            )),
        };
        ActionPipeline::new(
            controller,
            SafetyFilter::new(&config.safety, dims, period),
            Interpolator::new(dims, config.clock.decimation()),
            dims,
        )
    }

    /// Starts holding the measured position (clamped into the position limits): the target before the first
    /// action.
    pub fn reset(&mut self, state: &RobotState) {
        self.safety.reset(state);
        self.hold();
    }

    /// Takes the policy action of a new policy tick.
    pub fn set_action(&mut self, action: &[f32]) {
        for (slot, value) in self.action.iter_mut().zip(action) {
            *slot = *value as f64;
        }
        self.interpolator.set_action(self.action.as_slice());
    }

    /// Holds one target, the last one the safety filter let through, until the next [`ActionPipeline::set_action`]
    /// (for ticks with no new action: stale state, warm-up).
    pub fn hold(&mut self) {
        self.interpolator.hold(self.safety.last_safe());
    }

    /// The command for controller sub-tick `sub` of the current policy tick, with the safety verdict.
    pub fn command(&mut self, sub: usize, state: &RobotState) -> (&DVector<f64>, SafetyVerdict) {
        self.interpolator.sample(sub, &mut self.target);
        let verdict = self.safety.filter(&mut self.target, state);
        self.controller
            .update(&self.target, state, &mut self.command);
        (&self.command, verdict)
    }

    /// The safety filter's interventions so far.
    pub fn safety(&self) -> &SafetyFilter {
        &self.safety
    }
}
