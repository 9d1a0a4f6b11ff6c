//! The robot's side of a wire, as the simulator node (`rtchunk sim serve`) speaks it: states out, commands in,
//! in rtchunk's own protocol or as a ROS 2 robot over rmw_zenoh (`--ros2`).

use crate::core::clock::wall_clock_ns;
use crate::io::protocol::{
    ACTION_HELD, ActionMessage, Encode, MessageKind, RejectKind, Rejection, SequenceGuard,
    StateMessage, decode_header, new_source_id,
};
use crate::io::ros2::graph::{Attachment, EntityKind, Gid, RosNode, declare_tokens, topic_key};
use crate::io::ros2::messages::{
    IMAGE, JOINT_STATE, command_message, decode_float64_multi_array, decode_joint_trajectory,
    encode_image, encode_joint_state,
};
use crate::io::session::IoError;
use crate::io::session::Topics;
use rtchunk_config::{CommandType, Distribution};

/// A command as the robot received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCommand {
    /// The controller tick that made it (rtchunk's protocol only).
    pub tick: Option<u64>,
    /// The sequence number of the state it was computed from (rtchunk's protocol only).
    pub state_seq: Option<u64>,
    /// Held on stale state (rtchunk's protocol only).
    pub held: bool,
    /// One value per action entry.
    pub values: Vec<f32>,
}

/// One message to publish: its payload and, when the format has one, its attachment.
pub type Outgoing = (Vec<u8>, Option<Vec<u8>>);

/// Encodes the robot's messages and decodes the commands it receives.
pub trait RobotCodec: Send {
    /// The state numbered `seq` (from 1).
    fn state(&mut self, seq: u64, message: &StateMessage) -> Outgoing;
    /// The camera images to publish on their own topics ([`RobotWire::image_keys`], in order); none when the
    /// state carries them.
    fn images(&mut self, message: &StateMessage) -> Vec<Outgoing>;
    /// Decodes and checks one command of `dims` values that arrived at `arrived_ns` (monotonic).
    fn command(
        &mut self,
        payload: &[u8],
        attachment: Option<&[u8]>,
        arrived_ns: u64,
        dims: usize,
    ) -> Result<ReceivedCommand, Rejection>;
}

/// The robot's wire: where it publishes and listens, and its codec.
pub struct RobotWire {
    /// Where states go.
    pub state_key: String,
    /// Where commands arrive.
    pub command_key: String,
    /// Where camera images go, one key per camera, when not inside the state.
    pub image_keys: Vec<String>,
    /// The codec.
    pub codec: Box<dyn RobotCodec>,
    /// What must live as long as the node (ROS graph tokens).
    pub keep_alive: Vec<Box<dyn std::any::Any + Send>>,
}

/// rtchunk's protocol under `topics`; a command source hands over to another after `handover_ns` of silence.
pub fn native_robot_wire(topics: &Topics, handover_ns: u64) -> RobotWire {
    RobotWire {
        state_key: topics.state.clone(),
        command_key: topics.action.clone(),
        image_keys: Vec::new(),
        codec: Box::new(NativeRobot {
            source: new_source_id(),
            guard: SequenceGuard::new(handover_ns),
        }),
        keep_alive: Vec::new(),
    }
}

struct NativeRobot {
    source: u32,
    guard: SequenceGuard,
}

impl RobotCodec for NativeRobot {
    fn state(&mut self, seq: u64, message: &StateMessage) -> Outgoing {
        (message.encode(0, self.source, seq, wall_clock_ns()), None)
    }

    fn images(&mut self, _message: &StateMessage) -> Vec<Outgoing> {
        Vec::new()
    }

    fn command(
        &mut self,
        payload: &[u8],
        _attachment: Option<&[u8]>,
        arrived_ns: u64,
        dims: usize,
    ) -> Result<ReceivedCommand, Rejection> {
        let (header, body) = decode_header(payload, MessageKind::Action)?;
        let message = ActionMessage::decode(body, dims)?;
        self.guard.accept(&header, arrived_ns)?;
        Ok(ReceivedCommand {
            tick: Some(message.tick),
            state_seq: Some(message.state_seq),
            held: header.flags & ACTION_HELD != 0,
            values: message.command.iter().map(|&v| v as f32).collect(),
        })
    }
}

/// How the simulated ROS 2 robot appears: its joint names are the task's observation names (each value a
/// joint position), its command joints the task's action names.
#[derive(Debug, Clone)]
pub struct Ros2Robot {
    /// The domain id.
    pub domain: u32,
    /// The joint-state topic it publishes.
    pub joint_states_topic: String,
    /// The topic it takes commands on.
    pub command_topic: String,
    /// What the commands are.
    pub command_type: CommandType,
    /// One image topic per camera.
    pub camera_topics: Vec<String>,
    /// The names of the observation's entries (the joint names it publishes).
    pub observation_names: Vec<String>,
    /// The names of the action's entries (a trajectory's joints are matched to them).
    pub action_names: Vec<String>,
}

