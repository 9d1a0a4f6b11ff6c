//! Benchmarks and studies built on the core and the I/O layer, and their figures. Nothing below them uses them.
//!
//! - [`bench`](mod@bench): the controller loop's timing (`bench loop`) and a policy's speed (`bench policy`);
//!   [`cpu_activity`]: what else ran on the controller's CPU (interrupts, steal);
//! - [`graph_bench`]: ONNX graphs timed alone with the same inputs (`bench graphs`);
//! - [`transport`]: how long a state (with camera images) takes over zenoh, bare and through the link;
//! - [`delay_benchmark`]: success against inference delay for every chunk-execution method (the RTC paper's);
//! - [`latency`]: state-to-command latency against a bare zenoh hop;
//! - [`demo`], [`demo_figure`]: the real-time demo on the point mass and its figure;
//! - [`progress`]: a progress bar for long commands.

pub mod bench;
pub mod cpu_activity;
pub mod delay_benchmark;
pub mod demo;
pub mod demo_figure;
pub mod graph_bench;
pub mod latency;
pub mod progress;
pub mod transport;
