//! `rtchunk latency`: the runtime against `rtchunk sim serve` over zenoh, as separate processes on loopback,
//! with extra inference latency injected (as in the RTC paper's real-robot study), for each execution method,
//! wire (rtchunk's protocol, or the simulator as a ROS 2 robot over rmw_zenoh) and clock (the real clock at the
//! controller rate, or the state clock: a tick per state the simulator sends). It reports end-to-end
//! latency (a state published to the first command computed from it arriving; rtchunk's protocol only, as a
//! ROS 2 command does not name its state), the runtime's side of it on both wires (a state published to the
//! first command computed from it being sent), the
//! inference delay d in ticks, the controller's wake lateness, seam discontinuity, starvation, task success and
//! time to completion, next to a bare zenoh publish/subscribe hop measured in the same command, and draws the
//! first episode's position trajectory, one line per method.

use crate::core::metrics::Quantiles;
use crate::core::policies::adopt_bundle_shape;
use crate::core::rt_setup::Step;
use crate::io::session::free_loopback_port;
use crate::studies::cpu_activity::CpuCounters;
use crate::studies::delay_benchmark::figure::{draw_legend, register_font, write_png};
use crate::studies::transport::bare_zenoh_hop;
use anyhow::Context;
use plotters::prelude::*;
use rtchunk_config::{
    ClockKind, Config, ControllerKind, Execution, IoConfig, JointField, PlantKind, PolicyKind,
    RealtimeConfig, Ros2Config, SamplerMode,
};
use rtchunk_sim::{Env, TaskKind};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An execution method of the latency study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyMethod {
    /// Pause while inferring.
    Sync,
    /// Switch to each new chunk as it arrives.
    Naive,
    /// Real-Time Chunking.
    Rtc,
}

impl LatencyMethod {
    /// Every method, in table order.
    pub const ALL: [LatencyMethod; 3] = [
        LatencyMethod::Sync,
        LatencyMethod::Naive,
        LatencyMethod::Rtc,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LatencyMethod::Sync => "sync",
            LatencyMethod::Naive => "naive",
            LatencyMethod::Rtc => "rtc",
        }
    }

    /// The `[sampler]` mode and `[scheduler]` execution that make it.
    fn settings(self) -> (SamplerMode, Execution) {
        match self {
            LatencyMethod::Sync => (SamplerMode::Plain, Execution::Sync),
            LatencyMethod::Naive => (SamplerMode::Plain, Execution::Async),
            LatencyMethod::Rtc => (SamplerMode::Rtc, Execution::Async),
        }
    }
}

impl std::str::FromStr for LatencyMethod {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        by_name(&LatencyMethod::ALL, LatencyMethod::name, "method", text)
    }
}

/// How the runtime and the simulated robot talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyWire {
    /// rtchunk's own protocol (`plant.kind = "zenoh"`).
    Rtchunk,
    /// ROS 2 over rmw_zenoh (`plant.kind = "ros2"`; the simulator as a ROS 2 robot, `sim serve --ros2`).
    Ros2,
}

impl LatencyWire {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LatencyWire::Rtchunk => "rtchunk",
            LatencyWire::Ros2 => "ros2",
        }
    }
}

impl std::str::FromStr for LatencyWire {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        by_name(
            &[LatencyWire::Rtchunk, LatencyWire::Ros2],
            LatencyWire::name,
            "wire",
            text,
        )
    }
}

/// What paces the runtime's controller in a run of the study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyClock {
    /// The real clock at the controller rate: a state waits for the next tick.
    Real,
    /// The state clock: each state the simulator sends starts a tick (at the robot's rate).
    State,
}

impl LatencyClock {
    /// Every clock, in table order.
    pub const ALL: [LatencyClock; 2] = [LatencyClock::Real, LatencyClock::State];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LatencyClock::Real => "real",
            LatencyClock::State => "state",
        }
    }
}

impl std::str::FromStr for LatencyClock {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        by_name(&LatencyClock::ALL, LatencyClock::name, "clock", text)
    }
}

/// The one of `all` named `text`, or an error naming `what` it is and the choices.
fn by_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
    text: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|v| name(*v) == text)
        .ok_or_else(|| {
            let choices: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            format!(
                "unknown {what} {text:?}; expected one of {}",
                choices.join(", ")
            )
        })
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LatencySettings {
    /// The task the simulator node serves.
    pub task: TaskKind,
    /// The policy bundle.
    pub policy: PathBuf,
    /// Extra inference latency per run, in milliseconds.
    pub extra_ms: Vec<f64>,
    /// Methods to compare.
    pub methods: Vec<LatencyMethod>,
    /// Wires to compare.
    pub wires: Vec<LatencyWire>,
    /// Clocks to compare.
    pub clocks: Vec<LatencyClock>,
    /// Episodes per run.
    pub episodes: u64,
    /// The real clock's controller rate (default: the task's 30 Hz); a faster controller reads state sooner. The
    /// state clock ticks at the simulator's rate.
    pub controller_rate_hz: Option<f64>,
    /// Where the table, JSON and figure go.
    pub out: PathBuf,
}

