//! Structure-aware fuzzing of every decoder of untrusted bytes: each protocol message kind (through the header
//! check, as the link and the policy server decode them), the session-log reader, the bundle manifest, the
//! configuration and the simulator's report. Each target starts from valid inputs and mutates them (bit flips,
//! random and boundary bytes over length fields, truncation, insertion, duplication, splices of two inputs);
//! every input must be decoded or refused with an error, never panic or hang.
//!
//! `RTCHUNK_FUZZ_EXECUTIONS` sets the executions per target (default 200 000, a few seconds in all);
//! `RTCHUNK_FUZZ_SEED` the first seed. A crash prints the input's bytes to turn into a regression test.

use rtchunk_config::Config;
use rtchunk_policy::Camera;
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::io::protocol::{
    ActionMessage, CameraImage, ChunkQuery, ChunkReply, ControlCommand, Encode, MessageKind, Phase,
    PolicyInfo, StateMessage, StateView, StatusMessage, decode_header,
};
use rtchunk_runtime::recording::format::read_log_bytes;
use rtchunk_runtime::recording::task_replay::SimRecording;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The inputs mutated: xorshift draws, deterministic from the seed.
struct Mutator {
    state: u64,
}

/// Values that break length fields and counters.
const BOUNDARIES: [u32; 8] = [0, 1, 2, 0x7f, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff];

impl Mutator {
    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to four mutations of `input`, splicing in `other` at times.
    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(out.len());
            match self.below(7) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 if !out.is_empty() => out[at] = self.next() as u8,
                2 => out.truncate(at),
                3 => {
                    let extra: Vec<u8> =
                        (0..1 + self.below(16)).map(|_| self.next() as u8).collect();
                    out.splice(at..at, extra);
                }
                4 if out.len() >= 4 => {
                    let at = self.below(out.len() - 3);
                    let value = BOUNDARIES[self.below(BOUNDARIES.len())];
                    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
                5 if !out.is_empty() => {
                    let end = (at + 1 + self.below(32)).min(out.len());
                    let copy = out[at..end].to_vec();
                    let to = self.below(out.len());
                    out.splice(to..to, copy);
                }
                _ => {
                    let from = self.below(other.len());
                    out.truncate(at);
                    out.extend_from_slice(&other[from..]);
                }
            }
        }
        out
    }
}

fn executions() -> u64 {
    std::env::var("RTCHUNK_FUZZ_EXECUTIONS").map_or(200_000, |v| v.parse().expect("a number"))
}

/// Runs `decode` on `executions()` mutations of `seeds`; fails naming the first input that panics or takes
/// longer than a second. Returns the executions run.
fn fuzz(
    target: &str,
    seeds: &[Vec<u8>],
    decode: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) -> u64 {
    let first = std::env::var("RTCHUNK_FUZZ_SEED").map_or(1, |v| v.parse().expect("a number"));
    let mut mutator = Mutator {
        state: first ^ 0x9e37_79b9_7f4a_7c15,
    };
    let executions = executions();
    let started = Instant::now();
    for seed in seeds {
        decode(seed);
    }
    for _ in 0..executions {
        let (a, b) = (mutator.below(seeds.len()), mutator.below(seeds.len()));
        let input = mutator.mutate(&seeds[a], &seeds[b]);
        let began = Instant::now();
        let outcome = std::panic::catch_unwind(|| decode(&input));
        assert!(
            outcome.is_ok(),
            "{target}: the decoder panicked on {input:?}"
        );
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{target}: the decoder hung on {input:?}"
        );
    }
    println!(
        "{target}: {executions} executions in {:.1} s, 0 crashes, 0 hangs",
        started.elapsed().as_secs_f64()
    );
    executions
}

fn stamp() -> u64 {
    wall_clock_ns()
}

