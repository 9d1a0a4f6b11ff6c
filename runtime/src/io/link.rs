//! The robot side of the zenoh link: I/O threads that move robot state in and commands out through wait-free
//! structures, and [`ZenohPlant`], the controller thread's view of them.
//!
//! - state: a zenoh subscriber whose callback, on zenoh's receiving thread as each message arrives, validates it
//!   and publishes it into a triple buffer (the controller always reads the newest state), its camera images
//!   into another that only the inference worker reads ([`RobotLink::take_camera_feed`]) and, when the run
//!   records them, a copy of each into a channel for the recorder ([`RobotLink::take_camera_frames`]); then it
//!   rings the state clock's doorbell ([`RobotLink::state_signal`]). No thread of rtchunk's own stands between
//!   the socket and the controller;
//! - actions: the controller pushes one record per tick into an SPSC ring and rings a futex doorbell; the
//!   `rtchunk-actions` thread publishes them;
//! - control: a subscriber callback sets atomic flags (stop, emergency stop, start);
//! - status: the `rtchunk-status` thread publishes the counters at `io.status_rate_hz`.
//!
//! Rejected input is counted per kind and logged once per kind and topic; it never reaches the controller.

use crate::core::clock::{monotonic_ns, wall_clock_ns};
use crate::core::cpu_reservation::LINK_ACTION_THREAD;
use crate::core::doorbell::Doorbell;
use crate::core::inference_fault::InferenceFaultCounters;
use crate::core::messages::{CameraFeed, CameraFrame};
use crate::core::metrics::{Distribution, Quantiles};
use crate::core::rt_setup::{Step, set_thread_fifo};
use crate::core::state_clock::StateSignal;
use crate::io::protocol::{
    ControlCommand, Encode, MessageKind, Phase, RejectKind, Rejection, StatusMessage,
    decode_header, new_source_id,
};
use crate::io::session::{IoError, Topics, open_session, prioritise_zenoh_threads};
use crate::io::wire::{Command, LatestState, StateDecoder, Wire, native_wire};
use nalgebra::DVector;
use rtchunk_config::{IoConfig, OnStale};
use rtchunk_controllers::{Freshness, Plant, RobotState, TickReport};
use rtchunk_policy::Camera;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use zenoh::Wait;

/// The most joints a command may have (the policy's action dimension is at most 64).
pub const MAX_JOINTS: usize = 64;
/// Capacity of the action ring: about 4 s at 1 kHz.
const ACTION_RING: usize = 4096;

/// Counters shared by the I/O threads, the plant and the status publisher (all wait-free atomics).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// State messages accepted.
    pub states_accepted: AtomicU64,
    /// Rejected messages per [`RejectKind`] (state and control topics together).
    pub rejected: [AtomicU64; RejectKind::ALL.len()],
    /// Controller ticks.
    pub ticks: AtomicU64,
    /// Ticks held on stale state.
    pub held_ticks: AtomicU64,
    /// Emergency stops received.
    pub emergency_stops: AtomicU64,
    /// Action records the publisher could not keep up with.
    pub actions_dropped: AtomicU64,
    /// Action messages published.
    pub actions_published: AtomicU64,
    /// Chunks adopted.
    pub swaps: AtomicU64,
    /// Ticks whose chunk had run out.
    pub starved_ticks: AtomicU64,
    /// Controller periods skipped after overruns.
    pub missed_periods: AtomicU64,
    /// The latest wake after a deadline so far, nanoseconds.
    pub max_lateness_ns: AtomicU64,
    /// The observed inference delay of the last adopted chunk, policy ticks.
    pub last_delay_ticks: AtomicU64,
    /// The step at the last seam (f32 bits).
    pub last_seam_jump: AtomicU32,
    /// Failed inferences by kind, counted by the run's inference worker (given to it in `RunOptions`).
    pub inference_faults: Arc<InferenceFaultCounters>,
    phase: AtomicU8,
}

impl LinkCounters {
    /// Rejections of `kind` so far.
    pub fn rejected(&self, kind: RejectKind) -> u64 {
        self.rejected[kind.index()].load(Ordering::Relaxed)
    }

