//! `rtchunk replay LOG`: re-runs a recorded session and reports where and by how much it diverges.
//!
//! - **exact output**: each executed action is taken from the recorded chunk and index the log names; on the
//!   built-in point mass the plant and the action pipeline are re-simulated from those actions and every command
//!   is compared with the recorded one. A faithful log replays with zero divergence.
//! - **re-infer**: the policy runs again on every recorded inference's inputs (observation, committed actions,
//!   d and s, the run's seed); the new chunks are compared with the recorded ones, then used in place of them as
//!   above. Divergence here is the policy's nondeterminism across runs, devices or builds.
//!
//! Ticks whose action does not come from one chunk (temporal ensembling, starvation holds, synchronous pauses)
//! keep their recorded action in both modes.

use crate::messages::InferenceRequest;
use crate::policies::load_policy;
use crate::record::{MAX_VALUES, TickKind, TickRecord};
use crate::recording::format::RecordedSession;
use crate::worker::InferenceEngine;
use rtchunk_config::{Execution, PlantKind};
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

/// The largest difference found in one quantity, and where it first appeared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Divergence {
    /// Values compared.
    pub compared: u64,
    /// Items (chunks or ticks) that differ at all.
    pub differing: u64,
    /// The largest absolute difference.
    pub max_abs: f64,
    /// The first item that differs (request number or controller tick).
    pub first: Option<u64>,
}

impl Divergence {
    fn compare(&mut self, item: u64, replayed: &[f32], recorded: &[f32]) {
        let mut differs = false;
        for (a, b) in replayed.iter().zip(recorded) {
            self.compared += 1;
            let difference = (f64::from(*a) - f64::from(*b)).abs();
            if a.to_bits() != b.to_bits() {
                differs = true;
                self.max_abs = self.max_abs.max(difference);
            }
        }
        if differs {
            self.differing += 1;
            self.first.get_or_insert(item);
        }
    }
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
    /// Replayed actions against the recorded ones, per controller tick.
    pub actions: Divergence,
    /// Re-simulated commands against the recorded ones (point-mass runs only).
    pub commands: Option<Divergence>,
}

impl ReplayReport {
    /// Whether nothing diverged.
    pub fn identical(&self) -> bool {
        self.chunks.differing == 0
            && self.actions.differing == 0
            && self.commands.is_none_or(|c| c.differing == 0)
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The policy of the log could not be loaded.
    #[error("loading the recorded policy: {0}")]
    Bundle(#[from] rtchunk_policy::onnx::BundleError),
    /// The policy failed on a recorded input.
    #[error("re-inferring request {seq}: {message}")]
    Inference {
        /// The request.
        seq: u64,
        /// What failed.
        message: String,
    },
    /// The log refers to a chunk it does not hold.
    #[error("controller tick {tick} executes chunk {seq}, which the log does not hold")]
    MissingChunk {
        /// The tick.
        tick: u64,
        /// The chunk's request number.
        seq: u64,
    },
}

/// Re-runs the policy on every recorded inference's inputs; returns the new chunks by request number.
fn re_infer(
    session: &RecordedSession,
    chunks: &mut Divergence,
) -> Result<HashMap<u64, Vec<f32>>, ReplayError> {
    let config = &session.header.config;
    let policy = load_policy(config)?;
    let (horizon, action_dim) = (config.policy.horizon, config.policy.action_dim);
    let sampler = Sampler::new(config.sampler.clone(), horizon, action_dim);
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

/// The action of `tick` from `chunks`, or the recorded one where no single chunk supplies it.
fn replayed_action<'a>(
    tick: &'a TickRecord,
    chunks: &'a HashMap<u64, Vec<f32>>,
    execution: Execution,
    action_dim: usize,
) -> Result<&'a [f32], ReplayError> {
    let recorded = &tick.action[..action_dim];
    let Some(policy) = &tick.policy else {
        return Ok(recorded);
    };
    if policy.kind != TickKind::Executed || execution == Execution::Ensemble {
        return Ok(recorded);
    }
    let chunk = chunks
        .get(&policy.chunk_seq)
        .ok_or(ReplayError::MissingChunk {
            tick: tick.controller_tick,
            seq: policy.chunk_seq,
        })?;
    Ok(&chunk[policy.index as usize * action_dim..][..action_dim])
}

/// Replays `session` in `mode`.
pub fn replay(session: &RecordedSession, mode: ReplayMode) -> Result<ReplayReport, ReplayError> {
    let config = &session.header.config;
    let action_dim = session.header.action_dim;
    let mut report = ReplayReport {
        mode,
        complete: session.complete,
        ticks: session.ticks.len() as u64,
        inferences: session.inferences.len() as u64,
        chunks: Divergence::default(),
        actions: Divergence::default(),
        commands: None,
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
    let execution = config.scheduler.execution;
    let mut actions = Vec::with_capacity(session.ticks.len());
    for tick in &session.ticks {
        let action = replayed_action(tick, &chunks, execution, action_dim)?;
        report
            .actions
            .compare(tick.controller_tick, action, &tick.action[..action_dim]);
        actions.push(action);
    }
    if config.plant.kind == PlantKind::PointMass {
        report.commands = Some(resimulate_point_mass(session, &actions));
    }
    Ok(report)
}

/// Drives a fresh point mass through the action pipeline with `actions` (one per tick) and compares each
/// command with the recorded one, as the controller loop would have produced it.
fn resimulate_point_mass(session: &RecordedSession, actions: &[&[f32]]) -> Divergence {
    let config = &session.header.config;
    let action_dim = session.header.action_dim;
    let mut plant = PointMass::new(config.plant.clone(), 1.0 / config.clock.controller_rate());
    let mut pipeline = ActionPipeline::from_config(config);
    let decimation = config.clock.decimation() as u64;
    let mut state = RobotState::zeros(plant.dims());
    let mut observation = vec![0.0f32; plant.observation_dim()];
    plant.read(&mut state, &mut observation);
    pipeline.reset(&state);
    let mut divergence = Divergence::default();
    let mut command_f32 = [0.0f32; MAX_VALUES];
    for (tick, action) in session.ticks.iter().zip(actions) {
        plant.read(&mut state, &mut observation);
        if tick
            .policy
            .is_some_and(|p| p.kind != TickKind::Warmup && p.kind != TickKind::Held)
        {
            pipeline.set_action(action);
        }
        let sub = (tick.controller_tick % decimation) as usize;
        let (command, _) = pipeline.command(sub, &state);
        for (slot, value) in command_f32.iter_mut().zip(command.iter()) {
            *slot = *value as f32;
        }
        divergence.compare(
            tick.controller_tick,
            &command_f32[..action_dim],
            &tick.command[..action_dim],
        );
        plant.write(command);
    }
    divergence
}
