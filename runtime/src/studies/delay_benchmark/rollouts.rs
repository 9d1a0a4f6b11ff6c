//! Many rollouts of one configuration (task, method, delay d, execution horizon s), stepped together: every
//! robot runs its own [`ChunkExecutor`] (the runtime's scheduler, unchanged) on the simulated clock, and the
//! requests made at one tick go through the policy as one batch.
//!
//! Timing, as in the RTC paper's protocol: the first chunk comes undelayed from the initial observation; a
//! request made at tick T carries the state at the end of tick T (the state in which the chunk's first action,
//! for tick T + 1, would start) and is released d ticks later, so its first d actions are the previous chunk's and execution continues at its index d; requests come
//! every s ticks. Episodes that end stop requesting; only the first episode of each rollout counts. A policy with
//! a camera gets, with each request's state, that state as the task's camera draws it ([`Env::camera`]).

use crate::core::executor::{ChunkExecutor, ExecutorSettings};
use crate::core::messages::{ChunkMessage, InferenceRequest};
use crate::core::metrics::Quantiles;
use crate::core::record::{StepClass, TickKind};
use crate::core::worker::InferenceEngine;
use rtchunk_policy::{PolicyError, PolicySpec};
use rtchunk_sim::{Env, Status, TaskKind};
use serde::Serialize;
use std::time::Instant;

/// One configuration's rollouts.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    /// The task.
    pub task: TaskKind,
    /// How chunks are executed (the sampler is the engine's).
    pub execution: rtchunk_config::Execution,
    /// Inference delay d, in control steps.
    pub delay: usize,
    /// Execution horizon s (>= d).
    pub execution_horizon: usize,
    /// Number of rollouts; rollout i runs episode `first_seed + i`.
    pub rollouts: usize,
    /// Seed of the first rollout's episode (and noise stream).
    pub first_seed: u64,
    /// Most chunks per policy call (requests are split into batches of this many).
    pub max_batch: usize,
    /// Keep every rollout's executed actions (for comparisons; costs memory).
    pub keep_actions: bool,
}

/// What the rollouts of one configuration did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RolloutOutcome {
    /// Rollouts run.
    pub rollouts: usize,
    /// Rollouts whose first episode succeeded.
    pub successes: usize,
    /// Rollouts that failed.
    pub failures: usize,
    /// Rollouts that timed out.
    pub timeouts: usize,
    /// Mean size of the action change at chunk seams (action units).
    pub seam_jump: f64,
    /// Mean size of the action change between steps of one chunk.
    pub within_step: f64,
    /// Ticks on which a robot had no action to execute.
    pub starved_ticks: u64,
    /// Chunks sampled.
    pub chunks: u64,
    /// Policy calls (batches) made.
    pub batches: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Each rollout's executed actions, one after another (only with `keep_actions`).
    #[serde(skip)]
    pub actions: Vec<Vec<f32>>,
}

/// One robot: its episode, its scheduler and its request buffer.
struct Robot {
    env: Env,
    executor: ChunkExecutor,
    request: InferenceRequest,
    message: ChunkMessage,
    observation: Vec<f32>,
    action: Vec<f32>,
    stream: u64,
    cold: bool,
    actions: Vec<f32>,
}

/// The width at which the task's camera feeds the policy (None for a policy without cameras); an error unless the
/// policy has one RGB camera of exactly the size the task's camera draws at that width.
fn camera_width(spec: &PolicySpec, task: TaskKind) -> Result<Option<usize>, PolicyError> {
    let camera = match spec.cameras.as_slice() {
        [] => return Ok(None),
        [camera] => camera,
        more => {
            return Err(PolicyError::Backend(format!(
                "the policy has {} cameras; the {task} task has one",
                more.len()
            )));
        }
    };
    let (width, height) = Env::new(task).camera(camera.width).size();
    if (camera.height, camera.channels) != (height, 3) {
        return Err(PolicyError::Backend(format!(
            "the policy's camera {} is {} x {} x {}; the {task} task's camera draws {height} x {width} x 3 at \
             that width",
            camera.name, camera.height, camera.width, camera.channels
        )));
    }
    Ok(Some(width))
}

