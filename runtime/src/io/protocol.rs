//! The wire format of every rtchunk zenoh message (schema version 3; docs/protocol.md is its prose twin).
//!
//! Every message starts with a 28-byte little-endian header: magic `RTCK`, schema version (u16), message kind
//! (u8), flags (u8), source (u32, random per sending process, so a restarted sender may start its sequence
//! over), sequence number (u64, strictly increasing per source) and the sender's wall-clock timestamp (u64,
//! nanoseconds since the Unix epoch). The body follows; its length must match exactly.

use crate::core::clock::wall_clock_ns;
use rtchunk_policy::Camera;
use std::fmt;

/// The schema version this build writes and accepts.
pub const SCHEMA_VERSION: u16 = 3;
/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"RTCK";
/// Length of the common header.
pub const HEADER_LEN: usize = 28;

/// What a message is; its byte in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    /// Robot state in.
    State = 1,
    /// One command per controller tick out.
    Action = 2,
    /// Status and counters out.
    Status = 3,
    /// Start, stop, reset, emergency stop in.
    Control = 4,
    /// A request for a chunk to a policy server.
    ChunkQuery = 5,
    /// A policy server's chunk (or failure).
    ChunkReply = 6,
    /// A policy server's chunk shape.
    PolicyInfo = 7,
}

/// The header shared by all messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What follows.
    pub kind: MessageKind,
    /// Kind-specific bits (see each message).
    pub flags: u8,
    /// The sending process (random per process).
    pub source: u32,
    /// Strictly increasing per source.
    pub seq: u64,
    /// The sender's wall clock, nanoseconds since the Unix epoch.
    pub stamp_ns: u64,
}

/// Why an incoming message was rejected; each kind is counted and logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// Too short, wrong magic, or a body whose length does not match its declared sizes.
    Malformed,
    /// A schema version other than [`SCHEMA_VERSION`].
    Version,
    /// A message of another kind on this topic, or an unknown control command.
    WrongKind,
    /// Vector lengths other than the configured ones.
    Dimensions,
    /// A NaN or infinite value.
    NonFinite,
    /// A sequence number not above the last accepted one from the same source.
    OutOfOrder,
    /// A message from another source while the one in use is still sending (see [`SequenceGuard`]).
    OtherSource,
}

impl RejectKind {
    /// Every kind, in counter order.
    pub const ALL: [RejectKind; 7] = [
        RejectKind::Malformed,
        RejectKind::Version,
        RejectKind::WrongKind,
        RejectKind::Dimensions,
        RejectKind::NonFinite,
        RejectKind::OutOfOrder,
        RejectKind::OtherSource,
    ];

    /// Position in [`RejectKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectKind::Malformed => "malformed",
            RejectKind::Version => "wrong schema version",
            RejectKind::WrongKind => "wrong message kind",
            RejectKind::Dimensions => "wrong dimensions",
            RejectKind::NonFinite => "NaN or Inf",
            RejectKind::OutOfOrder => "out-of-order sequence number",
            RejectKind::OtherSource => "another source while the one in use is live",
        })
    }
}

/// A rejected message: the kind and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The counted kind.
    pub kind: RejectKind,
    /// What was expected and what came.
    pub detail: String,
}

impl Rejection {
    /// A rejection of `kind` saying what was wrong.
    pub fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        Rejection {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// Robot state (kind 1): joint positions and velocities (f64; zero joints means the robot reports none), the
/// policy's observation vector (f32) and optionally camera images. Body: joints u16, observation length u16, the
/// three vectors, then, if any bytes remain, the images: count u8, and per image height u16, width u16, channels
/// u8, encoding u8 (0: raw 8-bit, rows top to bottom, channels interleaved) and its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMessage {
    /// Joint positions.
    pub position: Vec<f64>,
    /// Joint velocities (same length as `position`).
    pub velocity: Vec<f64>,
    /// What the policy observes.
    pub observation: Vec<f32>,
    /// Camera images, in the policy's camera order (empty: none).
    pub images: Vec<CameraImage>,
}

/// One camera image of a state message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraImage {
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
    /// Channels per pixel (1 grey, 3 RGB).
    pub channels: u8,
    /// height x width x channels bytes, rows top to bottom, channels interleaved.
    pub pixels: Vec<u8>,
}

