//! Deterministic simulated plants and the delay benchmark's tasks.
//!
//! [`PointMass`] is a force-controlled point mass (a 2-D double integrator with viscous damping) in a walled
//! box, with a disc obstacle between the start and the goal. It implements [`rtchunk_controllers::Plant`] so
//! the runtime drives it exactly as it drives a robot, one controller period per command.
//!
//! The benchmark's tasks ([`TaskKind`]) follow the RTC paper's Kinetix recipe: force or torque control at 30 Hz,
//! Gaussian action noise (sigma 0.1) on every executed action, binary success, 256 steps at most, and for each a
//! scripted expert that draws one of several strategies per episode. [`Env`] runs one episode deterministically
//! from a seed, [`EnvBatch`] many at once; [`collect`] writes expert demonstrations in the `.npz` dataset format
//! the training toolchain reads, or as a LeRobotDataset v3.0 ([`lerobot`]).

mod canvas;
mod collect;
mod dataset;
mod env;
mod expert;
pub mod lerobot;
mod point_mass;
mod task;
mod tasks;

pub use canvas::{Canvas, Rgb, palette};
pub use collect::{CollectReport, collect, episode_staleness};
pub use dataset::{Dataset, DatasetError};
pub use env::{Env, EnvBatch};
pub use expert::{Expert, expert_seed, play_expert_episode, stale_success_rate};
pub use point_mass::{PointMass, PointMassReport};
pub use task::{ACTION_NOISE, CONTROL_PERIOD, MAX_STEPS, SUBSTEPS, Status, Task, TaskSpec};
pub use tasks::TaskKind;
