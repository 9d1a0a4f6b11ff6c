//! Re-runs Algorithm 1's executor over a log: the recorded stale holds and chunk arrivals go in, and out come
//! the schedule (which chunk and index each policy tick executes, when chunks are adopted and requested) and
//! the actions, to be compared with what the log recorded. A scheduler that skipped, repeated or shifted an
//! action writes a log that still agrees with itself, but not with this re-run.

use crate::core::clock::DelayInjector;
use crate::core::controller::StaleHolds;
use crate::core::executor::{ChunkExecutor, ExecutorSettings};
use crate::core::messages::{ChunkMessage, InferenceRequest};
use crate::core::record::{PolicyTick, TickKind};
use crate::core::session::replan_after_held;
use crate::recording::divergence::{Divergence, ReplayError};
use crate::recording::format::RecordedSession;
use std::collections::{HashMap, HashSet};

/// What the re-run executor did.
#[derive(Debug, Clone)]
pub struct Rescheduled {
    /// Per controller tick, the action it chose (zeros where a tick has none, as the log records them).
    pub actions: Vec<Vec<f32>>,
    /// Per controller tick, the kind of its policy tick (`None` between policy ticks and on the final stop).
    pub kinds: Vec<Option<TickKind>>,
    /// Policy ticks whose schedule differs from the recorded one (kind, chunk, index, adoption and its delay,
    /// request), by controller tick.
    pub schedule: Divergence,
}

/// The fields of a policy tick that the schedule decides.
fn schedule_of(tick: &PolicyTick) -> (TickKind, u64, u32, bool, u32, u64) {
    let index = if tick.kind == TickKind::Executed {
        tick.index
    } else {
        0
    };
    (
        tick.kind,
        tick.chunk_seq,
        index,
        tick.swapped,
        tick.observed_delay,
        tick.request_seq,
    )
}

/// Re-runs the executor over `session`, answering its requests with `chunks` (by request number) at the policy
/// ticks where the log adopted them, and failed inferences before the log's next request. The session must have
/// passed [`crate::recording::check::check_session`]; a tick that adopts a chunk missing from `chunks` is an
/// error.
pub fn reschedule(
    session: &RecordedSession,
    chunks: &HashMap<u64, Vec<f32>>,
) -> Result<Rescheduled, ReplayError> {
    let config = &session.header.config;
    let (horizon, action_dim) = (config.policy.horizon, config.policy.action_dim);
    let mut executor = ChunkExecutor::new(ExecutorSettings::from_config(config));
    let clock = &config.clock;
    let mut delays = DelayInjector::new(
        clock.inference_delay_ticks,
        clock.inference_delay_jitter_ticks,
        clock.seed,
    );
    let mut request =
        InferenceRequest::with_capacity(horizon * action_dim, session.header.observation_dim);
    let observation = vec![0.0f32; session.header.observation_dim];
    let mut message = ChunkMessage::with_capacity(horizon * action_dim);
    let failed: HashSet<u64> = session
        .inferences
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.seq)
        .collect();
    let mut holds = StaleHolds::new(replan_after_held(config));
    let mut requested = HashMap::new();
    let mut out = Rescheduled {
        actions: Vec::with_capacity(session.ticks.len()),
        kinds: Vec::with_capacity(session.ticks.len()),
        schedule: Divergence::default(),
    };
    let mut answer = |executor: &mut ChunkExecutor,
                      requested: &HashMap<u64, (u64, u64)>,
                      seq: u64,
                      chunk: Option<&[f32]>| {
        let Some(&(start, release)) = requested.get(&seq) else {
            return;
        };
        message.seq = seq;
        message.start_tick = start;
        message.release_tick = release;
        message.ok = chunk.is_some();
        if let Some(chunk) = chunk {
            message.actions.copy_from_slice(chunk);
        }
        executor.offer(&message);
    };
    for tick in &session.ticks {
        let mut action = vec![0.0f32; action_dim];
        let Some(recorded) = &tick.policy else {
            out.actions.push(action);
            out.kinds.push(None);
            continue;
        };
        let replayed = if recorded.kind == TickKind::Held {
            holds.hold(&executor)
        } else {
            holds.resume(&mut executor);
            let previous = recorded.request_seq.wrapping_sub(1);
            if recorded.request_seq > 1 && failed.contains(&previous) {
                answer(&mut executor, &requested, previous, None);
            }
            if recorded.swapped {
                let seq = recorded.chunk_seq;
                let chunk = chunks.get(&seq).ok_or(ReplayError::MissingChunk {
                    tick: tick.controller_tick,
                    seq,
                })?;
                answer(&mut executor, &requested, seq, Some(chunk));
            }
            let step = executor.step(&observation, &mut || delays.draw(), &mut request);
            if step.request_seq != 0 {
                requested.insert(step.request_seq, (request.tick, request.release_tick));
            }
            step
        };
        if replayed.kind.carries_action() {
            action.copy_from_slice(executor.action());
        }
        out.schedule.count(
            tick.controller_tick,
            1,
            schedule_of(&replayed) != schedule_of(recorded),
        );
        out.actions.push(action);
        out.kinds.push(Some(replayed.kind));
    }
    Ok(out)
}
