//! The robot link's wire for a ROS 2 robot: joint states (and camera images) in, commands out, with rtchunk's
//! node, subscriptions and publisher announced in the ROS graph. Joint states are mapped by name to the
//! policy's vectors; the mapping is checked against the policy at start and against each message's names.

use crate::core::clock::wall_clock_ns;
use crate::core::messages::CameraFrame;
use crate::io::protocol::{MessageKind, RejectKind, Rejection};
use crate::io::ros2::graph::{
    Attachment, EntityKind, Gid, RosNode, declare_tokens, resolve, topic_key,
};
use crate::io::ros2::messages::{
    IMAGE, Image, JOINT_STATE, JointState, command_message, encode_float64_multi_array,
    encode_joint_trajectory,
};
use crate::io::session::IoError;
use crate::io::wire::{Command, CommandEncoder, LatestState, SourceTracker, StateDecoder, Wire};
use rtchunk_config::{CommandType, JointField, Ros2Config};
use rtchunk_policy::Camera;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use zenoh::Wait;

/// What the policy expects of the robot: checked against `[ros2]` at start.
#[derive(Debug, Clone, Copy)]
pub struct PolicyShape<'a> {
    /// The action dimension (one command value per joint).
    pub joints: usize,
    /// The observation dimension.
    pub observation_dim: usize,
    /// The policy's cameras.
    pub cameras: &'a [Camera],
}

/// Checks `[ros2]` against the policy's shape; the error names the key and both sizes.
pub fn check_shape(ros2: &Ros2Config, shape: PolicyShape<'_>) -> Result<(), IoError> {
    if ros2.joints.len() != shape.joints {
        return Err(IoError::Setup(format!(
            "ros2.joints names {} joints ({:?}); the policy's action has {} values, one per joint",
            ros2.joints.len(),
            ros2.joints,
            shape.joints
        )));
    }
    if ros2.observation_dim() != shape.observation_dim {
        let fields: Vec<&str> = ros2.observation.iter().map(|f| f.name()).collect();
        return Err(IoError::Setup(format!(
            "ros2.observation {fields:?} over {} joints gives {} values; the policy observes {}",
            ros2.observed_joints().len(),
            ros2.observation_dim(),
            shape.observation_dim
        )));
    }
    if ros2.camera_topics.len() != shape.cameras.len() {
        let names: Vec<&str> = shape.cameras.iter().map(|c| c.name.as_str()).collect();
        return Err(IoError::Setup(format!(
            "ros2.camera_topics names {} topics; the policy has {} cameras {names:?}, one topic each in that order",
            ros2.camera_topics.len(),
            shape.cameras.len()
        )));
    }
    Ok(())
}

/// Declares rtchunk's node on `session` and returns the wire: states from `ros2.joint_states_topic`, images
/// from `ros2.camera_topics`, commands to `ros2.command_topic`. A state is refused while a camera's newest image
/// is missing or older than `stale_after_ns`; a joint-trajectory point is timed `controller_period_ns` ahead
/// unless `ros2.time_from_start_ms` says otherwise.
pub fn ros2_wire(
    session: &zenoh::Session,
    ros2: &Ros2Config,
    shape: PolicyShape<'_>,
    controller_period_ns: i64,
    stale_after_ns: u64,
) -> Result<Wire, IoError> {
    check_shape(ros2, shape)?;
    let namespace = &ros2.node_namespace;
    let mut node = RosNode::new(
        ros2.domain_id,
        session.zid().to_string(),
        namespace,
        &ros2.node_name,
        ros2.distribution,
    );
    let mut keep_alive: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    let mut tokens = vec![node.node_token()];
    let state_topic = resolve(&ros2.joint_states_topic, namespace);
    tokens.push(
        node.endpoint_token(EntityKind::Subscription, &state_topic, &JOINT_STATE)
            .0,
    );
    let mut images = Vec::new();
    for (topic, camera) in ros2.camera_topics.iter().zip(shape.cameras) {
        let topic = resolve(topic, namespace);
        tokens.push(
            node.endpoint_token(EntityKind::Subscription, &topic, &IMAGE)
                .0,
        );
        let latest = Arc::new(Mutex::new(LatestImage::default()));
        let subscriber = image_subscriber(session, ros2, &topic, camera, latest.clone())?;
        keep_alive.push(Box::new(subscriber));
        images.push(CameraSlot { topic, latest });
    }
    let command_topic = resolve(&ros2.command_topic, namespace);
    let command_type = command_message(ros2.command_type);
    let (token, gid) = node.endpoint_token(EntityKind::Publisher, &command_topic, command_type);
    tokens.push(token);
    keep_alive.extend(declare_tokens(session, tokens)?);
    let time_from_start_ns = ros2
        .time_from_start_ms
        .map_or(controller_period_ns, |ms| (ms * 1e6) as i64);
    Ok(Wire {
        state_key: topic_key(
            ros2.domain_id,
            &state_topic,
            &JOINT_STATE,
            ros2.distribution,
        ),
        states: Box::new(JointStates {
            joints: ros2.joints.clone(),
            observed: ros2.observed_joints().to_vec(),
            fields: ros2.observation.clone(),
            known_names: Vec::new(),
            index: Vec::new(),
            joint_index: None,
            buffers: Buffers::default(),
            source: SourceTracker::new(stale_after_ns),
            images,
            stale_after_ns,
        }),
        state_topic,
        command_key: topic_key(
            ros2.domain_id,
            &command_topic,
            command_type,
            ros2.distribution,
        ),
        commands: Box::new(RosCommands {
            command_type: ros2.command_type,
            joints: ros2.joints.clone(),
            time_from_start_ns,
            gid,
            sequence: 0,
        }),
        keep_alive,
    })
}

