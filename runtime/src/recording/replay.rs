//! `rtchunk replay LOG`: re-runs a recorded session and reports where and by how much it diverges.
//!
//! Every log is first checked against its own header ([`crate::recording::check`]); an inconsistent one is
//! refused with the record and field at fault.
//!
//! - **exact output**: the executor (Algorithm 1) is re-run over the log ([`crate::recording::reschedule`]):
//!   the recorded chunks arrive at the policy ticks the log adopted them, the recorded stale holds hold, and
//!   the schedule it makes (kind, chunk, index, adoptions, requests) and the actions it executes are compared
//!   with the recorded ones; on the built-in point mass the plant and the action pipeline are re-simulated from
//!   those actions and every command is compared with the recorded one. A faithful log replays with zero
//!   divergence; a scheduler that skipped, repeated or shifted an action does not.
//! - **re-infer**: the policy runs again on every recorded inference's inputs (observation, committed actions,
//!   d and s, the run's seed); the new chunks are compared with the recorded ones, then used in place of them as
//!   above. Divergence here is the policy's nondeterminism across runs, devices or builds.
//!
//! A session against `rtchunk sim serve` re-runs the task too when given the simulator's report
//! ([`SimRecording`]): the action pipeline turns the replayed actions into commands (the simulator reports no
//! joints, so the runtime saw a zero joint state), and the task, reset to each recorded episode's seed, applies at
//! every step the command of the controller tick the simulator recorded applying ([`crate::recording::task_replay`]).

use crate::core::controller::apply_policy_tick;
use crate::core::messages::InferenceRequest;
use crate::core::policies::load_policy;
use crate::core::worker::InferenceEngine;
use crate::recording::check::check_session;
use crate::recording::divergence::{Divergence, ReplayError};
use crate::recording::format::RecordedSession;
use crate::recording::reschedule::{Rescheduled, reschedule};
use crate::recording::task_replay::{SimRecording, TaskReplay, resimulate_task};
use rtchunk_config::PlantKind;
use rtchunk_controllers::{ActionPipeline, Plant, RobotState};
use rtchunk_policy::Sampler;
use rtchunk_sim::PointMass;
use serde::Serialize;
use std::collections::HashMap;

/// Which replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayMode {
    /// Feed the recorded chunks.
    ExactOutput,
    /// Run the policy again on the recorded inputs.
    ReInfer,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// The mode.
    pub mode: ReplayMode,
    /// The log was closed properly (false: cut short, replayed up to the cut).
    pub complete: bool,
    /// Controller ticks replayed.
    pub ticks: u64,
    /// Inferences in the log.
    pub inferences: u64,
    /// Re-inferred chunks against the recorded ones (re-infer only).
    pub chunks: Divergence,
    /// The re-run executor's schedule against the recorded one, per policy tick.
    pub schedule: Divergence,
    /// Replayed actions against the recorded ones, per controller tick.
    pub actions: Divergence,
    /// Re-run commands against the recorded ones (point-mass runs, and simulator sessions given its report).
    pub commands: Option<Divergence>,
    /// The task simulator re-run with the replayed commands (simulator sessions given its report).
    pub task: Option<TaskReplay>,
}

impl ReplayReport {
    /// Whether nothing diverged.
    pub fn identical(&self) -> bool {
        self.chunks.differing == 0
            && self.schedule.differing == 0
            && self.actions.differing == 0
            && self.commands.is_none_or(|c| c.differing == 0)
            && self
                .task
                .as_ref()
                .is_none_or(|t| t.observations.differing == 0 && t.outcomes_changed == 0)
    }
}

/// Re-runs the policy on every recorded inference's inputs; returns the new chunks by request number.
fn re_infer(
    session: &RecordedSession,
    chunks: &mut Divergence,
) -> Result<HashMap<u64, Vec<f32>>, ReplayError> {
    let config = &session.header.config;
    let policy = load_policy(config)?;
    let (horizon, action_dim) = (config.policy.horizon, config.policy.action_dim);
    let sampler = Sampler::new(config.sampler.clone(), horizon, policy.spec().action_dim);
    let mut engine = InferenceEngine::new(policy, None, sampler, config.sampler.seed);
    let mut replayed = HashMap::new();
    for record in session.inferences.iter().filter(|r| r.error.is_none()) {
        let mut request =
            InferenceRequest::with_capacity(horizon * action_dim, record.observation.len());
        request.set_inputs(
            record.seq,
            record.executed,
            record.delay,
            &record.observation,
            &record.images,
            &record.committed,
        );
        request.tick = record.tick;
        let chunk = engine
            .infer(&request)
            .map_err(|e| ReplayError::Inference {
                seq: record.seq,
                message: e.to_string(),
            })?
            .to_vec();
        chunks.compare(record.seq, &chunk, &record.chunk);
        replayed.insert(record.seq, chunk);
    }
    Ok(replayed)
}

