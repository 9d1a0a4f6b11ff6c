//! A policy server (`rtchunk serve-policy`, its own process, the committed reach policy) under faults, asked by
//! robots through the runtime's own remote chunk source: a second robot flooding it with queries, a request
//! larger than any valid one, and the server killed mid-run and started again.

use rtchunk_config::IoConfig;
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::core::messages::InferenceRequest;
use rtchunk_runtime::core::worker::ChunkSource;
use rtchunk_runtime::io::protocol::{ChunkQuery, ChunkReply, Encode, MessageKind, decode_header};
use rtchunk_runtime::io::remote::{RemoteEngine, infer_key};
use rtchunk_runtime::io::session::{free_loopback_port, open_session};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zenoh::Wait;

const OBSERVATION: usize = 4;

struct Server {
    endpoint: String,
    namespace: String,
}

impl Server {
    fn new(name: &str) -> Server {
        Server {
            endpoint: format!("tcp/127.0.0.1:{}", free_loopback_port().unwrap()),
            namespace: format!("server-{name}-{}", std::process::id()),
        }
    }

    /// Starts `rtchunk serve-policy` for `seconds`.
    fn spawn(&self, seconds: u32) -> Child {
        let bundle =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sim/policies/reach/base-s0");
        Command::new(env!("CARGO_BIN_EXE_rtchunk"))
            .args([
                "serve-policy",
                bundle.to_str().unwrap(),
                "--listen",
                &self.endpoint,
            ])
            .args([
                "--namespace",
                &self.namespace,
                "--seconds",
                &seconds.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("rtchunk starts")
    }

    /// A zenoh session connected to the server's endpoint.
    fn session(&self) -> zenoh::Session {
        open_session(&IoConfig {
            listen: vec![],
            connect: vec![self.endpoint.clone()],
            ..IoConfig::default()
        })
        .unwrap()
    }

    /// A robot's remote chunk source, waiting up to `timeout` for each chunk.
    fn robot(&self, timeout: Duration) -> RemoteEngine {
        let (engine, spec) =
            RemoteEngine::connect(self.session(), &self.namespace, Duration::from_secs(60))
                .unwrap();
        assert_eq!(spec.observation_dim, OBSERVATION);
        engine.with_timeout(timeout)
    }
}

/// The server's report (its standard output) once it has ended.
fn report(server: Child) -> serde_json::Value {
    let output = server.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", output.status);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn request(seq: u64) -> InferenceRequest {
    let mut request = InferenceRequest::with_capacity(16, OBSERVATION);
    request.set_inputs(seq, 0, 0, &[0.1, -0.2, 0.0, 0.0], &[], &[]);
    request
}

/// Asks for a chunk; returns how long it took and the error, if it failed.
fn ask(robot: &mut RemoteEngine, seq: u64) -> (Duration, Option<String>) {
    let started = Instant::now();
    let result = robot
        .sample_chunk(&request(seq))
        .err()
        .map(|e| e.to_string());
    (started.elapsed(), result)
}

#[test]
fn a_robot_flooding_the_server_holds_one_place_and_the_other_robot_gets_every_chunk() {
    let server = Server::new("flood");
    let process = server.spawn(20);
    let mut honest = server.robot(Duration::from_millis(1000));
    assert_eq!(ask(&mut honest, 1).1, None);
    // The flooder: valid queries as fast as zenoh takes them, each waiting for its own answer.
    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = {
        let (session, key, flooding) = (
            server.session(),
            infer_key(&server.namespace),
            flooding.clone(),
        );
        std::thread::spawn(move || {
            let mut replies = Vec::new();
            let mut seq = 0;
            while flooding.load(Ordering::Relaxed) {
                seq += 1;
                let query = ChunkQuery {
                    request_seq: seq,
                    stream: 999,
                    executed: 0,
                    delay: 0,
                    observation: vec![0.0; OBSERVATION],
                    committed: Vec::new(),
                    images: Vec::new(),
                };
                let bytes = query.encode(0, 999, seq, wall_clock_ns());
                replies.push(
                    session
                        .get(key.clone())
                        .payload(bytes)
                        .timeout(Duration::from_secs(5))
                        .wait()
                        .unwrap(),
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            let mut superseded = 0;
            for reply in replies {
                let Ok(reply) = reply.recv() else { continue };
                let Ok(sample) = reply.result() else { continue };
                let bytes = sample.payload().to_bytes();
                let (_, body) = decode_header(&bytes, MessageKind::ChunkReply).unwrap();
                let answer = ChunkReply::decode(body, 16).unwrap();
                superseded += u64::from(answer.chunk.is_err_and(|e| e.contains("superseded")));
            }
            (seq, superseded)
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut waits = Vec::new();
    for seq in 2..32 {
        let (took, error) = ask(&mut honest, seq);
        assert_eq!(
            error, None,
            "request {seq} failed while another robot flooded the server"
        );
        waits.push(took);
    }
    flooding.store(false, Ordering::Relaxed);
    let (sent, superseded) = flooder.join().unwrap();
    waits.sort();
    println!(
        "honest robot: 30 of 30 chunks while the flooder sent {sent} queries ({superseded} refused as \
         superseded); wait p50 {:?}, max {:?}",
        waits[15], waits[29]
    );
    assert!(superseded > sent / 2, "{superseded} of {sent} superseded");
    let report = report(process);
    assert!(
        report["not_admitted"]["superseded"].as_u64().unwrap() > 0,
        "{report}"
    );
}

#[test]
fn a_request_larger_than_any_valid_query_is_refused_unread() {
    let server = Server::new("large");
    let process = server.spawn(8);
    // Waits until the server answers.
    server.robot(Duration::from_millis(1000));
    let session = server.session();
    let replies = session
        .get(infer_key(&server.namespace))
        .payload(vec![7u8; 1 << 20])
        .timeout(Duration::from_secs(5))
        .wait()
        .unwrap();
    let reply = replies.recv().unwrap();
    let bytes = reply.result().unwrap().payload().to_bytes();
    let (_, body) = decode_header(&bytes, MessageKind::ChunkReply).unwrap();
    let error = ChunkReply::decode(body, 16).unwrap().chunk.unwrap_err();
    assert!(
        error.contains("a request of 1048576 bytes, larger than any valid query"),
        "{error}"
    );
    let report = report(process);
    assert_eq!(
        report["not_admitted"]["too_large_or_queue_full"], 1,
        "{report}"
    );
}

#[test]
fn a_killed_server_costs_the_robot_its_timeout_per_request_and_a_restarted_one_serves_again() {
    let server = Server::new("restart");
    let mut first = server.spawn(60);
    let timeout = Duration::from_millis(300);
    let mut robot = server.robot(timeout);
    assert_eq!(ask(&mut robot, 1).1, None);
    first.kill().unwrap();
    first.wait().unwrap();
    let (took, error) = ask(&mut robot, 2);
    let error = error.expect("no server, no chunk");
    assert!(error.contains("policy server on"), "{error}");
    assert!(
        took < timeout + Duration::from_millis(500),
        "failed after {took:?}"
    );
    let mut second = server.spawn(30);
    let restarted = Instant::now();
    let mut seq = 3;
    while ask(&mut robot, seq).1.is_some() {
        assert!(
            restarted.elapsed() < Duration::from_secs(25),
            "the restarted server never answered"
        );
        seq += 1;
    }
    println!(
        "no server: the request failed after {took:?}; the restarted server answered {:?} after its start",
        restarted.elapsed()
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn a_stalled_server_costs_the_robot_its_timeout_and_once_resumed_answers_the_next_request() {
    let server = Server::new("stall");
    let child = server.spawn(10);
    let timeout = Duration::from_millis(300);
    let mut robot = server.robot(timeout);
    assert_eq!(ask(&mut robot, 1).1, None);
    let signal = |signal| {
        // SAFETY: signals the server child this test started (stop or continue).
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    };
    signal(libc::SIGSTOP);
    let (took, error) = ask(&mut robot, 2);
    std::thread::sleep(Duration::from_millis(700));
    signal(libc::SIGCONT);
    let error = error.expect("a stalled server, no chunk");
    assert!(error.contains("no answer within 300 ms"), "{error}");
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(300),
        "failed after {took:?}"
    );
    // Resumed, the server answers the next request; whatever it does with the stale one never reaches the robot
    // (each request is its own query, and an answer must name its request).
    let (_, error) = ask(&mut robot, 3);
    assert_eq!(error, None);
    let report = report(child);
    assert!(report["served"].as_u64().unwrap() >= 2, "{report}");
    println!(
        "a stalled server: the request failed after {took:?}, the next one after it resumed was served"
    );
}