/// One method at one extra latency.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyRow {
    /// The method.
    pub method: LatencyMethod,
    /// The wire.
    pub wire: LatencyWire,
    /// What paced the controller.
    pub clock: LatencyClock,
    /// Injected extra inference latency, in milliseconds.
    pub extra_ms: f64,
    /// The same in policy ticks (rounded up), as the runtime injects it.
    pub injected_ticks: usize,
    /// Episodes solved / run.
    pub success_rate: f64,
    /// Mean duration of the solved episodes, in seconds (none solved: absent).
    pub mean_solved_seconds: Option<f64>,
    /// State published to the first command computed from it arriving at the robot, in milliseconds (measured
    /// by the simulator; absent on the ROS 2 wire, whose commands do not name their state).
    pub state_to_action_ms: Option<Quantiles>,
    /// A state's arrival in the runtime (its stamp plus the fastest transit seen) to the first command computed
    /// from it leaving the runtime, in milliseconds: rtchunk's own time plus the state's queueing in the hop
    /// (measured by the runtime's link; both wires).
    pub state_to_command_sent_ms: Quantiles,
    /// The robot's stamp on a state to the first command computed from it leaving the runtime, in milliseconds:
    /// the whole hop plus rtchunk's time (wall clocks; exact here, where both processes share one; both wires).
    pub stamp_to_command_sent_ms: Quantiles,
    /// A state's stamp to its decoding in the runtime, in milliseconds: the wire's own time, free of the
    /// controller's phase (both wires).
    pub state_transit_ms: Quantiles,
    /// A bare zenoh hop between two other sessions on loopback, measured at 30 Hz while this row ran (150
    /// messages per episode): the hop under the same load as the runtime's, in milliseconds.
    pub bare_zenoh_one_way_beside_ms: Quantiles,
    /// Time the hypervisor gave to other guests instead of this machine's CPUs while the row ran (all CPUs
    /// together, from `/proc/stat`), in milliseconds: on a VM, the source of millisecond tails no thread setting
    /// can remove.
    pub steal_ms: f64,
    /// The observed inference delay d, in policy ticks.
    pub delay_ticks: Quantiles,
    /// Controller wake lateness, in microseconds.
    pub wake_lateness_us: Quantiles,
    /// |a_t - a_(t-1)| at chunk seams.
    pub seam_jump: Quantiles,
    /// Policy ticks the chunk ran out (or sync paused).
    pub starved_or_paused_ticks: u64,
    /// Ticks held on stale state.
    pub held_ticks: u64,
    /// The first episode's position (observation 0), one value per control step.
    pub trajectory: Vec<f32>,
    /// Whether the threads a state and its command pass through ran under SCHED_FIFO, in the runtime (its link's
    /// command path) and in the simulated robot (its zenoh link threads).
    pub command_path_threads: String,
}

/// The whole study.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyReport {
    /// The task.
    pub task: String,
    /// A bare zenoh publish/subscribe hop (one way, from `put` to the subscriber's callback) on loopback at the
    /// task's rate.
    pub bare_zenoh_one_way_ms: Quantiles,
    /// Every run.
    pub rows: Vec<LatencyRow>,
}