/// One camera image of a received state message, its pixels borrowed from the message's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageView<'a> {
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
    /// Channels per pixel.
    pub channels: u8,
    /// The pixels, as in [`CameraImage::pixels`].
    pub pixels: &'a [u8],
}

/// A state message decoded in place: its vectors, and its images borrowed from the received bytes (so that a
/// receiver copies each frame once, to where it is needed).
#[derive(Debug, Clone, PartialEq)]
pub struct StateView<'a> {
    /// Positions, velocities and the observation (`images` left empty).
    pub state: StateMessage,
    /// The camera images, in order.
    pub images: Vec<ImageView<'a>>,
}

/// Bytes of a status body: the phase, eleven u64 counters, one f32 and three u64 counters.
const STATUS_BODY: usize = 1 + 8 * 11 + 4 + 8 * 3;

/// The only image encoding of schema version 2: raw 8-bit pixels.
const RAW_PIXELS: u8 = 0;

/// `ActionMessage::flags`: the command holds the last target because the state is stale.
pub const ACTION_HELD: u8 = 1;

/// One controller tick's command (kind 2). Body: the controller tick (u64), the sequence number of the state it
/// was computed from (u64), dims (u16), then the command (f64 each). Flags: [`ACTION_HELD`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActionMessage {
    /// The controller tick.
    pub tick: u64,
    /// The state message the controller read at this tick (its sequence number).
    pub state_seq: u64,
    /// The command.
    pub command: Vec<f64>,
}

/// The controller's phase in a status message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the first state or a start command.
    Waiting = 0,
    /// Executing chunks.
    Running = 1,
    /// Holding: the state is stale.
    Holding = 2,
    /// Stopped (stop, emergency stop or end of run).
    Stopped = 3,
}

/// Status and counters (kind 3). Body: phase (u8), then eleven u64 counters, one f32 and three u64 counters,
/// in field order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusMessage {
    /// Where the controller is.
    pub phase: Phase,
    /// Controller ticks so far.
    pub ticks: u64,
    /// Ticks held because the state was stale.
    pub held_ticks: u64,
    /// State messages accepted.
    pub states_accepted: u64,
    /// Messages rejected, all kinds together.
    pub rejected: u64,
    /// Emergency stops received.
    pub emergency_stops: u64,
    /// Commands the action publisher could not keep up with.
    pub actions_dropped: u64,
    /// Chunks adopted (the first, cold one included).
    pub swaps: u64,
    /// Ticks whose chunk ran out before the next arrived.
    pub starved_ticks: u64,
    /// Controller periods skipped after overruns.
    pub missed_periods: u64,
    /// The latest the controller woke after a deadline so far, microseconds.
    pub max_lateness_us: u64,
    /// The observed inference delay d of the last adopted chunk, in policy ticks.
    pub last_delay_ticks: u64,
    /// The action step |a_t - a_(t-1)| at the last chunk seam.
    pub last_seam_jump: f32,
    /// Inferences that failed, all kinds together (the controller kept executing its chunk, then held).
    pub inference_failures: u64,
    /// Of those, inferences whose policy panicked.
    pub inference_panics: u64,
    /// Of those, inferences that ran past `policy.inference_timeout_ms`.
    pub inference_timeouts: u64,
}

/// A control command (kind 4). Body: one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ControlCommand {
    /// Begin executing (a runtime configured to wait for it).
    Start = 1,
    /// End the run safely: hold, stop publishing, flush.
    Stop = 2,
    /// Reset the episode: reserved for the robot's side (the runtime accepts it and leaves the episode to the
    /// robot; it does not change what the controller does).
    Reset = 3,
    /// Emergency stop: the same as stop, counted apart and reported.
    EmergencyStop = 4,
}

