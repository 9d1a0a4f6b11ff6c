//! The hard-timed controller thread: every period it reads the plant, runs Algorithm 1's GETACTION on policy
//! ticks, passes the action through the controller and the safety filter, writes the command and records the
//! tick. It never waits for the model.
//!
//! Real-time contract of the loop: no allocation, lock, log or I/O. It talks to the worker through triple
//! buffers (requests out, chunks in) and a futex doorbell, and to the collector through a wait-free SPSC ring.

use crate::core::clock::Clock;
use crate::core::doorbell::Doorbell;
use crate::core::executor::ChunkExecutor;
use crate::core::messages::{ChunkMessage, InferenceRequest};
use crate::core::record::{MAX_VALUES, PolicyTick, StepClass, TickKind, TickRecord};
use rtchunk_controllers::{
    ActionPipeline, Freshness, Plant, RobotState, SafetyCounters, TickReport,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Called on the controller thread around its loop, e.g. to mark the real-time section for a profiler or an
/// allocation checker. Neither method runs inside the loop.
pub trait LoopHooks: Send {
    /// Just before the first tick.
    fn loop_started(&mut self) {}
    /// Just after the last tick.
    fn loop_finished(&mut self) {}
}

/// What a policy tick means for the action pipeline: a tick that carries an action sets the executor's (a
/// paused or starved tick repeats it, or sets the safe action); warm-up and held ticks hold the last command's
/// target. Shared by the controller loop and replay.
pub(crate) fn apply_policy_tick(pipeline: &mut ActionPipeline, kind: TickKind, action: &[f32]) {
    if kind.carries_action() {
        pipeline.set_action(action);
    } else {
        pipeline.hold();
    }
}

/// The policy ticks held on stale state, and the re-plan that fresh state triggers after too many of them.
/// Shared by the controller loop and replay, so both re-plan at the same tick. Real-time safe.
pub(crate) struct StaleHolds {
    in_a_row: u64,
    replan_after: u64,
}

impl StaleHolds {
    /// Re-plans once `replan_after` policy ticks in a row were held.
    pub(crate) fn new(replan_after: u64) -> Self {
        StaleHolds {
            in_a_row: 0,
            replan_after,
        }
    }

    /// A policy tick held on stale state: nothing is executed, requested or adopted.
    pub(crate) fn hold(&mut self, executor: &ChunkExecutor) -> PolicyTick {
        self.in_a_row += 1;
        PolicyTick::idle(executor.ticks(), TickKind::Held)
    }

    /// Fresh state at a policy tick: after a long hold the interrupted plan is dropped.
    pub(crate) fn resume(&mut self, executor: &mut ChunkExecutor) {
        if self.in_a_row >= self.replan_after {
            executor.replan();
        }
        self.in_a_row = 0;
    }
}

/// Hooks that do nothing.
pub struct NoHooks;

impl LoopHooks for NoHooks {}

/// Everything the controller thread owns, prepared before it starts.
pub struct ControllerLoop<P: Plant, C: Clock> {
    /// The robot or simulator.
    pub plant: P,
    /// What paces the loop.
    pub clock: C,
    /// Interpolator, safety filter and controller.
    pub pipeline: ActionPipeline,
    /// Algorithm 1's controller side.
    pub executor: ChunkExecutor,
    /// Requests to the inference worker.
    pub requests: triple_buffer::Input<InferenceRequest>,
    /// Rung when a request is published.
    pub request_bell: Arc<Doorbell>,
    /// Chunks from the inference worker.
    pub chunks: triple_buffer::Output<ChunkMessage>,
    /// Tick records to the collector.
    pub records: rtrb::Producer<TickRecord>,
    /// Set to end the loop (by the owner, or by the loop itself when it ends).
    pub stop: Arc<AtomicBool>,
    /// Controller ticks to run; `None` runs until `stop`.
    pub tick_limit: Option<u64>,
    /// Controller ticks per policy tick.
    pub decimation: usize,
    /// Held policy ticks after which fresh state re-plans instead of resuming the interrupted chunk.
    pub replan_after_held: u64,
    /// Called around the loop.
    pub hooks: Box<dyn LoopHooks>,
}

/// What the controller thread hands back when it ends.
pub struct ControllerResult<P> {
    /// The plant, for inspection.
    pub plant: P,
    /// The safety filter's interventions.
    pub safety: SafetyCounters,
    /// Tick records that did not fit in the ring (0 unless the collector stalled).
    pub records_dropped: u64,
    /// Inferences that reported failure.
    pub inference_failures: u64,
}

impl<P: Plant, C: Clock> ControllerLoop<P, C> {
    /// Runs the loop until the tick limit or `stop`, then tells the worker to stop.
    pub fn run(self) -> ControllerResult<P> {
        let ControllerLoop {
            mut plant,
            mut clock,
            mut pipeline,
            mut executor,
            mut requests,
            request_bell,
            mut chunks,
            mut records,
            stop,
            tick_limit,
            decimation,
            replan_after_held,
            mut hooks,
        } = self;
        let mut holds = StaleHolds::new(replan_after_held);
        let mut state = RobotState::zeros(plant.dims());
        let mut observation = vec![0.0f32; plant.observation_dim()];
        plant.read(&mut state, &mut observation);
        pipeline.reset(&state);
        let mut records_dropped = 0u64;
        let mut tick = 0u64;
        hooks.loop_started();
        while !stop.load(Ordering::Relaxed) && tick_limit.is_none_or(|limit| tick < limit) {
            let wake = clock.wait_next_tick();
            plant.read(&mut state, &mut observation);
            let freshness = plant.freshness();
            let sub = (tick % decimation as u64) as usize;
            // On stop: one last command toward the current target (recorded like any tick), then no more.
            let stopping = freshness == Freshness::Stop;
            let policy = if stopping {
                None
            } else if sub == 0 && freshness == Freshness::Stale {
                Some(holds.hold(&executor))
            } else if sub == 0 {
                holds.resume(&mut executor);
                if chunks.update() {
                    executor.offer(chunks.output_buffer());
                }
                if executor.chunk_due_but_missing() {
                    clock.stall_until(&|| chunks.updated());
                    if chunks.update() {
                        executor.offer(chunks.output_buffer());
                    }
                }
                let record = executor.step(
                    &observation,
                    &mut || clock.inference_ticks(),
                    requests.input_buffer_mut(),
                );
                if record.request_seq != 0 {
                    requests.publish();
                    request_bell.ring();
                }
                Some(record)
            } else {
                None
            };
            if let Some(policy) = &policy {
                apply_policy_tick(&mut pipeline, policy.kind, executor.action());
            }
            let (command, verdict) = pipeline.command(sub, &state);
            plant.write(command);
            let mut record = TickRecord {
                controller_tick: tick,
                lateness_ns: wake.lateness_ns,
                missed: wake.missed,
                policy,
                safety_rejected: verdict.rejected,
                safety_clamped: verdict.clamped,
                state_seq: plant.state_seq(),
                time_ns: wake.time_ns,
                action: [0.0; MAX_VALUES],
                command: [0.0; MAX_VALUES],
                observation: [0.0; MAX_VALUES],
            };
            if policy.is_some() {
                let kept = observation.len().min(MAX_VALUES);
                record.observation[..kept].copy_from_slice(&observation[..kept]);
            }
            for (slot, value) in record.command.iter_mut().zip(command.iter()) {
                *slot = *value as f32;
            }
            if policy.is_some_and(|p| p.kind.carries_action()) {
                let action = executor.action();
                record.action[..action.len()].copy_from_slice(action);
            }
            plant.report(&TickReport {
                lateness_ns: wake.lateness_ns,
                missed: wake.missed,
                swapped_with_delay: policy.filter(|p| p.swapped).map(|p| p.observed_delay),
                seam_jump: policy
                    .filter(|p| p.step_class == StepClass::Seam)
                    .map(|p| p.step),
                starved: policy.is_some_and(|p| p.kind == TickKind::Starved),
            });
            if let Err(rtrb::PushError::Full(record)) = records.push(record) {
                clock.stall_until(&|| !records.is_full());
                if records.push(record).is_err() {
                    records_dropped += 1;
                }
            }
            tick += 1;
            if stopping {
                break;
            }
        }
        hooks.loop_finished();
        stop.store(true, Ordering::SeqCst);
        request_bell.ring();
        ControllerResult {
            plant,
            safety: pipeline.safety().counters(),
            records_dropped,
            inference_failures: executor.failures(),
        }
    }
}