/// The runtime's configuration for one run: the policy at 30 Hz on the wall clock with `ticks` of injected
/// inference delay, a passthrough controller and the zenoh link listening on `port`; its shape is the bundle's.
fn runtime_config(
    settings: &LatencySettings,
    (method, wire, clock): (LatencyMethod, LatencyWire, LatencyClock),
    ticks: usize,
    port: u16,
    namespace: &str,
) -> anyhow::Result<Config> {
    let mut config = Config::default();
    (config.sampler.mode, config.scheduler.execution) = method.settings();
    config.policy.kind = PolicyKind::Bundle;
    config.policy.bundle = Some(settings.policy.clone());
    config.policy.intra_threads = 1;
    config.clock.policy_rate_hz = 30.0;
    (config.clock.kind, config.clock.controller_rate_hz) = match clock {
        LatencyClock::Real => (ClockKind::Real, settings.controller_rate_hz),
        // The simulator's 30 Hz states: every state a policy tick.
        LatencyClock::State => (ClockKind::State, None),
    };
    config.clock.inference_delay_ticks = ticks;
    config.controller.kind = ControllerKind::Passthrough;
    config.plant.kind = match wire {
        LatencyWire::Rtchunk => PlantKind::Zenoh,
        LatencyWire::Ros2 => PlantKind::Ros2,
    };
    // As a ROS 2 robot the simulator names one joint per observation entry (its position) and takes one
    // command value per action entry.
    let spec = Env::new(settings.task).spec();
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
    config.ros2 = Ros2Config {
        joints: names(spec.action),
        observation_joints: Some(names(spec.observation)),
        observation: vec![JointField::Position],
        ..Ros2Config::default()
    };
    config.io = IoConfig {
        listen: vec![format!("tcp/127.0.0.1:{port}")],
        namespace: namespace.to_string(),
        stale_after_ms: 500.0,
        ..IoConfig::default()
    };
    adopt_bundle_shape(&mut config)?;
    Ok(config)
}

