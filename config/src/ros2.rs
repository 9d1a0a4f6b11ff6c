//! `[ros2]`: the robot as ROS 2 nodes see it over rmw_zenoh (`plant.kind = "ros2"`): which topics carry its
//! joint states, camera images and commands, how joint names map to the policy's vectors, and the ROS graph
//! names rtchunk appears under. The zenoh session itself (the router to connect to) is `[io]`.

use serde::{Deserialize, Serialize};

/// A field of `sensor_msgs/msg/JointState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JointField {
    /// `position`.
    Position,
    /// `velocity`.
    Velocity,
    /// `effort`.
    Effort,
}

impl JointField {
    /// The field's name in the message.
    pub fn name(self) -> &'static str {
        match self {
            JointField::Position => "position",
            JointField::Velocity => "velocity",
            JointField::Effort => "effort",
        }
    }
}

/// The message type commands are published as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandType {
    /// `std_msgs/msg/Float64MultiArray`, one value per joint in `joints` order: what ros2_control's forward
    /// command controllers (position, velocity or effort) take.
    #[default]
    Float64MultiArray,
    /// `trajectory_msgs/msg/JointTrajectory` with the joint names and one point (positions) reached
    /// `time_from_start_ms` after it arrives: what ros2_control's joint trajectory controller takes.
    JointTrajectory,
}

/// The ROS 2 distribution whose type hashes go into key expressions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// Jazzy, Kilted and Rolling: key expressions carry the message's RIHS01 type hash.
    #[default]
    Jazzy,
    /// Humble: rmw_zenoh writes `TypeHashNotSupported` in place of the hash.
    Humble,
}

/// Settings of the ROS 2 plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ros2Config {
    /// The ROS domain id (`ROS_DOMAIN_ID`), 0 to 232.
    pub domain_id: u32,
    /// Which distribution's type hashes to use.
    pub distribution: Distribution,
    /// The node name rtchunk appears under in `ros2 node list`.
    pub node_name: String,
    /// The node's namespace, `/` for none.
    pub node_namespace: String,
    /// The `sensor_msgs/msg/JointState` topic the robot publishes.
    pub joint_states_topic: String,
    /// The joints the policy drives, by name, in the order of its action vector and of every command. When
    /// the joint state names them all, their positions and velocities are the controller's robot state.
    pub joints: Vec<String>,
    /// The joints the policy observes, by name (unset: `joints`). Each joint state must name them all, in any
    /// order, among others.
    pub observation_joints: Option<Vec<String>>,
    /// The policy's observation: these fields of the joint state, each over the observed joints in order,
    /// concatenated (`["position", "velocity"]`: every position, then every velocity).
    pub observation: Vec<JointField>,
    /// One `sensor_msgs/msg/Image` topic per camera of the policy, in its order (empty when it has none).
    pub camera_topics: Vec<String>,
    /// The topic commands are published on.
    pub command_topic: String,
    /// What commands are published as.
    pub command_type: CommandType,
    /// For `joint-trajectory`: the point's `time_from_start`, in milliseconds (unset: one controller period).
    pub time_from_start_ms: Option<f64>,
}

impl Default for Ros2Config {
    fn default() -> Self {
        Ros2Config {
            domain_id: 0,
            distribution: Distribution::Jazzy,
            node_name: "rtchunk".to_string(),
            node_namespace: "/".to_string(),
            joint_states_topic: "/joint_states".to_string(),
            joints: Vec::new(),
            observation_joints: None,
            observation: vec![JointField::Position, JointField::Velocity],
            camera_topics: Vec::new(),
            command_topic: "/forward_command_controller/commands".to_string(),
            command_type: CommandType::Float64MultiArray,
            time_from_start_ms: None,
        }
    }
}

impl Ros2Config {
    /// The joints the policy observes: `observation_joints`, else `joints`.
    pub fn observed_joints(&self) -> &[String] {
        self.observation_joints.as_deref().unwrap_or(&self.joints)
    }

    /// The length of the observation the joint state gives: fields times observed joints.
    pub fn observation_dim(&self) -> usize {
        self.observation.len() * self.observed_joints().len()
    }
}

/// The largest ROS domain id.
const MAX_DOMAIN_ID: u32 = 232;
/// The most joints a command may carry (the runtime's limit).
const MAX_JOINTS: usize = 64;

/// Whether `name` is a ROS 2 topic name rtchunk accepts: absolute (`/a/b`) or relative to the node's
/// namespace (`a/b`), tokens of letters, digits and underscores not starting with a digit.
pub fn is_topic_name(name: &str) -> bool {
    let relative = name.strip_prefix('/').unwrap_or(name);
    !relative.is_empty() && relative.split('/').all(is_name_token)
}

fn is_name_token(token: &str) -> bool {
    let mut chars = token.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks `[ros2]` (with `plant.kind = "ros2"`); errors name the key.
pub(crate) fn validate(ros2: &Ros2Config) -> Result<(), crate::ConfigError> {
    use crate::validate::{check, within};
    check(
        ros2.domain_id <= MAX_DOMAIN_ID,
        "ros2.domain_id",
        ros2.domain_id,
        &format!("must be at most {MAX_DOMAIN_ID}"),
    )?;
    check(
        is_name_token(&ros2.node_name),
        "ros2.node_name",
        format!("{:?}", ros2.node_name),
        "must be a ROS node name: letters, digits and underscores, not starting with a digit",
    )?;
    check(
        ros2.node_namespace == "/"
            || (ros2.node_namespace.starts_with('/') && is_topic_name(&ros2.node_namespace)),
        "ros2.node_namespace",
        format!("{:?}", ros2.node_namespace),
        "must be \"/\" or an absolute ROS name such as \"/arm\"",
    )?;
    let topics = [
        ("ros2.joint_states_topic", &ros2.joint_states_topic),
        ("ros2.command_topic", &ros2.command_topic),
    ];
    let cameras = ros2
        .camera_topics
        .iter()
        .map(|topic| ("ros2.camera_topics", topic));
    for (key, topic) in topics.into_iter().chain(cameras) {
        check(
            is_topic_name(topic),
            key,
            format!("{topic:?}"),
            "must be a ROS topic name such as \"/joint_states\" or \"arm/joint_states\" (letters, digits, \
             underscores; no empty parts or trailing '/')",
        )?;
    }
    check(
        !ros2.joints.is_empty() && ros2.joints.len() <= MAX_JOINTS,
        "ros2.joints",
        format!("{:?}", ros2.joints),
        &format!("must name 1 to {MAX_JOINTS} joints, in the order of the policy's action vector"),
    )?;
    for (index, joint) in ros2.joints.iter().enumerate() {
        check(
            !joint.is_empty() && !ros2.joints[..index].contains(joint),
            "ros2.joints",
            format!("{joint:?}"),
            "must be non-empty and each named once",
        )?;
    }
    for (index, field) in ros2.observation.iter().enumerate() {
        check(
            !ros2.observation[..index].contains(field),
            "ros2.observation",
            field.name(),
            "must name each joint-state field at most once",
        )?;
    }
    if let Some(ms) = ros2.time_from_start_ms {
        within(ms, "ros2.time_from_start_ms", 60_000.0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_topic_name;

    #[test]
    fn topic_names_follow_ros_rules() {
        for good in [
            "/joint_states",
            "joint_states",
            "/arm/joint_states",
            "/_private/a1",
        ] {
            assert!(is_topic_name(good), "{good}");
        }
        for bad in ["", "/", "//a", "/a/", "/1a", "/a b", "/a-b", "~/a", "/a/*"] {
            assert!(!is_topic_name(bad), "{bad}");
        }
    }
}
