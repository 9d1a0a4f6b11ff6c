//! How robot state and commands look on the wire: the state intake and the action thread of [`crate::io::link`]
//! move bytes through a [`Wire`] without knowing its format. Two formats exist: rtchunk's own protocol
//! ([`native_wire`], `plant.kind = "zenoh"`) and ROS 2 over rmw_zenoh ([`crate::io::ros2`], `plant.kind =
//! "ros2"`).

use crate::core::clock::wall_clock_ns;
use crate::core::messages::CameraFrame;
use crate::io::protocol::{
    ACTION_HELD, ActionMessage, Encode, Header, MessageKind, RejectKind, Rejection, SequenceGuard,
    SourceChange, StateView, decode_header, new_source_id,
};
use crate::io::session::Topics;
use crate::io::transit::TransitAge;
use rtchunk_policy::Camera;

/// The newest accepted state, as the controller reads it (buffers sized once).
#[derive(Debug, Clone)]
pub struct LatestState {
    /// Its sequence number (0: none yet).
    pub seq: u64,
    /// When it was sent, on this host's monotonic clock (ns): its arrival less its estimated age
    /// ([`TransitAge`]), so a backlog delivered after a network stall is not taken for fresh.
    pub received_ns: u64,
    /// The sender's wall-clock stamp, nanoseconds since the Unix epoch (0: it sent none).
    pub sent_wall_ns: u64,
    /// Joint positions (empty when the robot reports none).
    pub position: Vec<f64>,
    /// Joint velocities.
    pub velocity: Vec<f64>,
    /// The policy's observation.
    pub observation: Vec<f32>,
}

/// Reads states for the link's state intake.
pub trait StateDecoder: Send {
    /// Decodes one sample (`payload` and its zenoh attachment), arriving at `arrived_ns` on the monotonic clock,
    /// into `slot` (every field of it) and, when the policy has cameras, its images into `frame`. A rejection
    /// leaves the slot unpublished.
    fn decode(
        &mut self,
        payload: &[u8],
        attachment: Option<&[u8]>,
        arrived_ns: u64,
        slot: &mut LatestState,
        frame: &mut CameraFrame,
    ) -> Result<(), Rejection>;
}

/// One controller tick's command as the action thread hands it to the wire.
#[derive(Debug, Clone, Copy)]
pub struct Command<'a> {
    /// The controller tick.
    pub tick: u64,
    /// The sequence number of the state it was computed from.
    pub state_seq: u64,
    /// Held on stale state.
    pub held: bool,
    /// One value per joint.
    pub values: &'a [f64],
}

/// Writes commands for the action thread.
pub trait CommandEncoder: Send {
    /// The payload and, when the format has one, the attachment of one command.
    fn encode(&mut self, command: &Command<'_>) -> (Vec<u8>, Option<Vec<u8>>);
}

/// One wire format, ready for the link's threads.
pub struct Wire {
    /// The key expression states arrive on.
    pub state_key: String,
    /// The topic name errors and logs give for states (the key, or the ROS topic).
    pub state_topic: String,
    /// Decodes states.
    pub states: Box<dyn StateDecoder>,
    /// The key expression commands leave on.
    pub command_key: String,
    /// Encodes commands.
    pub commands: Box<dyn CommandEncoder>,
    /// What must live as long as the link: liveliness tokens, extra subscribers.
    pub keep_alive: Vec<Box<dyn std::any::Any + Send>>,
}

/// The one source a state decoder follows and how old its states are: the sequence guard and the transit-age
/// estimate, which both wires apply the same way.
pub struct SourceTracker {
    guard: SequenceGuard,
    age: TransitAge,
}

impl SourceTracker {
    /// A tracker that hands over to another source after `handover_after_ns` of silence from the one in use.
    pub fn new(handover_after_ns: u64) -> Self {
        SourceTracker {
            guard: SequenceGuard::new(handover_after_ns),
            age: TransitAge::default(),
        }
    }

    /// Accepts a state with `header` arriving at `arrived_ns` (monotonic) and stamps `slot` with its sequence
    /// number, its sender's stamp and when it was sent on this host's clock; says whether a new source took over.
    pub fn stamp(
        &mut self,
        header: &Header,
        arrived_ns: u64,
        slot: &mut LatestState,
    ) -> Result<SourceChange, Rejection> {
        let change = self.guard.accept(header, arrived_ns)?;
        if change == SourceChange::New {
            self.age.reset();
        }
        slot.seq = header.seq;
        slot.sent_wall_ns = header.stamp_ns;
        slot.received_ns = arrived_ns.saturating_sub(self.age.age_ns(
            header.stamp_ns,
            wall_clock_ns(),
            arrived_ns,
        ));
        Ok(change)
    }
}

/// rtchunk's own protocol on `<namespace>/state` and `<namespace>/action` ([`crate::io::protocol`]).
pub fn native_wire(
    topics: &Topics,
    joints: usize,
    observation_dim: usize,
    cameras: &[Camera],
    stale_after_ns: u64,
) -> Wire {
    Wire {
        state_key: topics.state.clone(),
        state_topic: topics.state.clone(),
        states: Box::new(NativeStates {
            joints,
            observation_dim,
            cameras: cameras.to_vec(),
            source: SourceTracker::new(stale_after_ns),
            sends_joints: None,
        }),
        command_key: topics.action.clone(),
        commands: Box::new(NativeCommands {
            source: new_source_id(),
            seq: 0,
        }),
        keep_alive: Vec::new(),
    }
}

struct NativeStates {
    joints: usize,
    observation_dim: usize,
    cameras: Vec<Camera>,
    source: SourceTracker,
    /// Whether the source in use sends joint positions: its states must all do, or all not, so positions from
    /// an older message are never paired with a newer observation.
    sends_joints: Option<bool>,
}

impl StateDecoder for NativeStates {
    fn decode(
        &mut self,
        payload: &[u8],
        _attachment: Option<&[u8]>,
        arrived_ns: u64,
        slot: &mut LatestState,
        frame: &mut CameraFrame,
    ) -> Result<(), Rejection> {
        let (header, body) = decode_header(payload, MessageKind::State)?;
        let view = StateView::decode(body, self.joints, self.observation_dim, &self.cameras)?;
        if self.source.stamp(&header, arrived_ns, slot)? == SourceChange::New {
            self.sends_joints = None;
        }
        let has_joints = !view.state.position.is_empty();
        if *self.sends_joints.get_or_insert(has_joints) != has_joints {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!(
                    "a state {} joint positions from a source whose states {}",
                    if has_joints { "with" } else { "without" },
                    if has_joints { "have none" } else { "have them" }
                ),
            ));
        }
        let message = &view.state;
        if has_joints {
            slot.position.copy_from_slice(&message.position);
            slot.velocity.copy_from_slice(&message.velocity);
        }
        slot.observation.copy_from_slice(&message.observation);
        if !self.cameras.is_empty() {
            frame.state_seq = header.seq;
            frame.pixels.clear();
            for image in &view.images {
                frame.pixels.extend_from_slice(image.pixels);
            }
        }
        Ok(())
    }
}

struct NativeCommands {
    source: u32,
    seq: u64,
}

impl CommandEncoder for NativeCommands {
    fn encode(&mut self, command: &Command<'_>) -> (Vec<u8>, Option<Vec<u8>>) {
        self.seq += 1;
        let message = ActionMessage {
            tick: command.tick,
            state_seq: command.state_seq,
            command: command.values.to_vec(),
        };
        let flags = if command.held { ACTION_HELD } else { 0 };
        (
            message.encode(flags, self.source, self.seq, wall_clock_ns()),
            None,
        )
    }
}