fn quantiles(value: &serde_json::Value) -> Quantiles {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

/// Runs one method at one extra latency: the runtime and the simulator node as child processes.
fn run_one(
    settings: &LatencySettings,
    (method, wire, clock): (LatencyMethod, LatencyWire, LatencyClock),
    extra_ms: f64,
    index: usize,
) -> anyhow::Result<LatencyRow> {
    let exe = std::env::current_exe().context("finding the rtchunk binary")?;
    let ticks = (extra_ms / (1e3 / 30.0)).ceil() as usize;
    let port = free_loopback_port()?;
    let namespace = format!("latency{}x{index}", std::process::id());
    let runs = settings.out.join("runs");
    std::fs::create_dir_all(&runs)?;
    let name = format!(
        "{}-{}-{}-{extra_ms}ms",
        method.name(),
        wire.name(),
        clock.name()
    );
    let config = runs.join(format!("run-{name}.toml"));
    let checked = runtime_config(settings, (method, wire, clock), ticks, port, &namespace)?;
    checked.validate().with_context(|| {
        format!(
            "{} at +{extra_ms} ms ({ticks} ticks at 30 Hz): more delay than the policy's horizon of {} can absorb",
            method.name(),
            checked.policy.horizon
        )
    })?;
    std::fs::write(&config, checked.to_toml_string())?;
    let report_path = runs.join(format!("sim-{name}.json"));
    let ros2 = match wire {
        LatencyWire::Rtchunk => vec![],
        LatencyWire::Ros2 => vec!["--ros2", "float64-multi-array"],
    };
    let runtime = Command::new(&exe)
        .args(["run", "--json"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} run", exe.display()))?;
    // The bare hop again, while this row runs: the hop under the same load on the machine as the runtime's.
    let hop_samples = settings.episodes as usize * HOP_SAMPLES_PER_EPISODE;
    let steal_before = CpuCounters::read();
    let priority = checked.realtime.io_priority();
    let hop_beside =
        std::thread::spawn(move || bare_zenoh_hop(hop_samples, 30.0, 64, false, priority));
    let sim = Command::new(&exe)
        .args([
            "sim",
            "serve",
            "--stop-runtime-when-done",
            "--task",
            &settings.task.to_string(),
        ])
        .args(["--episodes", &settings.episodes.to_string(), "--connect"])
        .arg(format!("tcp/127.0.0.1:{port}"))
        .args(["--namespace", &namespace, "--report"])
        .arg(&report_path)
        .args(["--io-fifo-priority", &priority.to_string()])
        .args(&ros2)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {} sim serve", exe.display()))?;
    let run = runtime.wait_with_output()?;
    let hop_beside = hop_beside
        .join()
        .map_err(|_| anyhow::anyhow!("the bare hop beside the run panicked"))??;
    let steal_ms = steal_before.steal_ms_until(&CpuCounters::read());
    anyhow::ensure!(
        run.status.success(),
        "rtchunk run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    anyhow::ensure!(
        sim.status.success(),
        "rtchunk sim serve: {}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let run: serde_json::Value =
        serde_json::from_slice(&run.stdout).context("the runtime's JSON")?;
    let sim: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
    let episodes = sim["episodes"].as_array().cloned().unwrap_or_default();
    let solved: Vec<f64> = episodes
        .iter()
        .filter(|e| e["success"] == true)
        .filter_map(|e| e["seconds"].as_f64())
        .collect();
    let metrics = &run["metrics"];
    let count = |key: &str| metrics[key].as_u64().unwrap_or(0);
    Ok(LatencyRow {
        method,
        wire,
        clock,
        extra_ms,
        injected_ticks: ticks,
        success_rate: solved.len() as f64 / episodes.len().max(1) as f64,
        mean_solved_seconds: (!solved.is_empty())
            .then(|| solved.iter().sum::<f64>() / solved.len() as f64),
        state_to_action_ms: serde_json::from_value(sim["state_to_action_ms"].clone())?,
        command_path_threads: format!(
            "runtime: {}; robot: {}",
            serde_json::from_value::<Step>(run["link"]["command_path_threads"].clone())
                .context("the runtime's link.command_path_threads")?,
            sim["zenoh_threads"]
                .as_str()
                .context("the simulator's report: zenoh_threads")?
        ),
        state_to_command_sent_ms: quantiles(&run["link"]["state_to_command_ms"]),
        stamp_to_command_sent_ms: quantiles(&run["link"]["stamp_to_command_ms"]),
        state_transit_ms: quantiles(&run["link"]["state_transit_ms"]),
        bare_zenoh_one_way_beside_ms: hop_beside,
        steal_ms,
        delay_ticks: quantiles(&metrics["observed_delay_ticks"]),
        wake_lateness_us: quantiles(&metrics["wake_lateness_us"]),
        seam_jump: quantiles(&metrics["seam_jump"]),
        starved_or_paused_ticks: count("starved_ticks") + count("paused_ticks"),
        held_ticks: count("held_ticks"),
        trajectory: sim["trajectory"]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_f64())
                    .map(|v| v as f32)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Messages of the bare hop measured beside a row, per episode (5 s at 30 Hz: most of an episode of reach).
const HOP_SAMPLES_PER_EPISODE: usize = 150;

/// Samples of the bare hop: about as many as a row has states (three reach episodes at 30 Hz), so its p99 and
/// the rows' are read over the same count.
const BARE_HOP_SAMPLES: usize = 500;

/// Runs the study, writes `latency.json`, `latency.txt` and `latency.png` under `settings.out`, and returns
/// the table.
pub fn latency_study(settings: &LatencySettings) -> anyhow::Result<String> {
    std::fs::create_dir_all(&settings.out)
        .with_context(|| format!("creating {}", settings.out.display()))?;
    let policy = settings
        .policy
        .canonicalize()
        .with_context(|| format!("the policy bundle {}", settings.policy.display()))?;
    let settings = &LatencySettings {
        policy,
        ..settings.clone()
    };
    let bare = bare_zenoh_hop(
        BARE_HOP_SAMPLES,
        30.0,
        64,
        false,
        RealtimeConfig::default().io_priority(),
    )?;
    let mut rows = Vec::new();
    for &extra_ms in &settings.extra_ms {
        for &wire in &settings.wires {
            for &clock in &settings.clocks {
                for &method in &settings.methods {
                    eprintln!(
                        "{} over {} on the {} clock at +{extra_ms} ms ...",
                        method.name(),
                        wire.name(),
                        clock.name()
                    );
                    let run = (method, wire, clock);
                    rows.push(run_one(settings, run, extra_ms, rows.len())?);
                }
            }
        }
    }
    let report = LatencyReport {
        task: settings.task.to_string(),
        bare_zenoh_one_way_ms: bare,
        rows,
    };
    std::fs::write(
        settings.out.join("latency.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = latency_table(&report);
    std::fs::write(settings.out.join("latency.txt"), &table)?;
    trajectory_figure(&report, &settings.out.join("latency.png"))?;
    Ok(format!(
        "{table}wrote {}/latency.json, latency.txt, latency.png\n",
        settings.out.display()
    ))
}

/// The table of a study. "x bare" is the robot's view (state -> action) over the bare hop at p50; "x hop" and
/// "p99-hop" hold rtchunk's whole way (the state's stamp to its command handed to zenoh) against the same hop: its
/// p50 as a multiple, its p99 as the milliseconds above the hop's.
pub fn latency_table(report: &LatencyReport) -> String {
    let bare = &report.bare_zenoh_one_way_ms;
    let mut text = format!(
        "{}: bare zenoh hop p50 {:.3} ms, p99 {:.3} ms (same command, loopback, 30 Hz)\n\
         {:<7} {:<7} {:<5} {:>6} {:>3} {:>7} {:>7} {:>24} {:>9} {:>17} {:>17} {:>6} {:>8} {:>15} {:>15} {:>8} {:>10} {:>9} {:>8} {:>6} {:>9}\n",
        report.task,
        bare.p50,
        bare.p99,
        "method",
        "wire",
        "clock",
        "+ms",
        "d+",
        "solved",
        "time s",
        "state->action p50/p99/max",
        "x bare",
        "sent p50/p99",
        "stamp->sent",
        "x hop",
        "p99-hop",
        "transit p50/p99",
        "hop beside",
        "steal ms",
        "d p50/max",
        "late p99",
        "seam",
        "held",
        "starved",
    );
    for row in &report.rows {
        let e2e = match &row.state_to_action_ms {
            Some(e2e) => format!(
                "{:>10.2}/{:>6.2}/{:>6.2} {:>9.1}",
                e2e.p50,
                e2e.p99,
                e2e.max,
                e2e.p50 / bare.p50.max(1e-9)
            ),
            None => format!("{:>24} {:>9}", "-", "-"),
        };
        let sent = &row.state_to_command_sent_ms;
        let from_stamp = &row.stamp_to_command_sent_ms;
        text += &format!(
            "{:<7} {:<7} {:<5} {:>6.0} {:>3} {:>7.3} {:>7} {e2e} {:>10.2}/{:>6.2} {:>10.2}/{:>6.2} {:>6.2} {:>8.2} {:>8.3}/{:>6.3} {:>8.3}/{:>6.3} {:>8.0} {:>6.0}/{:<3.0} {:>7.0}us {:>8.3} {:>6} {:>9}\n",
            row.method.name(),
            row.wire.name(),
            row.clock.name(),
            row.extra_ms,
            row.injected_ticks,
            row.success_rate,
            row.mean_solved_seconds
                .map_or("-".to_string(), |s| format!("{s:.2}")),
            sent.p50,
            sent.p99,
            from_stamp.p50,
            from_stamp.p99,
            from_stamp.p50 / bare.p50.max(1e-9),
            from_stamp.p99 - bare.p99,
            row.state_transit_ms.p50,
            row.state_transit_ms.p99,
            row.bare_zenoh_one_way_beside_ms.p50,
            row.bare_zenoh_one_way_beside_ms.p99,
            row.steal_ms,
            row.delay_ticks.p50,
            row.delay_ticks.max,
            row.wake_lateness_us.p99,
            row.seam_jump.mean,
            row.held_ticks,
            row.starved_or_paused_ticks,
        );
    }
    text
}

/// One panel per extra latency: the first episode's position against time, one line per method.
fn trajectory_figure(report: &LatencyReport, path: &Path) -> anyhow::Result<()> {
    register_font();
    let mut latencies: Vec<f64> = Vec::new();
    for row in &report.rows {
        if !latencies.contains(&row.extra_ms) {
            latencies.push(row.extra_ms);
        }
    }
    let colours = [
        RGBColor(120, 120, 120),
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
    ];
    let (width, height) = (460 * latencies.len().max(1) as u32, 340);
    let mut pixels = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let values = report
            .rows
            .iter()
            .flat_map(|r| r.trajectory.iter().copied());
        let (low, high) = values.fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let longest = report
            .rows
            .iter()
            .map(|r| r.trajectory.len())
            .max()
            .unwrap_or(1) as f64
            / 30.0;
        for (area, extra) in root
            .split_evenly((1, latencies.len().max(1)))
            .iter()
            .zip(&latencies)
        {
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{} +{extra:.0} ms", report.task),
                    ("sans-serif", 18),
                )
                .margin(8)
                .x_label_area_size(34)
                .y_label_area_size(44)
                .build_cartesian_2d(0.0..longest, f64::from(low) - 0.05..f64::from(high) + 0.05)?;
            chart
                .configure_mesh()
                .x_desc("time (s)")
                .y_desc("position (observation 0)")
                .label_style(("sans-serif", 12))
                .draw()?;
            for row in report.rows.iter().filter(|r| r.extra_ms == *extra) {
                let colour = colours[LatencyMethod::ALL
                    .iter()
                    .position(|m| *m == row.method)
                    .unwrap_or(0)];
                let points = row
                    .trajectory
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as f64 / 30.0, f64::from(*v)));
                // Runs over the ROS 2 wire or on the state clock are drawn thinner, in their method's colour.
                let mut label = row.method.name().to_string();
                if row.wire == LatencyWire::Ros2 {
                    label += " (ros2)";
                }
                if row.clock == LatencyClock::State {
                    label += " (state clock)";
                }
                let plain = row.wire == LatencyWire::Rtchunk && row.clock == LatencyClock::Real;
                let width = if plain { 2 } else { 1 };
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(width)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(width))
                    });
            }
            draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        }
        root.present()?;
    }
    write_png(path, width, height, &pixels)
}
