//! Deterministic simulated plants.
//!
//! [`PointMass`] is a force-controlled point mass (a 2-D double integrator with viscous damping) in a walled
//! box, with a disc obstacle between the start and the goal. It implements [`rtchunk_controllers::Plant`] so
//! the runtime drives it exactly as it drives a robot, one controller period per command.

mod point_mass;

pub use point_mass::{PointMass, PointMassReport};
