//! The controller's side of Algorithm 1: which action runs at each policy tick, when to request the next
//! chunk, and when to adopt it. Pure logic on buffers sized at construction; real-time safe.
//!
//! Indexing is by absolute policy tick: a chunk answering a request made at tick T_s holds, at index i, the
//! action for tick T_s + 1 + i. Adopting it therefore continues exactly where the previous chunk stopped:
//! no action is skipped or executed twice. The observed delay of a chunk is the number of policy ticks that
//! passed between its request and its adoption, counted, never estimated.

use crate::core::delay::DelayBuffer;
use crate::core::messages::{ChunkMessage, InferenceRequest};
use crate::core::record::{PolicyTick, StepClass, TickKind};
use rtchunk_config::{Config, Execution, Starvation};

/// The scheduler settings the executor needs, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorSettings {
    /// Chunk execution.
    pub execution: Execution,
    /// H.
    pub horizon: usize,
    /// Values per action.
    pub action_dim: usize,
    /// s_min.
    pub execution_horizon: usize,
    /// b.
    pub delay_buffer: usize,
    /// d_init.
    pub initial_delay: usize,
    /// The action held on starvation, or `None` to hold the last action.
    pub safe_action: Option<Vec<f32>>,
}

impl ExecutorSettings {
    /// The settings that `config` describes.
    pub fn from_config(config: &Config) -> Self {
        let scheduler = &config.scheduler;
        ExecutorSettings {
            execution: scheduler.execution,
            horizon: config.policy.horizon,
            action_dim: config.policy.action_dim,
            execution_horizon: scheduler.resolved_execution_horizon(config.policy.horizon),
            delay_buffer: scheduler.delay_buffer,
            initial_delay: scheduler.initial_delay,
            safe_action: match scheduler.on_starvation {
                Starvation::HoldLast => None,
                Starvation::SafeAction => scheduler
                    .safe_action
                    .as_ref()
                    .map(|a| a.iter().map(|&v| v as f32).collect()),
            },
        }
    }
}

/// A chunk and where it sits on the policy-tick timeline.
#[derive(Debug, Clone)]
struct Chunk {
    seq: u64,
    /// Action i runs at policy tick `start + 1 + i`.
    start: u64,
    release: u64,
    actions: Vec<f32>,
}

impl Chunk {
    fn empty(len: usize) -> Self {
        Chunk {
            seq: 0,
            start: 0,
            release: 0,
            actions: vec![0.0; len],
        }
    }

    /// The index of the action meant for policy tick `tick`, if the chunk covers it.
    fn index_at(&self, tick: u64, horizon: usize) -> Option<usize> {
        let offset = tick.checked_sub(self.start + 1)? as usize;
        (offset < horizon).then_some(offset)
    }
}

/// The request in flight.
#[derive(Debug, Clone, Copy)]
struct Awaiting {
    seq: u64,
    release: u64,
    executed: usize,
}

/// Decides the action of every policy tick. Real-time safe: no method allocates after construction.
pub struct ChunkExecutor {
    settings: ExecutorSettings,
    tick: u64,
    current: Chunk,
    has_current: bool,
    /// The next chunk once it arrives; after a swap, the buffer of the replaced chunk.
    pending: Chunk,
    has_pending: bool,
    /// Earlier chunks still covering upcoming ticks, for temporal ensembling.
    retained: Vec<Chunk>,
    awaiting: Option<Awaiting>,
    next_seq: u64,
    delays: DelayBuffer,
    action: Vec<f32>,
    previous_action: Vec<f32>,
    previous: Option<(TickKind, u64)>,
    failures: u64,
}