/// A request for a chunk (kind 5): the robot's inference inputs. Body: request number (u64), noise stream (u64,
/// per robot), s (u32), d (u32), then the observation and the committed actions as `u32 n, f32[n]` each, then
/// the camera images as `u32 n, u8[n]` (every camera's pixels, in the policy's order).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkQuery {
    /// The robot's request number.
    pub request_seq: u64,
    /// The robot's noise stream (robots sharing a server sample different noise).
    pub stream: u64,
    /// s: actions executed from the current chunk.
    pub executed: u32,
    /// d: the forecast delay.
    pub delay: u32,
    /// The newest observation.
    pub observation: Vec<f32>,
    /// The committed actions A_cur[s..H] (empty for the first chunk).
    pub committed: Vec<f32>,
    /// The camera images that go with the observation (empty for a policy without cameras).
    pub images: Vec<u8>,
}

/// A policy server's answer (kind 6). Body: request number (u64), inference time in microseconds (u64), ok
/// (u8), then the chunk as `u32 n, f32[n]` when ok, else the error as `u32 n, n UTF-8 bytes`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkReply {
    /// The request answered.
    pub request_seq: u64,
    /// Time the server spent sampling.
    pub inference_us: u64,
    /// The chunk (H x action_dim, token-major), or why there is none.
    pub chunk: Result<Vec<f32>, String>,
}

/// A policy server's chunk shape (kind 7). Body: horizon, action dimension, observation dimension (u16 each),
/// flags (u8: bit 0 exact VJP, bit 1 prefix-conditioned), then the cameras: count u8, and per camera height u16,
/// width u16, channels u8, name length u8 and the name (UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// H.
    pub horizon: u16,
    /// Values per action.
    pub action_dim: u16,
    /// Values per observation.
    pub observation_dim: u16,
    /// Bit 0: exact VJP; bit 1: trained with prefix conditioning.
    pub capabilities: u8,
    /// The camera images each request must carry.
    pub cameras: Vec<Camera>,
}

fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

impl Encode for ChunkQuery {
    const KIND: MessageKind = MessageKind::ChunkQuery;
    fn body_len(&self) -> usize {
        36 + 4 * (self.observation.len() + self.committed.len()) + self.images.len()
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request_seq.to_le_bytes());
        out.extend_from_slice(&self.stream.to_le_bytes());
        out.extend_from_slice(&self.executed.to_le_bytes());
        out.extend_from_slice(&self.delay.to_le_bytes());
        put_f32s(out, &self.observation);
        put_f32s(out, &self.committed);
        out.extend_from_slice(&(self.images.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.images);
    }
}

impl Encode for ChunkReply {
    const KIND: MessageKind = MessageKind::ChunkReply;
    fn body_len(&self) -> usize {
        21 + match &self.chunk {
            Ok(chunk) => 4 * chunk.len(),
            Err(error) => error.len(),
        }
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request_seq.to_le_bytes());
        out.extend_from_slice(&self.inference_us.to_le_bytes());
        match &self.chunk {
            Ok(chunk) => {
                out.push(1);
                put_f32s(out, chunk);
            }
            Err(error) => {
                out.push(0);
                out.extend_from_slice(&(error.len() as u32).to_le_bytes());
                out.extend_from_slice(error.as_bytes());
            }
        }
    }
}