    /// Rejections of every kind.
    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn status(&self) -> StatusMessage {
        let phase = match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Running,
            2 => Phase::Holding,
            3 => Phase::Stopped,
            _ => Phase::Waiting,
        };
        StatusMessage {
            phase,
            ticks: self.ticks.load(Ordering::Relaxed),
            held_ticks: self.held_ticks.load(Ordering::Relaxed),
            states_accepted: self.states_accepted.load(Ordering::Relaxed),
            rejected: self.rejected_total(),
            emergency_stops: self.emergency_stops.load(Ordering::Relaxed),
            actions_dropped: self.actions_dropped.load(Ordering::Relaxed),
            swaps: self.swaps.load(Ordering::Relaxed),
            starved_ticks: self.starved_ticks.load(Ordering::Relaxed),
            missed_periods: self.missed_periods.load(Ordering::Relaxed),
            max_lateness_us: self.max_lateness_ns.load(Ordering::Relaxed) / 1000,
            last_delay_ticks: self.last_delay_ticks.load(Ordering::Relaxed),
            last_seam_jump: f32::from_bits(self.last_seam_jump.load(Ordering::Relaxed)),
            inference_failures: self.inference_faults.failures(),
            inference_panics: self.inference_faults.panics(),
            inference_timeouts: self.inference_faults.timeouts(),
        }
    }
}

/// Counts a rejection and logs the first of each kind on each topic.
struct RejectLog {
    topic: String,
    counters: Arc<LinkCounters>,
    logged: [AtomicBool; RejectKind::ALL.len()],
}

impl RejectLog {
    fn new(topic: &str, counters: Arc<LinkCounters>) -> Self {
        RejectLog {
            topic: topic.to_string(),
            counters,
            logged: Default::default(),
        }
    }

    fn reject(&self, rejection: &Rejection) {
        let index = rejection.kind.index();
        self.counters.rejected[index].fetch_add(1, Ordering::Relaxed);
        if !self.logged[index].swap(true, Ordering::Relaxed) {
            tracing::warn!(
                topic = %self.topic,
                "rejected a message ({rejection}); further {} messages on this topic are counted, not logged",
                rejection.kind
            );
        }
    }
}

/// One tick's command on its way to the publisher (fixed size, so pushing never allocates).
#[derive(Debug, Clone, Copy)]
struct ActionRecord {
    tick: u64,
    state_seq: u64,
    /// When the state was sent, on this host's monotonic clock ([`LatestState::received_ns`]).
    state_sent_ns: u64,
    /// The sender's stamp on the state, on its wall clock (0: none).
    state_stamp_wall_ns: u64,
    held: bool,
    command: [f64; MAX_JOINTS],
}

/// How old each state was when the first command computed from it left, in milliseconds: from its arrival
/// ([`RobotLink::state_to_command`]) and from its sender's stamp ([`RobotLink::stamp_to_command`]).
struct CommandAges {
    since_arrival: Distribution,
    since_stamp: Distribution,
}

impl Default for CommandAges {
    fn default() -> Self {
        CommandAges {
            since_arrival: Distribution::milliseconds(),
            since_stamp: Distribution::milliseconds(),
        }
    }
}

/// Where a state stands in its sender's stream: the sender's sequence number and when it was sent, on this host's
/// monotonic clock ([`LatestState::received_ns`]). Two marks give the rate the robot sends at, lost states
/// included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateMark {
    /// The sender's sequence number.
    pub seq: u64,
    /// When it was sent, nanoseconds on this host's monotonic clock.
    pub sent_ns: u64,
}

impl StateMark {
    /// States per second the sender sent from `self` to `later`, counted by its sequence numbers (so states lost on
    /// the way still count); None when the two marks do not bound a run of one sender's states (none sent
    /// between them, or its sequence restarted).
    pub fn send_rate_hz(&self, later: &StateMark) -> Option<f64> {
        if later.seq <= self.seq || later.sent_ns <= self.sent_ns {
            return None;
        }
        Some((later.seq - self.seq) as f64 * 1e9 / (later.sent_ns - self.sent_ns) as f64)
    }
}