/// The robot as a ROS 2 node `rtchunk_sim` on `session`; commands from another publisher take over after
/// `handover_ns` of silence.
pub fn ros2_robot_wire(
    session: &zenoh::Session,
    robot: &Ros2Robot,
    handover_ns: u64,
) -> Result<RobotWire, IoError> {
    let distribution = Distribution::Jazzy;
    let mut node = RosNode::new(
        robot.domain,
        session.zid().to_string(),
        "/",
        "rtchunk_sim",
        distribution,
    );
    let command_type = command_message(robot.command_type);
    let mut tokens = vec![node.node_token()];
    let (token, state_gid) = node.endpoint_token(
        EntityKind::Publisher,
        &robot.joint_states_topic,
        &JOINT_STATE,
    );
    tokens.push(token);
    let mut image_gids = Vec::new();
    for topic in &robot.camera_topics {
        let (token, gid) = node.endpoint_token(EntityKind::Publisher, topic, &IMAGE);
        tokens.push(token);
        image_gids.push(gid);
    }
    tokens.push(
        node.endpoint_token(EntityKind::Subscription, &robot.command_topic, command_type)
            .0,
    );
    let keep_alive = declare_tokens(session, tokens)?;
    Ok(RobotWire {
        state_key: topic_key(
            robot.domain,
            &robot.joint_states_topic,
            &JOINT_STATE,
            distribution,
        ),
        command_key: topic_key(
            robot.domain,
            &robot.command_topic,
            command_type,
            distribution,
        ),
        image_keys: robot
            .camera_topics
            .iter()
            .map(|topic| topic_key(robot.domain, topic, &IMAGE, distribution))
            .collect(),
        codec: Box::new(RosRobot {
            robot: robot.clone(),
            state_gid,
            image_gids,
            image_sequence: 0,
            guard: SequenceGuard::new(handover_ns),
            values: Vec::new(),
        }),
        keep_alive,
    })
}

struct RosRobot {
    robot: Ros2Robot,
    state_gid: Gid,
    image_gids: Vec<Gid>,
    image_sequence: i64,
    guard: SequenceGuard,
    values: Vec<f64>,
}

fn attached(sequence: i64, gid: Gid) -> Option<Vec<u8>> {
    let attachment = Attachment {
        sequence,
        source_timestamp_ns: wall_clock_ns() as i64,
        gid,
    };
    Some(attachment.encode().to_vec())
}

impl RobotCodec for RosRobot {
    fn state(&mut self, seq: u64, message: &StateMessage) -> Outgoing {
        let position: Vec<f64> = message.observation.iter().map(|&v| f64::from(v)).collect();
        let payload = encode_joint_state(
            wall_clock_ns() as i64,
            &self.robot.observation_names,
            &position,
            &[],
        );
        (payload, attached(seq as i64, self.state_gid))
    }

    fn images(&mut self, message: &StateMessage) -> Vec<Outgoing> {
        self.image_sequence += 1;
        message
            .images
            .iter()
            .zip(&self.image_gids)
            .map(|(image, &gid)| {
                let payload = encode_image(
                    wall_clock_ns() as i64,
                    usize::from(image.height),
                    usize::from(image.width),
                    image.channels,
                    &image.pixels,
                );
                (payload, attached(self.image_sequence, gid))
            })
            .collect()
    }

    fn command(
        &mut self,
        payload: &[u8],
        attachment: Option<&[u8]>,
        arrived_ns: u64,
        dims: usize,
    ) -> Result<ReceivedCommand, Rejection> {
        let attachment = Attachment::decode(attachment)?;
        let values = match self.robot.command_type {
            CommandType::Float64MultiArray => {
                decode_float64_multi_array(payload, &mut self.values)?;
                self.values.clone()
            }
            CommandType::JointTrajectory => {
                let mut joints = Vec::new();
                decode_joint_trajectory(payload, &mut joints, &mut self.values)?;
                let value_of = |name: &String| {
                    let at = joints.iter().position(|joint| joint == name);
                    at.map(|at| self.values[at]).ok_or_else(|| {
                        Rejection::new(
                            RejectKind::Dimensions,
                            format!("no joint {name:?} in the trajectory's {joints:?}"),
                        )
                    })
                };
                let action = &self.robot.action_names;
                action
                    .iter()
                    .map(value_of)
                    .collect::<Result<Vec<f64>, _>>()?
            }
        };
        if values.len() != dims {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!("{} command values, the robot takes {dims}", values.len()),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Rejection::new(
                RejectKind::NonFinite,
                "a command value is not finite",
            ));
        }
        self.guard
            .accept(&attachment.header(MessageKind::Action), arrived_ns)?;
        Ok(ReceivedCommand {
            tick: None,
            state_seq: None,
            held: false,
            values: values.iter().map(|&v| v as f32).collect(),
        })
    }
}
