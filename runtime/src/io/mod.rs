//! Talking to a robot, or to `rtchunk sim serve`, over zenoh.
//!
//! - [`protocol`]: the versioned binary wire format of every message;
//! - [`session`]: the zenoh session from `[io]` and the topic names;
//! - [`link`]: I/O threads and [`link::ZenohPlant`], the controller's wait-free view of them;
//! - [`remote`]: a policy server (`rtchunk serve-policy`) and the robot's remote chunk source;
//! - [`sim_node`]: the simulator as a zenoh node with its own clock;
//! - [`transit`]: how old an arriving message is, from its sender's timestamp;
//! - [`transport`]: how long state (with camera images) takes over zenoh, bare and through the link.

pub mod link;
pub mod protocol;
pub mod remote;
pub mod session;
pub mod sim_node;
pub mod transit;
pub mod transport;
