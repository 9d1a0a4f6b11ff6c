//! Every decoder of untrusted bytes as a fuzz target, with valid inputs to start from: each protocol message
//! kind (through the header check, as the link and the policy server decode them), the ROS 2 messages (CDR
//! payloads and rmw_zenoh's attachment), the session-log reader, the bundle manifest, the configuration and the
//! simulator's report. A target must decode or refuse any input with
//! an error, never panic or hang. The same targets run under the structure-aware mutation test
//! (`tests/mutations.rs`, in CI) and under AFL++ (`rtchunk-fuzz` built with the `afl` feature).

use rtchunk_config::{ClockKind, Config};
use rtchunk_policy::Camera;
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::core::policies::load_policy;
use rtchunk_runtime::io::protocol::{
    ActionMessage, CameraImage, ChunkQuery, ChunkReply, ControlCommand, Encode, MessageKind, Phase,
    PolicyInfo, StateMessage, StateView, StatusMessage, decode_header,
};
use rtchunk_runtime::io::ros2::graph::{ATTACHMENT_LEN, Attachment};
use rtchunk_runtime::io::ros2::messages::{
    Image, JointState, decode_float64_multi_array, decode_joint_trajectory,
    encode_float64_multi_array, encode_image, encode_joint_state, encode_joint_trajectory,
};
use rtchunk_runtime::recording::format::read_log_bytes;
use rtchunk_runtime::recording::task_replay::SimRecording;
use rtchunk_runtime::recording::writer::LogWriter;
use rtchunk_runtime::{RunOptions, run};
use rtchunk_sim::PointMass;
use std::path::{Path, PathBuf};

/// One decoder under test.
pub struct Target {
    /// The name the harness and the scripts use.
    pub name: &'static str,
    /// Decodes one input, discarding the result (an error is a correct answer).
    pub decode: fn(&[u8]),
    /// Valid inputs to mutate.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: [Target; 6] = [
    Target {
        name: "protocol",
        decode: decode_protocol,
        seeds: protocol_seeds,
    },
    Target {
        name: "ros2",
        decode: decode_ros2,
        seeds: ros2_seeds,
    },
    Target {
        name: "session-log",
        decode: decode_session_log,
        seeds: session_log_seeds,
    },
    Target {
        name: "configuration",
        decode: decode_configuration,
        seeds: configuration_seeds,
    },
    Target {
        name: "manifest",
        decode: decode_manifest,
        seeds: manifest_seeds,
    },
    Target {
        name: "sim-report",
        decode: decode_sim_report,
        seeds: sim_report_seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The repository's root.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The camera of the protocol seeds (2 x 3 RGB).
fn camera() -> Camera {
    Camera {
        name: "front".into(),
        height: 2,
        width: 3,
        channels: 3,
    }
}

/// Joints, observation length and chunk length the protocol decoders expect.
const JOINTS: usize = 2;
const OBSERVATION: usize = 3;
const CHUNK: usize = 16;

fn decode_protocol(bytes: &[u8]) {
    let cameras = [camera()];
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
            MessageKind::State => {
                StateView::decode(body, JOINTS, OBSERVATION, &cameras).map(|_| ())
            }
            MessageKind::Action => ActionMessage::decode(body, JOINTS).map(|_| ()),
            MessageKind::Status => StatusMessage::decode(body).map(|_| ()),
            MessageKind::Control => ControlCommand::decode(body).map(|_| ()),
            MessageKind::ChunkQuery => ChunkQuery::decode(body, OBSERVATION, CHUNK, 18).map(|_| ()),
            MessageKind::ChunkReply => ChunkReply::decode(body, CHUNK).map(|_| ()),
            MessageKind::PolicyInfo => PolicyInfo::decode(body).map(|_| ()),
        };
    }
}

/// The ROS 2 decoders, each on the whole input: a joint state, an image, both command types, and the last 33
/// bytes as an attachment.
fn decode_ros2(bytes: &[u8]) {
    let _ = JointState::default().decode_into(bytes);
    if let Ok(image) = Image::decode(bytes) {
        let _ = image.append_pixels(3, &mut Vec::new());
    }
    let _ = decode_float64_multi_array(bytes, &mut Vec::new());
    let _ = decode_joint_trajectory(bytes, &mut Vec::new(), &mut Vec::new());
    let _ = Attachment::decode(bytes.get(bytes.len().saturating_sub(ATTACHMENT_LEN)..));
}

