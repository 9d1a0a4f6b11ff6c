//! Remote inference over zenoh: `rtchunk serve-policy` answers chunk queries on `<ns>/policy/infer` (and its
//! chunk shape on `<ns>/policy/info`) with its own policy and sampler; [`RemoteEngine`] is the robot side, a
//! [`ChunkSource`] that sends the observation and the RTC inputs (committed actions, d, s) and waits for the
//! chunk. The network time becomes part of the inference delay, which RTC absorbs like any other. Several
//! robots can share one server: each query carries its robot's noise stream, and [`admission`] decides whose
//! query is answered next and which are refused at once (oversized, superseded, stale, beyond the most robots).
//!
//! [`admission`]: crate::io::admission

use crate::core::clock::monotonic_ns;
use crate::core::clock::wall_clock_ns;
use crate::core::messages::InferenceRequest;
use crate::core::metrics::{Distribution, Quantiles};
use crate::core::policies::load_policy;
use crate::core::worker::{ChunkSource, InferenceEngine};
use crate::io::admission::{Admission, Refusal};
use crate::io::protocol::{
    ChunkQuery, ChunkReply, Encode, HEADER_LEN, MessageKind, PolicyInfo, decode_header,
    new_source_id,
};
use crate::io::session::{IoError, open_session};
use rtchunk_config::{Config, IoConfig};
use rtchunk_policy::{PolicyError, PolicySpec, Sampler};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use zenoh::Wait;

/// The key a policy server answers chunk queries on.
pub fn infer_key(namespace: &str) -> String {
    format!("{namespace}/policy/infer")
}

/// The key a policy server describes its chunk shape on.
pub fn info_key(namespace: &str) -> String {
    format!("{namespace}/policy/info")
}

/// How a policy server admits queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerSettings {
    /// The most robots served at once.
    pub max_robots: usize,
    /// A query that waited longer than this is refused unsampled.
    pub max_wait: Duration,
}

impl Default for ServerSettings {
    /// 16 robots; a query may wait 1 s (a robot's default `policy.server_timeout_ms`).
    fn default() -> Self {
        ServerSettings {
            max_robots: 16,
            max_wait: Duration::from_secs(1),
        }
    }
}

/// Queries that arrived at once beyond this many are refused by zenoh's thread as the queue being full.
const QUERY_QUEUE: usize = 1024;

/// What a policy server did.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// Chunks sampled and sent.
    pub served: u64,
    /// Queries refused (malformed, wrong shape, the policy failed, or not admitted), all kinds together.
    pub refused: u64,
    /// Queries not admitted, by reason ([`Refusal::kind`]).
    pub not_admitted: BTreeMap<&'static str, u64>,
    /// Chunks per robot (by noise stream).
    pub per_robot: BTreeMap<u64, u64>,
    /// Sampling time per chunk, in milliseconds.
    pub inference_ms: Quantiles,
}

fn policy_info(spec: &PolicySpec) -> PolicyInfo {
    PolicyInfo {
        horizon: spec.horizon as u16,
        action_dim: spec.robot_action_dim as u16,
        observation_dim: spec.observation_dim as u16,
        capabilities: u8::from(spec.exact_vjp) | u8::from(spec.prefix_conditioned) << 1,
        cameras: spec.cameras.clone(),
    }
}

/// A query as it arrived: when, from which robot (its header's source), its request number and its bytes.
struct Arrival {
    query: zenoh::query::Query,
    arrived_ns: u64,
    robot: u32,
    request_seq: u64,
    bytes: Vec<u8>,
}

/// Replies to a query with a failure (`error`), as the server's message `seq`.
fn refuse(query: &zenoh::query::Query, request_seq: u64, error: String, source: u32, seq: u64) {
    let reply = ChunkReply {
        request_seq,
        inference_us: 0,
        chunk: Err(error),
    };
    let bytes = reply.encode(0, source, seq, wall_clock_ns());
    if let Err(error) = query.reply(query.key_expr().clone(), bytes).wait() {
        tracing::warn!(key = %query.key_expr(), "cannot reply: {error}");
    }
}

