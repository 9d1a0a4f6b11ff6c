//! The rtchunk runtime: a hard-timed controller thread that executes one action per period and never waits
//! for the model, and an async inference worker that computes the next chunk with Real-Time Chunking while the
//! current one runs (Algorithm 1 of Black, Galliker and Levine, 2025).
//!
//! - [`controller`]: the controller loop (real-time safe), driven by a [`clock::Clock`].
//! - [`executor`]: Algorithm 1's controller side: which action runs at each tick, when to request and adopt.
//! - [`worker`]: the tokio inference worker.
//! - [`clock`]: the real clock (absolute deadlines, sleep then spin) and the simulated clock (virtual ticks).
//! - [`session`]: wires a run together; [`metrics`]: what a run measured.
//! - [`io`]: zenoh I/O to a robot or to the simulator node.

pub mod bench;
pub mod benchmark;
pub mod clock;
pub mod controller;
pub mod delay;
pub mod demo;
pub mod deploy;
pub mod doorbell;
pub mod executor;
pub mod io;
pub mod latency;
pub mod messages;
pub mod metrics;
pub mod plot;
pub mod policies;
pub mod progress;
pub mod record;
pub mod recording;
pub mod rt_setup;
pub mod session;
pub mod shutdown;
pub mod sim_commands;
pub mod worker;

pub use controller::LoopHooks;
pub use metrics::RunMetrics;
pub use session::{ClockChoice, RunError, RunOptions, RunOutcome, run, run_with_clock};
