//! The soak: the runtime at 500 Hz on the real clock, driving `rtchunk sim serve` (a separate process) over
//! zenoh with RTC inference of the committed reach policy through ONNX Runtime, recording its session log, for
//! `RTCHUNK_SOAK_SECONDS` (default 120; the long run is 3 600). It checks what a long run must keep:
//! - resident memory flat: growth after the first minute (a third of a shorter run) under 1 MB;
//! - every tick and inference recorded: the log holds every controller tick, in order, and is complete;
//! - the controller thread never allocated (a counting allocator) nor made a forbidden system call (a seal);
//!
//! and reports, per window of `RTCHUNK_SOAK_WINDOW_SECONDS` (default 600, at most a quarter of the run), the wake
//! lateness, missed periods, held and starved ticks, inferences and resident memory, on standard output and, with
//! `RTCHUNK_SOAK_REPORT`, as JSON in that file.

use rtchunk_config::Config;
use rtchunk_runtime::core::metrics::{Distribution, Quantiles};
use rtchunk_runtime::core::policies::{adopt_bundle_shape, load_policy};
use rtchunk_runtime::core::record::{TickKind, TickRecord};
use rtchunk_runtime::io::link::RobotLink;
use rtchunk_runtime::io::session::free_loopback_port;
use rtchunk_runtime::recording::format::read_log;
use rtchunk_runtime::recording::writer::LogWriter;
use rtchunk_runtime::{LoopHooks, RunOptions, run};
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../../tests/counting_allocator.rs"]
mod counting_allocator;
#[path = "../../tests/sealed.rs"]
mod sealed;

#[global_allocator]
static ALLOCATOR: counting_allocator::CountingAllocator = counting_allocator::CountingAllocator;

/// The controller's rate.
const CONTROLLER_HZ: u64 = 500;
/// The policy's and the simulator's rate.
const POLICY_HZ: u64 = 50;
/// Resident memory may grow by less than this after the warm-up.
const RSS_GROWTH_LIMIT: u64 = 1 << 20;

fn seconds_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name} = {text:?}: expected whole seconds"))
    })
}

/// What the controller thread did that it may not: allocations, and what the seal caught.
#[derive(Default)]
struct Discipline {
    allocations: AtomicU64,
    breaches: Mutex<Option<sealed::Breaches>>,
}

/// Seals and watches the controller thread from its loop's first tick to its last.
struct Watch(Arc<Discipline>);

impl LoopHooks for Watch {
    fn loop_started(&mut self) {
        sealed::seal_this_thread();
        counting_allocator::watch();
    }
    fn loop_finished(&mut self) {
        self.0
            .allocations
            .store(counting_allocator::stop(), Ordering::SeqCst);
        *self.0.breaches.lock().unwrap() = Some(sealed::loop_ended());
    }
}

/// This process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: sysconf only reads a system constant.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Samples resident memory once a second into a buffer reserved up front (so sampling adds nothing).
fn watch_memory(seconds: u64, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<(f64, u64)>> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut samples = Vec::with_capacity(seconds as usize + 600);
        while !done.load(Ordering::Relaxed) && samples.len() < samples.capacity() {
            samples.push((start.elapsed().as_secs_f64(), resident_bytes()));
            std::thread::sleep(Duration::from_secs(1));
        }
        samples
    })
}

/// One window of the run.
#[derive(Debug, Serialize)]
struct Window {
    /// Start and end, seconds into the run.
    from_s: f64,
    to_s: f64,
    ticks: u64,
    wake_lateness_us: Quantiles,
    missed_periods: u64,
    held_ticks: u64,
    starved_ticks: u64,
    inferences: u64,
    inference_failures: u64,
    /// The largest resident memory sampled in the window, MiB.
    resident_mib: f64,
}

