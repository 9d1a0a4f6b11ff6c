//! The rtchunk runtime: a hard-timed controller thread that executes one action per period and never waits
//! for the model, and an async inference worker that computes the next chunk with Real-Time Chunking while the
//! current one runs (Algorithm 1 of Black, Galliker and Levine, 2025).
//!
//! Four layers, each using only those before it (a test reads the module graph and holds them to it):
//!
//! - [`core`]: the real-time core (controller, executor, clocks, worker, the wiring of a run, metrics);
//! - [`io`]: zenoh I/O to a robot, a policy server or the simulator node;
//! - [`recording`]: the session log, and replaying it;
//! - [`studies`]: benchmarks and studies (loop, policy, transport, delay, latency, the demo) and their figures.
//!
//! The `rtchunk` binary's `cli` modules parse the command line and call into them, one module per command.

pub mod core;
pub mod io;
pub mod recording;
pub mod studies;

pub use core::controller::LoopHooks;
pub use core::metrics::RunMetrics;
pub use core::session::{ClockChoice, RunError, RunOptions, RunOutcome, run, run_with_clock};