/// The robot (header source) and request number of a query's bytes, zero where they are too short to say.
fn sender_of(bytes: &[u8]) -> (u32, u64) {
    let robot =
        decode_header(bytes, MessageKind::ChunkQuery).map_or(0, |(header, _)| header.source);
    let request_seq = bytes
        .get(HEADER_LEN..HEADER_LEN + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    (robot, request_seq)
}

/// Serves `config`'s policy and sampler on the session `io` describes until `stop` is set, admitting queries
/// as `settings` says.
pub fn serve_policy(
    config: &Config,
    io: &IoConfig,
    settings: ServerSettings,
    stop: &AtomicBool,
) -> Result<ServerReport, IoError> {
    let policy = load_policy(config).map_err(|e| IoError::Setup(format!("policy bundle: {e}")))?;
    let spec = policy.spec().clone();
    let sampler = Sampler::new(config.sampler.clone(), spec.horizon, spec.action_dim);
    sampler
        .check_policy(policy.as_ref())
        .map_err(|e| IoError::Setup(format!("policy: {e}")))?;
    let mut engine = InferenceEngine::new(policy, None, sampler, config.sampler.seed);
    let session = open_session(io)?;
    let source = new_source_id();
    let info = policy_info(&spec);
    let info_key = info_key(&io.namespace);
    let _info = session
        .declare_queryable(info_key.clone())
        .callback(move |query| {
            let bytes = info.encode(0, source, 1, wall_clock_ns());
            let _ = query.reply(query.key_expr().clone(), bytes).wait();
        })
        .wait()
        .map_err(|e| IoError::zenoh(&info_key, e))?;
    let key = infer_key(&io.namespace);
    let largest = ChunkQuery::max_len(
        spec.observation_dim,
        spec.robot_chunk_len(),
        spec.image_bytes(),
    );
    let (arrived, arrivals) = crossbeam_channel::bounded::<Arrival>(QUERY_QUEUE);
    // Refusals made on zenoh's thread (too large, queue full) are counted here and replied to with sequence
    // numbers of their own (the server's replies carry no order a robot relies on).
    let early_refusals = Arc::new(AtomicU64::new(0));
    let refused_early = early_refusals.clone();
    let _queries = session
        .declare_queryable(key.clone())
        .callback(move |query| {
            let arrived_ns = monotonic_ns();
            let size = query.payload().map_or(0, |p| p.len());
            let refusal_seq = || u64::MAX - refused_early.fetch_add(1, Ordering::Relaxed);
            if size > largest {
                let bytes = query.payload().map(|p| p.to_bytes()).unwrap_or_default();
                let (_, request_seq) = sender_of(&bytes[..bytes.len().min(HEADER_LEN + 8)]);
                let refusal = Refusal::TooLarge {
                    bytes: size,
                    limit: largest,
                };
                refuse(
                    &query,
                    request_seq,
                    refusal.message(),
                    source,
                    refusal_seq(),
                );
                return;
            }
            let bytes = query
                .payload()
                .map(|p| p.to_bytes().into_owned())
                .unwrap_or_default();
            let (robot, request_seq) = sender_of(&bytes);
            let arrival = Arrival {
                query,
                arrived_ns,
                robot,
                request_seq,
                bytes,
            };
            if let Err(full) = arrived.try_send(arrival) {
                let arrival = full.into_inner();
                let refusal = Refusal::QueueFull(QUERY_QUEUE);
                refuse(
                    &arrival.query,
                    arrival.request_seq,
                    refusal.message(),
                    source,
                    refusal_seq(),
                );
            }
        })
        .wait()
        .map_err(|e| IoError::zenoh(&key, e))?;
    tracing::info!(key = %key, "serving chunks of {} x {}", spec.horizon, spec.robot_action_dim);
    let mut report = ServerReport {
        served: 0,
        refused: 0,
        not_admitted: BTreeMap::new(),
        per_robot: BTreeMap::new(),
        inference_ms: Quantiles::default(),
    };
    let mut times = Distribution::milliseconds();
    let mut request = InferenceRequest::with_capacity(spec.robot_chunk_len(), spec.observation_dim);
    let mut seq = 0u64;
    let mut admission = Admission::new(settings.max_robots, settings.max_wait);
    let mut refused = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(first) = arrivals.recv_timeout(Duration::from_millis(50)) {
            for arrival in std::iter::once(first).chain(arrivals.try_iter()) {
                let robot = arrival.robot;
                refused.extend(admission.admit(robot, arrival.arrived_ns, arrival));
            }
        }
        let next = admission.next(monotonic_ns(), &mut refused);
        for (arrival, refusal) in refused.drain(..) {
            seq += 1;
            *report.not_admitted.entry(refusal.kind()).or_default() += 1;
            refuse(
                &arrival.query,
                arrival.request_seq,
                refusal.message(),
                source,
                seq,
            );
        }
        let Some(Arrival { query, bytes, .. }) = next else {
            continue;
        };
        let decoded = decode_header(&bytes, MessageKind::ChunkQuery).and_then(|(_, body)| {
            ChunkQuery::decode(
                body,
                spec.observation_dim,
                spec.robot_chunk_len(),
                spec.image_bytes(),
            )
        });
        let (request_seq, result, inference_us) = match decoded {
            Err(rejection) => {
                report.refused += 1;
                tracing::warn!(key = %key, "refused a query: {rejection}");
                (0, Err(format!("refused: {rejection}")), 0)
            }
            Ok(chunk_query) => {
                request.set_inputs(
                    chunk_query.request_seq,
                    chunk_query.executed as usize,
                    chunk_query.delay as usize,
                    &chunk_query.observation,
                    &chunk_query.images,
                    &chunk_query.committed,
                );
                let started = monotonic_ns();
                let result = engine
                    .infer_batch(&[(&request, chunk_query.stream)])
                    .map(<[f32]>::to_vec)
                    .map_err(|e| e.to_string());
                let inference_us = (monotonic_ns() - started) / 1000;
                match &result {
                    Ok(_) => {
                        report.served += 1;
                        *report.per_robot.entry(chunk_query.stream).or_default() += 1;
                        times.push(inference_us as f64 / 1e3);
                    }
                    Err(error) => {
                        report.refused += 1;
                        tracing::warn!(key = %key, "inference failed: {error}");
                    }
                }
                (chunk_query.request_seq, result, inference_us)
            }
        };
        seq += 1;
        let reply = ChunkReply {
            request_seq,
            inference_us,
            chunk: result,
        };
        let bytes = reply.encode(0, source, seq, wall_clock_ns());
        if let Err(error) = query.reply(query.key_expr().clone(), bytes).wait() {
            tracing::warn!(key = %key, "cannot reply: {error}");
        }
    }
    report.inference_ms = times.quantiles();
    let early = early_refusals.load(Ordering::Relaxed);
    if early > 0 {
        // Too large and queue-full refusals are made on zenoh's thread; they are counted together.
        *report
            .not_admitted
            .entry("too_large_or_queue_full")
            .or_default() += early;
    }
    report.refused += report.not_admitted.values().sum::<u64>();
    let _ = session.close().wait();
    Ok(report)
}