#[derive(Debug, Serialize)]
struct SoakReport {
    seconds: u64,
    controller_hz: u64,
    controller_ticks: u64,
    ticks_recorded: u64,
    inferences_recorded: u64,
    log_bytes: u64,
    controller_allocations: u64,
    /// Resident memory after the warm-up, the largest after it, and its growth, bytes.
    resident_after_warmup: u64,
    resident_max_after_warmup: u64,
    resident_growth: u64,
    warmup_s: u64,
    simulator_episodes: usize,
    state_to_action_ms: serde_json::Value,
    windows: Vec<Window>,
    /// Resident memory every 10 s: (seconds into the run, MiB).
    resident_timeline: Vec<(f64, f64)>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn soak_config(port: u16, namespace: &str) -> Config {
    let text = format!(
        r#"
[policy]
kind = "bundle"
bundle = "{bundle}"
intra_threads = 1

[sampler]
mode = "rtc"

[clock]
kind = "real"
policy_rate_hz = {POLICY_HZ}.0
controller_rate_hz = {CONTROLLER_HZ}.0

[controller]
kind = "passthrough"

[plant]
kind = "zenoh"

[io]
listen = ["tcp/127.0.0.1:{port}"]
namespace = "{namespace}"
stale_after_ms = 150.0
"#,
        bundle = repo().join("sim/policies/reach/base-s0").display()
    );
    let mut config = Config::from_toml_str(&text, "soak").expect("the soak configuration");
    adopt_bundle_shape(&mut config).expect("the reach bundle's manifest");
    config
        .validate()
        .expect("the soak configuration with its bundle");
    config
}

/// The windows of the recorded ticks, with each window's largest resident memory.
fn windows(
    ticks: &[TickRecord],
    inference_ticks: &[(u64, bool)],
    window_s: u64,
    memory: &[(f64, u64)],
) -> Vec<Window> {
    let per_window = (window_s * CONTROLLER_HZ) as usize;
    let decimation = CONTROLLER_HZ / POLICY_HZ;
    ticks
        .chunks(per_window)
        .enumerate()
        .map(|(i, chunk)| {
            let (from_s, to_s) = (
                (i as u64 * window_s) as f64,
                (i as u64 * window_s) as f64 + chunk.len() as f64 / CONTROLLER_HZ as f64,
            );
            let mut lateness = Distribution::microseconds();
            let (mut missed, mut held, mut starved) = (0, 0, 0);
            for tick in chunk {
                lateness.push(tick.lateness_ns as f64 / 1e3);
                missed += tick.missed as u64;
                match tick.policy.map(|p| p.kind) {
                    Some(TickKind::Held) => held += 1,
                    Some(TickKind::Starved) => starved += 1,
                    _ => {}
                }
            }
            let policy_ticks = (chunk[0].controller_tick / decimation)
                ..=(chunk[chunk.len() - 1].controller_tick / decimation);
            let (inferences, inference_failures) = inference_ticks
                .iter()
                .filter(|(tick, _)| policy_ticks.contains(tick))
                .fold((0, 0), |(n, failed), (_, ok)| (n + 1, failed + !ok as u64));
            let resident = memory
                .iter()
                .filter(|(t, _)| (from_s..=to_s).contains(t))
                .map(|&(_, bytes)| bytes)
                .max()
                .unwrap_or(0);
            Window {
                from_s,
                to_s,
                ticks: chunk.len() as u64,
                wake_lateness_us: lateness.quantiles(),
                missed_periods: missed,
                held_ticks: held,
                starved_ticks: starved,
                inferences,
                inference_failures,
                resident_mib: resident as f64 / (1 << 20) as f64,
            }
        })
        .collect()
}

fn print_windows(windows: &[Window]) {
    println!(
        "{:>13} {:>8} {:>28} {:>7} {:>6} {:>8} {:>11} {:>9}",
        "window (s)",
        "ticks",
        "lateness p50/p99/max (us)",
        "missed",
        "held",
        "starved",
        "inferences",
        "RSS MiB"
    );
    for w in windows {
        let q = &w.wake_lateness_us;
        println!(
            "{:>13} {:>8} {:>28} {:>7} {:>6} {:>8} {:>11} {:>9.2}",
            format!("{:.0}-{:.0}", w.from_s, w.to_s),
            w.ticks,
            format!("{:.1} / {:.1} / {:.0}", q.p50, q.p99, q.max),
            w.missed_periods,
            w.held_ticks,
            w.starved_ticks,
            format!("{} ({} failed)", w.inferences, w.inference_failures),
            w.resident_mib
        );
    }
}

#[test]
fn a_long_run_at_500_hz_keeps_its_memory_flat_its_records_whole_and_its_controller_clean() {
    let seconds = seconds_from_env("RTCHUNK_SOAK_SECONDS", 120);
    let window_s = seconds_from_env("RTCHUNK_SOAK_WINDOW_SECONDS", 600).min(seconds.div_ceil(4));
    let warmup_s = 60.min(seconds / 3);
    let port = free_loopback_port().unwrap();
    let namespace = format!("soak{}", std::process::id());
    let config = soak_config(port, &namespace);
    let scratch = std::env::temp_dir();
    let log = scratch.join(format!("rtchunk-{}-soak.log", std::process::id()));
    let sim_report = scratch.join(format!("rtchunk-{}-soak-sim.json", std::process::id()));

    let policy = load_policy(&config).unwrap();
    let observation_dim = policy.spec().observation_dim;
    let (link, plant) =
        RobotLink::open(&config.io, config.policy.action_dim, observation_dim, &[]).unwrap();
    let mut simulator = Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(["sim", "serve", "--task", "reach", "--episodes", "1000000"])
        .args([
            "--rate-hz",
            &POLICY_HZ.to_string(),
            "--namespace",
            &namespace,
        ])
        .args(["--connect", &format!("tcp/127.0.0.1:{port}")])
        .arg("--report")
        .arg(&sim_report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rtchunk sim serve starts");
    link.wait_for_first_state(Duration::from_secs(20))
        .expect("the simulator's first state");

    let discipline = Arc::new(Discipline {
        allocations: AtomicU64::new(u64::MAX),
        ..Discipline::default()
    });
    let controller_ticks = seconds * CONTROLLER_HZ;
    let mut options = RunOptions::new("soak", controller_ticks);
    options.hooks = Box::new(Watch(discipline.clone()));
    options.record = Some(Box::new(LogWriter::new(&log)));
    options.keep_records = false;
    let done = Arc::new(AtomicBool::new(false));
    let memory = watch_memory(seconds, done.clone());
    let outcome = run(&config, plant, policy, options).unwrap();
    done.store(true, Ordering::Relaxed);
    let memory = memory.join().unwrap();
    link.close();
    // SAFETY: sends SIGINT to the simulator child this test started; it stops and writes its report.
    unsafe { libc::kill(simulator.id() as i32, libc::SIGINT) };
    let status = simulator.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(simulator.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the simulator failed: {stderr}");
    let sim: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sim_report).unwrap()).unwrap();

    let recorded = read_log(&log).unwrap();
    let summary = outcome.log.clone().expect("the run recorded");
    let warm_rss = memory
        .iter()
        .find(|(t, _)| *t >= warmup_s as f64)
        .map_or(0, |&(_, bytes)| bytes);
    let max_rss = memory
        .iter()
        .filter(|(t, _)| *t >= warmup_s as f64)
        .map(|&(_, bytes)| bytes)
        .max()
        .unwrap_or(0);
    let inference_ticks: Vec<(u64, bool)> = recorded
        .inferences
        .iter()
        .map(|r| (r.tick, r.error.is_none()))
        .collect();
    let report = SoakReport {
        seconds,
        controller_hz: CONTROLLER_HZ,
        controller_ticks: outcome.metrics.controller_ticks,
        ticks_recorded: recorded.ticks.len() as u64,
        inferences_recorded: recorded.inferences.len() as u64,
        log_bytes: summary.bytes,
        controller_allocations: discipline.allocations.load(Ordering::SeqCst),
        resident_after_warmup: warm_rss,
        resident_max_after_warmup: max_rss,
        resident_growth: max_rss.saturating_sub(warm_rss),
        warmup_s,
        simulator_episodes: sim["episodes"].as_array().map_or(0, Vec::len),
        state_to_action_ms: sim["state_to_action_ms"].clone(),
        windows: windows(&recorded.ticks, &inference_ticks, window_s, &memory),
        resident_timeline: memory
            .iter()
            .step_by(10)
            .map(|&(t, bytes)| (t.round(), bytes as f64 / (1 << 20) as f64))
            .collect(),
    };
    print_windows(&report.windows);
    let json = serde_json::to_string_pretty(&report).unwrap();
    println!("{json}");
    if let Ok(path) = std::env::var("RTCHUNK_SOAK_REPORT") {
        std::fs::write(&path, &json).unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    assert_eq!(report.controller_ticks, controller_ticks);
    assert_eq!(
        (summary.failure, summary.lost_ticks, summary.lost_inferences),
        (None, 0, 0)
    );
    assert!(recorded.complete, "the log was closed with its end record");
    assert_eq!(
        report.ticks_recorded, controller_ticks,
        "every tick recorded"
    );
    assert!(
        recorded
            .ticks
            .iter()
            .enumerate()
            .all(|(i, tick)| tick.controller_tick == i as u64),
        "the ticks are recorded in order, none missing"
    );
    assert_eq!(
        report.inferences_recorded, outcome.metrics.inferences as u64,
        "every inference recorded"
    );
    assert!(
        outcome.metrics.swaps > seconds as usize,
        "chunks kept coming"
    );
    assert_eq!(outcome.metrics.inference_failures, 0);
    assert_eq!(report.controller_allocations, 0, "the controller allocated");
    assert_eq!(
        discipline.breaches.lock().unwrap().expect("the loop ran"),
        sealed::Breaches::default(),
        "the controller made a forbidden system call or logged"
    );
    assert!(report.simulator_episodes > 0, "{sim}");
    assert!(
        report.resident_growth < RSS_GROWTH_LIMIT,
        "resident memory grew by {} bytes after the first {warmup_s} s",
        report.resident_growth
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&sim_report);
}