fn ros2_seeds() -> Vec<Vec<u8>> {
    let names = ["a".to_string(), "b".to_string()];
    let attachment = Attachment {
        sequence: 3,
        source_timestamp_ns: 1_700_000_000_000_000_000,
        gid: [7; 16],
    };
    vec![
        encode_joint_state(1, &names, &[0.5, -0.5], &[0.1, 0.2]),
        encode_image(1, 2, 3, 3, &[9; 18]),
        encode_float64_multi_array(&[0.25, -1.0]),
        encode_joint_trajectory(&names, &[0.25, -1.0], 20_000_000),
        [
            encode_float64_multi_array(&[1.0]),
            attachment.encode().to_vec(),
        ]
        .concat(),
    ]
}

fn protocol_seeds() -> Vec<Vec<u8>> {
    let stamp = wall_clock_ns();
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
    vec![
        state.encode(0, 7, 1, stamp),
        StateMessage {
            images: Vec::new(),
            ..state.clone()
        }
        .encode(0, 7, 2, stamp),
        ActionMessage {
            tick: 9,
            state_seq: 3,
            command: vec![0.25, -1.0],
        }
        .encode(1, 7, 3, stamp),
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
        .encode(0, 7, 4, stamp),
        ControlCommand::EmergencyStop.encode(0, 7, 5, stamp),
        ChunkQuery {
            request_seq: 4,
            stream: 11,
            executed: 3,
            delay: 2,
            observation: vec![0.1, 0.2, 0.3],
            committed: vec![0.5; 8],
            images: (0..18).collect(),
        }
        .encode(0, 11, 6, stamp),
        ChunkReply {
            request_seq: 4,
            inference_us: 800,
            chunk: Ok(vec![0.5; CHUNK]),
        }
        .encode(0, 3, 7, stamp),
        ChunkReply {
            request_seq: 5,
            inference_us: 0,
            chunk: Err("refused: busy".into()),
        }
        .encode(0, 3, 8, stamp),
        PolicyInfo {
            horizon: 8,
            action_dim: 2,
            observation_dim: 3,
            capabilities: 1,
            cameras: vec![camera()],
        }
        .encode(0, 3, 9, stamp),
    ]
}

fn decode_session_log(bytes: &[u8]) {
    let _ = read_log_bytes(bytes, "fuzzed.log");
}

/// The log of a short recorded run of the point-mass example (simulated clock, RTC, 60 controller ticks).
fn session_log_seeds() -> Vec<Vec<u8>> {
    let mut config = Config::load(&repo().join("config/examples/point-mass-rtc.toml"))
        .expect("the point-mass example");
    config.clock.kind = ClockKind::Simulated;
    config.realtime.fifo_priority = 0;
    config.realtime.lock_memory = false;
    let log = std::env::temp_dir().join(format!("rtchunk-fuzz-seed-{}.log", std::process::id()));
    let plant = PointMass::new(config.plant.clone(), 1.0 / config.clock.controller_rate());
    let policy = load_policy(&config).expect("the example's policy");
    let mut options = RunOptions::new("fuzz seed", 60);
    options.record = Some(Box::new(LogWriter::new(&log)));
    run(&config, plant, policy, options).expect("the seed run");
    let bytes = std::fs::read(&log).expect("the seed log");
    let _ = std::fs::remove_file(&log);
    vec![bytes]
}

fn decode_configuration(bytes: &[u8]) {
    if let Ok(config) = Config::from_toml_str(&String::from_utf8_lossy(bytes), "fuzzed.toml") {
        let _ = config.validate();
    }
}

/// Every example configuration.
fn configuration_seeds() -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("config/examples"))
        .expect("config/examples")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    read_all(&files)
}

fn decode_manifest(bytes: &[u8]) {
    let _ = rtchunk_policy::onnx::parse_manifest(
        &String::from_utf8_lossy(bytes),
        Path::new("manifest.json"),
    );
}

/// The manifests of the test bundles (plain, VLA-shaped, camera, external weights).
fn manifest_seeds() -> Vec<Vec<u8>> {
    let files: Vec<PathBuf> = ["gta-toy", "vla-tiny", "gaussian-camera", "gta-toy-external"]
        .iter()
        .map(|b| repo().join("policy/fixtures").join(b).join("manifest.json"))
        .collect();
    read_all(&files)
}

fn decode_sim_report(bytes: &[u8]) {
    let _ = serde_json::from_slice::<SimRecording>(bytes);
}

fn sim_report_seeds() -> Vec<Vec<u8>> {
    let report = serde_json::json!({
        "task": "reach",
        "episodes": [{
            "seed": 3, "success": true, "outcome": "success", "steps": 2, "seconds": 0.1,
            "step_records": [
                {"command_tick": null, "observation": [0.0, 1.0]},
                {"command_tick": 4, "observation": [0.5, 1.5]}
            ]
        }]
    });
    vec![serde_json::to_vec(&report).expect("JSON")]
}

fn read_all(files: &[PathBuf]) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}
