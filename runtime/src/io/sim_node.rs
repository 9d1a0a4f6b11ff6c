//! `rtchunk sim serve`: a benchmark task as its own process on its own clock. Every control period it applies
//! the newest command it has received (zero before the first), steps the task and publishes the new state, with
//! optional injected transport delay, jitter and loss. It measures the end-to-end latency from publishing a
//! state to receiving the first command computed from it.
//!
//! It is also the reference for the robot side of the bridge contract: when no command has arrived for
//! `command_timeout_ms` while an episode runs (the runtime was killed, hangs, or the network is cut), the node
//! brakes: it stops applying commands and stepping the task, ends the episode as [`BRAKED`], records when, and
//! waits for commands to resume before its next episode.

use crate::core::clock::{monotonic_ns, wall_clock_ns};
use crate::core::metrics::{Distribution, Quantiles};
use crate::core::rt_setup::Step;
use crate::io::protocol::{CameraImage, StateMessage};
use crate::io::robot_wire::{RobotCodec, Ros2Robot, native_robot_wire, ros2_robot_wire};
use crate::io::session::{IoError, Topics, open_session, prioritise_zenoh_threads};
use crate::io::stop_request::StopRequest;
use rtchunk_config::{CommandType, IoConfig};
use rtchunk_policy::NormalRng;
use rtchunk_sim::{CONTROL_PERIOD, Env, Status, TaskKind};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use zenoh::Wait;

/// Commands queued between two control periods at most; more are dropped and counted as rejected.
const ARRIVALS_QUEUE: usize = 1024;
/// How long the node repeats its stop at the end (`stop_runtime_when_done`) until the runtime confirms it.
const STOP_CONFIRM_TIMEOUT: Duration = Duration::from_secs(3);
/// Publish times of this many recent states are kept to match commands to the state they used.
const LATENCY_WINDOW: usize = 1024;
/// Silence after which another runtime's commands take over from the one in use (a restarted runtime).
const COMMAND_SOURCE_HANDOVER_NS: u64 = 500_000_000;
/// The outcome of an episode the node ended by braking (no command within the command timeout).
pub const BRAKED: &str = "braked";

/// How the simulator node runs.
#[derive(Debug, Clone)]
pub struct SimNodeSettings {
    /// The task.
    pub task: TaskKind,
    /// Episodes to run before exiting.
    pub episodes: u64,
    /// Seed of the first episode (then the next ones).
    pub first_seed: u64,
    /// Control rate in Hz (the task's own is 30).
    pub rate_hz: f64,
    /// Injected one-way transport delay, applied to arriving commands, in milliseconds.
    pub delay_ms: f64,
    /// Extra delay drawn uniformly from 0..jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Probability that a published state or an arriving command is dropped.
    pub loss: f64,
    /// Seed of the jitter and loss draws.
    pub seed: u64,
    /// After the last episode, publish a stop on the control topic until the runtime confirms it (its status).
    pub stop_runtime_when_done: bool,
    /// Seconds to wait for the first command before giving up.
    pub first_command_timeout_s: f64,
    /// Brake when no command has arrived for this long during an episode, in milliseconds (0: never).
    pub command_timeout_ms: f64,
    /// Render the task into an RGB camera image this wide and send it with every state (None: no camera).
    pub camera_width: Option<usize>,
    /// Be a ROS 2 robot over rmw_zenoh taking commands of this type (None: rtchunk's protocol): see
    /// [`ros2_robot`].
    pub ros2: Option<CommandType>,
    /// SCHED_FIFO priority of the node's zenoh link threads, as a robot's real-time driver runs its I/O, so that
    /// a busy process beside it on the same machine (the runtime's inference) does not hold a state or command
    /// (0: the normal scheduler; [`prioritise_zenoh_threads`]).
    pub io_fifo_priority: u8,
}

/// The ROS 2 robot the simulator node plays with `ros2` set: domain 0, joint states on `/joint_states` (one
/// joint per observation entry, its value the position), commands on `/forward_command_controller/commands`,
/// the camera on `/camera/image_raw`.
pub fn ros2_robot(settings: &SimNodeSettings, command_type: CommandType) -> Ros2Robot {
    let spec = Env::new(settings.task).spec();
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    Ros2Robot {
        domain: 0,
        joint_states_topic: "/joint_states".to_string(),
        command_topic: "/forward_command_controller/commands".to_string(),
        command_type,
        camera_topics: settings
            .camera_width
            .map(|_| vec!["/camera/image_raw".to_string()])
            .unwrap_or_default(),
        observation_names: names(spec.observation),
        action_names: names(spec.action),
    }
}

