//! One run: builds the channels, starts the inference worker (tokio), the collector and the controller thread
//! (in that order, so the controller's real-time settings are not inherited by the others), waits for the end
//! and computes the metrics.

use crate::core::clock::{Clock, DelayInjector, RealClock, SimClock, wall_clock_ns};
use crate::core::controller::{ControllerLoop, ControllerResult, LoopHooks, NoHooks};
use crate::core::cpu_reservation::{COMMAND_PATH_THREADS, CONTROLLER_THREAD};
use crate::core::doorbell::Doorbell;
use crate::core::events::{RecordSummary, Recorder, RunEvent, RunHeader};
use crate::core::executor::{ChunkExecutor, ExecutorSettings};
use crate::core::inference_fault::InferenceFaultCounters;
use crate::core::messages::{CameraFeed, CameraFrame, ChunkMessage, InferenceRequest};
use crate::core::metrics::{RunMetrics, SafetyClamps, TickMetrics};
use crate::core::record::{InferenceRecord, TickRecord};
use crate::core::rt_setup::{RealtimeReport, lock_memory, prepare_current_thread};
use crate::core::state_clock::{StateClock, StateSignal};
use crate::core::worker::{ChunkSource, InferenceEngine, InferenceWorker};
use crossbeam_channel::{Receiver, Sender};
use rtchunk_config::{ClockKind, Config};
use rtchunk_controllers::{ActionPipeline, Plant};
use rtchunk_policy::{FlowPolicy, PolicyError, PolicySpec, Sampler};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use thiserror::Error;

/// Capacity of the tick-record ring: 16 s at 500 Hz, far more than the collector (draining every 1 ms) lags.
const RECORD_RING: usize = 1 << 13;

