//! Recording a session and replaying it.
//!
//! - [`format`]: the binary log (header, tick, inference and end records) and its reader;
//! - [`writer`]: the thread that writes the log off the controller, flushed on every exit path;
//! - [`replay`]: re-running a log from its recorded chunks ("exact output") or by running the policy again
//!   ("re-infer"), and where and by how much it diverges.

pub mod format;
pub mod replay;
pub mod writer;
