//! Talking to a robot, or to `rtchunk sim serve`, over zenoh. Uses the core; the core does not use it.
//!
//! The I/O threads read zenoh's own bounded handlers (a ring that keeps the newest states, a FIFO of chunk
//! queries) with a timeout, which bounds how long a stop takes to be seen (20 ms for states, 50 ms for chunk
//! queries) and costs no copy; where a callback has to hand messages
//! to another thread (the simulator node's commands) a bounded `crossbeam-channel` does, dropping and counting
//! what overflows. What reaches the controller goes through the core's wait-free buffers only.
//!
//! - [`protocol`]: the versioned binary wire format of every message;
//! - [`session`]: the zenoh session from `[io]` (TLS, a zenoh configuration file) and the topic names;
//! - [`exposure`]: which listening endpoints reach beyond this machine, and the TLS rule for them;
//! - [`link`]: I/O threads and [`link::ZenohPlant`], the controller's wait-free view of them; [`wire`]: the
//!   format states and commands take on the wire, rtchunk's own or ROS 2's ([`ros2`]: rmw_zenoh's key
//!   expressions, CDR messages, attachments and graph tokens);
//! - [`remote`]: a policy server (`rtchunk serve-policy`) and the robot's remote chunk source; [`admission`]:
//!   which query the server answers next and which it refuses at once;
//! - [`sim_node`]: the simulator as a zenoh node with its own clock, speaking either wire through
//!   [`robot_wire`]; [`stop_request`]: asking the runtime to stop until it confirms;
//! - [`transit`]: how old an arriving message is, from its sender's timestamp;
//! - [`deploy`]: a run on a robot over zenoh (`rtchunk run` with `plant.kind = "zenoh"` or `"ros2"`).

pub mod admission;
pub mod deploy;
pub mod exposure;
pub mod link;
pub mod protocol;
pub mod remote;
pub mod robot_wire;
pub mod ros2;
pub mod session;
pub mod sim_node;
pub mod stop_request;
pub mod transit;
pub mod wire;