/// The state side of the link, run by the state subscriber's callback (on zenoh's receiving thread) for each
/// state message as it arrives: decodes and validates it, publishes it to the controller and its images to the
/// inference (and to the recorder, when it wants them), and rings the state clock's doorbell.
struct StateIntake {
    decoder: Box<dyn StateDecoder>,
    state_in: triple_buffer::Input<LatestState>,
    camera_in: triple_buffer::Input<CameraFrame>,
    with_cameras: bool,
    frames_out: Option<crossbeam_channel::Sender<CameraFrame>>,
    frames_wanted: Arc<AtomicBool>,
    counters: Arc<LinkCounters>,
    log: RejectLog,
    /// Each accepted state's time from its sender's stamp to its decoding, in milliseconds
    /// ([`RobotLink::state_transit`]).
    transit: Distribution,
    /// The newest accepted state's sequence number and send time ([`RobotLink::newest_state`]).
    newest: Option<StateMark>,
    signal: Arc<StateSignal>,
}

impl StateIntake {
    /// Takes one state message (its payload and zenoh attachment).
    fn accept(&mut self, payload: &[u8], attachment: Option<&[u8]>) {
        let decoded = self.decoder.decode(
            payload,
            attachment,
            monotonic_ns(),
            self.state_in.input_buffer_mut(),
            self.camera_in.input_buffer_mut(),
        );
        if let Err(rejection) = decoded {
            self.log.reject(&rejection);
            return;
        }
        let state = self.state_in.input_buffer_mut();
        self.newest = Some(StateMark {
            seq: state.seq,
            sent_ns: state.received_ns,
        });
        let sent_wall_ns = state.sent_wall_ns;
        if sent_wall_ns > 0 {
            let transit_ns = wall_clock_ns().saturating_sub(sent_wall_ns);
            self.transit.push(transit_ns as f64 / 1e6);
        }
        self.state_in.publish();
        if self.with_cameras {
            if self.frames_wanted.load(Ordering::Relaxed) {
                let frame = self.camera_in.input_buffer_mut().clone();
                // Once the taker has gone, nobody wants the frames any more.
                if self
                    .frames_out
                    .as_ref()
                    .is_some_and(|out| out.send(frame).is_err())
                {
                    self.frames_out = None;
                    self.frames_wanted.store(false, Ordering::Relaxed);
                }
            }
            self.camera_in.publish();
        }
        self.counters
            .states_accepted
            .fetch_add(1, Ordering::Relaxed);
        self.signal.ring(monotonic_ns());
    }
}

/// Flags the control topic sets.
#[derive(Debug, Default)]
pub struct ControlFlags {
    /// A start command arrived.
    pub start: AtomicBool,
    /// Stop or emergency stop arrived (or the owner asks the run to end, e.g. on Ctrl-C).
    pub stop: AtomicBool,
}

/// The controller thread's side of the link: a [`Plant`] that reads the newest state from a triple buffer and
/// writes commands into a wait-free ring. Nothing here allocates, locks or touches zenoh.
pub struct ZenohPlant {
    state: triple_buffer::Output<LatestState>,
    actions: rtrb::Producer<ActionRecord>,
    action_bell: Arc<Doorbell>,
    counters: Arc<LinkCounters>,
    control: Arc<ControlFlags>,
    joints: usize,
    observation_dim: usize,
    stale_after_ns: u64,
    on_stale: OnStale,
    wait_for_start: bool,
    freshness: Freshness,
    state_seq: u64,
    state_sent_ns: u64,
    state_stamp_wall_ns: u64,
    tick: u64,
    started: bool,
}