/// The newest image of one camera, as tightly packed pixels.
#[derive(Debug, Default)]
struct LatestImage {
    pixels: Vec<u8>,
    /// When it arrived, on the monotonic clock (0: none yet).
    arrived_ns: u64,
}

struct CameraSlot {
    topic: String,
    latest: Arc<Mutex<LatestImage>>,
}

fn lock_image(latest: &Mutex<LatestImage>) -> std::sync::MutexGuard<'_, LatestImage> {
    latest
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Subscribes to one camera's images: each valid one replaces the newest; a bad one is logged once per topic
/// and dropped (the states then wait for a valid image, see [`ros2_wire`]).
fn image_subscriber(
    session: &zenoh::Session,
    ros2: &Ros2Config,
    topic: &str,
    camera: &Camera,
    latest: Arc<Mutex<LatestImage>>,
) -> Result<zenoh::pubsub::Subscriber<()>, IoError> {
    let camera = camera.clone();
    let name = topic.to_string();
    let logged = AtomicBool::new(false);
    session
        .declare_subscriber(topic_key(ros2.domain_id, topic, &IMAGE, ros2.distribution))
        .callback(move |sample| {
            let payload = sample.payload().to_bytes();
            let arrived_ns = crate::core::clock::monotonic_ns();
            let mut latest = lock_image(&latest);
            let image = Image::decode(&payload).and_then(|image| {
                if (image.height, image.width) != (camera.height, camera.width) {
                    return Err(Rejection::new(
                        RejectKind::Dimensions,
                        format!(
                            "a {}x{} image; camera {:?} takes {}x{}",
                            image.height, image.width, camera.name, camera.height, camera.width
                        ),
                    ));
                }
                latest.pixels.clear();
                image.append_pixels(camera.channels, &mut latest.pixels)
            });
            match image {
                Ok(()) => latest.arrived_ns = arrived_ns,
                Err(rejection) => {
                    latest.arrived_ns = 0;
                    if !logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(topic = %name, "rejected an image ({rejection}); further ones are not logged");
                    }
                }
            }
        })
        .wait()
        .map_err(|e| IoError::zenoh(topic, e))
}

/// The decoder's reusable value buffers.
#[derive(Debug, Default)]
struct Buffers {
    position: Vec<f64>,
    velocity: Vec<f64>,
    effort: Vec<f64>,
}

/// Decodes joint states into the policy's vectors.
struct JointStates {
    joints: Vec<String>,
    observed: Vec<String>,
    fields: Vec<JointField>,
    /// The names of the last accepted message, where each observed joint is among them, and where each of
    /// `joints` is (when all are).
    known_names: Vec<String>,
    index: Vec<usize>,
    joint_index: Option<Vec<usize>>,
    buffers: Buffers,
    source: SourceTracker,
    images: Vec<CameraSlot>,
    stale_after_ns: u64,
}

impl JointStates {
    /// Maps the observed joints (and `joints`, when all are named) to the message's names, again only when the
    /// names changed.
    fn map_names(&mut self, names: &[&str]) -> Result<(), Rejection> {
        if names
            .iter()
            .copied()
            .eq(self.known_names.iter().map(String::as_str))
        {
            return Ok(());
        }
        let find = |joint: &String| names.iter().position(|name| name == joint);
        let mut index = Vec::with_capacity(self.observed.len());
        for joint in &self.observed {
            let Some(at) = find(joint) else {
                return Err(Rejection::new(
                    RejectKind::Dimensions,
                    format!(
                        "no joint {joint:?} among the state's names {names:?} (observed joints)"
                    ),
                ));
            };
            index.push(at);
        }
        self.index = index;
        self.joint_index = self.joints.iter().map(find).collect();
        self.known_names = names.iter().map(|name| name.to_string()).collect();
        Ok(())
    }