impl SimNodeSettings {
    /// One episode of `task` at 30 Hz, no injected faults.
    pub fn new(task: TaskKind) -> Self {
        SimNodeSettings {
            task,
            episodes: 1,
            first_seed: 0,
            rate_hz: 1.0 / CONTROL_PERIOD,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            loss: 0.0,
            seed: 0,
            stop_runtime_when_done: false,
            first_command_timeout_s: 30.0,
            command_timeout_ms: 250.0,
            camera_width: None,
            ros2: None,
            io_fifo_priority: 0,
        }
    }
}

/// One control step of an episode, as the simulator took it: which command it applied and what it then
/// observed. With the runtime's log this lets `rtchunk replay --sim-report` re-run the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The controller tick of the command applied at this step (none before the first command arrived).
    pub command_tick: Option<u64>,
    /// The observation published after the step.
    pub observation: Vec<f32>,
}

/// How one episode went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpisodeReport {
    /// Its seed.
    pub seed: u64,
    /// Solved.
    pub success: bool,
    /// How it ended: "success", "failure", "timeout", [`BRAKED`] when commands stopped arriving, or "running"
    /// when the node was stopped during it.
    pub outcome: String,
    /// Control steps taken.
    pub steps: u32,
    /// Wall time of the episode, in seconds.
    pub seconds: f64,
    /// Every control step.
    pub step_records: Vec<StepRecord>,
}

/// When and why the node braked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BrakeRecord {
    /// The episode.
    pub seed: u64,
    /// Control steps the episode had taken.
    pub step: u32,
    /// How long no command had arrived when the node braked, in milliseconds.
    pub silent_ms: f64,
    /// When it braked: wall-clock nanoseconds since the Unix epoch (to compare with another process's clock).
    pub wall_ns: u64,
}

/// What the node measured.
#[derive(Debug, Clone, Serialize)]
pub struct SimNodeReport {
    /// The task.
    pub task: String,
    /// Every episode.
    pub episodes: Vec<EpisodeReport>,
    /// State published to the first command computed from it arriving, in milliseconds (none as a ROS 2
    /// robot: its commands do not say which state they answer; the runtime's link measures it instead).
    pub state_to_action_ms: Option<Quantiles>,
    /// States published (after loss).
    pub states_published: u64,
    /// States dropped by the injected loss.
    pub states_lost: u64,
    /// Commands received and accepted.
    pub actions_received: u64,
    /// Commands dropped by the injected loss.
    pub actions_lost: u64,
    /// Commands flagged as held by the runtime (stale state).
    pub actions_held: u64,
    /// Commands rejected as malformed, out of order, wrong size or non-finite, or dropped because more than
    /// 1024 arrived within one control period.
    pub actions_rejected: u64,
    /// Control periods in which no command had arrived yet or none was new.
    pub steps_without_new_action: u64,
    /// Every brake (commands stopped arriving during an episode).
    pub brakes: Vec<BrakeRecord>,
    /// The first observation value (a position) at every step of the first episode.
    pub trajectory: Vec<f32>,
    /// Whether the node's zenoh link threads run under SCHED_FIFO ([`SimNodeSettings::io_fifo_priority`]).
    pub zenoh_threads: String,
}

/// A command waiting out its injected delay.
struct Pending {
    release_ns: u64,
    tick: Option<u64>,
    command: Vec<f32>,
}

/// Publish times of recent states, to measure state-to-first-command latency.
struct LatencyTracker {
    published_at: Vec<u64>,
    answered: Vec<bool>,
    samples_ms: Distribution,
}

impl LatencyTracker {
    fn published(&mut self, seq: u64) {
        let slot = seq as usize % LATENCY_WINDOW;
        self.published_at[slot] = monotonic_ns();
        self.answered[slot] = false;
    }

    fn answered(&mut self, state_seq: u64, arrived_ns: u64) {
        let slot = state_seq as usize % LATENCY_WINDOW;
        if state_seq != 0 && !self.answered[slot] {
            self.answered[slot] = true;
            self.samples_ms
                .push(arrived_ns.saturating_sub(self.published_at[slot]) as f64 / 1e6);
        }
    }
}

