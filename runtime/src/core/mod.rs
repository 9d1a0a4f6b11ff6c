//! The real-time core: the controller thread, Algorithm 1's executor, the clocks, the inference worker and the
//! wiring of one run. It owns everything on the path from a state to a command and may use the configuration,
//! the policy and controller crates and the simulator's plants, but nothing of zenoh, recording, benchmarks or
//! figures: what a run emits for its log leaves through [`events::Recorder`], which `recording` implements.
//!
//! - [`controller`]: the controller loop (real-time safe), driven by a [`clock::Clock`];
//! - [`executor`]: which action runs at each tick, when to request a chunk and when to adopt one;
//! - [`clock`]: the real clock (absolute deadlines, sleep then spin) and the simulated clock (virtual ticks);
//!   [`state_clock`]: the state clock (a tick per state the robot sends);
//! - [`doorbell`], [`messages`]: the wait-free handoff between the controller and the worker, and what it carries;
//! - [`delay`]: the delay buffer (inference delays in consumed ticks);
//! - [`record`]: the fixed-size tick records the controller writes; [`events`]: what a run hands to its recorder;
//! - [`worker`]: the tokio inference worker, [`inference_fault`]: how an inference failed; [`policies`]: the one
//!   loading path from `[policy]` to a policy;
//! - [`session`]: wires a run together; [`metrics`]: what a run measured;
//! - [`rt_setup`]: the controller thread's real-time measures, [`cpu_reservation`]: a CPU kept for it alone;
//!   [`shutdown`]: stopping on a signal.

pub mod clock;
pub mod controller;
pub mod cpu_reservation;
pub mod delay;
pub mod doorbell;
pub mod events;
pub mod executor;
pub mod inference_fault;
pub mod messages;
pub mod metrics;
pub mod policies;
pub mod record;
pub mod rt_setup;
pub mod session;
pub mod shutdown;
pub mod state_clock;
pub mod worker;
