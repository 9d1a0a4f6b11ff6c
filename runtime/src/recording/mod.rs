//! Recording a session and replaying it. Uses the core (it implements the core's `Recorder` for the session log)
//! and, to re-run a task, the simulator node's report from `io`; neither uses it.
//!
//! - [`format`](mod@format): the binary log (header, tick, inference and end records) and its reader;
//! - [`check`]: a log's header against its records, before anything replays it;
//! - [`divergence`]: how a replayed quantity differs from the recorded one, and why a replay could not run;
//! - [`reschedule`]: the executor (Algorithm 1) re-run over a log's holds and chunk arrivals;
//! - [`writer`]: the thread that writes the log off the controller, flushed on every exit path;
//! - [`replay`]: re-running a log from its recorded chunks ("exact output") or by running the policy again
//!   ("re-infer"), and where and by how much it diverges;
//! - [`task_replay`]: re-running the task of a session against `rtchunk sim serve` with the replayed commands;
//! - [`mcap_export`]: a log as MCAP, for Foxglove, Rerun and the mcap tools;
//! - [`lerobot_export`]: logs as a LeRobotDataset v3.0, one episode per log.

pub mod check;
pub mod divergence;
pub mod format;
pub mod lerobot_export;
pub mod mcap_export;
pub mod replay;
pub mod reschedule;
pub mod task_replay;
pub mod writer;