    /// Copies the mapped values of `message` into `slot`.
    fn fill(&self, message: &JointState<'_>, slot: &mut LatestState) -> Result<(), Rejection> {
        let finite = |field: &str, value: f64| {
            if value.is_finite() {
                Ok(value)
            } else {
                Err(Rejection::new(
                    RejectKind::NonFinite,
                    format!("{field} of a joint is {value}"),
                ))
            }
        };
        let mut values = slot.observation.iter_mut();
        for &field in &self.fields {
            let source = message.field(field);
            if source.is_empty() {
                return Err(Rejection::new(
                    RejectKind::Dimensions,
                    format!(
                        "the joint state has no {} (ros2.observation takes it)",
                        field.name()
                    ),
                ));
            }
            for (&at, value) in self.index.iter().zip(values.by_ref()) {
                *value = finite(field.name(), source[at])? as f32;
            }
        }
        for (out, source, name) in [
            (&mut slot.position, &message.position, "position"),
            (&mut slot.velocity, &message.velocity, "velocity"),
        ] {
            match &self.joint_index {
                Some(index) if !source.is_empty() => {
                    for (&at, value) in index.iter().zip(out.iter_mut()) {
                        *value = finite(name, source[at])?;
                    }
                }
                _ => out.fill(0.0),
            }
        }
        Ok(())
    }

    /// Appends every camera's newest image to `frame`; refused while one is missing or stale.
    fn fill_images(
        &self,
        seq: u64,
        arrived_ns: u64,
        frame: &mut CameraFrame,
    ) -> Result<(), Rejection> {
        if self.images.is_empty() {
            return Ok(());
        }
        frame.state_seq = seq;
        frame.pixels.clear();
        for camera in &self.images {
            let latest = lock_image(&camera.latest);
            let age_ns = arrived_ns.saturating_sub(latest.arrived_ns);
            if latest.arrived_ns == 0 || age_ns > self.stale_after_ns {
                return Err(Rejection::new(
                    RejectKind::Dimensions,
                    if latest.arrived_ns == 0 {
                        format!("no valid image on {} yet", camera.topic)
                    } else {
                        format!(
                            "the newest image on {} is {} ms old",
                            camera.topic,
                            age_ns / 1_000_000
                        )
                    },
                ));
            }
            frame.pixels.extend_from_slice(&latest.pixels);
        }
        Ok(())
    }
}

impl StateDecoder for JointStates {
    fn decode(
        &mut self,
        payload: &[u8],
        attachment: Option<&[u8]>,
        arrived_ns: u64,
        slot: &mut LatestState,
        frame: &mut CameraFrame,
    ) -> Result<(), Rejection> {
        let attachment = Attachment::decode(attachment)?;
        let mut message = JointState {
            position: std::mem::take(&mut self.buffers.position),
            velocity: std::mem::take(&mut self.buffers.velocity),
            effort: std::mem::take(&mut self.buffers.effort),
            ..JointState::default()
        };
        let result = self.accept(&mut message, payload, &attachment, arrived_ns, slot, frame);
        self.buffers = Buffers {
            position: message.position,
            velocity: message.velocity,
            effort: message.effort,
        };
        result
    }
}

impl JointStates {
    fn accept<'a>(
        &mut self,
        message: &mut JointState<'a>,
        payload: &'a [u8],
        attachment: &Attachment,
        arrived_ns: u64,
        slot: &mut LatestState,
        frame: &mut CameraFrame,
    ) -> Result<(), Rejection> {
        message.decode_into(payload)?;
        self.map_names(&message.names)?;
        self.fill(message, slot)?;
        let header = attachment.header(MessageKind::State);
        self.fill_images(header.seq, arrived_ns, frame)?;
        self.source.stamp(&header, arrived_ns, slot)?;
        Ok(())
    }
}

/// Encodes commands with rmw_zenoh's attachment.
struct RosCommands {
    command_type: CommandType,
    joints: Vec<String>,
    time_from_start_ns: i64,
    gid: Gid,
    sequence: i64,
}

impl CommandEncoder for RosCommands {
    fn encode(&mut self, command: &Command<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
        self.sequence += 1;
        let payload = match self.command_type {
            CommandType::Float64MultiArray => encode_float64_multi_array(command.values),
            CommandType::JointTrajectory => {
                encode_joint_trajectory(&self.joints, command.values, self.time_from_start_ns)
            }
        };
        let attachment = Attachment {
            sequence: self.sequence,
            source_timestamp_ns: wall_clock_ns() as i64,
            gid: self.gid,
        };
        (payload, Some(attachment.encode().to_vec()))
    }
}