impl Encode for PolicyInfo {
    const KIND: MessageKind = MessageKind::PolicyInfo;
    fn body_len(&self) -> usize {
        8 + self
            .cameras
            .iter()
            .map(|camera| 6 + camera.name.len().min(255))
            .sum::<usize>()
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        for value in [self.horizon, self.action_dim, self.observation_dim] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.push(self.capabilities);
        out.push(self.cameras.len() as u8);
        for camera in &self.cameras {
            out.extend_from_slice(&(camera.height as u16).to_le_bytes());
            out.extend_from_slice(&(camera.width as u16).to_le_bytes());
            out.push(camera.channels as u8);
            let name = &camera.name.as_bytes()[..camera.name.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
    }
}

/// Writes the header of a `kind` message into a fresh buffer with room for `body` bytes.
fn begin(
    kind: MessageKind,
    flags: u8,
    source: u32,
    seq: u64,
    stamp_ns: u64,
    body: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(flags);
    out.extend_from_slice(&source.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&stamp_ns.to_le_bytes());
    out
}

/// Encodes a message with its header.
pub trait Encode {
    /// The kind byte.
    const KIND: MessageKind;
    /// The body's bytes, appended to `out`.
    fn write_body(&self, out: &mut Vec<u8>);
    /// Length of the body.
    fn body_len(&self) -> usize;
    /// Header and body.
    fn encode(&self, flags: u8, source: u32, seq: u64, stamp_ns: u64) -> Vec<u8> {
        let mut out = begin(Self::KIND, flags, source, seq, stamp_ns, self.body_len());
        self.write_body(&mut out);
        out
    }
}

impl Encode for StateMessage {
    const KIND: MessageKind = MessageKind::State;
    fn body_len(&self) -> usize {
        let images: usize = self.images.iter().map(|i| 6 + i.pixels.len()).sum();
        4 + 16 * self.position.len()
            + 4 * self.observation.len()
            + usize::from(!self.images.is_empty())
            + images
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.position.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.observation.len() as u16).to_le_bytes());
        for value in self.position.iter().chain(&self.velocity) {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in &self.observation {
            out.extend_from_slice(&value.to_le_bytes());
        }
        if self.images.is_empty() {
            return;
        }
        out.push(self.images.len() as u8);
        for image in &self.images {
            out.extend_from_slice(&image.height.to_le_bytes());
            out.extend_from_slice(&image.width.to_le_bytes());
            out.push(image.channels);
            out.push(RAW_PIXELS);
            out.extend_from_slice(&image.pixels);
        }
    }
}

impl Encode for ActionMessage {
    const KIND: MessageKind = MessageKind::Action;
    fn body_len(&self) -> usize {
        18 + 8 * self.command.len()
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tick.to_le_bytes());
        out.extend_from_slice(&self.state_seq.to_le_bytes());
        out.extend_from_slice(&(self.command.len() as u16).to_le_bytes());
        for value in &self.command {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

impl Encode for StatusMessage {
    const KIND: MessageKind = MessageKind::Status;
    fn body_len(&self) -> usize {
        STATUS_BODY
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        out.push(self.phase as u8);
        for value in [
            self.ticks,
            self.held_ticks,
            self.states_accepted,
            self.rejected,
            self.emergency_stops,
            self.actions_dropped,
            self.swaps,
            self.starved_ticks,
            self.missed_periods,
            self.max_lateness_us,
            self.last_delay_ticks,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&self.last_seam_jump.to_le_bytes());
        for value in [
            self.inference_failures,
            self.inference_panics,
            self.inference_timeouts,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

impl Encode for ControlCommand {
    const KIND: MessageKind = MessageKind::Control;
    fn body_len(&self) -> usize {
        1
    }
    fn write_body(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

/// Reads the header of `bytes`, checking magic, version and that the kind is `expected`; returns it and the body.
pub fn decode_header(bytes: &[u8], expected: MessageKind) -> Result<(Header, &[u8]), Rejection> {
    if bytes.len() < HEADER_LEN {
        return Err(Rejection::new(
            RejectKind::Malformed,
            format!(
                "{} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if bytes[..4] != MAGIC {
        return Err(Rejection::new(
            RejectKind::Malformed,
            format!("magic {:02x?}, expected \"RTCK\"", &bytes[..4]),
        ));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != SCHEMA_VERSION {
        return Err(Rejection::new(
            RejectKind::Version,
            format!("schema version {version}, this build speaks {SCHEMA_VERSION}"),
        ));
    }
    if bytes[6] != expected as u8 {
        return Err(Rejection::new(
            RejectKind::WrongKind,
            format!(
                "message kind {}, expected {} ({expected:?})",
                bytes[6], expected as u8
            ),
        ));
    }
    let header = Header {
        kind: expected,
        flags: bytes[7],
        source: u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")),
        seq: u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")),
        stamp_ns: u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")),
    };
    Ok((header, &bytes[HEADER_LEN..]))
}

/// Reads little-endian values from a body, front to back.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        head.try_into().expect("length checked before reading")
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn remaining(&self) -> usize {
        self.bytes.len()
    }
    /// The optional image section of a state body: nothing left means no images.
    fn images(&mut self) -> Result<Vec<ImageView<'a>>, Rejection> {
        let Some((&count, rest)) = self.bytes.split_first() else {
            return Ok(Vec::new());
        };
        self.bytes = rest;
        if count == 0 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                "an image section of 0 images (leave it out instead)",
            ));
        }
        let mut images = Vec::with_capacity(count.into());
        for index in 0..count {
            if self.remaining() < 6 {
                return Err(Rejection::new(
                    RejectKind::Malformed,
                    format!("image {index}: the body ends in its 6-byte header"),
                ));
            }
            let (height, width) = (self.u16(), self.u16());
            let [channels, encoding] = self.take();
            if encoding != RAW_PIXELS {
                return Err(Rejection::new(
                    RejectKind::Malformed,
                    format!("image {index}: encoding {encoding}, this build reads 0 (raw 8-bit)"),
                ));
            }
            let bytes = usize::from(height) * usize::from(width) * usize::from(channels);
            if self.remaining() < bytes {
                return Err(Rejection::new(
                    RejectKind::Malformed,
                    format!(
                        "image {index}: {height}x{width}x{channels} needs {bytes} bytes, {} left",
                        self.remaining()
                    ),
                ));
            }
            let (pixels, rest) = self.bytes.split_at(bytes);
            self.bytes = rest;
            images.push(ImageView {
                height,
                width,
                channels,
                pixels,
            });
        }
        if self.remaining() != 0 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("{} bytes after the last image", self.remaining()),
            ));
        }
        Ok(images)
    }

    /// `u32 n` and the `n * width` bytes that follow, checked against what is left.
    fn counted(&mut self, what: &str, width: usize) -> Result<&'a [u8], Rejection> {
        if self.remaining() < 4 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("{what}: the body ends before its length"),
            ));
        }
        let n = self.u32() as usize;
        if self.remaining() < n * width {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!(
                    "{what}: {n} values declared, {} bytes left",
                    self.remaining()
                ),
            ));
        }
        let (head, rest) = self.bytes.split_at(n * width);
        self.bytes = rest;
        Ok(head)
    }

    /// `u32 n, u8[n]`.
    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, Rejection> {
        Ok(self.counted(what, 1)?.to_vec())
    }

    /// `u32 n, f32[n]`, checking the length against what is left and the values for finiteness.
    fn f32s(&mut self, what: &str) -> Result<Vec<f32>, Rejection> {
        let values: Vec<f32> = self
            .counted(what, 4)?
            .chunks_exact(4)
            .map(|v| f32::from_le_bytes(v.try_into().expect("4 bytes")))
            .collect();
        check_finite(values.iter().map(|&v| v as f64), what)?;
        Ok(values)
    }
}

