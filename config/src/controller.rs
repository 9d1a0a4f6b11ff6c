//! `[controller]` and `[safety]`: what turns the action of the current tick into a command, and the filter
//! every command passes.

use serde::{Deserialize, Serialize};

/// The controller between the policy's actions and the plant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerKind {
    /// The action is the command.
    Passthrough,
    /// The action is a joint position target tracked by PD into an effort (torque or force).
    #[default]
    Pd,
}

/// A limit given once for every joint, or once per joint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Limit {
    /// The same value for every joint.
    All(f64),
    /// One value per joint.
    Each(Vec<f64>),
}

impl Limit {
    /// The value for every joint of a `dim`-joint robot (`Each` must have length `dim`).
    pub fn expand(&self, dim: usize) -> Vec<f64> {
        match self {
            Limit::All(value) => vec![*value; dim],
            Limit::Each(values) => values.clone(),
        }
    }
}

/// Settings of the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Which controller.
    pub kind: ControllerKind,
    /// Proportional gain of `pd`.
    pub kp: Limit,
    /// Derivative gain of `pd`.
    pub kd: Limit,
    /// Largest effort `pd` commands, per joint.
    pub max_effort: Limit,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            kind: ControllerKind::default(),
            kp: Limit::All(80.0),
            kd: Limit::All(16.0),
            max_effort: Limit::All(40.0),
        }
    }
}

/// Settings of the safety filter; unset limits are not enforced. NaN or Inf is always rejected with a hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Lowest joint position target.
    pub position_min: Option<Limit>,
    /// Highest joint position target.
    pub position_max: Option<Limit>,
    /// Largest rate of change of the target, per second.
    pub max_velocity: Option<Limit>,
    /// Largest distance between the target and the measured position, per controller tick.
    pub max_delta: Option<Limit>,
}