#[test]
fn protocol_messages_never_panic_the_decoders() {
    let camera = Camera {
        name: "front".into(),
        height: 2,
        width: 3,
        channels: 3,
    };
    let state = StateMessage {
        position: vec![0.5, -0.5],
        velocity: vec![0.1, 0.2],
        observation: vec![1.0, 2.0, 3.0],
        images: vec![CameraImage {
            height: 2,
            width: 3,
            channels: 3,
            pixels: (0..18).collect(),
        }],
    };
    let seeds = vec![
        state.encode(0, 7, 1, stamp()),
        StateMessage {
            images: Vec::new(),
            ..state.clone()
        }
        .encode(0, 7, 2, stamp()),
        ActionMessage {
            tick: 9,
            state_seq: 3,
            command: vec![0.25, -1.0],
        }
        .encode(1, 7, 3, stamp()),
        StatusMessage {
            phase: Phase::Running,
            ticks: 100,
            held_ticks: 2,
            states_accepted: 90,
            rejected: 1,
            emergency_stops: 0,
            actions_dropped: 0,
            swaps: 12,
            starved_ticks: 0,
            missed_periods: 1,
            max_lateness_us: 40,
            last_delay_ticks: 2,
            last_seam_jump: 0.01,
            inference_failures: 3,
            inference_panics: 1,
            inference_timeouts: 1,
        }
        .encode(0, 7, 4, stamp()),
        ControlCommand::EmergencyStop.encode(0, 7, 5, stamp()),
        ChunkQuery {
            request_seq: 4,
            stream: 11,
            executed: 3,
            delay: 2,
            observation: vec![0.1, 0.2, 0.3],
            committed: vec![0.5; 8],
            images: (0..18).collect(),
        }
        .encode(0, 11, 6, stamp()),
        ChunkReply {
            request_seq: 4,
            inference_us: 800,
            chunk: Ok(vec![0.5; 16]),
        }
        .encode(0, 3, 7, stamp()),
        ChunkReply {
            request_seq: 5,
            inference_us: 0,
            chunk: Err("refused: busy".into()),
        }
        .encode(0, 3, 8, stamp()),
        PolicyInfo {
            horizon: 8,
            action_dim: 2,
            observation_dim: 3,
            capabilities: 1,
            cameras: vec![camera.clone()],
        }
        .encode(0, 3, 9, stamp()),
    ];
    let cameras = [camera];
    fuzz("protocol", &seeds, |bytes| {
        for kind in [
            MessageKind::State,
            MessageKind::Action,
            MessageKind::Status,
            MessageKind::Control,
            MessageKind::ChunkQuery,
            MessageKind::ChunkReply,
            MessageKind::PolicyInfo,
        ] {
            let Ok((_, body)) = decode_header(bytes, kind) else {
                continue;
            };
            let _ = match kind {
                MessageKind::State => StateView::decode(body, 2, 3, &cameras).map(|_| ()),
                MessageKind::Action => ActionMessage::decode(body, 2).map(|_| ()),
                MessageKind::Status => StatusMessage::decode(body).map(|_| ()),
                MessageKind::Control => ControlCommand::decode(body).map(|_| ()),
                MessageKind::ChunkQuery => ChunkQuery::decode(body, 3, 16, 18).map(|_| ()),
                MessageKind::ChunkReply => ChunkReply::decode(body, 16).map(|_| ()),
                MessageKind::PolicyInfo => PolicyInfo::decode(body).map(|_| ()),
            };
        }
    });
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn session_logs_never_panic_the_reader() {
    let log = std::env::temp_dir().join(format!("rtchunk-fuzz-{}.log", std::process::id()));
    let example = repo().join("config/examples/point-mass-rtc.toml");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("kind = \"real\"", "kind = \"simulated\"")
        .replace("fifo_priority = 80", "fifo_priority = 0")
        .replace("lock_memory = true", "lock_memory = false");
    let config = log.with_extension("toml");
    std::fs::write(&config, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args([
            "run",
            config.to_str().unwrap(),
            "--seconds",
            "0.1",
            "--record",
            log.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seeds = vec![std::fs::read(&log).unwrap()];
    fuzz("session log", &seeds, |bytes| {
        let _ = read_log_bytes(bytes, "fuzzed.log");
    });
}

/// The text files rtchunk reads, as seeds of a text target.
fn text_seeds(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[test]
fn configurations_never_panic_the_reader() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("config/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    fuzz("configuration", &text_seeds(&files), |bytes| {
        if let Ok(config) = Config::from_toml_str(&String::from_utf8_lossy(bytes), "fuzzed.toml") {
            let _ = config.validate();
        }
    });
}

#[test]
fn bundle_manifests_never_panic_the_reader() {
    let files: Vec<PathBuf> = ["gta-toy", "vla-tiny", "gaussian-camera", "gta-toy-external"]
        .iter()
        .map(|b| repo().join("policy/fixtures").join(b).join("manifest.json"))
        .collect();
    fuzz("bundle manifest", &text_seeds(&files), |bytes| {
        let _ = rtchunk_policy::onnx::parse_manifest(
            &String::from_utf8_lossy(bytes),
            Path::new("manifest.json"),
        );
    });
}

#[test]
fn simulator_reports_never_panic_the_reader() {
    let seed = serde_json::json!({
        "task": "reach",
        "episodes": [{
            "seed": 3, "success": true, "outcome": "success", "steps": 2, "seconds": 0.1,
            "step_records": [
                {"command_tick": null, "observation": [0.0, 1.0]},
                {"command_tick": 4, "observation": [0.5, 1.5]}
            ]
        }]
    });
    let seeds = vec![serde_json::to_vec(&seed).unwrap()];
    fuzz("simulator report", &seeds, |bytes| {
        let _ = serde_json::from_slice::<SimRecording>(bytes);
    });
}
