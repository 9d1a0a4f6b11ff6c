//! `rtchunk run` on a robot: the policy, the real-time controller and the zenoh link, until the run's time is
//! up, a stop or emergency stop arrives on the control topic, or the process gets Ctrl-C (SIGINT) or SIGTERM.
//! Every exit path holds, then stops publishing, then closes the link.

use crate::core::clock::SimClock;
use crate::core::events::Recorder;
use crate::core::metrics::Quantiles;
use crate::core::policies::load_policy;
use crate::core::rt_setup::Step;
use crate::core::session::{ClockChoice, RunError, RunOptions, RunOutcome, run, run_with_source};
use crate::core::shutdown::stop_on_signal;
use crate::io::link::{RobotLink, ZenohPlant};
use crate::io::protocol::RejectKind;
use crate::io::remote::RemoteEngine;
use crate::io::ros2::plant_wire::{PolicyShape, ros2_wire};
use crate::io::session::IoError;
use crate::io::session::open_session;
use rtchunk_config::{ClockKind, Config, PlantKind, PolicyKind};
use rtchunk_policy::{FlowPolicy, PolicySpec};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use thiserror::Error;

/// How long to wait for the robot's first state.
const FIRST_STATE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for a policy server to describe itself.
const SERVER_WAIT: Duration = Duration::from_secs(30);

/// Where the chunks come from.
enum Chunks {
    /// A policy in this process.
    Local(Box<dyn FlowPolicy>),
    /// A policy server, with its chunk shape.
    Remote(Box<RemoteEngine>, PolicySpec),
}

