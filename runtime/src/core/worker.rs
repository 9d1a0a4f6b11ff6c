//! The inference worker (tokio): waits for the controller's request, samples the next chunk with the
//! configured sampler and hands it back through a triple buffer. Inference runs on tokio's blocking pool, so
//! the async side stays free for I/O. A policy that panics, fails or runs past the inference timeout costs one
//! failed inference (told to the controller, which keeps executing its chunk and then holds; recorded and
//! counted by kind, [`InferenceFault`]), never the worker.

use crate::core::doorbell::Doorbell;
use crate::core::events::RunEvent;
use crate::core::inference_fault::{InferenceFault, InferenceFaultCounters};
use crate::core::messages::{CameraFeed, ChunkMessage, InferenceRequest};
use crate::core::metrics::InferenceSummary;
use crate::core::record::InferenceRecord;
use rtchunk_policy::{
    Committed, FlowPolicy, Normalization, PolicyError, SampleRequest, Sampler, actions_of,
    chunks_of_mut, widen_actions,
};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The policy and sampler, owned by whichever thread runs the inference.
pub struct InferenceEngine {
    /// The policy.
    pub policy: Box<dyn FlowPolicy>,
    /// BID's weak policy, if any.
    pub weak: Option<Box<dyn FlowPolicy>>,
    /// The sampler.
    pub sampler: Sampler,
    /// Base seed; each request samples with its own stream.
    pub seed: u64,
    normalization: Option<Normalization>,
    observation: Vec<f32>,
    /// The committed actions widened to the model's action dimension (padding zero), for a policy whose robot
    /// executes fewer dimensions than it samples.
    widened: Vec<f32>,
    committed: Vec<f32>,
    chunk: Vec<f32>,
    /// The chunks narrowed to the robot's action dimensions, for such a policy.
    robot_chunk: Vec<f32>,
}

impl InferenceEngine {
    /// An engine for the policy's chunk shape.
    pub fn new(
        policy: Box<dyn FlowPolicy>,
        weak: Option<Box<dyn FlowPolicy>>,
        sampler: Sampler,
        seed: u64,
    ) -> Self {
        let len = policy.spec().chunk_len();
        InferenceEngine {
            normalization: policy.normalization().cloned(),
            observation: Vec::new(),
            widened: Vec::new(),
            committed: vec![0.0; len],
            chunk: vec![0.0; len],
            robot_chunk: Vec::new(),
            policy,
            weak,
            sampler,
            seed,
        }
    }

    /// Samples the chunk answering `request`, in the robot's units. Observations and committed actions are
    /// normalised into the policy's space, and the chunk back, here and nowhere else. For a policy that samples
    /// more action dimensions than the robot executes (`PolicySpec::robot_action_dim`), committed actions are
    /// widened with zeros in the padding and chunks narrowed to the robot's dimensions, here too.
    pub fn infer(&mut self, request: &InferenceRequest) -> Result<&[f32], PolicyError> {
        self.infer_batch(&[(request, 0)])
    }