impl ZenohPlant {
    fn classify(&mut self) -> Freshness {
        let control = &self.control;
        if control.stop.load(Ordering::Relaxed) {
            return Freshness::Stop;
        }
        if self.wait_for_start && !control.start.load(Ordering::Relaxed) {
            return Freshness::Stale;
        }
        let newest = self.state.output_buffer();
        let fresh = newest.seq != 0
            && monotonic_ns().saturating_sub(newest.received_ns) <= self.stale_after_ns;
        match (fresh, self.on_stale, self.started) {
            (true, _, _) => {
                self.started = true;
                Freshness::Fresh
            }
            (false, OnStale::Stop, true) => Freshness::Stop,
            (false, _, _) => Freshness::Stale,
        }
    }
}

impl Plant for ZenohPlant {
    fn dims(&self) -> usize {
        self.joints
    }

    fn observation_dim(&self) -> usize {
        self.observation_dim
    }

    fn read(&mut self, state: &mut RobotState, observation: &mut [f32]) {
        self.state.update();
        self.freshness = self.classify();
        let newest = self.state.output_buffer();
        self.state_seq = newest.seq;
        self.state_sent_ns = newest.received_ns;
        self.state_stamp_wall_ns = newest.sent_wall_ns;
        if newest.position.len() == state.position.len() {
            state.position.copy_from_slice(&newest.position);
            state.velocity.copy_from_slice(&newest.velocity);
        }
        if newest.observation.len() == observation.len() {
            observation.copy_from_slice(&newest.observation);
        }
        let phase = match self.freshness {
            Freshness::Fresh => Phase::Running,
            Freshness::Stale if self.started => Phase::Holding,
            Freshness::Stale => Phase::Waiting,
            Freshness::Stop => Phase::Stopped,
        };
        self.counters.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn freshness(&self) -> Freshness {
        self.freshness
    }

    fn state_seq(&self) -> u64 {
        self.state_seq
    }

    fn report(&mut self, tick: &TickReport) {
        let counters = &self.counters;
        counters
            .max_lateness_ns
            .fetch_max(tick.lateness_ns, Ordering::Relaxed);
        counters
            .missed_periods
            .fetch_add(tick.missed.into(), Ordering::Relaxed);
        if let Some(delay) = tick.swapped_with_delay {
            counters.swaps.fetch_add(1, Ordering::Relaxed);
            counters
                .last_delay_ticks
                .store(delay.into(), Ordering::Relaxed);
        }
        if let Some(jump) = tick.seam_jump {
            counters
                .last_seam_jump
                .store(jump.to_bits(), Ordering::Relaxed);
        }
        if tick.starved {
            counters.starved_ticks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(&mut self, command: &DVector<f64>) {
        let held = self.freshness != Freshness::Fresh;
        let mut record = ActionRecord {
            tick: self.tick,
            state_seq: self.state_seq,
            state_sent_ns: self.state_sent_ns,
            state_stamp_wall_ns: self.state_stamp_wall_ns,
            held,
            command: [0.0; MAX_JOINTS],
        };
        record.command[..command.len()].copy_from_slice(command.as_slice());
        if self.actions.push(record).is_err() {
            self.counters
                .actions_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        self.action_bell.ring();
        self.counters.ticks.fetch_add(1, Ordering::Relaxed);
        if held {
            self.counters.held_ticks.fetch_add(1, Ordering::Relaxed);
        }
        self.tick += 1;
    }
}

/// The I/O side of the link: the zenoh session and its threads. Dropping it without [`RobotLink::close`] still
/// stops the threads.
pub struct RobotLink {
    session: zenoh::Session,
    topics: Topics,
    counters: Arc<LinkCounters>,
    control: Arc<ControlFlags>,
    shutdown: Arc<AtomicBool>,
    action_bell: Arc<Doorbell>,
    threads: Vec<JoinHandle<()>>,
    /// The thread that publishes the commands (`rtchunk-actions`).
    action_thread: libc::pthread_t,
    camera_feed: Option<CameraFeed>,
    /// Every camera frame accepted, once someone takes the receiver ([`RobotLink::take_camera_frames`]).
    camera_frames: Option<crossbeam_channel::Receiver<CameraFrame>>,
    frames_wanted: Arc<AtomicBool>,
    state_signal: Arc<StateSignal>,
    state_topic: String,
    /// Where the session listens and connects, for errors.
    endpoints: String,
    command_ages: Arc<Mutex<CommandAges>>,
    state_intake: Arc<Mutex<StateIntake>>,
    _state_subscriber: zenoh::pubsub::Subscriber<()>,
    _control_subscriber: zenoh::pubsub::Subscriber<()>,
    _keep_alive: Vec<Box<dyn std::any::Any + Send>>,
}

impl RobotLink {
    /// Opens the session `io` describes and starts the I/O threads for a robot with `joints` command values,
    /// `observation_dim` observation values and the policy's `cameras` (each state must carry their images);
    /// returns the link and the controller's plant.
    pub fn open(
        io: &IoConfig,
        joints: usize,
        observation_dim: usize,
        cameras: &[Camera],
    ) -> Result<(RobotLink, ZenohPlant), IoError> {
        RobotLink::attach(open_session(io)?, io, joints, observation_dim, cameras)
    }

    /// [`RobotLink::open`] on a session that is already open (e.g. shared with a remote policy).
    pub fn attach(
        session: zenoh::Session,
        io: &IoConfig,
        joints: usize,
        observation_dim: usize,
        cameras: &[Camera],
    ) -> Result<(RobotLink, ZenohPlant), IoError> {
        let topics = Topics::new(&io.namespace);
        let wire = native_wire(
            &topics,
            joints,
            observation_dim,
            cameras,
            stale_after_ns(io),
        );
        RobotLink::attach_wire(session, io, wire, joints, observation_dim, cameras)
    }

    /// [`RobotLink::attach`] with states and commands in another format (`wire`); control and status stay on
    /// rtchunk's topics under `io.namespace`.
    pub fn attach_wire(
        session: zenoh::Session,
        io: &IoConfig,
        wire: Wire,
        joints: usize,
        observation_dim: usize,
        cameras: &[Camera],
    ) -> Result<(RobotLink, ZenohPlant), IoError> {
        if joints > MAX_JOINTS {
            return Err(IoError::Setup(format!(
                "{joints} joints, at most {MAX_JOINTS} are supported"
            )));
        }
        let topics = Topics::new(&io.namespace);
        let counters = Arc::new(LinkCounters::default());
        let control = Arc::new(ControlFlags::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let action_bell = Arc::new(Doorbell::default());
        let empty = LatestState {
            seq: 0,
            received_ns: 0,
            sent_wall_ns: 0,
            position: vec![0.0; joints],
            velocity: vec![0.0; joints],
            observation: vec![0.0; observation_dim],
        };
        let (state_in, state_out) = triple_buffer::triple_buffer(&empty);
        let (camera_in, camera_out) = triple_buffer::triple_buffer(&CameraFrame {
            state_seq: 0,
            pixels: vec![0; cameras.iter().map(Camera::bytes).sum()],
        });
        let camera_feed = (!cameras.is_empty()).then_some(camera_out);
        let (frames_out, frames_in) = crossbeam_channel::unbounded();
        let frames_wanted = Arc::new(AtomicBool::new(false));
        let state_signal = Arc::new(StateSignal::default());
        let (action_producer, action_consumer) = rtrb::RingBuffer::new(ACTION_RING);
        let source = new_source_id();
        let command_ages = Arc::new(Mutex::new(CommandAges::default()));
        let state_topic = wire.state_topic.clone();
        let keep_alive = wire.keep_alive;

        let control_subscriber = {
            let log = RejectLog::new(&topics.control, counters.clone());
            let control = control.clone();
            let counters = counters.clone();
            session
                .declare_subscriber(&topics.control)
                .callback(move |sample| {
                    let bytes = sample.payload().to_bytes();
                    match decode_header(&bytes, MessageKind::Control)
                        .and_then(|(_, body)| ControlCommand::decode(body))
                    {
                        Ok(command) => apply_control(command, &control, &counters),
                        Err(rejection) => log.reject(&rejection),
                    }
                })
                .wait()
                .map_err(|e| IoError::zenoh(&topics.control, e))?
        };
        let (state_subscriber, state_intake) = {
            let intake = StateIntake {
                decoder: wire.states,
                state_in,
                camera_in,
                with_cameras: !cameras.is_empty(),
                frames_out: Some(frames_out),
                frames_wanted: frames_wanted.clone(),
                counters: counters.clone(),
                log: RejectLog::new(&wire.state_topic, counters.clone()),
                transit: Distribution::milliseconds(),
                newest: None,
                signal: state_signal.clone(),
            };
            // Zenoh may call it from either receiving thread: the lock takes one state at a time.
            let intake = Arc::new(Mutex::new(intake));
            let state_intake = intake.clone();
            let subscriber = session
                .declare_subscriber(&wire.state_key)
                .callback(move |sample| {
                    let payload = sample.payload().to_bytes();
                    let attachment = sample.attachment().map(|a| a.to_bytes());
                    lock(&intake).accept(&payload, attachment.as_deref());
                })
                .wait()
                .map_err(|e| IoError::zenoh(&wire.state_topic, e))?;
            (subscriber, state_intake)
        };
        let action_thread = {
            let publisher = session
                .declare_publisher(wire.command_key.clone())
                .congestion_control(zenoh::qos::CongestionControl::Drop)
                .express(true)
                .wait()
                .map_err(|e| IoError::zenoh(&wire.command_key, e))?;
            let shutdown = shutdown.clone();
            let bell = action_bell.clone();
            let counters = counters.clone();
            let topic = wire.command_key.clone();
            let mut encoder = wire.commands;
            let command_ages = command_ages.clone();
            spawn(LINK_ACTION_THREAD, move || {
                let mut consumer: rtrb::Consumer<ActionRecord> = action_consumer;
                let mut last_state_seq = 0;
                loop {
                    let seen = bell.rings();
                    let mut published_any = false;
                    while let Ok(record) = consumer.pop() {
                        let (payload, attachment) = encoder.encode(&Command {
                            tick: record.tick,
                            state_seq: record.state_seq,
                            held: record.held,
                            values: &record.command[..joints],
                        });
                        let put = publisher.put(payload);
                        let put = match attachment {
                            Some(attachment) => put.attachment(attachment),
                            None => put,
                        };
                        if let Err(error) = put.wait() {
                            tracing::warn!(topic = %topic, "cannot publish an action: {error}");
                        }
                        if !record.held && record.state_seq != last_state_seq {
                            last_state_seq = record.state_seq;
                            let since_arrival_ns =
                                monotonic_ns().saturating_sub(record.state_sent_ns);
                            let since_stamp_ns = (record.state_stamp_wall_ns > 0).then(|| {
                                wall_clock_ns().saturating_sub(record.state_stamp_wall_ns)
                            });
                            let mut ages = lock(&command_ages);
                            ages.since_arrival.push(since_arrival_ns as f64 / 1e6);
                            if let Some(since_stamp_ns) = since_stamp_ns {
                                ages.since_stamp.push(since_stamp_ns as f64 / 1e6);
                            }
                        }
                        counters.actions_published.fetch_add(1, Ordering::Relaxed);
                        published_any = true;
                    }
                    if !published_any && shutdown.load(Ordering::Relaxed) {
                        return;
                    }
                    bell.wait(seen, Duration::from_millis(20));
                }
            })?
        };
        let status_thread = {
            let publisher = session
                .declare_publisher(topics.status.clone())
                .wait()
                .map_err(|e| IoError::zenoh(&topics.status, e))?;
            let shutdown = shutdown.clone();
            let counters = counters.clone();
            let period = Duration::from_secs_f64(1.0 / io.status_rate_hz);
            spawn("rtchunk-status", move || {
                let mut seq = 0u64;
                loop {
                    let last = shutdown.load(Ordering::Relaxed);
                    seq += 1;
                    let status = counters.status();
                    let _ = publisher
                        .put(status.encode(0, source, seq, wall_clock_ns()))
                        .wait();
                    if last {
                        return;
                    }
                    std::thread::sleep(period);
                }
            })?
        };
        let plant = ZenohPlant {
            state: state_out,
            actions: action_producer,
            action_bell: action_bell.clone(),
            counters: counters.clone(),
            control: control.clone(),
            joints,
            observation_dim,
            stale_after_ns: stale_after_ns(io),
            on_stale: io.on_stale,
            wait_for_start: io.wait_for_start,
            freshness: Freshness::Stale,
            state_seq: 0,
            state_sent_ns: 0,
            state_stamp_wall_ns: 0,
            tick: 0,
            started: false,
        };
        let link = RobotLink {
            session,
            topics,
            counters,
            control,
            shutdown,
            action_bell,
            action_thread: action_thread.as_pthread_t(),
            threads: vec![action_thread, status_thread],
            camera_feed,
            camera_frames: (!cameras.is_empty()).then_some(frames_in),
            frames_wanted,
            state_signal,
            state_topic,
            endpoints: format!(
                "the session listens on {:?} and connects to {:?}",
                io.listen, io.connect
            ),
            command_ages,
            state_intake,
            _state_subscriber: state_subscriber,
            _control_subscriber: control_subscriber,
            _keep_alive: keep_alive,
        };
        Ok((link, plant))
    }

    /// Puts the threads a state and its command pass through under SCHED_FIFO at `priority` (0: leaves them
    /// under the normal scheduler): zenoh's link threads ([`prioritise_zenoh_threads`]: the reactor that sees a
    /// state's bytes, the receiving thread that decodes it and wakes the controller, the transmitting thread that
    /// writes the command) and `rtchunk-actions`, which encodes and puts the command; so the inference and the
    /// process's other normal threads never delay any of them. Call it once a state has arrived: zenoh starts its
    /// link threads with the first link.
    pub fn prioritise_command_path(&self, priority: u8) -> Step {
        let zenoh = match prioritise_zenoh_threads(priority) {
            Step::Applied(what) => what,
            other => return other,
        };
        match set_thread_fifo(self.action_thread, priority) {
            Step::Applied(_) => Step::Applied(format!("{zenoh}, and rtchunk-actions")),
            other => other,
        }
    }

    /// The inference worker's end of the camera images (once; `None` when the policy has no cameras).
    pub fn take_camera_feed(&mut self) -> Option<CameraFeed> {
        self.camera_feed.take()
    }

    /// Every camera frame the link accepts from now on, each with the sequence number of its state (once;
    /// `None` when the policy has no cameras). The frames queue until read: take it only to drain it (the
    /// session's recorder does, with `rtchunk run --record-camera-frames`).
    pub fn take_camera_frames(&mut self) -> Option<crossbeam_channel::Receiver<CameraFrame>> {
        let frames = self.camera_frames.take();
        self.frames_wanted
            .store(frames.is_some(), Ordering::Relaxed);
        frames
    }

    /// Rung after every state the link accepts (with camera images published first): what the state clock
    /// ticks on.
    pub fn state_signal(&self) -> Arc<StateSignal> {
        self.state_signal.clone()
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<LinkCounters> {
        &self.counters
    }

    /// The control flags (set `stop` to end the run, e.g. on Ctrl-C).
    pub fn control(&self) -> &Arc<ControlFlags> {
        &self.control
    }

    /// The control and status topics in use.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The topic states arrive on (rtchunk's state topic, or the ROS 2 joint-state topic).
    pub fn state_topic(&self) -> &str {
        &self.state_topic
    }

    /// How long each state took, from its arrival, to the first command computed from it being handed to zenoh,
    /// in milliseconds: the state is dated by its sender's stamp plus the fastest transit seen from that sender
    /// ([`crate::io::transit::TransitAge`], free of any offset between the two clocks), so this is the link's and
    /// controller's own time plus whatever the state queued in the hop above its floor. Held commands are not
    /// counted.
    pub fn state_to_command(&self) -> Quantiles {
        lock(&self.command_ages).since_arrival.quantiles()
    }

    /// From the sender's stamp on each state to the first command computed from it being handed to zenoh, on the
    /// wall clocks, in milliseconds: the whole hop plus [`RobotLink::state_to_command`]'s time. Across hosts it
    /// includes their clock offset; on one host it is exact. Held commands are not counted.
    pub fn stamp_to_command(&self) -> Quantiles {
        lock(&self.command_ages).since_stamp.quantiles()
    }

    /// How long each accepted state took from its sender's stamp to being decoded here, in milliseconds: the
    /// wire's own time (serialising, zenoh, decoding), free of the controller's phase. Across hosts it includes
    /// their clock offset; on one host it is exact.
    pub fn state_transit(&self) -> Quantiles {
        lock(&self.state_intake).transit.quantiles()
    }

    /// The newest accepted state's place in its sender's stream (None before the first).
    pub fn newest_state(&self) -> Option<StateMark> {
        lock(&self.state_intake).newest
    }

    /// Blocks until the first valid state has arrived, or fails after `timeout` naming the topic.
    pub fn wait_for_first_state(&self, timeout: Duration) -> Result<(), IoError> {
        let deadline = monotonic_ns() + timeout.as_nanos() as u64;
        while self.counters.states_accepted.load(Ordering::Relaxed) == 0 {
            if self.control.stop.load(Ordering::Relaxed) {
                return Err(IoError::Setup(
                    "stopped before the first state arrived".into(),
                ));
            }
            if monotonic_ns() > deadline {
                return Err(IoError::Setup(format!(
                    "no valid state on {} within {:.1} s ({} messages rejected; {})",
                    self.state_topic,
                    timeout.as_secs_f64(),
                    self.counters.rejected_total(),
                    self.endpoints
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Publishes every queued action and a final status (phase stopped), then closes the session.
    pub fn close(mut self) {
        self.shutdown_threads();
        if let Err(error) = self.session.close().wait() {
            tracing::warn!("closing the zenoh session: {error}");
        }
    }

    fn shutdown_threads(&mut self) {
        self.counters
            .phase
            .store(Phase::Stopped as u8, Ordering::Relaxed);
        self.shutdown.store(true, Ordering::SeqCst);
        self.action_bell.ring();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for RobotLink {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}

fn apply_control(command: ControlCommand, control: &ControlFlags, counters: &LinkCounters) {
    match command {
        ControlCommand::Start => control.start.store(true, Ordering::Relaxed),
        ControlCommand::Stop => control.stop.store(true, Ordering::Relaxed),
        ControlCommand::Reset => tracing::debug!("reset received: left to the robot's side"),
        ControlCommand::EmergencyStop => {
            counters.emergency_stops.fetch_add(1, Ordering::Relaxed);
            control.stop.store(true, Ordering::Relaxed);
            tracing::warn!("emergency stop received: holding, then stopping");
        }
    }
}

/// `io.stale_after_ms` in nanoseconds.
fn stale_after_ns(io: &IoConfig) -> u64 {
    (io.stale_after_ms * 1e6) as u64
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, IoError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| IoError::Setup(format!("cannot start the {name} thread: {e}")))
}

/// Locks the state intake or the command ages (each touched by one I/O thread and the link's owner; a panic
/// while holding it leaves plain numbers and buffers, so a poisoned lock is still used).
fn lock<T>(record: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    record
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::StateMark;

    fn mark(seq: u64, sent_ms: u64) -> StateMark {
        StateMark {
            seq,
            sent_ns: sent_ms * 1_000_000,
        }
    }

    #[test]
    fn the_send_rate_counts_lost_states_by_their_sequence_numbers() {
        // 27 states/s: ten periods of 37.04 ms, whichever of them arrived.
        let rate = mark(5, 1_000).send_rate_hz(&mark(15, 1_370)).unwrap();
        assert!((rate - 27.03).abs() < 0.01, "{rate}");
    }

    #[test]
    fn no_send_rate_without_a_later_state_of_the_same_sequence() {
        assert_eq!(mark(5, 1_000).send_rate_hz(&mark(5, 1_000)), None);
        assert_eq!(mark(500, 1_000).send_rate_hz(&mark(3, 1_100)), None);
        assert_eq!(mark(5, 1_100).send_rate_hz(&mark(9, 1_000)), None);
    }
}