/// Why a deployment could not run.
#[derive(Debug, Error)]
pub enum DeployError {
    /// The zenoh link.
    #[error("{0}")]
    Io(#[from] IoError),
    /// The policy or the run.
    #[error("{0}")]
    Run(#[from] RunError),
    /// The policy bundle.
    #[error("policy bundle: {0}")]
    Bundle(#[from] rtchunk_policy::onnx::BundleError),
    /// The robot sends states at another rate than the state clock was configured for.
    #[error(
        "clock.kind = \"state\": the robot on {topic} sent {measured_hz:.1} states/s over {seconds:.1} s, but \
         clock.controller_rate_hz = {nominal_hz} (its nominal state rate: every k-th state is a policy tick, k = \
         controller_rate_hz / policy_rate_hz) expects about that many; set it to the robot's rate"
    )]
    StateRate {
        /// The state topic.
        topic: String,
        /// States per second measured at start.
        measured_hz: f64,
        /// Over how long.
        seconds: f64,
        /// `clock.controller_rate_hz`.
        nominal_hz: f64,
    },
}

/// Measures the rate the robot sends states at, for about ten nominal periods (at least 0.2 s), and refuses one
/// that is off the state clock's nominal rate by more than -30 % / +40 % (a robot that drifts less runs: the policy
/// then follows its states). The rate comes from the sender's sequence numbers and send times, so states lost on
/// the way and this host's scheduling do not skew it; when the sequence restarts it is the states accepted over
/// the window.
fn check_state_rate(link: &RobotLink, nominal_hz: f64) -> Result<(), DeployError> {
    let window = Duration::from_secs_f64((10.0 / nominal_hz).max(0.2));
    let accepted = || link.counters().states_accepted.load(Ordering::Relaxed);
    let (first, before) = (link.newest_state(), accepted());
    std::thread::sleep(window);
    let (last, after) = (link.newest_state(), accepted());
    let measured_hz = first
        .zip(last)
        .and_then(|(first, last)| first.send_rate_hz(&last))
        .unwrap_or((after - before) as f64 / window.as_secs_f64());
    tracing::info!(measured_hz, nominal_hz, "the robot's state rate");
    if (0.7..=1.4).contains(&(measured_hz / nominal_hz)) {
        Ok(())
    } else {
        Err(DeployError::StateRate {
            topic: link.state_topic().to_string(),
            measured_hz,
            seconds: window.as_secs_f64(),
            nominal_hz,
        })
    }
}

/// What the link counted during a deployment.
#[derive(Debug, Clone, Serialize)]
pub struct LinkSummary {
    /// State messages accepted.
    pub states_accepted: u64,
    /// Rejected messages per kind.
    pub rejected: Vec<(String, u64)>,
    /// Ticks held on stale state.
    pub held_ticks: u64,
    /// Action messages published.
    pub actions_published: u64,
    /// Commands the publisher could not keep up with.
    pub actions_dropped: u64,
    /// Emergency stops received.
    pub emergency_stops: u64,
    /// From a state's arrival (dated by the fastest transit) to the first command computed from it leaving,
    /// milliseconds ([`RobotLink::state_to_command`]).
    pub state_to_command_ms: Quantiles,
    /// From the robot's stamp on a state to the first command computed from it leaving, on the wall clocks,
    /// milliseconds ([`RobotLink::stamp_to_command`]).
    pub stamp_to_command_ms: Quantiles,
    /// From the robot's stamp on a state to its decoding here, milliseconds ([`RobotLink::state_transit`]).
    pub state_transit_ms: Quantiles,
    /// Whether the threads a state and its command pass through ran under SCHED_FIFO
    /// (`realtime.io_fifo_priority`, [`RobotLink::prioritise_command_path`]).
    pub command_path_threads: Step,
}

impl LinkSummary {
    fn of(link: &RobotLink, command_path_threads: Step) -> Self {
        let counters = link.counters();
        LinkSummary {
            states_accepted: counters.states_accepted.load(Ordering::Relaxed),
            rejected: RejectKind::ALL
                .iter()
                .map(|&kind| (kind.to_string(), counters.rejected(kind)))
                .collect(),
            held_ticks: counters.held_ticks.load(Ordering::Relaxed),
            actions_published: counters.actions_published.load(Ordering::Relaxed),
            actions_dropped: counters.actions_dropped.load(Ordering::Relaxed),
            emergency_stops: counters.emergency_stops.load(Ordering::Relaxed),
            state_to_command_ms: link.state_to_command(),
            stamp_to_command_ms: link.stamp_to_command(),
            state_transit_ms: link.state_transit(),
            command_path_threads,
        }
    }
}

/// Runs `config` on the robot its `[io]` section reaches, for `seconds` (None: until stopped), recording
/// through `record` when given (the session log).
pub fn run_on_robot(
    config: &Config,
    seconds: Option<f64>,
    record: Option<Box<dyn Recorder>>,
) -> Result<(RunOutcome<ZenohPlant>, LinkSummary), DeployError> {
    let session = open_session(&config.io)?;
    let mut config = config.clone();
    let chunks = if config.policy.kind == PolicyKind::Remote {
        let timeout = Duration::from_secs_f64(config.policy.server_timeout_ms / 1e3);
        tracing::info!(server = %config.policy.server, "asking the policy server for its chunk shape");
        let (engine, spec) =
            RemoteEngine::connect(session.clone(), &config.policy.server, SERVER_WAIT)?;
        let engine = engine.with_timeout(timeout);
        config.policy.horizon = spec.horizon;
        config.policy.action_dim = spec.action_dim;
        config.validate().map_err(|e| {
            DeployError::Run(RunError::Mismatch(format!(
                "with the server's chunk shape: {e}"
            )))
        })?;
        Chunks::Remote(Box::new(engine), spec)
    } else {
        Chunks::Local(load_policy(&config)?)
    };
    let spec = match &chunks {
        Chunks::Remote(_, spec) => spec.clone(),
        Chunks::Local(policy) => policy.spec().clone(),
    };
    let (joints, observation_dim) = (config.policy.action_dim, spec.observation_dim);
    let (mut link, plant) = if config.plant.kind == PlantKind::Ros2 {
        let shape = PolicyShape {
            joints,
            observation_dim,
            cameras: &spec.cameras,
        };
        if config.io.connect.is_empty() {
            tracing::warn!(
                listen = ?config.io.listen,
                "plant.kind = \"ros2\" with no io.connect: ROS 2 nodes reach rtchunk only by connecting to it; \
                 to join their router set io.connect = [\"tcp/127.0.0.1:7447\"] (rmw_zenohd's default)"
            );
        }
        let period_ns = (1e9 / config.clock.controller_rate()) as i64;
        let stale_after_ns = (config.io.stale_after_ms * 1e6) as u64;
        let wire = ros2_wire(&session, &config.ros2, shape, period_ns, stale_after_ns)?;
        RobotLink::attach_wire(
            session,
            &config.io,
            wire,
            joints,
            observation_dim,
            &spec.cameras,
        )?
    } else {
        RobotLink::attach(session, &config.io, joints, observation_dim, &spec.cameras)?
    };
    let control = link.control().clone();
    let signals = stop_on_signal(move || control.stop.store(true, Ordering::Relaxed));
    tracing::info!(topic = %link.state_topic(), "waiting for the robot's first state");
    link.wait_for_first_state(FIRST_STATE_TIMEOUT)?;
    // Zenoh's link threads (the sockets' reactor, the receiving threads that decode the states, the transmitting
    // thread that writes the commands) exist once the robot's link does.
    let command_path_threads = link.prioritise_command_path(config.realtime.io_priority());
    tracing::info!(%command_path_threads, "the threads that carry a state in and its command out");
    if config.clock.kind == ClockKind::State {
        check_state_rate(&link, config.clock.controller_rate())?;
    }
    let ticks = seconds.map_or(u64::MAX, |s| (s * config.clock.controller_rate()) as u64);
    let label = format!(
        "{} / {} on {}",
        config.sampler.mode.name(),
        config.scheduler.execution.name(),
        config.io.namespace
    );
    let config = &config;
    let camera_frames = record
        .as_ref()
        .filter(|recorder| recorder.records_camera_frames())
        .and_then(|_| link.take_camera_frames());
    let options = RunOptions {
        record,
        cameras: link.take_camera_feed(),
        camera_frames,
        state_signal: Some(link.state_signal()),
        keep_records: false,
        inference_faults: Some(link.counters().inference_faults.clone()),
        ..RunOptions::new(&label, ticks)
    };
    let outcome = match chunks {
        Chunks::Local(policy) => run(config, plant, policy, options),
        Chunks::Remote(engine, spec) => run_with_source::<_, SimClock>(
            config,
            plant,
            &spec,
            engine,
            options,
            ClockChoice::Configured,
        ),
    };
    drop(signals);
    let summary = LinkSummary::of(&link, command_path_threads);
    link.close();
    Ok((outcome?, summary))
}
