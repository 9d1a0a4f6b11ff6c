//! From the action of the current tick to a robot command.
//!
//! [`ActionPipeline`] chains, per controller tick: the [`Interpolator`] (when the controller runs faster than
//! the policy), the [`SafetyFilter`] (every command passes it) and a [`Controller`] ([`Passthrough`] or joint
//! [`Pd`]). The [`Plant`] trait is the hardware interface the runtime reads state from and writes commands to.
//!
//! Real-time contract: every method called per tick (`Plant::read`, `Plant::write`, `Controller::update`,
//! `SafetyFilter::filter`, `Interpolator::sample`, `ActionPipeline::command`) does no allocation, locking,
//! logging or I/O.

mod controller;
mod interpolate;
mod pipeline;
mod plant;
mod safety;

pub use controller::{Controller, Passthrough, Pd};
pub use interpolate::Interpolator;
pub use pipeline::ActionPipeline;
pub use plant::{Freshness, Plant, RobotState, TickReport};
pub use safety::{SafetyCounters, SafetyFilter, SafetyVerdict};