fn check_length(body: &[u8], expected: usize, what: &str) -> Result<(), Rejection> {
    if body.len() == expected {
        Ok(())
    } else {
        Err(Rejection::new(
            RejectKind::Malformed,
            format!(
                "{what} body of {} bytes, its sizes declare {expected}",
                body.len()
            ),
        ))
    }
}

fn check_finite(values: impl IntoIterator<Item = f64>, what: &str) -> Result<(), Rejection> {
    match values.into_iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Rejection::new(
            RejectKind::NonFinite,
            format!("{what}[{i}] is not finite"),
        )),
    }
}

impl<'a> StateView<'a> {
    /// Decodes a state body, checking sizes against `joints` (0 also accepted: no joint feedback),
    /// `observation_dim` and `cameras` (images are required in that order and shape when the policy has
    /// cameras; a robot may send images a policy without cameras ignores), and that every value is finite.
    pub fn decode(
        body: &'a [u8],
        joints: usize,
        observation_dim: usize,
        cameras: &[Camera],
    ) -> Result<Self, Rejection> {
        if body.len() < 4 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                "state body shorter than its 4-byte sizes",
            ));
        }
        let mut reader = Reader { bytes: body };
        let (n, m) = (reader.u16() as usize, reader.u16() as usize);
        let vectors = 4 + 16 * n + 4 * m;
        if body.len() < vectors {
            check_length(body, vectors, "state")?;
        }
        if (n != joints && n != 0) || m != observation_dim {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!(
                    "{n} joints and {m} observation values, expected {joints} (or 0) and {observation_dim}"
                ),
            ));
        }
        let position: Vec<f64> = (0..n).map(|_| reader.f64()).collect();
        let velocity: Vec<f64> = (0..n).map(|_| reader.f64()).collect();
        let observation: Vec<f32> = (0..m).map(|_| reader.f32()).collect();
        let images = reader.images()?;
        check_finite(position.iter().copied(), "position")?;
        check_finite(velocity.iter().copied(), "velocity")?;
        check_finite(observation.iter().map(|&v| v as f64), "observation")?;
        check_images(&images, cameras)?;
        Ok(StateView {
            state: StateMessage {
                position,
                velocity,
                observation,
                images: Vec::new(),
            },
            images,
        })
    }
}