/// A command as zenoh's callback hands it over: arrival time (monotonic), payload, attachment.
type Arrival = (u64, Vec<u8>, Option<Vec<u8>>);

/// Publishes one message (with its attachment, when it has one).
fn put(
    publisher: &zenoh::pubsub::Publisher<'static>,
    (payload, attachment): (Vec<u8>, Option<Vec<u8>>),
) -> Result<(), IoError> {
    let put = publisher.put(payload);
    let put = match attachment {
        Some(attachment) => put.attachment(attachment),
        None => put,
    };
    put.wait()
        .map_err(|e| IoError::zenoh(publisher.key_expr().as_str(), e))
}

/// The node's state between control periods.
struct Node<'a> {
    settings: &'a SimNodeSettings,
    /// Where commands arrive (named in errors).
    command_key: String,
    env: Env,
    action_dim: usize,
    seq: u64,
    rng: NormalRng,
    report: SimNodeReport,
    latency: LatencyTracker,
    pending: VecDeque<Pending>,
    codec: Box<dyn RobotCodec>,
    applied: Vec<f32>,
    /// The controller tick of `applied` (none before the first command).
    applied_tick: Option<u64>,
    /// When the newest accepted command arrived (or the node resumed after a pause of its own).
    last_command_ns: u64,
    message: StateMessage,
    state_publisher: zenoh::pubsub::Publisher<'static>,
    /// Camera images' own publishers (ROS 2: one per camera; rtchunk's protocol: none).
    image_publishers: Vec<zenoh::pubsub::Publisher<'static>>,
    /// Commands as they arrived: the arrival time (taken in zenoh's callback), the payload and the attachment.
    arrivals: crossbeam_channel::Receiver<Arrival>,
    /// Commands zenoh's callback dropped because `arrivals` was full (a flood between two steps).
    overflowed: Arc<AtomicU64>,
}