impl ChunkExecutor {
    /// An executor with no chunk yet: the first policy tick requests one.
    pub fn new(settings: ExecutorSettings) -> Self {
        let len = settings.horizon * settings.action_dim;
        let retained = if settings.execution == Execution::Ensemble {
            (0..settings.horizon).map(|_| Chunk::empty(len)).collect()
        } else {
            Vec::new()
        };
        ChunkExecutor {
            delays: DelayBuffer::new(settings.delay_buffer, settings.initial_delay),
            tick: 0,
            current: Chunk::empty(len),
            has_current: false,
            pending: Chunk::empty(len),
            has_pending: false,
            retained,
            awaiting: None,
            next_seq: 1,
            action: vec![0.0; settings.action_dim],
            previous_action: vec![0.0; settings.action_dim],
            previous: None,
            failures: 0,
            settings,
        }
    }

    /// The action chosen by the last [`ChunkExecutor::step`] (meaningless after a `Warmup` tick).
    pub fn action(&self) -> &[f32] {
        &self.action
    }

    /// Policy ticks stepped so far (T).
    pub fn ticks(&self) -> u64 {
        self.tick
    }

    /// Inferences that reported failure.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Takes a message from the worker. Answers to other requests than the one in flight are ignored; a
    /// failure ends the request, so a new one can be made.
    pub fn offer(&mut self, message: &ChunkMessage) {
        let Some(awaiting) = self.awaiting else {
            return;
        };
        if message.seq != awaiting.seq || self.has_pending {
            return;
        }
        if !message.ok {
            self.awaiting = None;
            self.failures += 1;
            return;
        }
        self.pending.seq = message.seq;
        self.pending.start = message.start_tick;
        self.pending.release = message.release_tick;
        self.pending.actions.copy_from_slice(&message.actions);
        self.has_pending = true;
    }

    /// Discards every chunk and the request in flight (its answer will be ignored): the next step plans from
    /// scratch, as at the start, and the robot holds its last target until the new chunk arrives. For resuming
    /// after a long gap in the robot's state, when the interrupted plan no longer fits the world.
    pub fn replan(&mut self) {
        self.has_current = false;
        self.has_pending = false;
        self.awaiting = None;
        self.previous = None;
        for chunk in &mut self.retained {
            chunk.seq = 0;
        }
    }

    /// Whether the chunk in flight is due at the coming tick but has not arrived.
    pub fn chunk_due_but_missing(&self) -> bool {
        self.awaiting
            .is_some_and(|a| !self.has_pending && self.tick >= a.release)
    }

    /// One policy tick (Algorithm 1's GETACTION): adopt a released chunk, advance t, choose the action, and
    /// write a request into `request` when the inference loop's condition holds (the caller publishes it when
    /// the returned record has a `request_seq`). `inference_ticks` gives the injected delay of a new request.
    pub fn step(
        &mut self,
        observation: &[f32],
        inference_ticks: &mut dyn FnMut() -> usize,
        request: &mut InferenceRequest,
    ) -> PolicyTick {
        let mut record = PolicyTick::idle(0, TickKind::Warmup);
        if self.has_pending && self.tick >= self.pending.release {
            record.observed_delay = self.adopt() as u32;
            record.swapped = true;
            record.request_seq = self.maybe_request(observation, inference_ticks, request);
        }
        self.tick += 1;
        record.tick = self.tick;
        self.choose_action(&mut record);
        if record.request_seq == 0 {
            record.request_seq = self.maybe_request(observation, inference_ticks, request);
        }
        record
    }

    /// Swaps the pending chunk in; returns its observed delay.
    fn adopt(&mut self) -> usize {
        let observed = (self.tick - self.pending.start) as usize;
        let executed = self.awaiting.map_or(0, |a| a.executed);
        let first_index = if !self.has_current || self.settings.execution == Execution::Sync {
            // The first (cold) chunk and synchronous chunks start from their first action: the robot held.
            0
        } else {
            // After starvation the robot held the last action: continue right after it.
            observed.min(self.settings.horizon - executed)
        };
        if self.has_current {
            self.delays.push(observed);
        }
        self.pending.start = self.tick - first_index as u64;
        std::mem::swap(&mut self.current, &mut self.pending);
        if self.has_current {
            self.retain_replaced();
        }
        self.has_current = true;
        self.has_pending = false;
        self.awaiting = None;
        observed
    }