    /// Samples the chunks answering several robots' requests in one batched pass, one after another in the
    /// result. Each pairs a request with its robot's noise stream: a request's chunk depends only on it, its
    /// stream, and this engine's seed (stream 0 is what [`InferenceEngine::infer`] uses).
    pub fn infer_batch(
        &mut self,
        requests: &[(&InferenceRequest, u64)],
    ) -> Result<&[f32], PolicyError> {
        let spec = self.policy.spec();
        let (len, horizon, model_dim, robot_dim) = (
            spec.chunk_len(),
            spec.horizon,
            spec.action_dim,
            spec.robot_action_dim,
        );
        self.observation.clear();
        self.committed.resize(requests.len() * len, 0.0);
        self.chunk.resize(requests.len() * len, 0.0);
        let mut committed_lens = Vec::with_capacity(requests.len());
        for (r, (request, _)) in requests.iter().enumerate() {
            let mut committed = request.committed().unwrap_or(&[]);
            if robot_dim != model_dim {
                widen_actions(committed, robot_dim, model_dim, &mut self.widened);
                committed = &self.widened;
            }
            committed_lens.push(committed.len());
            let start = self.observation.len();
            self.observation
                .resize(start + request.observation.len(), 0.0);
            let observation = &mut self.observation[start..];
            let slot = &mut self.committed[r * len..][..committed.len()];
            match &self.normalization {
                Some(normalization) => {
                    normalization.normalize_observation(&request.observation, observation);
                    normalization.normalize_actions(committed, slot);
                }
                None => {
                    observation.copy_from_slice(&request.observation);
                    slot.copy_from_slice(committed);
                }
            }
        }
        let mut offset = 0;
        let samples = requests
            .iter()
            .enumerate()
            .map(|(r, (request, stream))| {
                let observation = &self.observation[offset..offset + request.observation.len()];
                offset += request.observation.len();
                let committed = match committed_lens[r] {
                    0 => None,
                    n => Some(Committed {
                        actions: actions_of(&self.committed[r * len..][..n], model_dim)?,
                        delay: request.delay,
                    }),
                };
                Ok(SampleRequest {
                    observation,
                    images: &request.images,
                    committed,
                    seed: self.seed
                        ^ request.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03),
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let weak = self.weak.as_deref_mut().map(|w| w as &mut dyn FlowPolicy);
        self.sampler.sample_batch(
            self.policy.as_mut(),
            weak,
            &samples,
            chunks_of_mut(&mut self.chunk, horizon, model_dim)?,
        )?;
        if let Some(normalization) = &self.normalization {
            for chunk in self.chunk.chunks_mut(len) {
                normalization.denormalize_actions(chunk);
            }
        }
        if robot_dim == model_dim {
            return Ok(&self.chunk);
        }
        self.robot_chunk.clear();
        for action in self.chunk.chunks(model_dim) {
            self.robot_chunk.extend_from_slice(&action[..robot_dim]);
        }
        Ok(&self.robot_chunk)
    }
}

/// What answers a request with a chunk: the local policy and sampler ([`InferenceEngine`]), or a policy server
/// over zenoh (`io::remote::RemoteEngine`).
pub trait ChunkSource: Send {
    /// The chunk (H x action_dim, token-major, in action units) answering `request`.
    fn sample_chunk(&mut self, request: &InferenceRequest) -> Result<&[f32], PolicyError>;
}

impl ChunkSource for InferenceEngine {
    fn sample_chunk(&mut self, request: &InferenceRequest) -> Result<&[f32], PolicyError> {
        self.infer(request)
    }
}

/// The worker's ends of the channels to the controller.
pub struct InferenceWorker {
    /// What samples the chunks.
    pub engine: Box<dyn ChunkSource>,
    /// Requests from the controller.
    pub requests: triple_buffer::Output<InferenceRequest>,
    /// Rung by the controller when it publishes a request.
    pub request_bell: Arc<Doorbell>,
    /// Chunks to the controller.
    pub chunks: triple_buffer::Input<ChunkMessage>,
    /// Rung after each chunk is published.
    pub chunk_bell: Arc<Doorbell>,
    /// Set when the run ends.
    pub stop: Arc<AtomicBool>,
    /// Cleared when the worker exits, so a simulated clock stops waiting for it.
    pub alive: Arc<AtomicBool>,
    /// Each inference's record also goes to the session log, when recording.
    pub log: Option<crossbeam_channel::Sender<RunEvent>>,
    /// The newest camera images, attached to each request before sampling (for a policy with cameras).
    pub cameras: Option<CameraFeed>,
    /// Keep every inference's record in the returned history (otherwise none: the metrics need only the
    /// summary, and the log, when recording, gets every record).
    pub keep_records: bool,
    /// How long an inference after the first may take before the controller is told it failed (None: no limit).
    pub timeout: Option<Duration>,
    /// Where failed inferences are counted as they happen, for a live report (the status topic).
    pub faults: Option<Arc<InferenceFaultCounters>>,
}

impl InferenceWorker {
    /// Serves requests until `stop`; returns the summary every metric needs and, with `keep_records`, the
    /// record of every inference (without it, memory stays constant however long the run).
    pub async fn run(mut self) -> (InferenceSummary, Vec<InferenceRecord>) {
        let mut summary = InferenceSummary::default();
        let mut history = Vec::new();
        while let Some(mut request) = self.next_request().await {
            if let Some(cameras) = &mut self.cameras {
                cameras.update();
                let frame = cameras.output_buffer();
                request.images.clone_from(&frame.pixels);
                request.image_seq = frame.state_seq;
            }
            let started = Instant::now();
            let answer = ChunkAnswer::to(&request);
            let mut engine = self.engine;
            let mut job = tokio::task::spawn_blocking(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    engine
                        .sample_chunk(&request)
                        .map(<[f32]>::to_vec)
                        .map_err(|e| e.to_string())
                }))
                .unwrap_or_else(|panic| Err(InferenceFault::panicked(panic.as_ref())));
                (engine, request, result)
            });
            let mut late = None;
            let joined = match self.timeout.filter(|_| summary.count > 0) {
                Some(limit) => match tokio::time::timeout(limit, &mut job).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        // The controller stops waiting now; the policy's answer, when it comes, is discarded.
                        publish(&mut self.chunks, &self.chunk_bell, answer, None);
                        tracing::warn!(
                            seq = answer.seq,
                            "inference timed out; the controller keeps executing its chunk"
                        );
                        late = Some(limit);
                        job.await
                    }
                },
                None => job.await,
            };
            let Ok((engine, mut request, mut result)) = joined else {
                tracing::error!("the inference task was cancelled; the worker stops");
                break;
            };
            self.engine = engine;
            let duration_us = started.elapsed().as_micros() as u64;
            match late {
                // A late chunk is discarded (the controller was told at the limit); a late failure keeps its cause.
                Some(limit) if result.is_ok() => {
                    result = Err(InferenceFault::timed_out(limit, started.elapsed()))
                }
                Some(_) => {}
                None => publish(
                    &mut self.chunks,
                    &self.chunk_bell,
                    answer,
                    result.as_deref().ok(),
                ),
            }
            if let Err(error) = &result {
                tracing::warn!(seq = request.seq, %error, "inference failed; the controller keeps executing its chunk");
            }
            let record = InferenceRecord {
                seq: request.seq,
                tick: request.tick,
                executed: request.executed,
                delay: request.delay,
                duration_us,
                error: result.as_ref().err().cloned(),
                chunk: result.unwrap_or_default(),
                committed: request.committed().unwrap_or(&[]).to_vec(),
                // The request is this worker's own copy: its inputs move into the record.
                observation: std::mem::take(&mut request.observation),
                images: std::mem::take(&mut request.images),
                image_seq: request.image_seq,
            };
            summary.add(&record);
            if let (Some(faults), Some(error)) = (&self.faults, &record.error) {
                faults.count(error);
            }
            match (&self.log, self.keep_records) {
                (Some(log), true) => {
                    history.push(record.clone());
                    let _ = log.send(RunEvent::Inference(record));
                }
                (Some(log), false) => {
                    let _ = log.send(RunEvent::Inference(record));
                }
                (None, true) => history.push(record),
                (None, false) => {}
            }
        }
        self.alive.store(false, Ordering::SeqCst);
        self.chunk_bell.ring();
        (summary, history)
    }

    /// Waits for the next request without blocking the async runtime; `None` once stopped. A request published
    /// before the stop is still served (the stop is read first), so which inferences a run makes does not depend
    /// on when the worker noticed the end.
    async fn next_request(&mut self) -> Option<InferenceRequest> {
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            let seen = self.request_bell.rings();
            if self.requests.update() {
                return Some(self.requests.output_buffer().clone());
            }
            if stopping {
                return None;
            }
            let bell = self.request_bell.clone();
            tokio::task::spawn_blocking(move || bell.wait(seen, Duration::from_millis(20)))
                .await
                .ok()?;
        }
    }
}

/// Hands the controller the answer to a request: its chunk, or `None` for a failed inference.
fn publish(
    chunks: &mut triple_buffer::Input<ChunkMessage>,
    bell: &Doorbell,
    answer: ChunkAnswer,
    chunk: Option<&[f32]>,
) {
    let message = chunks.input_buffer_mut();
    message.seq = answer.seq;
    message.start_tick = answer.start_tick;
    message.release_tick = answer.release_tick;
    message.ok = chunk.is_some();
    if let Some(chunk) = chunk {
        message.actions.copy_from_slice(chunk);
    }
    chunks.publish();
    bell.ring();
}

/// Which request a chunk message answers (kept apart from the request, which the inference job owns).
#[derive(Debug, Clone, Copy)]
struct ChunkAnswer {
    seq: u64,
    start_tick: u64,
    release_tick: u64,
}

impl ChunkAnswer {
    fn to(request: &InferenceRequest) -> Self {
        ChunkAnswer {
            seq: request.seq,
            start_tick: request.tick,
            release_tick: request.release_tick,
        }
    }
}