impl Node<'_> {
    /// Publishes the current state (unless the injected loss drops it).
    fn publish(&mut self) -> Result<(), IoError> {
        self.seq += 1;
        self.env.observe(&mut self.message.observation);
        if let Some(width) = self.settings.camera_width {
            self.message.images = vec![self.camera_image(width)];
        }
        if self.rng.uniform() < self.settings.loss {
            self.latency.published(self.seq);
            self.report.states_lost += 1;
            return Ok(());
        }
        self.report.states_published += 1;
        // Images first: a ROS 2 subscriber pairs each joint state with the newest image.
        let images = self.codec.images(&self.message);
        for (publisher, outgoing) in self.image_publishers.iter().zip(images) {
            put(publisher, outgoing)?;
        }
        let state = self.codec.state(self.seq, &self.message);
        // Dated beside the state's own stamp, as it leaves: time the node's thread spent before (preempted while
        // stepping or encoding) is not the link's.
        self.latency.published(self.seq);
        put(&self.state_publisher, state)
    }

    /// The task drawn as the camera sees it: RGB, `width` pixels wide.
    fn camera_image(&self, width: usize) -> CameraImage {
        let canvas = self.env.camera(width);
        let (columns, rows) = canvas.size();
        CameraImage {
            height: rows as u16,
            width: columns as u16,
            channels: 3,
            pixels: canvas.rgb(),
        }
    }

    /// Takes every command that has arrived, validates it and queues it behind its injected delay.
    fn receive(&mut self) {
        self.report.actions_rejected += self.overflowed.swap(0, Ordering::Relaxed);
        while let Ok((arrived, payload, attachment)) = self.arrivals.try_recv() {
            let decoded =
                self.codec
                    .command(&payload, attachment.as_deref(), arrived, self.action_dim);
            let Ok(action) = decoded else {
                self.report.actions_rejected += 1;
                continue;
            };
            if self.rng.uniform() < self.settings.loss {
                self.report.actions_lost += 1;
                continue;
            }
            self.report.actions_received += 1;
            self.last_command_ns = self.last_command_ns.max(arrived);
            self.report.actions_held += u64::from(action.held);
            if let Some(state_seq) = action.state_seq {
                self.latency.answered(state_seq, arrived);
            }
            let delay_ms = self.settings.delay_ms + self.settings.jitter_ms * self.rng.uniform();
            self.pending.push_back(Pending {
                release_ns: arrived + (delay_ms * 1e6) as u64,
                tick: action.tick,
                command: action.values,
            });
        }
    }

    /// Applies the newest command whose delay has passed; returns whether there was one.
    fn apply_released(&mut self) -> bool {
        let now = monotonic_ns();
        let mut fresh = false;
        while self.pending.front().is_some_and(|p| p.release_ns <= now) {
            let released = self.pending.pop_front().expect("checked");
            self.applied = released.command;
            self.applied_tick = released.tick;
            fresh = true;
        }
        fresh
    }

    /// Publishes the first state of episode `seed` until a command arrives: Ok(true) once one has, Ok(false)
    /// when stopped or after `first_command_timeout_s` without one.
    fn wait_for_commands(
        &mut self,
        seed: u64,
        stop: &AtomicBool,
        period: Duration,
    ) -> Result<bool, IoError> {
        self.env.reset(seed);
        let received = self.report.actions_received;
        let give_up = monotonic_ns() + (self.settings.first_command_timeout_s * 1e9) as u64;
        while self.report.actions_received == received {
            if stop.load(Ordering::Relaxed) || monotonic_ns() > give_up {
                return Ok(false);
            }
            self.publish()?;
            std::thread::sleep(period);
            self.receive();
        }
        Ok(true)
    }

    /// Publishes the first state until the first command arrives; an error names the topic when none does.
    fn wait_for_runtime(&mut self, stop: &AtomicBool, period: Duration) -> Result<(), IoError> {
        if self.wait_for_commands(self.settings.first_seed, stop, period)? {
            return Ok(());
        }
        Err(IoError::Setup(if stop.load(Ordering::Relaxed) {
            format!(
                "stopped before the first command arrived on {}",
                self.command_key
            )
        } else {
            format!(
                "no command on {} within {:.0} s",
                self.command_key, self.settings.first_command_timeout_s
            )
        }))
    }

    /// Whether commands have stopped: none for longer than the command timeout (never with a timeout of 0).
    fn commands_stopped(&self, now: u64) -> Option<f64> {
        let silent_ms = now.saturating_sub(self.last_command_ns) as f64 / 1e6;
        (self.settings.command_timeout_ms > 0.0 && silent_ms > self.settings.command_timeout_ms)
            .then_some(silent_ms)
    }

    /// Runs episode `seed` on absolute deadlines; returns whether it ended by braking.
    fn episode(&mut self, seed: u64, period_ns: u64, stop: &AtomicBool) -> Result<bool, IoError> {
        self.env.reset(seed);
        let started = monotonic_ns();
        let mut deadline = started;
        let mut step_records = Vec::new();
        let mut braked = false;
        self.publish()?;
        // A stop (Ctrl-C) ends the episode where it is; it is still reported, as "running".
        while !self.env.status().is_done() && !stop.load(Ordering::Relaxed) {
            deadline += period_ns;
            let now = monotonic_ns();
            if deadline > now {
                std::thread::sleep(Duration::from_nanos(deadline - now));
            }
            let woke = monotonic_ns();
            if woke.saturating_sub(deadline) > period_ns {
                // Behind by more than a period (the process was paused, asleep or not): resume from now, no
                // burst of steps, and commands get the command timeout from now (the node could not hear them
                // while paused).
                deadline = woke;
                self.last_command_ns = self.last_command_ns.max(woke);
            }
            self.receive();
            if let Some(silent_ms) = self.commands_stopped(monotonic_ns()) {
                self.report.brakes.push(BrakeRecord {
                    seed,
                    step: self.env.steps(),
                    silent_ms,
                    wall_ns: wall_clock_ns(),
                });
                braked = true;
                break;
            }
            let fresh = self.apply_released();
            self.report.steps_without_new_action += u64::from(!fresh);
            self.env.step(&self.applied);
            self.publish()?;
            step_records.push(StepRecord {
                command_tick: self.applied_tick,
                observation: self.message.observation.clone(),
            });
            if self.report.episodes.is_empty() {
                self.report.trajectory.push(self.message.observation[0]);
            }
        }
        let status = self.env.status();
        self.report.episodes.push(EpisodeReport {
            seed,
            success: status == Status::Success,
            outcome: if braked {
                BRAKED.to_string()
            } else {
                format!("{status:?}").to_lowercase()
            },
            steps: self.env.steps(),
            seconds: (monotonic_ns() - started) as f64 / 1e9,
            step_records,
        });
        Ok(braked)
    }
}

