//! ROS 2 over rmw_zenoh without a ROS installation (`plant.kind = "ros2"`): rtchunk joins the ROS graph as a
//! node that subscribes to `sensor_msgs/msg/JointState` (and `sensor_msgs/msg/Image` per camera) and publishes
//! one command per controller tick as `std_msgs/msg/Float64MultiArray` or `trajectory_msgs/msg/JointTrajectory`.
//!
//! - [`cdr`]: the CDR encoding of the payloads;
//! - [`messages`]: the message types, their names and type hashes;
//! - [`graph`]: key expressions, liveliness tokens, GIDs and the per-sample attachment;
//! - [`plant_wire`]: the [`crate::io::wire::Wire`] the link runs on, with the joint-name mapping checked at start.

pub mod cdr;
pub mod graph;
pub mod messages;
pub mod plant_wire;
