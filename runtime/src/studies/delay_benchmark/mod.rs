//! The delay benchmark: success against inference delay for every chunk-execution method, on the simulator's
//! tasks with their trained policies, following the RTC paper's protocol (see `rollouts`).

pub mod command;
pub mod figure;
pub mod methods;
pub mod report;
pub mod rollouts;
pub mod sweep;