/// Checks that `images` are the policy's `cameras`, in order and shape (anything goes when it has none).
fn check_images(images: &[ImageView], cameras: &[Camera]) -> Result<(), Rejection> {
    let fits = images.len() == cameras.len()
        && images.iter().zip(cameras).all(|(image, camera)| {
            (
                usize::from(image.height),
                usize::from(image.width),
                usize::from(image.channels),
            ) == (camera.height, camera.width, camera.channels)
        });
    if cameras.is_empty() || fits {
        return Ok(());
    }
    let shape = |h: usize, w: usize, c: usize| format!("{h}x{w}x{c}");
    let got: Vec<String> = images
        .iter()
        .map(|i| shape(i.height.into(), i.width.into(), i.channels.into()))
        .collect();
    let expected: Vec<String> = cameras
        .iter()
        .map(|c| shape(c.height, c.width, c.channels))
        .collect();
    let names: Vec<&str> = cameras.iter().map(|c| c.name.as_str()).collect();
    Err(Rejection::new(
        RejectKind::Dimensions,
        format!(
            "camera images {got:?} (height x width x channels), expected {expected:?} for {names:?}"
        ),
    ))
}

impl ActionMessage {
    /// Decodes an action body with `dims` command values, all finite.
    pub fn decode(body: &[u8], dims: usize) -> Result<Self, Rejection> {
        if body.len() < 18 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                "action body shorter than 18 bytes",
            ));
        }
        let mut reader = Reader { bytes: body };
        let (tick, state_seq, n) = (reader.u64(), reader.u64(), reader.u16() as usize);
        check_length(body, 18 + 8 * n, "action")?;
        if n != dims {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!("{n} command values, expected {dims}"),
            ));
        }
        let command: Vec<f64> = (0..n).map(|_| reader.f64()).collect();
        check_finite(command.iter().copied(), "command")?;
        Ok(ActionMessage {
            tick,
            state_seq,
            command,
        })
    }
}

impl StatusMessage {
    /// Decodes a status body.
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        check_length(body, STATUS_BODY, "status")?;
        let phase = match body[0] {
            0 => Phase::Waiting,
            1 => Phase::Running,
            2 => Phase::Holding,
            3 => Phase::Stopped,
            other => {
                return Err(Rejection::new(
                    RejectKind::WrongKind,
                    format!("phase {other}, expected 0..=3"),
                ));
            }
        };
        let mut reader = Reader { bytes: &body[1..] };
        Ok(StatusMessage {
            phase,
            ticks: reader.u64(),
            held_ticks: reader.u64(),
            states_accepted: reader.u64(),
            rejected: reader.u64(),
            emergency_stops: reader.u64(),
            actions_dropped: reader.u64(),
            swaps: reader.u64(),
            starved_ticks: reader.u64(),
            missed_periods: reader.u64(),
            max_lateness_us: reader.u64(),
            last_delay_ticks: reader.u64(),
            last_seam_jump: reader.f32(),
            inference_failures: reader.u64(),
            inference_panics: reader.u64(),
            inference_timeouts: reader.u64(),
        })
    }
}

impl ControlCommand {
    /// Decodes a control body.
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        check_length(body, 1, "control")?;
        match body[0] {
            1 => Ok(ControlCommand::Start),
            2 => Ok(ControlCommand::Stop),
            3 => Ok(ControlCommand::Reset),
            4 => Ok(ControlCommand::EmergencyStop),
            other => Err(Rejection::new(
                RejectKind::WrongKind,
                format!(
                    "control command {other}, expected 1 (start), 2 (stop), 3 (reset) or 4 (emergency stop)"
                ),
            )),
        }
    }
}

