//! Checks a log's header against its records before anything replays it, so a damaged or hostile log gets an
//! error naming the record and the field instead of a panic deep in the replay.

use crate::core::record::{MAX_VALUES, TickKind};
use crate::recording::format::RecordedSession;
use rtchunk_config::PlantKind;
use rtchunk_controllers::Plant;
use rtchunk_sim::PointMass;

/// The most observation values a log may declare (far above any robot's, far below what exhausts memory).
const MAX_OBSERVATION: usize = 1 << 20;

/// What in a log is inconsistent: the record (e.g. `header`, `tick record 12`, `inference 7`) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record}: {field} {message}")]
pub struct LogInconsistency {
    /// Which record.
    pub record: String,
    /// Which field of it.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

fn fail(record: impl Into<String>, field: &str, message: String) -> LogInconsistency {
    LogInconsistency {
        record: record.into(),
        field: field.to_string(),
        message,
    }
}

/// A field of `len` values, refused unless `ok`; `expected` says what was expected, only when it is wrong.
fn check_length(
    record: &dyn Fn() -> String,
    field: &str,
    len: usize,
    ok: bool,
    expected: impl FnOnce() -> String,
) -> Result<(), LogInconsistency> {
    if ok {
        return Ok(());
    }
    Err(fail(
        record(),
        field,
        format!("holds {len} values, expected {}", expected()),
    ))
}

/// Checks every rule a replay relies on: a valid configuration whose shapes match the header's, consecutive
/// controller ticks, executed indices inside the horizon, and inference records whose vectors have the
/// shapes the configuration gives.
pub fn check_session(session: &RecordedSession) -> Result<(), LogInconsistency> {
    let header = &session.header;
    let config = &header.config;
    config
        .validate()
        .map_err(|e| fail("header", "config", format!("is not valid: {e}")))?;
    let (horizon, action_dim) = (config.policy.horizon, config.policy.action_dim);
    if header.action_dim != action_dim || !(1..=MAX_VALUES).contains(&header.action_dim) {
        return Err(fail(
            "header",
            "action_dim",
            format!(
                "= {}, expected the configuration's policy.action_dim = {action_dim} (1 to {MAX_VALUES})",
                header.action_dim
            ),
        ));
    }
    let observation_dim = header.observation_dim;
    if observation_dim > MAX_OBSERVATION {
        return Err(fail(
            "header",
            "observation_dim",
            format!("= {observation_dim}, at most {MAX_OBSERVATION}"),
        ));
    }
    if config.plant.kind == PlantKind::PointMass {
        let plant = PointMass::new(config.plant.clone(), 1.0 / config.clock.controller_rate());
        if observation_dim != plant.observation_dim() {
            return Err(fail(
                "header",
                "observation_dim",
                format!(
                    "= {observation_dim}, but the point-mass plant of the configuration gives {}",
                    plant.observation_dim()
                ),
            ));
        }
    }
    for (position, tick) in session.ticks.iter().enumerate() {
        let record = || format!("tick record {position}");
        if tick.controller_tick != position as u64 {
            return Err(fail(
                record(),
                "controller_tick",
                format!(
                    "= {}, expected {position} (ticks are consecutive from 0; a missing one cannot be re-run)",
                    tick.controller_tick
                ),
            ));
        }
        if let Some(policy) = &tick.policy
            && policy.kind == TickKind::Executed
            && policy.index as usize >= horizon
        {
            return Err(fail(
                record(),
                "index",
                format!("= {}, beyond the horizon H = {horizon}", policy.index),
            ));
        }
    }
    let chunk_len = horizon * action_dim;
    for inference in &session.inferences {
        let record = || format!("inference {}", inference.seq);
        if inference.error.is_some() {
            continue;
        }
        let (chunk, observation, committed) = (
            inference.chunk.len(),
            inference.observation.len(),
            inference.committed.len(),
        );
        check_length(&record, "chunk", chunk, chunk == chunk_len, || {
            format!("H x action_dim = {chunk_len}")
        })?;
        check_length(
            &record,
            "observation",
            observation,
            observation == observation_dim,
            || format!("the header's observation_dim = {observation_dim}"),
        )?;
        let whole_actions = committed <= chunk_len && committed.is_multiple_of(action_dim);
        check_length(&record, "committed", committed, whole_actions, || {
            format!("whole actions of {action_dim}, at most {chunk_len}")
        })?;
        if inference.executed > horizon || inference.delay > horizon - inference.executed {
            return Err(fail(
                record(),
                "executed / delay",
                format!(
                    "= {} / {}, expected s <= H = {horizon} and d <= H - s",
                    inference.executed, inference.delay
                ),
            ));
        }
    }
    Ok(())
}