/// Why a run could not start or finish.
#[derive(Debug, Error)]
pub enum RunError {
    /// The policy does not fit the configuration or the sampler mode.
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    /// The policy bundle could not be loaded.
    #[error("policy bundle: {0}")]
    Bundle(#[from] rtchunk_policy::onnx::BundleError),
    /// The configuration, the policy and the plant disagree.
    #[error("{0}")]
    Mismatch(String),
    /// A thread or the async runtime failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// How long to run and what to attach.
pub struct RunOptions {
    /// Names the run in reports.
    pub label: String,
    /// Controller ticks to run.
    pub controller_ticks: u64,
    /// Called around the controller loop.
    pub hooks: Box<dyn LoopHooks>,
    /// BID's weak policy, for forward contrast.
    pub weak_policy: Option<Box<dyn FlowPolicy>>,
    /// Where every tick and inference is recorded (the session log, a file written by its own thread).
    pub record: Option<Box<dyn Recorder>>,
    /// The robot's camera images, for a policy with cameras.
    pub cameras: Option<CameraFeed>,
    /// Rung by the robot link after each state it accepts: what the state clock (`clock.kind = "state"`) ticks on.
    pub state_signal: Option<Arc<StateSignal>>,
    /// Every camera frame the robot sends, for the recorder (when it [records them](
    /// crate::core::events::Recorder::records_camera_frames)).
    pub camera_frames: Option<Receiver<CameraFrame>>,
    /// Keep every tick and inference record in memory for [`RunOutcome`] (false for open-ended deployments,
    /// whose memory would otherwise grow with every tick: the metrics are gathered as the run goes and the log
    /// keeps the records).
    pub keep_records: bool,
    /// How long an inference after the first may take before it counts as failed (None: no limit). [`run`]
    /// sets `policy.inference_timeout_ms` for a local policy on the configured real clock.
    pub inference_timeout: Option<Duration>,
    /// Where the worker counts failed inferences as they happen, by kind (a robot link's status reports them).
    pub inference_faults: Option<Arc<InferenceFaultCounters>>,
}

impl RunOptions {
    /// A run of `controller_ticks` ticks named `label`, without hooks.
    pub fn new(label: &str, controller_ticks: u64) -> Self {
        RunOptions {
            label: label.to_string(),
            controller_ticks,
            hooks: Box::new(NoHooks),
            weak_policy: None,
            record: None,
            cameras: None,
            camera_frames: None,
            state_signal: None,
            keep_records: true,
            inference_timeout: None,
            inference_faults: None,
        }
    }
}

/// Everything a run produced.
pub struct RunOutcome<P> {
    /// The plant, after the run.
    pub plant: P,
    /// The metrics.
    pub metrics: RunMetrics,
    /// Every controller tick (empty unless `keep_records`).
    pub ticks: Vec<TickRecord>,
    /// Every inference (empty unless `keep_records`).
    pub inferences: Vec<InferenceRecord>,
    /// Which real-time measures took effect.
    pub realtime: RealtimeReport,
    /// What the recorder kept, when recording.
    pub log: Option<RecordSummary>,
}

fn check_shapes(
    config: &Config,
    spec: &PolicySpec,
    plant: &dyn Plant,
    cameras: Option<&CameraFeed>,
) -> Result<(), RunError> {
    if !spec.cameras.is_empty() && cameras.is_none() {
        let names: Vec<&str> = spec.cameras.iter().map(|c| c.name.as_str()).collect();
        return Err(RunError::Mismatch(format!(
            "the policy observes camera images {names:?}, which only a robot on zenoh (plant.kind = \"zenoh\") sends"
        )));
    }
    let (h, a) = (config.policy.horizon, config.policy.action_dim);
    if spec.horizon != h || spec.robot_action_dim != a {
        return Err(RunError::Mismatch(format!(
            "the policy makes chunks of {} x {} but policy.horizon = {h} and policy.action_dim = {a}",
            spec.horizon, spec.robot_action_dim
        )));
    }
    if plant.dims() != a {
        return Err(RunError::Mismatch(format!(
            "the plant takes commands of {} joints but policy.action_dim = {a}",
            plant.dims()
        )));
    }
    if spec.observation_dim != 0 && spec.observation_dim != plant.observation_dim() {
        return Err(RunError::Mismatch(format!(
            "the policy expects observations of {} values but the plant gives {}",
            spec.observation_dim,
            plant.observation_dim()
        )));
    }
    Ok(())
}

/// The clock a run uses.
pub enum ClockChoice<C> {
    /// The one `config.clock` describes.
    Configured,
    /// Another clock (e.g. a baseline in a benchmark), without real-time setup.
    Custom(C),
}

/// Runs `policy` on `plant` as `config` says, for `options.controller_ticks` controller ticks.
pub fn run<P: Plant + 'static>(
    config: &Config,
    plant: P,
    policy: Box<dyn FlowPolicy>,
    options: RunOptions,
) -> Result<RunOutcome<P>, RunError> {
    run_with_clock::<P, SimClock>(config, plant, policy, options, ClockChoice::Configured)
}

/// [`run`] with the choice of clock.
pub fn run_with_clock<P: Plant + 'static, C: Clock + 'static>(
    config: &Config,
    plant: P,
    policy: Box<dyn FlowPolicy>,
    mut options: RunOptions,
    clock: ClockChoice<C>,
) -> Result<RunOutcome<P>, RunError> {
    let spec = policy.spec().clone();
    if matches!(clock, ClockChoice::Configured) && config.clock.kind != ClockKind::Simulated {
        let limit = Duration::from_secs_f64(config.policy.inference_timeout_ms / 1e3);
        options.inference_timeout = options.inference_timeout.or(Some(limit));
    }
    let sampler = Sampler::new(config.sampler.clone(), spec.horizon, spec.action_dim);
    sampler.check_policy(policy.as_ref())?;
    let engine = InferenceEngine::new(
        policy,
        options.weak_policy.take(),
        sampler,
        config.sampler.seed,
    );
    run_with_source(config, plant, &spec, Box::new(engine), options, clock)
}

/// [`run_with_clock`] with any chunk source (e.g. a policy server) whose chunks have the shape of `spec`.
pub fn run_with_source<P: Plant + 'static, C: Clock + 'static>(
    config: &Config,
    plant: P,
    spec: &PolicySpec,
    source: Box<dyn ChunkSource>,
    mut options: RunOptions,
    clock: ClockChoice<C>,
) -> Result<RunOutcome<P>, RunError> {
    check_shapes(config, spec, &plant, options.cameras.as_ref())?;
    let chunk_len = config.policy.horizon * config.policy.action_dim;
    let (request_in, request_out) = triple_buffer::triple_buffer(&InferenceRequest::with_capacity(
        chunk_len,
        plant.observation_dim(),
    ));
    let (chunk_in, chunk_out) =
        triple_buffer::triple_buffer(&ChunkMessage::with_capacity(chunk_len));
    let request_bell = Arc::new(Doorbell::default());
    let chunk_bell = Arc::new(Doorbell::default());
    let stop = Arc::new(AtomicBool::new(false));
    let alive = Arc::new(AtomicBool::new(true));

    let mut recorder = options.record.take();
    let log = match recorder.as_mut() {
        Some(recorder) => {
            let header = RunHeader {
                label: options.label.clone(),
                config: config.clone(),
                action_dim: config.policy.action_dim,
                observation_dim: plant.observation_dim(),
                started_unix_ns: wall_clock_ns(),
                rtchunk_version: env!("CARGO_PKG_VERSION").to_string(),
                cameras: spec.cameras.clone(),
            };
            Some(
                recorder
                    .open(&header)
                    .map_err(|e| RunError::Runtime(format!("cannot start recording: {e}")))?,
            )
        }
        None => None,
    };
    let runtime = inference_runtime()?;
    let worker = InferenceWorker {
        engine: source,
        requests: request_out,
        request_bell: request_bell.clone(),
        chunks: chunk_in,
        chunk_bell: chunk_bell.clone(),
        stop: stop.clone(),
        alive: alive.clone(),
        log: log.clone(),
        cameras: options.cameras.take(),
        keep_records: options.keep_records,
        timeout: options.inference_timeout,
        faults: options.inference_faults.take(),
    };
    let worker = runtime.spawn(worker.run());

    let (producer, consumer) = rtrb::RingBuffer::new(RECORD_RING);
    let frame_forwarder = match (options.camera_frames.take(), &log) {
        (Some(frames), Some(log)) => {
            let (log, stop) = (log.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("rtchunk-frames".into())
                .spawn(move || forward_camera_frames(&frames, &log, &stop))
                .map_err(|e| RunError::Runtime(format!("cannot start the frame recorder: {e}")))?;
            Some(thread)
        }
        _ => None,
    };
    // The collector takes the run's own sender: the recorder closes once it and the worker's have gone.
    let tick_log = log;
    let keep_ticks = options.keep_records;
    let collector = std::thread::Builder::new()
        .name("rtchunk-collect".into())
        .spawn(move || collect(consumer, tick_log, keep_ticks))
        .map_err(|e| RunError::Runtime(format!("cannot start the collector: {e}")))?;

    let delays = DelayInjector::new(
        config.clock.inference_delay_ticks,
        config.clock.inference_delay_jitter_ticks,
        config.clock.seed,
    );
    let parts = LoopParts {
        pipeline: ActionPipeline::from_config(config),
        executor: ChunkExecutor::new(ExecutorSettings::from_config(config)),
        requests: request_in,
        request_bell: request_bell.clone(),
        chunks: chunk_out,
        records: producer,
        stop: stop.clone(),
        controller_ticks: options.controller_ticks,
        decimation: config.clock.decimation(),
        replan_after_held: replan_after_held(config),
        hooks: options.hooks,
    };
    let controller = match (clock, config.clock.kind) {
        (ClockChoice::Custom(clock), _) => {
            spawn_controller(plant, clock, parts, RealtimeReport::skipped)?
        }
        (ClockChoice::Configured, ClockKind::Real) => {
            let memory = lock_memory(&config.realtime);
            let realtime = config.realtime.clone();
            let clock = RealClock::new(
                Duration::from_secs_f64(1.0 / config.clock.controller_rate()),
                Duration::from_micros(config.realtime.spin_margin_us),
                delays,
            );
            spawn_controller(plant, clock, parts, move || {
                prepare_current_thread(&realtime, memory, &[])
            })?
        }
        (ClockChoice::Configured, ClockKind::State) => {
            let signal = options.state_signal.take().ok_or_else(|| {
                RunError::Mismatch(
                    "clock.kind = \"state\" ticks on a robot's states; this plant sends none (use a robot \
                     over zenoh)"
                        .into(),
                )
            })?;
            let memory = lock_memory(&config.realtime);
            let realtime = config.realtime.clone();
            let clock = StateClock::new(
                signal,
                Duration::from_secs_f64(1.0 / config.clock.controller_rate()),
                Duration::from_secs_f64(config.io.stale_after_ms / 1e3),
                delays,
            );
            // The controller sleeps until zenoh's receiving thread, having decoded a state, wakes it, and the
            // action thread and zenoh's transmitting thread send what it wrote: they and zenoh's reactor share its
            // CPU, away from the inference.
            spawn_controller(plant, clock, parts, move || {
                prepare_current_thread(&realtime, memory, &COMMAND_PATH_THREADS)
            })?
        }
        (ClockChoice::Configured, ClockKind::Simulated) => {
            let clock = SimClock::new(delays, chunk_bell, alive);
            spawn_controller(plant, clock, parts, RealtimeReport::skipped)?
        }
    };
    let joined = controller.join();
    stop.store(true, Ordering::SeqCst);
    request_bell.ring();
    let (result, realtime) =
        joined.map_err(|_| RunError::Runtime("the controller thread panicked".into()))?;
    if let Some(reservation) = &realtime.reservation {
        reservation.release();
    }
    let (inference_summary, inferences) = runtime
        .block_on(worker)
        .map_err(|e| RunError::Runtime(format!("the inference worker failed: {e}")))?;
    let (ticks, tick_metrics) = collector
        .join()
        .map_err(|_| RunError::Runtime("the collector thread panicked".into()))?;
    if let Some(forwarder) = frame_forwarder {
        forwarder
            .join()
            .map_err(|_| RunError::Runtime("the frame recorder panicked".into()))?;
    }
    let log = match recorder {
        Some(recorder) => Some(
            recorder
                .finish()
                .map_err(|e| RunError::Runtime(format!("recording: {e}")))?,
        ),
        None => None,
    };
    let mut metrics =
        tick_metrics.finish(&options.label, inference_summary, result.records_dropped);
    metrics.safety_clamps_by_rule = SafetyClamps {
        position: result.safety.clamped_position,
        velocity: result.safety.clamped_velocity,
        delta: result.safety.clamped_delta,
        conflicts: result.safety.conflicts,
    };
    Ok(RunOutcome {
        plant: result.plant,
        metrics,
        ticks,
        inferences,
        realtime,
        log,
    })
}

/// Sends the robot's camera frames to the recorder as they come, until the run stops (and then those already
/// queued).
fn forward_camera_frames(
    frames: &Receiver<CameraFrame>,
    log: &Sender<RunEvent>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match frames.recv_timeout(Duration::from_millis(20)) {
            Ok(frame) => {
                let _ = log.send(RunEvent::CameraFrame(frame));
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
    for frame in frames.try_iter() {
        let _ = log.send(RunEvent::CameraFrame(frame));
    }
}

/// `io.replan_after_ms` in policy ticks (at least one; `u64::MAX` for never).
pub(crate) fn replan_after_held(config: &Config) -> u64 {
    let ticks = (config.io.replan_after_ms * config.clock.policy_rate_hz / 1e3).ceil();
    if ticks.is_finite() {
        (ticks as u64).max(1)
    } else {
        u64::MAX
    }
}

/// The controller's parts that do not depend on the clock or the plant.
struct LoopParts {
    pipeline: ActionPipeline,
    executor: ChunkExecutor,
    requests: triple_buffer::Input<InferenceRequest>,
    request_bell: Arc<Doorbell>,
    chunks: triple_buffer::Output<ChunkMessage>,
    records: rtrb::Producer<TickRecord>,
    stop: Arc<AtomicBool>,
    controller_ticks: u64,
    decimation: usize,
    replan_after_held: u64,
    hooks: Box<dyn LoopHooks>,
}

type ControllerThread<P> = std::thread::JoinHandle<(ControllerResult<P>, RealtimeReport)>;

fn spawn_controller<P: Plant + 'static, C: Clock + 'static>(
    plant: P,
    clock: C,
    parts: LoopParts,
    prepare: impl FnOnce() -> RealtimeReport + Send + 'static,
) -> Result<ControllerThread<P>, RunError> {
    std::thread::Builder::new()
        .name(CONTROLLER_THREAD.into())
        .spawn(move || {
            let realtime = prepare();
            tracing::info!(%realtime, "controller thread ready");
            let controller = ControllerLoop {
                plant,
                clock,
                pipeline: parts.pipeline,
                executor: parts.executor,
                requests: parts.requests,
                request_bell: parts.request_bell,
                chunks: parts.chunks,
                records: parts.records,
                stop: parts.stop,
                tick_limit: Some(parts.controller_ticks),
                decimation: parts.decimation,
                replan_after_held: parts.replan_after_held,
                hooks: parts.hooks,
            };
            (controller.run(), realtime)
        })
        .map_err(|e| RunError::Runtime(format!("cannot start the controller thread: {e}")))
}

/// The inference worker's blocking threads (the policy's job, the wait for the controller's doorbell): at most
/// two at a time, one spare.
const BLOCKING_THREADS: usize = 3;

/// The inference worker's async runtime, with every thread it will ever use already started and kept for the
/// whole run. Threads started later would each take a fresh stack, and with memory locked (`mlockall`) every
/// page of it at once: a run's resident memory would step up whenever the pool grew back after idling.
fn inference_runtime() -> Result<tokio::runtime::Runtime, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_keep_alive(Duration::from_secs(365 * 24 * 3600))
        .thread_name("rtchunk-infer")
        .enable_time()
        .build()
        .map_err(|e| RunError::Runtime(format!("cannot start the async runtime: {e}")))?;
    // Each task holds its thread until all have one: the pool starts them all now.
    let all_started = Arc::new(std::sync::Barrier::new(BLOCKING_THREADS));
    let tasks: Vec<_> = (0..BLOCKING_THREADS)
        .map(|_| {
            let all_started = all_started.clone();
            runtime.spawn_blocking(move || {
                all_started.wait();
            })
        })
        .collect();
    runtime.block_on(async {
        for task in tasks {
            task.await.map_err(|e| {
                RunError::Runtime(format!("cannot start the worker's threads: {e}"))
            })?;
        }
        Ok::<(), RunError>(())
    })?;
    Ok(runtime)
}

/// Drains the tick ring until the controller has gone and the ring is empty, forwarding each tick to the log and
/// gathering the metrics; keeps the records themselves only with `keep`.
fn collect(
    mut consumer: rtrb::Consumer<TickRecord>,
    log: Option<Sender<RunEvent>>,
    keep: bool,
) -> (Vec<TickRecord>, TickMetrics) {
    let mut ticks = Vec::new();
    let mut metrics = TickMetrics::default();
    loop {
        let finished = consumer.is_abandoned();
        while let Ok(record) = consumer.pop() {
            if let Some(log) = &log {
                let _ = log.send(RunEvent::Tick(Box::new(record)));
            }
            metrics.add(&record);
            if keep {
                ticks.push(record);
            }
        }
        if finished {
            return (ticks, metrics);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