impl ChunkQuery {
    /// The bytes of the largest valid query message (header included) for these dimensions: a server refuses
    /// anything larger before reading it.
    pub fn max_len(observation_dim: usize, chunk_len: usize, image_bytes: usize) -> usize {
        HEADER_LEN + 24 + 4 + 4 * observation_dim + 4 + 4 * chunk_len + 4 + image_bytes
    }

    /// Decodes a query body, checking the observation length against `observation_dim`, the committed actions
    /// against the chunk length `chunk_len` and the camera images against `image_bytes`.
    pub fn decode(
        body: &[u8],
        observation_dim: usize,
        chunk_len: usize,
        image_bytes: usize,
    ) -> Result<Self, Rejection> {
        if body.len() < 24 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                "chunk query body shorter than 24 bytes",
            ));
        }
        let mut reader = Reader { bytes: body };
        let (request_seq, stream, executed, delay) =
            (reader.u64(), reader.u64(), reader.u32(), reader.u32());
        let observation = reader.f32s("observation")?;
        let committed = reader.f32s("committed")?;
        let images = reader.bytes("images")?;
        if reader.remaining() != 0 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("{} bytes after the query", reader.remaining()),
            ));
        }
        if observation.len() != observation_dim
            || committed.len() > chunk_len
            || images.len() != image_bytes
        {
            return Err(Rejection::new(
                RejectKind::Dimensions,
                format!(
                    "{} observation values, {} committed values and {} image bytes, expected {observation_dim}, at most {chunk_len} and {image_bytes}",
                    observation.len(),
                    committed.len(),
                    images.len()
                ),
            ));
        }
        Ok(ChunkQuery {
            request_seq,
            stream,
            executed,
            delay,
            observation,
            committed,
            images,
        })
    }
}

impl ChunkReply {
    /// Decodes a reply body whose chunk must have `chunk_len` values.
    pub fn decode(body: &[u8], chunk_len: usize) -> Result<Self, Rejection> {
        if body.len() < 21 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                "chunk reply body shorter than 21 bytes",
            ));
        }
        let mut reader = Reader { bytes: body };
        let (request_seq, inference_us) = (reader.u64(), reader.u64());
        let ok: [u8; 1] = reader.take();
        let chunk = match ok[0] {
            1 => {
                let chunk = reader.f32s("chunk")?;
                if chunk.len() != chunk_len {
                    return Err(Rejection::new(
                        RejectKind::Dimensions,
                        format!("a chunk of {} values, expected {chunk_len}", chunk.len()),
                    ));
                }
                Ok(chunk)
            }
            0 => Err(String::from_utf8_lossy(reader.counted("error message", 1)?).into_owned()),
            other => {
                return Err(Rejection::new(
                    RejectKind::Malformed,
                    format!("chunk reply status byte {other}, expected 1 (chunk) or 0 (error)"),
                ));
            }
        };
        if reader.remaining() != 0 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("{} bytes after the chunk reply", reader.remaining()),
            ));
        }
        Ok(ChunkReply {
            request_seq,
            inference_us,
            chunk,
        })
    }
}

impl PolicyInfo {
    /// Decodes a policy-info body.
    pub fn decode(body: &[u8]) -> Result<Self, Rejection> {
        let truncated = || Rejection::new(RejectKind::Malformed, "policy info body cut short");
        if body.len() < 8 {
            return Err(truncated());
        }
        let mut reader = Reader { bytes: body };
        let (horizon, action_dim, observation_dim) = (reader.u16(), reader.u16(), reader.u16());
        let [capabilities, count] = reader.take();
        let mut cameras = Vec::new();
        for _ in 0..count {
            if reader.remaining() < 6 {
                return Err(truncated());
            }
            let (height, width) = (reader.u16(), reader.u16());
            let [channels, name_len] = reader.take();
            if reader.remaining() < name_len.into() {
                return Err(truncated());
            }
            let (name, rest) = reader.bytes.split_at(name_len.into());
            reader.bytes = rest;
            cameras.push(Camera {
                name: String::from_utf8_lossy(name).into_owned(),
                height: height.into(),
                width: width.into(),
                channels: channels.into(),
            });
        }
        if reader.remaining() != 0 {
            return Err(Rejection::new(
                RejectKind::Malformed,
                format!("{} bytes after the policy info", reader.remaining()),
            ));
        }
        Ok(PolicyInfo {
            horizon,
            action_dim,
            observation_dim,
            capabilities,
            cameras,
        })
    }
}