/// The robot side of remote inference: a [`ChunkSource`] that asks a policy server over zenoh.
pub struct RemoteEngine {
    session: zenoh::Session,
    key: String,
    stream: u64,
    timeout: Duration,
    chunk_len: usize,
    chunk: Vec<f32>,
}

impl RemoteEngine {
    /// Asks the server under `namespace` for its chunk shape (waiting up to `timeout`) and returns an engine for
    /// it with the shape.
    pub fn connect(
        session: zenoh::Session,
        namespace: &str,
        timeout: Duration,
    ) -> Result<(RemoteEngine, PolicySpec), IoError> {
        let key = info_key(namespace);
        let deadline = monotonic_ns() + timeout.as_nanos() as u64;
        let info = loop {
            let replies = session
                .get(key.clone())
                .timeout(Duration::from_millis(500))
                .wait()
                .map_err(|e| IoError::zenoh(&key, e))?;
            let answer = replies.recv().ok().and_then(|reply| {
                let sample = reply.result().ok()?;
                let bytes = sample.payload().to_bytes();
                decode_header(&bytes, MessageKind::PolicyInfo)
                    .and_then(|(_, body)| PolicyInfo::decode(body))
                    .ok()
            });
            if let Some(info) = answer {
                break info;
            }
            if monotonic_ns() > deadline {
                return Err(IoError::Setup(format!(
                    "no policy server answered on {key} within {:.1} s",
                    timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let spec = PolicySpec {
            horizon: info.horizon as usize,
            action_dim: info.action_dim as usize,
            robot_action_dim: info.action_dim as usize,
            observation_dim: info.observation_dim as usize,
            cameras: info.cameras,
            exact_vjp: info.capabilities & 1 != 0,
            prefix_conditioned: info.capabilities & 2 != 0,
        };
        let engine = RemoteEngine {
            session,
            key: infer_key(namespace),
            stream: u64::from(new_source_id()),
            timeout,
            chunk_len: spec.chunk_len(),
            chunk: vec![0.0; spec.chunk_len()],
        };
        Ok((engine, spec))
    }
}

impl RemoteEngine {
    /// The same engine waiting up to `timeout` for each chunk.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        RemoteEngine { timeout, ..self }
    }
}

impl ChunkSource for RemoteEngine {
    fn sample_chunk(&mut self, request: &InferenceRequest) -> Result<&[f32], PolicyError> {
        let query = ChunkQuery {
            request_seq: request.seq,
            stream: self.stream,
            executed: request.executed as u32,
            delay: request.delay as u32,
            observation: request.observation.clone(),
            committed: request.committed().unwrap_or(&[]).to_vec(),
            images: request.images.clone(),
        };
        let failed =
            |what: String| PolicyError::Backend(format!("policy server on {}: {what}", self.key));
        let no_answer = || {
            failed(format!(
                "no answer within {:.0} ms",
                self.timeout.as_secs_f64() * 1e3
            ))
        };
        let asked = Instant::now();
        let replies = self
            .session
            .get(self.key.clone())
            .payload(query.encode(0, self.stream as u32, request.seq, wall_clock_ns()))
            .timeout(self.timeout)
            .wait()
            .map_err(|e| failed(e.to_string()))?;
        let reply = replies.recv().map_err(|_| no_answer())?;
        // Zenoh ends a query that outlived its timeout with an error reply of its own.
        let sample = reply.result().map_err(|e| {
            if asked.elapsed() >= self.timeout {
                no_answer()
            } else {
                failed(format!(
                    "error reply: {}",
                    String::from_utf8_lossy(&e.payload().to_bytes())
                ))
            }
        })?;
        let bytes = sample.payload().to_bytes();
        let answer = decode_header(&bytes, MessageKind::ChunkReply)
            .and_then(|(_, body)| ChunkReply::decode(body, self.chunk_len))
            .map_err(|rejection| failed(format!("bad reply: {rejection}")))?;
        if answer.request_seq != request.seq {
            return Err(failed(format!(
                "answered request {} instead of {}",
                answer.request_seq, request.seq
            )));
        }
        let chunk = answer.chunk.map_err(failed)?;
        self.chunk.copy_from_slice(&chunk);
        Ok(&self.chunk)
    }
}