/// Replays `session` in `mode`; with `simulator` (the report of the `rtchunk sim serve` it ran against) the task
/// is re-run as well.
pub fn replay(
    session: &RecordedSession,
    mode: ReplayMode,
    simulator: Option<&SimRecording>,
) -> Result<ReplayReport, ReplayError> {
    check_session(session)?;
    let config = &session.header.config;
    let action_dim = session.header.action_dim;
    let mut report = ReplayReport {
        mode,
        complete: session.complete,
        ticks: session.ticks.len() as u64,
        inferences: session.inferences.len() as u64,
        chunks: Divergence::default(),
        schedule: Divergence::default(),
        actions: Divergence::default(),
        commands: None,
        task: None,
    };
    let chunks = match mode {
        ReplayMode::ExactOutput => session
            .inferences
            .iter()
            .filter(|r| r.error.is_none())
            .map(|r| (r.seq, r.chunk.clone()))
            .collect(),
        ReplayMode::ReInfer => re_infer(session, &mut report.chunks)?,
    };
    let rescheduled = reschedule(session, &chunks)?;
    report.schedule = rescheduled.schedule;
    for (tick, action) in session.ticks.iter().zip(&rescheduled.actions) {
        report
            .actions
            .compare(tick.controller_tick, action, &tick.action[..action_dim]);
    }
    let feedback = match (config.plant.kind, simulator) {
        (PlantKind::PointMass, _) => Some(Some(PointMass::new(
            config.plant.clone(),
            1.0 / config.clock.controller_rate(),
        ))),
        (_, Some(_)) => Some(None),
        _ => None,
    };
    if let Some(point_mass) = feedback {
        let (divergence, commands) = rerun_pipeline(session, &rescheduled, point_mass);
        report.commands = Some(divergence);
        if let Some(simulator) = simulator {
            report.task = Some(resimulate_task(simulator, &commands, action_dim)?);
        }
    }
    Ok(report)
}

/// Drives the action pipeline with the re-run executor's actions as the controller loop did, fed by a fresh point mass
/// or, without one, by the zero joint state of a robot that reports no joints; compares each command with the
/// recorded one and returns the commands by controller tick.
fn rerun_pipeline(
    session: &RecordedSession,
    rescheduled: &Rescheduled,
    mut point_mass: Option<PointMass>,
) -> (Divergence, HashMap<u64, Vec<f32>>) {
    let config = &session.header.config;
    let action_dim = session.header.action_dim;
    let mut pipeline = ActionPipeline::from_config(config);
    let decimation = config.clock.decimation() as u64;
    let mut state = RobotState::zeros(action_dim);
    let mut observation = vec![0.0f32; session.header.observation_dim];
    if let Some(plant) = &mut point_mass {
        plant.read(&mut state, &mut observation);
    }
    pipeline.reset(&state);
    let mut divergence = Divergence::default();
    let mut commands = HashMap::with_capacity(session.ticks.len());
    let replayed = rescheduled.actions.iter().zip(&rescheduled.kinds);
    for (tick, (action, kind)) in session.ticks.iter().zip(replayed) {
        if let Some(plant) = &mut point_mass {
            plant.read(&mut state, &mut observation);
        }
        if let Some(kind) = kind {
            apply_policy_tick(&mut pipeline, *kind, action);
        }
        let sub = (tick.controller_tick % decimation) as usize;
        let (command, _) = pipeline.command(sub, &state);
        let command_f32: Vec<f32> = command.iter().map(|&v| v as f32).collect();
        divergence.compare(
            tick.controller_tick,
            &command_f32,
            &tick.command[..action_dim],
        );
        if let Some(plant) = &mut point_mass {
            plant.write(command);
        }
        commands.insert(tick.controller_tick, command_f32);
    }
    (divergence, commands)
}