/// Runs the node until its episodes are done or `stop` is set.
pub fn serve(
    io: &IoConfig,
    settings: &SimNodeSettings,
    stop: &AtomicBool,
) -> Result<SimNodeReport, IoError> {
    let session = open_session(io)?;
    let topics = Topics::new(&io.namespace);
    let wire = match settings.ros2 {
        Some(command_type) => ros2_robot_wire(
            &session,
            &ros2_robot(settings, command_type),
            COMMAND_SOURCE_HANDOVER_NS,
        )?,
        None => native_robot_wire(&topics, COMMAND_SOURCE_HANDOVER_NS),
    };
    let (arrived, arrivals) = crossbeam_channel::bounded(ARRIVALS_QUEUE);
    let overflowed = Arc::new(AtomicU64::new(0));
    let dropped = overflowed.clone();
    let _actions = session
        .declare_subscriber(wire.command_key.clone())
        .callback(move |sample| {
            let arrival = (
                monotonic_ns(),
                sample.payload().to_bytes().into_owned(),
                sample.attachment().map(|a| a.to_bytes().into_owned()),
            );
            if arrived.try_send(arrival).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        })
        .wait()
        .map_err(|e| IoError::zenoh(&wire.command_key, e))?;
    // Listening for the runtime's status from the start, so its last one (stopped) is heard.
    let stop_request = settings
        .stop_runtime_when_done
        .then(|| StopRequest::prepare(&session, &topics))
        .transpose()?;
    let publisher = |key: &String| {
        session
            .declare_publisher(key.clone())
            .express(true)
            .wait()
            .map_err(|e| IoError::zenoh(key, e))
    };
    let state_publisher = publisher(&wire.state_key)?;
    let image_publishers = wire
        .image_keys
        .iter()
        .map(publisher)
        .collect::<Result<Vec<_>, _>>()?;
    let env = Env::new(settings.task);
    let (observation_dim, action_dim) = (env.spec().observation_dim(), env.spec().action_dim());
    let mut node = Node {
        settings,
        command_key: wire.command_key.clone(),
        env,
        action_dim,
        seq: 0,
        rng: NormalRng::new(settings.seed),
        report: SimNodeReport {
            task: settings.task.to_string(),
            episodes: Vec::new(),
            state_to_action_ms: None,
            states_published: 0,
            states_lost: 0,
            actions_received: 0,
            actions_lost: 0,
            actions_held: 0,
            actions_rejected: 0,
            steps_without_new_action: 0,
            brakes: Vec::new(),
            trajectory: Vec::new(),
            zenoh_threads: Step::Skipped.to_string(),
        },
        latency: LatencyTracker {
            published_at: vec![0; LATENCY_WINDOW],
            answered: vec![false; LATENCY_WINDOW],
            samples_ms: Distribution::milliseconds(),
        },
        pending: VecDeque::new(),
        codec: wire.codec,
        applied: vec![0.0; action_dim],
        applied_tick: None,
        last_command_ns: 0,
        message: StateMessage {
            position: Vec::new(),
            velocity: Vec::new(),
            observation: vec![0.0; observation_dim],
            images: Vec::new(),
        },
        state_publisher,
        image_publishers,
        arrivals,
        overflowed,
    };
    let period_ns = (1e9 / settings.rate_hz) as u64;
    let period = Duration::from_nanos(period_ns);
    node.wait_for_runtime(stop, period)?;
    // Zenoh's link threads exist once the runtime's link does.
    node.report.zenoh_threads = prioritise_zenoh_threads(settings.io_fifo_priority).to_string();
    for seed in settings.first_seed..settings.first_seed + settings.episodes {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let last = seed + 1 == settings.first_seed + settings.episodes;
        // After a brake, the next episode starts only once commands flow again (a restarted runtime).
        if node.episode(seed, period_ns, stop)?
            && !last
            && !node.wait_for_commands(seed + 1, stop, period)?
        {
            break;
        }
    }
    let mut report = node.report;
    report.state_to_action_ms = settings
        .ros2
        .is_none()
        .then(|| node.latency.samples_ms.quantiles());
    if let Some(request) = stop_request
        && !request.send(STOP_CONFIRM_TIMEOUT)?
    {
        tracing::warn!(
            "the runtime on {} did not confirm the stop within {} s",
            topics.control,
            STOP_CONFIRM_TIMEOUT.as_secs()
        );
    }
    drop(node.state_publisher);
    let _ = session.close().wait();
    Ok(report)
}