/// Orders the messages of a topic: it locks onto one source (the first it hears) and accepts only that source's
/// messages, each with a sequence number above the last. Another source takes over only once the locked one has
/// been silent for the hand-over time (e.g. the stale limit), so a lingering old bridge process cannot feed old
/// messages between a new one's; its messages are rejected as [`RejectKind::OtherSource`].
#[derive(Debug)]
pub struct SequenceGuard {
    locked: Option<LockedSource>,
    handover_after_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct LockedSource {
    source: u32,
    seq: u64,
    heard_ns: u64,
}

/// Whether an accepted message came from the source already in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChange {
    /// The same source as the last accepted message.
    Same,
    /// The first source, or a new one taking over from a silent one.
    New,
}

impl SequenceGuard {
    /// A guard that hands over to another source after `handover_after_ns` of silence from the locked one.
    pub fn new(handover_after_ns: u64) -> Self {
        SequenceGuard {
            locked: None,
            handover_after_ns,
        }
    }

    /// Checks `header`, arriving at `now_ns` (any monotonic clock), and, if it is accepted, remembers it.
    pub fn accept(&mut self, header: &Header, now_ns: u64) -> Result<SourceChange, Rejection> {
        let change = match self.locked {
            Some(locked) if locked.source == header.source => {
                if header.seq <= locked.seq {
                    return Err(Rejection::new(
                        RejectKind::OutOfOrder,
                        format!("sequence number {} after {}", header.seq, locked.seq),
                    ));
                }
                SourceChange::Same
            }
            Some(locked) if now_ns.saturating_sub(locked.heard_ns) < self.handover_after_ns => {
                return Err(Rejection::new(
                    RejectKind::OtherSource,
                    format!(
                        "source {:08x} while source {:08x} is live (last heard {} ms ago; a new source takes over \
                         after {} ms of silence)",
                        header.source,
                        locked.source,
                        now_ns.saturating_sub(locked.heard_ns) / 1_000_000,
                        self.handover_after_ns / 1_000_000
                    ),
                ));
            }
            _ => SourceChange::New,
        };
        self.locked = Some(LockedSource {
            source: header.source,
            seq: header.seq,
            heard_ns: now_ns,
        });
        Ok(change)
    }
}

/// A random source identifier for this process.
pub fn new_source_id() -> u32 {
    let mixed =
        (wall_clock_ns() ^ ((std::process::id() as u64) << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 32) as u32 | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(reply: &ChunkReply) -> Vec<u8> {
        let bytes = reply.encode(0, 3, 1, 0);
        let (_, body) = decode_header(&bytes, MessageKind::ChunkReply).unwrap();
        body.to_vec()
    }

    #[test]
    fn a_chunk_reply_is_decoded_strictly() {
        for reply in [
            ChunkReply {
                request_seq: 4,
                inference_us: 9,
                chunk: Ok(vec![0.5; 6]),
            },
            ChunkReply {
                request_seq: 5,
                inference_us: 1,
                chunk: Err("out of memory".into()),
            },
        ] {
            let body = body_of(&reply);
            assert_eq!(ChunkReply::decode(&body, 6).unwrap(), reply);
            let mut longer = body.clone();
            longer.push(0);
            let trailing = ChunkReply::decode(&longer, 6).unwrap_err();
            assert_eq!(trailing.kind, RejectKind::Malformed);
            assert!(trailing.detail.contains("1 bytes after"), "{trailing:?}");
            let mut status = body.clone();
            status[16] = 7;
            let status = ChunkReply::decode(&status, 6).unwrap_err();
            assert!(status.detail.contains("status byte 7"), "{status:?}");
        }
    }
}