    /// For temporal ensembling, copies the replaced chunk (now in `pending`) into a free slot.
    fn retain_replaced(&mut self) {
        let (next_tick, horizon) = (self.tick + 1, self.settings.horizon);
        let replaced = &self.pending;
        if let Some(slot) = self
            .retained
            .iter_mut()
            .find(|c| c.seq == 0 || c.index_at(next_tick, horizon).is_none())
        {
            slot.seq = replaced.seq;
            slot.start = replaced.start;
            slot.actions.copy_from_slice(&replaced.actions);
        }
    }

    fn choose_action(&mut self, record: &mut PolicyTick) {
        let horizon = self.settings.horizon;
        let a = self.settings.action_dim;
        if !self.has_current {
            return;
        }
        let current = &self.current;
        record.chunk_seq = current.seq;
        record.kind = if self.settings.execution == Execution::Sync && self.awaiting.is_some() {
            TickKind::Paused
        } else if let Some(index) = current.index_at(self.tick, horizon) {
            record.index = index as u32;
            self.action
                .copy_from_slice(&current.actions[index * a..(index + 1) * a]);
            let mut count = 1.0;
            for chunk in self.retained.iter().filter(|c| c.seq != 0) {
                if let Some(i) = chunk.index_at(self.tick, horizon) {
                    for (sum, value) in self
                        .action
                        .iter_mut()
                        .zip(&chunk.actions[i * a..(i + 1) * a])
                    {
                        *sum += value;
                    }
                    count += 1.0;
                }
            }
            self.action.iter_mut().for_each(|v| *v /= count);
            TickKind::Executed
        } else {
            if let Some(safe) = &self.settings.safe_action {
                self.action.copy_from_slice(safe);
            }
            TickKind::Starved
        };
        if let Some((previous_kind, previous_seq)) = self.previous {
            record.step = self
                .action
                .iter()
                .zip(&self.previous_action)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt();
            let both_executed =
                record.kind == TickKind::Executed && previous_kind == TickKind::Executed;
            record.step_class = match (
                both_executed,
                record.swapped,
                previous_seq == record.chunk_seq,
            ) {
                (true, true, _) => StepClass::Seam,
                (true, false, true) => StepClass::Within,
                _ => StepClass::Other,
            };
        }
        self.previous_action.copy_from_slice(&self.action);
        self.previous = Some((record.kind, record.chunk_seq));
    }

    /// Algorithm 1's inference-loop condition: no request in flight and t >= s_min (or no chunk at all).
    fn maybe_request(
        &mut self,
        observation: &[f32],
        inference_ticks: &mut dyn FnMut() -> usize,
        request: &mut InferenceRequest,
    ) -> u64 {
        if self.awaiting.is_some() {
            return 0;
        }
        let (horizon, a) = (self.settings.horizon, self.settings.action_dim);
        let (executed, committed): (usize, &[f32]) = if self.has_current {
            let consumed = (self.tick - self.current.start) as usize;
            if consumed < self.settings.execution_horizon {
                return 0;
            }
            let s = consumed.min(horizon);
            match self.settings.execution {
                Execution::Sync => (s, &[]),
                _ => (s, &self.current.actions[s * a..]),
            }
        } else {
            (0, &[])
        };
        let delay = if committed.is_empty() {
            0
        } else {
            self.delays.forecast().min(horizon - executed)
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        request.seq = seq;
        request.tick = self.tick;
        request.release_tick = self.tick + inference_ticks() as u64;
        request.executed = executed;
        request.delay = delay;
        request.committed_len = committed.len();
        request.committed[..committed.len()].copy_from_slice(committed);
        request.observation.copy_from_slice(observation);
        self.awaiting = Some(Awaiting {
            seq,
            release: request.release_tick,
            executed,
        });
        seq
    }
}
