//! Separate processes on loopback: `rtchunk sim serve` (the simulator node on its own clock) and `rtchunk run`
//! (the runtime with a trained policy bundle) talk only through zenoh.

use rtchunk_runtime::io::protocol::{MessageKind, Phase, StatusMessage, decode_header};
use rtchunk_runtime::io::session::free_loopback_port;
use rtchunk_runtime::recording::replay;
use rtchunk_runtime::recording::task_replay::SimRecording;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zenoh::Wait;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `[policy]` section of a robot running the committed reach policy in process.
fn local_policy() -> String {
    format!(
        "[policy]\nkind = \"bundle\"\nbundle = \"{}\"\nintra_threads = 1\n",
        repo().join("sim/policies/reach/base-s0").display()
    )
}

/// The policy at 30 Hz on the wall clock.
const REAL_CLOCK: &str = "[clock]\nkind = \"real\"\npolicy_rate_hz = 30.0";

/// Writes a runtime configuration: `policy`, RTC, 30 Hz on the wall clock, a passthrough controller, then
/// `plant` (the plant's and the link's sections).
fn runtime_config(name: &str, policy: &str, plant: &str) -> PathBuf {
    runtime_config_on(name, policy, REAL_CLOCK, plant)
}

/// [`runtime_config`] with the `[clock]` section `clock`.
fn runtime_config_on(name: &str, policy: &str, clock: &str, plant: &str) -> PathBuf {
    let text = format!(
        r#"
{policy}

[sampler]
mode = "rtc"

{clock}

[controller]
kind = "passthrough"

{plant}
"#
    );
    let path = std::env::temp_dir().join(format!("rtchunk-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// The runtime's configuration: `policy` on `clock`, zenoh listening on `port` and connecting to `connect`.
fn robot_config(
    name: &str,
    port: u16,
    namespace: &str,
    (policy, clock): (&str, &str),
    connect: &[String],
) -> PathBuf {
    let plant = format!(
        r#"[plant]
kind = "zenoh"

[io]
listen = ["tcp/127.0.0.1:{port}"]
connect = {connect:?}
namespace = "{namespace}"
stale_after_ms = 150.0"#
    );
    runtime_config_on(name, policy, clock, &plant)
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rtchunk starts")
}

/// Waits for `child`, killing it after `limit`; returns whether it succeeded and its standard output and error.
fn wait(child: Child, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let id = child.id();
    let deadline = Instant::now() + limit;
    let watchdog = std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(id as i32, 0) } != 0 {
                return;
            }
        }
        // SAFETY: kills the child that outlived its limit.
        unsafe { libc::kill(id as i32, libc::SIGKILL) };
    });
    let output = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits for `child` (killing it after `limit`) and returns its standard output, checking it succeeded.