/// Runs the rollouts of `settings` with `engine` (its sampler decides the guidance).
pub fn run_rollouts(
    engine: &mut InferenceEngine,
    settings: &RolloutSettings,
) -> Result<RolloutOutcome, PolicyError> {
    let started = Instant::now();
    let spec = engine.policy.spec().clone();
    let (h, a) = (spec.horizon, spec.robot_action_dim);
    let executor = ExecutorSettings {
        execution: settings.execution,
        horizon: h,
        action_dim: a,
        execution_horizon: settings.execution_horizon,
        delay_buffer: 1,
        initial_delay: settings.delay,
        safe_action: Some(vec![0.0; a]),
    };
    let camera = camera_width(&spec, settings.task)?;
    let observation_dim = settings.task.build().spec().observation_dim();
    if spec.observation_dim != 0 && spec.observation_dim != observation_dim {
        return Err(PolicyError::Shape {
            what: "the policy's observation (the task's observation vector)",
            got: spec.observation_dim,
            expected: observation_dim,
        });
    }
    let mut robots: Vec<Robot> = (0..settings.rollouts)
        .map(|i| {
            let stream = settings.first_seed + i as u64;
            let mut env = Env::new(settings.task);
            env.reset(stream);
            Robot {
                env,
                executor: ChunkExecutor::new(executor.clone()),
                request: InferenceRequest::with_capacity(h * a, observation_dim),
                message: ChunkMessage::with_capacity(h * a),
                observation: vec![0.0; observation_dim],
                action: vec![0.0; a],
                stream,
                cold: true,
                actions: Vec::new(),
            }
        })
        .collect();
    let mut outcome = RolloutOutcome {
        rollouts: settings.rollouts,
        ..RolloutOutcome::default()
    };
    let (mut seams, mut withins) = (Vec::new(), Vec::new());
    let mut requesting: Vec<usize> = Vec::new();
    while robots.iter().any(|r| !r.env.status().is_done()) {
        requesting.clear();
        for (i, robot) in robots
            .iter_mut()
            .enumerate()
            .filter(|(_, r)| !r.env.status().is_done())
        {
            robot.env.observe(&mut robot.observation);
            let cold = &mut robot.cold;
            let delay = settings.delay;
            let mut inference_ticks = || if std::mem::take(cold) { 0 } else { delay };
            let record =
                robot
                    .executor
                    .step(&robot.observation, &mut inference_ticks, &mut robot.request);
            // A request made after this tick's action carries the state after the step (below); any other (the
            // cold one, or one made while adopting a chunk) the state observed above.
            let after_step = record.request_seq != 0
                && robot.request.tick == record.tick
                && record.kind != TickKind::Warmup;
            if record.request_seq != 0 {
                requesting.push(i);
                if let (Some(width), false) = (camera, after_step) {
                    robot.request.images = robot.env.camera(width).rgb();
                }
            }
            match record.kind {
                // The cold request: answered before any time passes.
                TickKind::Warmup => continue,
                // Held never comes from the executor (the controller makes it on stale state).
                TickKind::Paused | TickKind::Held => robot.action.fill(0.0),
                TickKind::Executed | TickKind::Starved => {
                    robot.action.copy_from_slice(robot.executor.action())
                }
            }
            outcome.starved_ticks += u64::from(record.kind == TickKind::Starved);
            match record.step_class {
                StepClass::Seam => seams.push(f64::from(record.step)),
                StepClass::Within => withins.push(f64::from(record.step)),
                StepClass::Other => {}
            }
            robot.env.step(&robot.action);
            if settings.keep_actions {
                robot.actions.extend_from_slice(&robot.action);
            }
            // A request carries the state at the end of its tick T_s (its chunk starts at T_s + 1). Made after this
            // tick's action was chosen (T_s = this tick), that is the state after the step just taken; made while
            // adopting a chunk, before the tick advanced (T_s = the tick before), it is the state observed above.
            if after_step {
                robot.env.observe(&mut robot.request.observation);
                if let Some(width) = camera {
                    robot.request.images = robot.env.camera(width).rgb();
                }
            }
        }
        for batch in requesting.chunks(settings.max_batch.max(1)) {
            let requests: Vec<(&InferenceRequest, u64)> = batch
                .iter()
                .map(|&i| (&robots[i].request, robots[i].stream))
                .collect();
            let chunks = engine.infer_batch(&requests)?;
            drop(requests);
            outcome.chunks += batch.len() as u64;
            outcome.batches += 1;
            for (&i, chunk) in batch.iter().zip(chunks.chunks(h * a)) {
                let robot = &mut robots[i];
                robot.message.seq = robot.request.seq;
                robot.message.start_tick = robot.request.tick;
                robot.message.release_tick = robot.request.release_tick;
                robot.message.ok = true;
                robot.message.actions.copy_from_slice(chunk);
                robot.executor.offer(&robot.message);
            }
        }
    }
    for robot in &robots {
        match robot.env.status() {
            Status::Success => outcome.successes += 1,
            Status::Failure => outcome.failures += 1,
            Status::Timeout | Status::Running => outcome.timeouts += 1,
        }
    }
    if settings.keep_actions {
        outcome.actions = robots.into_iter().map(|robot| robot.actions).collect();
    }
    outcome.seam_jump = Quantiles::of(seams).mean;
    outcome.within_step = Quantiles::of(withins).mean;
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}