fn finish(child: Child, what: &str, limit: Duration) -> String {
    let (status, stdout, stderr) = wait(child, limit);
    assert!(
        status.success(),
        "{what} failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}

/// Waits for the simulator `sim` (at most `sim_limit`), then for the runtime it drove (at most 30 s more), and
/// returns their standard outputs; when either failed, shows what both printed (a robot that got no command
/// fails first, but the runtime says why).
fn finish_robot(sim: Child, sim_limit: Duration, runtime: Child) -> (String, String) {
    let (sim_status, sim_out, sim_err) = wait(sim, sim_limit);
    let (run_status, run_out, run_err) = wait(runtime, Duration::from_secs(30));
    assert!(
        sim_status.success() && run_status.success(),
        "rtchunk sim serve ({sim_status}):\n{sim_out}\n{sim_err}\nrtchunk run ({run_status}):\n{run_out}\n{run_err}"
    );
    (sim_out, run_out)
}

fn json(path: &PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

struct Session {
    runtime: Child,
    sim: Child,
    report: PathBuf,
    log: PathBuf,
    /// Where the runtime listens.
    endpoint: String,
    namespace: String,
}

/// A zenoh session of the test process connected to the runtime of `session`.
fn join(session: &Session) -> zenoh::Session {
    rtchunk_runtime::io::session::open_session(&rtchunk_config::IoConfig {
        listen: vec![],
        connect: vec![session.endpoint.clone()],
        namespace: session.namespace.clone(),
        ..rtchunk_config::IoConfig::default()
    })
    .unwrap()
}

fn start(name: &str, sim_args: &[&str]) -> Session {
    start_robot(name, sim_args, (&local_policy(), REAL_CLOCK), &[], &[])
}

/// Starts a runtime (with `policy` on `clock`, also connecting to `connect`, and `runtime_args` for
/// `rtchunk run`) and a simulator node for it.
fn start_robot(
    name: &str,
    sim_args: &[&str],
    (policy, clock): (&str, &str),
    connect: &[String],
    runtime_args: &[&str],
) -> Session {
    let port = free_loopback_port().unwrap();
    let namespace = format!("test{}{name}", std::process::id());
    let config = robot_config(name, port, &namespace, (policy, clock), connect);
    let report = std::env::temp_dir().join(format!("rtchunk-{}-{name}.json", std::process::id()));
    let log = std::env::temp_dir().join(format!("rtchunk-{}-{name}.log", std::process::id()));
    let mut run_args = vec![
        "run",
        config.to_str().unwrap(),
        "--json",
        "--record",
        log.to_str().unwrap(),
    ];
    run_args.extend_from_slice(runtime_args);
    let runtime = spawn(&run_args);
    let endpoint = format!("tcp/127.0.0.1:{port}");
    let mut args = vec![
        "sim",
        "serve",
        "--task",
        "reach",
        "--connect",
        &endpoint,
        "--namespace",
        &namespace,
        "--stop-runtime-when-done",
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(sim_args);
    let sim = spawn(&args);
    Session {
        runtime,
        sim,
        report,
        log,
        endpoint,
        namespace,
    }
}

#[test]
fn a_full_episode_runs_end_to_end_between_processes() {
    let session = start("episode", &["--episodes", "2", "--io-fifo-priority", "10"]);
    // A monitor listens to the runtime's status topic for the whole run.
    let monitor = join(&session);
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let _subscriber = {
        let statuses = statuses.clone();
        monitor
            .declare_subscriber(format!("{}/status", session.namespace))
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                let (_, body) = decode_header(&bytes, MessageKind::Status).unwrap();
                statuses
                    .lock()
                    .unwrap()
                    .push(StatusMessage::decode(body).unwrap());
            })
            .wait()
            .unwrap()
    };
    let (sim_out, run_out) = finish_robot(session.sim, Duration::from_secs(120), session.runtime);
    let report = json(&session.report);
    let episodes = report["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 2, "{sim_out}");
    for episode in episodes {
        assert!(episode["steps"].as_u64().unwrap() > 10, "{episode}");
        assert_ne!(episode["outcome"], "running", "{episode}");
    }
    assert!(
        report["actions_received"].as_u64().unwrap() > 20,
        "{sim_out}"
    );
    assert_eq!(report["actions_rejected"], 0, "{sim_out}");
    let latency = &report["state_to_action_ms"];
    assert!(latency["count"].as_u64().unwrap() > 20, "{sim_out}");
    // The robot's zenoh threads went under SCHED_FIFO as asked, or it says why not.
    let threads = report["zenoh_threads"].as_str().unwrap();
    assert!(
        (threads.starts_with("applied") && threads.contains("rx-*") && threads.contains("tx-*"))
            || (threads.starts_with("REFUSED") && threads.contains("priority 10")),
        "{threads}"
    );
    assert!(sim_out.contains(threads), "{sim_out}");
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    assert!(run["metrics"]["swaps"].as_u64().unwrap() > 5, "{run_out}");
    assert_eq!(run["link"]["actions_dropped"], 0, "{run_out}");
    // Status went out at 10 Hz while running; the last one (phase stopped) agrees with the run's own metrics.
    let statuses = statuses.lock().unwrap().clone();
    assert!(statuses.len() > 20, "{} status messages", statuses.len());
    assert!(statuses.iter().any(|s| s.phase == Phase::Running));
    let last = statuses.last().unwrap();
    let metrics = &run["metrics"];
    assert_eq!(last.phase, Phase::Stopped, "{last:?}");
    // The status counts every adopted chunk; the run's metrics leave out the first (cold) one.
    assert_eq!(
        last.swaps,
        metrics["swaps"].as_u64().unwrap() + 1,
        "{last:?}"
    );
    assert_eq!(
        last.starved_ticks,
        metrics["starved_ticks"].as_u64().unwrap()
    );
    assert!(last.ticks >= 100 && last.states_accepted >= 100, "{last:?}");
    assert!(
        last.last_delay_ticks <= 8 && last.last_seam_jump > 0.0,
        "{last:?}"
    );
    assert!(last.max_lateness_us > 0, "{last:?}");
    drop(_subscriber);
    monitor.close().wait().unwrap();
    // The recorded session replays from its recorded chunks with zero divergence.
    let exact = replay(&session.log, &[]);
    assert_eq!(exact["complete"], true, "{exact}");
    assert!(exact["ticks"].as_u64().unwrap() > 100, "{exact}");
    assert_eq!(exact["actions"]["differing"], 0, "{exact}");
    assert!(
        exact["actions"]["compared"].as_u64().unwrap() > 200,
        "{exact}"
    );
    // With the simulator's report the task itself is re-run: every observation of both episodes comes out bit
    // for bit, from the recorded chunks and from chunks the policy computes again.
    let report_path = session.report.to_str().unwrap();
    for mode in [
        &["--sim-report", report_path][..],
        &["--sim-report", report_path, "--re-infer"],
    ] {
        let task = replay(&session.log, mode);
        assert_eq!(task["commands"]["differing"], 0, "{task}");
        assert_eq!(task["task"]["episodes"], 2, "{task}");
        assert_eq!(task["task"]["outcomes_changed"], 0, "{task}");
        assert_eq!(task["task"]["observations"]["differing"], 0, "{task}");
        assert!(
            task["task"]["observations"]["compared"].as_u64().unwrap() > 100,
            "{task}"
        );
    }
    // A simulator report that applied another tick's command at one step is caught at that step.
    let mut edited = json(&session.report);
    let steps = edited["episodes"][0]["step_records"]
        .as_array_mut()
        .unwrap();
    let (at, tick) = steps
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, s)| s["command_tick"].as_u64().map(|t| (i, t)))
        .unwrap();
    steps[at]["command_tick"] = (tick - 1).into();
    let edited_path = session.report.with_extension("edited.json");
    std::fs::write(&edited_path, edited.to_string()).unwrap();
    let task = replay(
        &session.log,
        &["--sim-report", edited_path.to_str().unwrap()],
    );
    assert_eq!(task["task"]["observations"]["first"], at as u64, "{task}");
    println!("{sim_out}{run_out}{exact}");
}

/// Runs `rtchunk replay --json [extra] LOG` and returns its report.
fn replay(log: &PathBuf, extra: &[&str]) -> serde_json::Value {
    let replayed = Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(["replay", "--json"])
        .args(extra)
        .arg(log)
        .output()
        .unwrap();
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    serde_json::from_str(&String::from_utf8_lossy(&replayed.stdout)).unwrap()
}

#[test]
fn camera_images_from_the_simulator_reach_the_policy_and_replay_exactly() {
    // The simulator renders reach into a 42 x 22 RGB image per state; the camera fixture's chunk follows the
    // brightest region of its image, so every chunk depends on the pixels that came over zenoh.
    let session = start_robot(
        "camera",
        &["--episodes", "1", "--camera-width", "42"],
        (&camera_policy(), REAL_CLOCK),
        &[],
        &[],
    );
    let (sim_out, run_out) = finish_robot(session.sim, Duration::from_secs(120), session.runtime);
    let log = check_camera_run(&run_out, &session.log);

    // Re-running the policy on the recorded observations and images gives the recorded chunks exactly.
    let exact = replay(&session.log, &["--re-infer"]);
    assert_eq!(exact["chunks"]["differing"], 0, "{exact}");
    assert!(exact["chunks"]["compared"].as_u64().unwrap() > 5, "{exact}");
    // Blank the recorded pictures and the same replay finds every chunk different: the images steer the policy.
    let blanked = session.log.with_extension("blank.log");
    let mut bytes = std::fs::read(&session.log).unwrap();
    for inference in &log.inferences {
        let at = bytes
            .windows(inference.images.len())
            .position(|w| w == inference.images.as_slice())
            .unwrap();
        bytes[at..at + inference.images.len()].fill(0);
    }
    std::fs::write(&blanked, bytes).unwrap();
    let blank = replay(&blanked, &["--re-infer"]);
    assert_eq!(blank["chunks"]["differing"], blank["inferences"], "{blank}");
    assert_eq!(blank["chunks"]["first"], log.inferences[0].seq, "{blank}");
    check_mcap_export(&session.log, &log);
    println!("{sim_out}{run_out}{exact}");
}

/// The camera fixture as the run's policy (its chunk follows the brightest region of its image).
fn camera_policy() -> String {
    format!(
        "[policy]\nkind = \"bundle\"\nbundle = \"{}\"\nintra_threads = 1\n",
        repo().join("policy/fixtures/gaussian-camera").display()
    )
}

#[test]
fn every_camera_frame_recorded_exports_to_lerobot_with_the_images_of_each_policy_tick() {
    let session = start_robot(
        "frames",
        &["--episodes", "1", "--camera-width", "42"],
        (&camera_policy(), REAL_CLOCK),
        &[],
        &["--record-camera-frames"],
    );
    let (_, run_out) = finish_robot(session.sim, Duration::from_secs(120), session.runtime);
    let log = check_camera_run(&run_out, &session.log);
    // Every state's images are in the log, among them exactly those each inference saw.
    let frames = &log.camera_frames;
    assert!(
        frames.len() > 3 * log.inferences.len(),
        "{} frames",
        frames.len()
    );
    assert!(frames.windows(2).all(|w| w[0].state_seq < w[1].state_seq));
    for inference in &log.inferences {
        let frame = frames
            .iter()
            .find(|f| f.state_seq == inference.image_seq)
            .unwrap();
        assert_eq!(frame.pixels, inference.images);
    }
    let dir = session.log.with_extension("lerobot");
    let exported = spawn(&[
        "export",
        "lerobot",
        session.log.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    let summary = finish(exported, "rtchunk export lerobot", Duration::from_secs(60));
    assert!(summary.contains("cameras: front"), "{summary}");
    let reader = Command::new(lerobot_python())
        .arg(repo().join("runtime/tests/read_lerobot.py"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        reader.status.success(),
        "{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    let loaded: serde_json::Value = serde_json::from_slice(&reader.stdout).unwrap();
    // Each policy tick from the first with images: the images that came with the state it read.
    let mut expected = Vec::new();
    for tick in log.ticks.iter().filter(|t| t.policy.is_some()) {
        if let Some(frame) = frames.iter().rev().find(|f| f.state_seq <= tick.state_seq) {
            let hex: String = frame.pixels.iter().map(|b| format!("{b:02x}")).collect();
            expected.push((hex, tick.observation[..log.header.observation_dim].to_vec()));
        }
    }
    let images = loaded["images"]["observation.images.front"]
        .as_array()
        .unwrap();
    let states = loaded["frames"]["state"].as_array().unwrap();
    assert_eq!(images.len(), expected.len());
    for ((image, state), (hex, observation)) in images.iter().zip(states).zip(&expected) {
        assert_eq!(image.as_str().unwrap(), hex);
        let state: Vec<f32> = state
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&state, observation);
    }
    assert_eq!(
        loaded["features"]["observation.images.front"]["shape"],
        serde_json::json!([22, 42, 3])
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The policy at 30 Hz on the robot's states, nominally `rate_hz` of them per second.
fn state_clock(rate_hz: f64) -> String {
    format!("[clock]\nkind = \"state\"\npolicy_rate_hz = 30.0\ncontroller_rate_hz = {rate_hz:.1}")
}

#[test]
fn the_state_clock_ticks_on_each_state_of_a_drifting_lossy_robot_and_the_task_is_solved() {
    // The robot's states come at 27 Hz, 10 % below the nominal 30, and 5 % of them are lost: the controller
    // ticks on each state that arrives (every one a policy tick) and solves the task.
    let clock = state_clock(30.0);
    let session = start_robot(
        "drift",
        &["--episodes", "1", "--rate-hz", "27", "--loss", "0.05"],
        (&local_policy(), &clock),
        &[],
        &[],
    );
    let (_, run_out) = finish_robot(session.sim, Duration::from_secs(120), session.runtime);
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    let metrics = &run["metrics"];
    let period = metrics["tick_period_ms"]["p50"].as_f64().unwrap();
    assert!(
        (30.0..45.0).contains(&period),
        "a tick per state, 37 ms apart: {period} ms"
    );
    assert!(
        metrics["tick_gaps"].as_u64().unwrap() >= 1,
        "lost states are gaps: {metrics}"
    );
    assert!(metrics["swaps"].as_u64().unwrap() > 5, "{metrics}");
    let report = json(&session.report);
    assert_eq!(report["episodes"][0]["success"], true, "{report}");
    assert!(
        run["link"]["states_accepted"].as_u64().unwrap() > 100,
        "{run_out}"
    );
    println!("{}", run["link"]);
}

#[test]
fn the_state_clock_refuses_a_robot_off_its_nominal_rate_naming_the_key() {
    let clock = state_clock(90.0);
    let session = start_robot(
        "offrate",
        &["--episodes", "1"],
        (&local_policy(), &clock),
        &[],
        &[],
    );
    let output = session.runtime.wait_with_output().unwrap();
    let mut sim = session.sim;
    sim.kill().ok();
    sim.wait().ok();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("clock.controller_rate_hz = 90") && stderr.contains("states/s"),
        "{stderr}"
    );
}

/// Checks a run of the camera fixture against the simulator's 42 x 22 RGB camera (its JSON summary `run_out`
/// and its log at `path`): chunks adopted, nothing rejected, every inference saw a whole image paired with a
/// state, and the pictures changed as the agent moved. Returns the log.
fn check_camera_run(
    run_out: &str,
    path: &std::path::Path,
) -> rtchunk_runtime::recording::format::RecordedSession {
    let run: serde_json::Value = serde_json::from_str(run_out).unwrap();
    assert!(run["metrics"]["swaps"].as_u64().unwrap() > 5, "{run_out}");
    let rejected: u64 = run["link"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kind| kind[1].as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 0, "{run_out}");
    let log = rtchunk_runtime::recording::format::read_log(path).unwrap();
    assert!(log.inferences.len() > 5);
    for inference in &log.inferences {
        assert!(inference.error.is_none(), "{:?}", inference.error);
        assert_eq!(inference.images.len(), 22 * 42 * 3);
        assert!(inference.image_seq > 0);
    }
    let first = &log.inferences[0].images;
    assert!(log.inferences.iter().any(|i| &i.images != first));
    log
}

/// `rtchunk export mcap` of `path`, read back with the `mcap` Python package: every tick, inference and camera
/// image of `log`, value for value, on channels with JSON Schemas, in an LZ4-chunked file.
fn check_mcap_export(
    path: &std::path::Path,
    log: &rtchunk_runtime::recording::format::RecordedSession,
) {
    let mcap = path.with_extension("mcap");
    let exported = spawn(&[
        "export",
        "mcap",
        path.to_str().unwrap(),
        "--out",
        mcap.to_str().unwrap(),
    ]);
    finish(exported, "rtchunk export mcap", Duration::from_secs(60));
    let reader = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("runtime/tests/read_mcap.py"))
        .arg(&mcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = finish(reader, "reading the MCAP file", Duration::from_secs(60));
    let file: serde_json::Value = serde_json::from_str(&read).unwrap();
    assert_eq!(file["compression"], serde_json::json!(["lz4"]));
    let channels = &file["channels"];
    for (topic, schema, count) in [
        ("/rtchunk/tick", "rtchunk.Tick", log.ticks.len()),
        (
            "/rtchunk/inference",
            "rtchunk.Inference",
            log.inferences.len(),
        ),
        (
            "/rtchunk/camera/front",
            "foxglove.RawImage",
            log.inferences.len(),
        ),
    ] {
        let channel = &channels[topic];
        assert_eq!(channel["schema"], schema, "{channels}");
        assert_eq!(channel["schema_encoding"], "jsonschema");
        assert_eq!(channel["message_encoding"], "json");
        assert_eq!(channel["count"], count as u64, "{topic}");
    }
    assert_eq!(file["metadata"]["rtchunk"]["complete"], "true");
    let messages = file["messages"].as_array().unwrap();
    let on = |topic: &'static str| {
        messages
            .iter()
            .filter(move |m| m["topic"] == topic)
            .map(|m| &m["body"])
    };
    let same = |values: &serde_json::Value, recorded: &[f32]| {
        let values: Vec<f32> = values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        values == recorded
    };
    let dims = log.header.action_dim;
    for (body, tick) in on("/rtchunk/tick").zip(&log.ticks) {
        assert_eq!(body["controller_tick"], tick.controller_tick);
        assert!(
            same(&body["action"], &tick.action[..dims])
                && same(&body["command"], &tick.command[..dims])
        );
    }
    let mut chunks: Vec<_> = on("/rtchunk/inference").collect();
    chunks.sort_by_key(|body| body["seq"].as_u64());
    let mut inferences: Vec<_> = log.inferences.iter().collect();
    inferences.sort_by_key(|inference| inference.seq);
    for (body, inference) in chunks.iter().zip(inferences) {
        assert_eq!(body["seq"], inference.seq);
        let chunk: Vec<f32> = body["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        assert_eq!(chunk, inference.chunk);
        assert!(same(&body["observation"], &inference.observation));
    }
    let mut images: Vec<String> = on("/rtchunk/camera/front")
        .map(|b| b["data"].as_str().unwrap().to_string())
        .collect();
    let mut recorded: Vec<String> = log
        .inferences
        .iter()
        .map(|i| i.images.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    images.sort();
    recorded.sort();
    assert_eq!(images, recorded);
    check_rerun_view(&mcap, &recorded);
}

/// The Rerun view of an MCAP export (`python -m rtchunk_rerun`), read back with Rerun's own reader
/// (`bridges/rerun/tests/read_rrd.py`): the camera's images are those `recorded` (hex, sorted), pixel for pixel.
fn check_rerun_view(mcap: &std::path::Path, recorded: &[String]) {
    let rrd = mcap.with_extension("rrd");
    let python = repo().join(".venv/bin/python");
    let converted = Command::new(&python)
        .args(["-m", "rtchunk_rerun"])
        .arg(mcap)
        .arg("--out")
        .arg(&rrd)
        .env("PYTHONPATH", repo().join("bridges/rerun"))
        .output()
        .unwrap();
    assert!(
        converted.status.success(),
        "python -m rtchunk_rerun: {}",
        String::from_utf8_lossy(&converted.stderr)
    );
    let read = Command::new(&python)
        .arg(repo().join("bridges/rerun/tests/read_rrd.py"))
        .arg(&rrd)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let recording: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let camera = &recording["entities"]["/camera/front"];
    let mut images: Vec<String> = camera["image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hex| hex.as_str().unwrap().to_string())
        .collect();
    images.sort();
    assert_eq!(
        images, recorded,
        "every inference's image, as Rerun reads it back"
    );
    std::fs::remove_file(&rrd).ok();
}

/// The LeRobot import toolchain's Python, made by `./scripts/setup.sh --with-lerobot` (always there in CI, whose
/// test command runs it first).
fn lerobot_python() -> PathBuf {
    let python = repo().join(".venv-lerobot/bin/python");
    assert!(
        python.exists(),
        "run ./scripts/setup.sh --with-lerobot first: {} is missing",
        python.display()
    );
    python
}

/// Runs the LeRobot toolchain's module `module` with `args`, checking it succeeded.
fn lerobot_toolchain(module: &str, args: &[&str]) {
    let output = Command::new(lerobot_python())
        .arg("-m")
        .arg(module)
        .args(args)
        .env("PYTHONPATH", repo().join("policy/python"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python -m {module}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Samples rtchunk's exact RTC from the noise and committed actions of LeRobot's recorded RTC chunk and prints
/// how closely each keeps the d frozen actions (in the robot's dimensions) and how far the two chunks are apart;
/// the exact guidance must differ from LeRobot's identity-Jacobian guidance.
fn report_exact_rtc(bundle: &std::path::Path) {
    use rtchunk_policy::onnx::{OnnxPolicy, recorded_values};
    use rtchunk_policy::{Committed, FlowPolicy, Sampler, actions_of, chunks_of, widen_actions};
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("expected.json")).unwrap())
            .unwrap();
    let entry = &recorded["chunks"][1];
    let mut policy = OnnxPolicy::load(bundle, &Default::default()).unwrap();
    let spec = policy.spec().clone();
    let (dims, delay) = (
        spec.robot_action_dim,
        entry["delay"].as_u64().unwrap() as usize,
    );
    let mut committed = Vec::new();
    widen_actions(
        &recorded_values(&entry["committed"]),
        dims,
        spec.action_dim,
        &mut committed,
    );
    let config = rtchunk_config::SamplerConfig {
        mode: rtchunk_config::SamplerMode::Rtc,
        steps: entry["steps"].as_u64().unwrap() as usize,
        beta: entry["beta"].as_f64().unwrap(),
        schedule: rtchunk_config::MaskSchedule::Linear,
        ..Default::default()
    };
    let images: Vec<u8> = recorded_values(&recorded["inputs"]["images"])
        .iter()
        .map(|v| *v as u8)
        .collect();
    let noise = recorded_values(&entry["noise"]);
    let mut chunk = ndarray::Array2::zeros((spec.horizon, spec.action_dim));
    Sampler::new(config, spec.horizon, spec.action_dim)
        .sample_from_noise(
            &mut policy,
            &recorded_values(&recorded["inputs"]["observation"]),
            &images,
            Some(Committed {
                actions: actions_of(&committed, spec.action_dim).unwrap(),
                delay,
            }),
            chunks_of(&noise, spec.horizon, spec.action_dim).unwrap(),
            chunk.view_mut(),
        )
        .unwrap();
    let exact: Vec<f32> = chunk
        .slice(ndarray::s![.., ..dims])
        .iter()
        .copied()
        .collect();
    let (identity, frozen) = (
        recorded_values(&entry["chunk"]),
        recorded_values(&entry["committed"]),
    );
    let gap = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let prefix = delay * dims;
    let between = gap(&exact, &identity);
    println!(
        "exact RTC against LeRobot's identity-Jacobian RTC from the same noise: frozen actions within {:.3e} \
         (identity {:.3e}), chunks {between:.3e} apart",
        gap(&exact[..prefix], &frozen[..prefix]),
        gap(&identity[..prefix], &frozen[..prefix])
    );
    assert!(between.is_finite() && between > 1e-4, "{between}");
}

/// A LeRobot SmolVLA checkpoint (tiny, random weights, built offline from LeRobot's classes) for reach's state,
/// action and camera, exported, drives the simulated robot (`lerobot_checkpoint_drives_the_simulated_robot`).
#[test]
fn a_lerobot_smolvla_checkpoint_drives_the_simulated_robot_with_its_camera() {
    lerobot_checkpoint_drives_the_simulated_robot("smolvla-tiny");
}

/// The same for a LeRobot π0 (reduced Gemma variants, LeRobot's own classes): its context carries the state
/// beside the VLM's cache.
#[test]
fn a_lerobot_pi0_checkpoint_drives_the_simulated_robot_with_its_camera() {
    lerobot_checkpoint_drives_the_simulated_robot("pi0-tiny");
}

/// The same for a LeRobot π0.5: the prefix graph writes the discretised state into the prompt.
#[test]
fn a_lerobot_pi05_checkpoint_drives_the_simulated_robot_with_its_camera() {
    lerobot_checkpoint_drives_the_simulated_robot("pi05-tiny");
}

/// Makes a LeRobot checkpoint of `size` for reach's state, action and camera and exports it: its bundle replays
/// LeRobot's own velocity, VJP, plain chunk and RTC chunk, then drives the simulated robot over zenoh with the
/// simulator's camera images and its prompt, its recorded inferences replay exactly, and the speed comparison's
/// script runs over it on the CPU.
fn lerobot_checkpoint_drives_the_simulated_robot(size: &str) {
    let dir = std::env::temp_dir().join(format!("rtchunk-{}-{size}", std::process::id()));
    let (checkpoint, bundle) = (dir.join("checkpoint"), dir.join("bundle"));
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    lerobot_toolchain(
        "rtchunk_lerobot.checkpoint",
        &[
            &path(&checkpoint),
            "--size",
            size,
            "--state-dim",
            "4",
            "--action-dim",
            "2",
            "--camera",
            "camera0:22x42",
        ],
    );
    lerobot_toolchain(
        "rtchunk_lerobot.import_lerobot",
        &[
            &path(&checkpoint),
            "--prompt",
            "reach the target",
            "--out",
            &path(&bundle),
        ],
    );
    let inspected = finish(
        spawn(&["inspect", &path(&bundle), "--json"]),
        "rtchunk inspect",
        Duration::from_secs(60),
    );
    let check: serde_json::Value = serde_json::from_str(inspected.trim()).unwrap();
    let tolerance = check["tolerance"].as_f64().unwrap();
    assert!(tolerance <= 1e-4);
    for error in ["velocity_error", "vjp_error", "guided_error"] {
        assert!(check[error].as_f64().unwrap() <= tolerance, "{check}");
    }
    let chunks: Vec<(&str, f64)> = check["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["mode"].as_str().unwrap(), c["error"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        chunks.iter().map(|c| c.0).collect::<Vec<_>>(),
        ["plain", "rtc-identity"]
    );
    assert!(chunks.iter().all(|c| c.1 <= tolerance), "{check}");
    report_exact_rtc(&bundle);

    let policy = format!(
        "[policy]\nkind = \"bundle\"\nbundle = \"{}\"\nintra_threads = 1\n",
        bundle.display()
    );
    let session = start_robot(
        size,
        &["--episodes", "1", "--camera-width", "42"],
        (&policy, REAL_CLOCK),
        &[],
        &[],
    );
    let (_, run_out) = finish_robot(session.sim, Duration::from_secs(180), session.runtime);
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    // Random weights leave the arena within a second or so: a few chunks, each continued by the next.
    assert!(run["metrics"]["swaps"].as_u64().unwrap() >= 3, "{run_out}");
    assert_eq!(run["metrics"]["inference_failures"], 0, "{run_out}");
    let log = rtchunk_runtime::recording::format::read_log(&session.log).unwrap();
    for inference in &log.inferences {
        assert!(inference.error.is_none(), "{:?}", inference.error);
        // The robot's two action dimensions of the model's padded ones.
        assert_eq!(inference.chunk.len(), 10 * 2);
    }
    let exact = replay(&session.log, &["--re-infer"]);
    assert_eq!(exact["chunks"]["differing"], 0, "{exact}");

    // The speed comparison's script, on the CPU, over this checkpoint and bundle: one row of results.
    let results = dir.join("results.json");
    let output = Command::new(repo().join("scripts/bench-lerobot.sh"))
        .args(["cpu", &path(&dir)])
        .env("RTCHUNK", env!("CARGO_BIN_EXE_rtchunk"))
        .env("PYTHON", lerobot_python())
        .env("ITERATIONS", "2")
        .env("SIZE", size)
        .env("RESULTS", &results)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/bench-lerobot.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    let row = &rows[0];
    for field in [
        "lerobot_rtc_ms",
        "rtchunk_rtc_ms",
        "lerobot_plain_ms",
        "rtchunk_plain_ms",
    ] {
        assert!(row[field].as_f64().unwrap() > 0.0, "{field}: {row}");
    }
    for field in [
        "max_rel_err_velocity",
        "max_rel_err_vjp",
        "max_abs_err_plain_chunk",
        "max_abs_err_identity_rtc_chunk",
    ] {
        assert!(row[field].as_f64().unwrap() <= 1e-4, "{field}: {row}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_disconnected_simulator_makes_the_runtime_hold_until_it_returns() {
    let session = start("disconnect", &["--episodes", "1"]);
    // Let the episode get going, then freeze the simulator node for a second (no state, no reading).
    std::thread::sleep(Duration::from_millis(2500));
    let pause = Duration::from_millis(1000);
    let sim_id = session.sim.id() as i32;
    // SAFETY: stops and continues the child process this test started.
    unsafe { libc::kill(sim_id, libc::SIGSTOP) };
    std::thread::sleep(pause);
    // SAFETY: as above.
    unsafe { libc::kill(sim_id, libc::SIGCONT) };
    let (sim_out, run_out) = finish_robot(session.sim, Duration::from_secs(120), session.runtime);
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    let held = run["link"]["held_ticks"].as_u64().unwrap() as f64;
    // 30 Hz; the hold starts once the newest state is 150 ms old and ends when state flows again.
    let expected = (pause.as_secs_f64() - 0.15) * 30.0;
    assert!(
        held >= expected - 8.0 && held <= expected + 12.0,
        "held {held} ticks for a {pause:?} disconnect (expected about {expected:.0}):\n{run_out}"
    );
    let report = json(&session.report);
    assert!(report["actions_held"].as_u64().unwrap() > 0, "{sim_out}");
    assert_eq!(report["episodes"].as_array().unwrap().len(), 1, "{sim_out}");
    println!("{sim_out}{run_out}");
}

#[test]
fn two_robots_share_a_remote_policy_server() {
    let server_port = free_loopback_port().unwrap();
    let server_endpoint = format!("tcp/127.0.0.1:{server_port}");
    let server_namespace = format!("server{}", std::process::id());
    let server = spawn(&[
        "serve-policy",
        repo().join("sim/policies/reach/base-s0").to_str().unwrap(),
        "--listen",
        &server_endpoint,
        "--namespace",
        &server_namespace,
        "--seconds",
        "100",
    ]);
    let remote = format!("[policy]\nkind = \"remote\"\nserver = \"{server_namespace}\"\n");
    let robots: Vec<Session> = ["remote-a", "remote-b"]
        .iter()
        .map(|name| {
            start_robot(
                name,
                &["--episodes", "1"],
                (&remote, REAL_CLOCK),
                std::slice::from_ref(&server_endpoint),
                &[],
            )
        })
        .collect();
    for robot in robots {
        let (sim_out, run_out) = finish_robot(robot.sim, Duration::from_secs(120), robot.runtime);
        let report = json(&robot.report);
        assert_eq!(report["episodes"].as_array().unwrap().len(), 1, "{sim_out}");
        let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
        assert!(run["metrics"]["swaps"].as_u64().unwrap() > 5, "{run_out}");
        assert_eq!(run["metrics"]["inference_failures"], 0, "{run_out}");
        println!("{sim_out}");
    }
    // SAFETY: asks the server this test started to stop (it prints its report and exits).
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let server_out = finish(server, "rtchunk serve-policy", Duration::from_secs(20));
    let report: serde_json::Value = serde_json::from_str(&server_out).unwrap();
    assert_eq!(report["refused"], 0, "{server_out}");
    let robots = report["per_robot"].as_object().unwrap();
    assert_eq!(robots.len(), 2, "{server_out}");
    assert!(
        robots.values().all(|n| n.as_u64().unwrap() > 5),
        "{server_out}"
    );
    println!("{server_out}");
}

#[test]
fn the_latency_study_runs_the_processes_and_writes_its_report() {
    let out = std::env::temp_dir().join(format!("rtchunk-{}-latency", std::process::id()));
    let policy = repo().join("sim/policies/reach/base-s0");
    let output = Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args([
            "latency",
            "--task",
            "reach",
            "--extra-latency",
            "0,100",
            "--methods",
            "rtc",
            "--wires",
            "rtchunk,ros2",
            "--clocks",
            "real,state",
        ])
        .args(["--episodes", "1", "--policy"])
        .arg(&policy)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = json(&out.join("latency.json"));
    assert!(report["bare_zenoh_one_way_ms"]["count"].as_u64().unwrap() > 100);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let clocks: Vec<&str> = rows.iter().map(|r| r["clock"].as_str().unwrap()).collect();
    assert_eq!(
        clocks.iter().filter(|c| **c == "state").count(),
        4,
        "{clocks:?}"
    );
    for row in rows {
        // The robot measures the whole loop on rtchunk's protocol only; the runtime its side on both wires.
        let robot_side = &row["state_to_action_ms"];
        match row["wire"].as_str().unwrap() {
            "rtchunk" => assert!(robot_side["count"].as_u64().unwrap() > 20, "{row}"),
            wire => assert!(wire == "ros2" && robot_side.is_null(), "{row}"),
        }
        assert!(
            row["state_to_command_sent_ms"]["count"].as_u64().unwrap() > 20,
            "{row}"
        );
        // Both wires stamp their states: every command is also timed from the stamp, over the whole hop.
        let from_stamp = &row["stamp_to_command_sent_ms"];
        assert_eq!(
            from_stamp["count"], row["state_to_command_sent_ms"]["count"],
            "{row}"
        );
        assert!(
            from_stamp["min"].as_f64().unwrap() >= row["state_transit_ms"]["min"].as_f64().unwrap(),
            "{row}"
        );
        assert!(
            row["bare_zenoh_one_way_beside_ms"]["count"]
                .as_u64()
                .unwrap()
                > 100,
            "{row}"
        );
        assert!(row["steal_ms"].is_number(), "{row}");
        // The runtime's command path and the simulated robot's zenoh threads went under SCHED_FIFO, or say why
        // not.
        let threads = row["command_path_threads"].as_str().unwrap().to_lowercase();
        let (runtime, robot) = threads.split_once("; robot: ").unwrap();
        for side in [runtime.trim_start_matches("runtime: "), robot] {
            assert!(
                side.starts_with("applied") || side.starts_with("refused"),
                "{row}"
            );
        }
        assert!(!row["trajectory"].as_array().unwrap().is_empty(), "{row}");
    }
    // 100 ms at 30 Hz is injected as 3 ticks; the runtime observes at least that delay.
    let delayed = rows.iter().find(|r| r["extra_ms"] == 100.0).unwrap();
    assert_eq!(delayed["injected_ticks"], 3);
    assert!(
        delayed["delay_ticks"]["p50"].as_f64().unwrap() >= 3.0,
        "{delayed}"
    );
    let png = std::fs::read(out.join("latency.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(stdout.contains("bare zenoh hop"), "{stdout}");
}

#[test]
fn bad_input_during_an_episode_is_rejected_and_the_episode_completes() {
    use rtchunk_runtime::core::clock::wall_clock_ns;
    use rtchunk_runtime::io::protocol::{ControlCommand, Encode, StateMessage};
    let session = start("badinput", &["--episodes", "1"]);
    let intruder = join(&session);
    std::thread::sleep(Duration::from_millis(2000));
    let state = |observation: Vec<f32>, joints: usize| StateMessage {
        position: vec![0.0; joints],
        velocity: vec![0.0; joints],
        observation,
        images: Vec::new(),
    };
    let good = state(vec![0.5; 4], 0).encode(0, 99, 1, wall_clock_ns());
    let mut version = good.clone();
    version[4] = 7;
    let mut nan = state(vec![0.5; 4], 0);
    nan.observation[2] = f32::NAN;
    let mut bad_control = ControlCommand::Start.encode(0, 99, 1, wall_clock_ns());
    *bad_control.last_mut().unwrap() = 42;
    let topic = format!("{}/state", session.namespace);
    for bytes in [
        vec![0u8; 5],
        version,
        ControlCommand::Stop.encode(0, 99, 2, wall_clock_ns()),
        state(vec![0.5; 3], 0).encode(0, 99, 3, wall_clock_ns()),
        nan.encode(0, 99, 4, wall_clock_ns()),
    ] {
        intruder.put(topic.as_str(), bytes).wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let control = format!("{}/control", session.namespace);
    intruder.put(control.as_str(), bad_control).wait().unwrap();
    let (sim_out, run_out) = finish_robot(session.sim, Duration::from_secs(120), session.runtime);
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    let rejected: std::collections::HashMap<String, u64> = run["link"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_u64().unwrap(),
            )
        })
        .collect();
    for (kind, count) in [
        ("malformed", 1),
        ("wrong schema version", 1),
        ("wrong message kind", 2),
        ("wrong dimensions", 1),
        ("NaN or Inf", 1),
    ] {
        assert_eq!(rejected[kind], count, "{kind}: {run_out}");
    }
    // Nothing reached the controller: the episode ran to its end on the simulator's states alone.
    let report = json(&session.report);
    assert_eq!(report["episodes"].as_array().unwrap().len(), 1, "{sim_out}");
    assert_eq!(report["actions_rejected"], 0, "{sim_out}");
}

#[test]
fn ctrl_c_stops_the_runtime_safely_and_its_log_is_complete() {
    let mut session = start("sigint", &["--episodes", "20"]);
    std::thread::sleep(Duration::from_millis(3000));
    // Whoever read the runtime's log output has gone: stopping must not depend on logging.
    drop(session.runtime.stderr.take());
    // SAFETY: interrupts the runtime this test started, as Ctrl-C would.
    unsafe { libc::kill(session.runtime.id() as i32, libc::SIGINT) };
    let run_out = finish(
        session.runtime,
        "rtchunk run after Ctrl-C",
        Duration::from_secs(20),
    );
    // The simulator node stops on Ctrl-C too, and reports the episode it was in.
    // SAFETY: interrupts the simulator node this test started.
    unsafe { libc::kill(session.sim.id() as i32, libc::SIGINT) };
    finish(
        session.sim,
        "rtchunk sim serve after Ctrl-C",
        Duration::from_secs(20),
    );
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    assert!(run["metrics"]["swaps"].as_u64().unwrap() > 5, "{run_out}");
    let log = rtchunk_runtime::recording::format::read_log(&session.log).unwrap();
    assert!(log.complete, "the log was flushed and closed");
    assert!(log.ticks.len() > 30);
    let simulator = SimRecording::read(&session.report).unwrap();
    let interrupted = simulator.episodes.last().unwrap();
    // Interrupted, or braked first if the runtime took longer than the command timeout to exit.
    assert!(
        ["running", "braked"].contains(&interrupted.outcome.as_str()),
        "{}",
        interrupted.outcome
    );
    assert!(interrupted.step_records.len() > 30);
    // Both records replay exactly, the interrupted episode included.
    let report = replay::replay(&log, replay::ReplayMode::ExactOutput, Some(&simulator)).unwrap();
    assert!(report.identical(), "{report:?}");
    assert!(report.task.unwrap().observations.compared > 100);
}

#[test]
fn a_killed_runtime_makes_the_robot_brake_and_its_log_reads_up_to_the_kill() {
    let timeout_ms = 150.0;
    let session = start(
        "sigkill",
        &["--episodes", "1", "--command-timeout-ms", "150"],
    );
    std::thread::sleep(Duration::from_millis(3000));
    let killed_mono = rtchunk_runtime::core::clock::monotonic_ns();
    let killed_wall = rtchunk_runtime::core::clock::wall_clock_ns();
    // SAFETY: kills the runtime this test started, as a crash or the OOM killer would.
    unsafe { libc::kill(session.runtime.id() as i32, libc::SIGKILL) };
    let sim_out = finish(session.sim, "rtchunk sim serve", Duration::from_secs(30));
    let report = SimRecording::read(&session.report).unwrap();
    assert_eq!(report.episodes.len(), 1, "{sim_out}");
    assert_eq!(report.episodes[0].outcome, "braked", "{sim_out}");
    let brakes = json(&session.report)["brakes"].clone();
    let brake = &brakes.as_array().unwrap()[0];
    let kill_to_brake_ms = (brake["wall_ns"].as_u64().unwrap() as f64 - killed_wall as f64) / 1e6;
    let silent_ms = brake["silent_ms"].as_f64().unwrap();
    // The node brakes at its first control step (30 Hz) after the timeout has passed.
    assert!(
        silent_ms > timeout_ms && silent_ms < timeout_ms + 120.0,
        "{brake}"
    );
    assert!(
        kill_to_brake_ms > timeout_ms - 40.0 && kill_to_brake_ms < timeout_ms + 150.0,
        "kill to brake {kill_to_brake_ms:.1} ms:\n{sim_out}"
    );
    // The log was cut, not closed: it reads up to its last flush before the kill (flushed every 100 ms).
    let mut runtime = session.runtime;
    assert!(!runtime.wait().unwrap().success());
    let log = rtchunk_runtime::recording::format::read_log(&session.log).unwrap();
    assert!(!log.complete);
    assert!(log.ticks.len() > 20, "{} ticks", log.ticks.len());
    let last = log.ticks.last().unwrap().time_ns;
    let cut_ms = (killed_mono as f64 - last as f64) / 1e6;
    assert!(
        (0.0..400.0).contains(&cut_ms),
        "the log's last tick is {cut_ms:.1} ms before the kill"
    );
    println!(
        "kill to brake {kill_to_brake_ms:.1} ms (no command for {silent_ms:.1} ms); the log's last tick \
         {cut_ms:.1} ms before the kill"
    );
}

/// A zenoh router in this process, listening on `endpoint`.
fn router(endpoint: &str) -> zenoh::Session {
    let mut config = zenoh::Config::default();
    config.insert_json5("mode", "\"router\"").unwrap();
    config
        .insert_json5("listen/endpoints", &format!("[\"{endpoint}\"]"))
        .unwrap();
    config
        .insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    zenoh::open(config).wait().unwrap()
}

#[test]
fn the_runtime_and_the_robot_hold_through_a_router_restart_and_resume() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_loopback_port().unwrap());
    let first = router(&endpoint);
    let namespace = format!("router{}", std::process::id());
    // The runtime as a zenoh client of the router; the simulator node connects to it too.
    let text = format!(
        "{}\n[sampler]\nmode = \"rtc\"\n[clock]\nkind = \"real\"\npolicy_rate_hz = 30.0\n\
         [controller]\nkind = \"passthrough\"\n[plant]\nkind = \"zenoh\"\n[io]\nmode = \"client\"\n\
         listen = []\nconnect = [\"{endpoint}\"]\nnamespace = \"{namespace}\"\nstale_after_ms = 150.0\n",
        local_policy()
    );
    let config = std::env::temp_dir().join(format!("rtchunk-{}-router.toml", std::process::id()));
    std::fs::write(&config, text).unwrap();
    let report = std::env::temp_dir().join(format!("rtchunk-{}-router.json", std::process::id()));
    let runtime = spawn(&["run", config.to_str().unwrap(), "--json"]);
    let sim = spawn(&[
        "sim",
        "serve",
        "--task",
        "reach",
        "--episodes",
        "1",
        "--connect",
        &endpoint,
        "--namespace",
        &namespace,
        "--command-timeout-ms",
        "5000",
        "--report",
        report.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(3000));
    first.close().wait().unwrap();
    let gap = Duration::from_millis(1000);
    std::thread::sleep(gap);
    let _second = router(&endpoint);
    let sim_out = finish(sim, "rtchunk sim serve", Duration::from_secs(120));
    // A stop published just before the node closes its session can be lost on the way through the router:
    // the runtime is stopped as an operator would, with Ctrl-C.
    // SAFETY: interrupts the runtime this test started.
    unsafe { libc::kill(runtime.id() as i32, libc::SIGINT) };
    let run_out = finish(runtime, "rtchunk run", Duration::from_secs(30));
    let run: serde_json::Value = serde_json::from_str(&run_out).unwrap();
    let held = run["link"]["held_ticks"].as_u64().unwrap();
    // 30 Hz: the hold starts 150 ms into the 1 s outage and ends once both clients have reconnected, well before
    // the episode's end (a hold that never ended would last until the node stopped, several seconds later).
    assert!(
        (20..=120).contains(&held),
        "held {held} ticks through a 1 s router restart:\n{run_out}"
    );
    let report = json(&report);
    assert_eq!(report["episodes"].as_array().unwrap().len(), 1, "{sim_out}");
    assert_ne!(report["episodes"][0]["outcome"], "running", "{sim_out}");
    println!("held {held} ticks through the router restart\n{sim_out}");
}

/// The ROS 2 robot of `tests/ros2_peer/robot.py` (eclipse-zenoh, rosbags and xxhash from PyPI; no rtchunk
/// code), as a zenoh router on `port`, for `seconds`.
fn spawn_ros2_robot(port: u16, seconds: f64, report: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/ros2_peer/robot.py"))
        .args(["--listen", &format!("tcp/127.0.0.1:{port}")])
        .args(["--seconds", &seconds.to_string()])
        .arg("--report")
        .arg(report)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ROS 2 peer starts (scripts/setup.sh installs its packages into .venv)")
}

/// `rtchunk run` of `policy` as a ROS 2 node connected to the router on `port`, its `[ros2]` section `ros2`.
fn ros2_runtime_config(name: &str, port: u16, policy: &str, ros2: &str) -> PathBuf {
    let plant = format!(
        r#"[plant]
kind = "ros2"

[io]
listen = []
connect = ["tcp/127.0.0.1:{port}"]
namespace = "ros2-{name}-{pid}"
stale_after_ms = 150.0

[ros2]
{ros2}"#,
        pid = std::process::id(),
    );
    runtime_config(&format!("ros2-{name}"), policy, &plant)
}

/// The reach policy as a ROS 2 node for the peer's robot: joints "x" and "y", observation = their positions
/// then velocities, commands as `command_type`.
fn ros2_robot_config(name: &str, port: u16, command_type: &str, joints: &str) -> PathBuf {
    let ros2 = format!(
        "joints = {joints}\nobservation = [\"position\", \"velocity\"]\njoint_states_topic = \"/joint_states\"\n\
         command_topic = \"/forward_command_controller/commands\"\ncommand_type = \"{command_type}\"\n"
    );
    ros2_runtime_config(name, port, &local_policy(), &ros2)
}

/// Runs the ROS 2 peer and the runtime against each other; returns the peer's report and the runtime's JSON.
fn ros2_run(
    name: &str,
    command_type: &str,
    peer_args: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let port = free_loopback_port().unwrap();
    let report =
        std::env::temp_dir().join(format!("rtchunk-{}-ros2-{name}.json", std::process::id()));
    let robot = spawn_ros2_robot(port, 9.0, &report, peer_args);
    std::thread::sleep(Duration::from_millis(500));
    let config = ros2_robot_config(name, port, command_type, r#"["x", "y"]"#);
    let runtime = spawn(&["run", config.to_str().unwrap(), "--json", "--seconds", "6"]);
    let summary = finish(runtime, "rtchunk run (ros2)", Duration::from_secs(60));
    finish(robot, "the ROS 2 peer", Duration::from_secs(60));
    (json(&report), serde_json::from_str(&summary).unwrap())
}

/// Checks the graph the peer read: rtchunk's node, its joint-state subscription and its command publisher, in
/// rmw_zenoh's token format with the type hashes `rosbags` computes; returns the publisher's token.
fn check_ros2_graph(robot: &serde_json::Value, command_dds: &str, command_hash: &str) -> String {
    let graph: Vec<&str> = robot["graph"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let zid = graph
        .iter()
        .find_map(|token| token.strip_suffix("/0/0/NN/%/%/rtchunk"))
        .unwrap_or_else(|| panic!("no rtchunk node in the graph: {graph:?}"));
    let joint_state_hash = robot["type_hashes"]["sensor_msgs/msg/JointState"]
        .as_str()
        .unwrap();
    let subscription = format!(
        "{zid}/0/1/MS/%/%/rtchunk/%joint_states/sensor_msgs::msg::dds_::JointState_/{joint_state_hash}/::,10:,:,:,,"
    );
    let publisher = format!(
        "{zid}/0/2/MP/%/%/rtchunk/%forward_command_controller%commands/{command_dds}/{command_hash}/::,10:,:,:,,"
    );
    assert!(
        graph.contains(&subscription.as_str()),
        "{subscription} not in {graph:?}"
    );
    assert!(
        graph.contains(&publisher.as_str()),
        "{publisher} not in {graph:?}"
    );
    assert_eq!(graph.len(), 3, "{graph:?}");
    publisher
}

#[test]
fn a_ros2_robot_built_from_pypi_packages_is_driven_through_rmw_zenohs_wire_format() {
    let (robot, runtime) = ros2_run("float64", "float64-multi-array", &["--bad"]);
    let hash = robot["type_hashes"]["std_msgs/msg/Float64MultiArray"]
        .as_str()
        .unwrap();
    let publisher = check_ros2_graph(&robot, "std_msgs::msg::dds_::Float64MultiArray_", hash);
    // Every command decoded with rosbags, carried an attachment whose GID is the XXH3-128 of the publisher's
    // token (computed by the peer), and numbered its samples 1, 2, 3, ... without a gap.
    assert_eq!(robot["command_problems"], serde_json::json!([]), "{robot}");
    assert_eq!(
        robot["command_gids"],
        serde_json::json!([robot["expected_gid_of"][&publisher]])
    );
    assert_eq!(robot["command_sequences_increase_by_one"], true);
    let received = robot["commands_received"].as_u64().unwrap();
    let published = runtime["link"]["actions_published"].as_u64().unwrap();
    assert!(
        received > 100 && received <= published,
        "{received} of {published}"
    );
    assert!(robot["command_clock_offset_ms_max"].as_f64().unwrap() < 100.0);
    // The policy drove the point mass from x = 0.35 towards the goal at x = 3.5, its joints mapped by name
    // (the robot sends "gripper", "y", "x").
    let furthest = robot["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert!(furthest > 1.5, "the robot reached only x = {furthest}");
    // Each malformed joint state was refused under its kind, and nothing else was.
    let rejected: std::collections::HashMap<String, u64> =
        serde_json::from_value(serde_json::Value::Object(
            runtime["link"]["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| (pair[0].as_str().unwrap().to_string(), pair[1].clone()))
                .collect(),
        ))
        .unwrap();
    let sent = &robot["bad_sent"];
    for (peer_kind, kind) in [
        ("malformed", "malformed"),
        ("nan_or_inf", "NaN or Inf"),
        ("dimensions", "wrong dimensions"),
        ("out_of_order", "out-of-order sequence number"),
        (
            "other_source",
            "another source while the one in use is live",
        ),
    ] {
        assert_eq!(
            rejected[kind],
            sent[peer_kind].as_u64().unwrap(),
            "{kind}: {rejected:?} against {sent}"
        );
    }
    assert_eq!(rejected.values().sum::<u64>(), 6, "{rejected:?}");
    let accepted = runtime["link"]["states_accepted"].as_u64().unwrap();
    assert!(accepted > 100, "{accepted} states accepted");
    assert!(
        runtime["link"]["state_to_command_ms"]["count"]
            .as_u64()
            .unwrap()
            > 100
    );
}

#[test]
fn a_ros2_robot_takes_joint_trajectories_and_a_mismatched_joint_list_is_refused_at_start() {
    let (robot, _) = ros2_run(
        "trajectory",
        "joint-trajectory",
        &["--command-type", "joint-trajectory"],
    );
    let hash = robot["type_hashes"]["trajectory_msgs/msg/JointTrajectory"]
        .as_str()
        .unwrap();
    check_ros2_graph(&robot, "trajectory_msgs::msg::dds_::JointTrajectory_", hash);
    assert_eq!(robot["command_problems"], serde_json::json!([]), "{robot}");
    assert!(
        robot["commands_received"].as_u64().unwrap() > 100,
        "{robot}"
    );

    let port = free_loopback_port().unwrap();
    let config = ros2_robot_config("one-joint", port, "float64-multi-array", r#"["x"]"#);
    let output = Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(["run", config.to_str().unwrap(), "--seconds", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("ros2.joints names 1 joints")
            && stderr.contains("the policy's action has 2 values"),
        "{stderr}"
    );
}

#[test]
fn camera_images_on_a_ros2_image_topic_reach_the_policy() {
    // The simulator as a ROS 2 robot: joint states on /joint_states (one joint per observation entry) and the
    // rendered 42 x 22 RGB image on /camera/image_raw; the camera fixture's chunks follow the image.
    let port = free_loopback_port().unwrap();
    let policy = format!(
        "[policy]\nkind = \"bundle\"\nbundle = \"{}\"\nintra_threads = 1\n",
        repo().join("policy/fixtures/gaussian-camera").display()
    );
    let ros2 = r#"
joints = ["force_x", "force_y"]
observation_joints = ["x", "y", "vx", "vy"]
observation = ["position"]
camera_topics = ["/camera/image_raw"]
"#;
    let config = ros2_runtime_config("camera", port, &policy, ros2);
    let log = std::env::temp_dir().join(format!("rtchunk-{}-ros2-camera.log", std::process::id()));
    let sim = spawn(&[
        "sim",
        "serve",
        "--task",
        "reach",
        "--episodes",
        "1",
        "--camera-width",
        "42",
        "--ros2",
        "float64-multi-array",
        "--stop-runtime-when-done",
        "--command-timeout-ms",
        "0",
        "--listen",
        &format!("tcp/127.0.0.1:{port}"),
        "--namespace",
        &format!("ros2-camera-{}", std::process::id()),
    ]);
    let runtime = spawn(&[
        "run",
        config.to_str().unwrap(),
        "--json",
        "--record",
        log.to_str().unwrap(),
    ]);
    let (_, run_out) = finish_robot(sim, Duration::from_secs(120), runtime);
    check_camera_run(&run_out, &log);
}
