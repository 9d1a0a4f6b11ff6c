//! `rtchunk sim`: the benchmark tasks as expert demonstrations, pictures, calibration and a zenoh node.

use crate::cli::ZenohArgs;
use anyhow::Context;
use rtchunk_config::{CommandType, IoConfig};
use rtchunk_runtime::core::shutdown::StopFlag;
use rtchunk_runtime::io::sim_node::{SimNodeSettings, serve};
use rtchunk_runtime::studies::progress::Progress;
use rtchunk_sim::{Env, TaskKind, collect, play_expert_episode, stale_success_rate};
use std::path::{Path, PathBuf};

/// The file formats `rtchunk sim collect` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetFormat {
    /// One `.npz` file (rtchunk's training format).
    Npz,
    /// A LeRobotDataset v3.0 directory (parquet, `meta/`), one LeRobot episode per solved episode.
    Lerobot,
}

/// Runs the expert of `kind` for `episodes` episodes from `seed` (each acting on states up to `max_stale_steps`
/// old, see [`collect`]; with `camera_width`, also the task's camera images) and writes its solved episodes to
/// `out` in `format`.
pub fn collect_demonstrations(
    kind: TaskKind,
    episodes: u64,
    seed: u64,
    max_stale_steps: usize,
    camera_width: Option<usize>,
    (out, format): (&Path, DatasetFormat),
) -> anyhow::Result<String> {
    let mut progress = Progress::new(format!("collecting {kind}"), episodes);
    let (dataset, report) = collect(
        kind,
        episodes,
        seed,
        max_stale_steps,
        camera_width,
        |done| progress.update(done),
    );
    progress.finish();
    if dataset.is_empty() {
        anyhow::bail!("the {kind} expert solved none of {episodes} episodes; nothing to write");
    }
    match format {
        DatasetFormat::Npz => dataset.write_npz(out)?,
        DatasetFormat::Lerobot => {
            let spec = Env::new(kind).spec();
            let fps = (1.0 / rtchunk_sim::CONTROL_PERIOD).round() as u32;
            dataset.write_lerobot(out, fps, spec.summary, [spec.observation, spec.action])?
        }
    }
    Ok(format!(
        "{}: {} of {} expert episodes solved and kept ({} control steps); episodes per mode {:?}",
        out.display(),
        report.successes,
        report.episodes,
        report.rows,
        report.modes
    ))
}

/// Serves `settings.task` over the zenoh session `io` describes until its episodes are done (or Ctrl-C), and
/// returns a summary; the full report also goes to `report` as JSON when given.
pub fn serve_task(
    io: &IoConfig,
    settings: &SimNodeSettings,
    report: Option<&Path>,
) -> anyhow::Result<String> {
    let stop = StopFlag::install(None);
    let result = serve(io, settings, stop.flag())?;
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let solved = result.episodes.iter().filter(|e| e.success).count();
    let latency = match &result.state_to_action_ms {
        Some(latency) => format!(
            "state to first command p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latency.p50, latency.p99, latency.max
        ),
        None => "state to first command not measured here (ROS 2 commands do not name their state)"
            .into(),
    };
    Ok(format!(
        "{}: {solved} of {} episodes solved; {latency}; {} states published ({} lost), {} commands received \
         ({} lost, {} held, {} rejected); {} brakes; zenoh threads {}\n",
        result.task,
        result.episodes.len(),
        result.states_published,
        result.states_lost,
        result.actions_received,
        result.actions_lost,
        result.actions_held,
        result.actions_rejected,
        result.brakes.len(),
        result.zenoh_threads
    ))
}

/// Runs the expert on episode `seed` and writes a picture of its end (with the path it took) to `out`.
pub fn render_expert_rollout(kind: TaskKind, seed: u64, out: &Path) -> anyhow::Result<String> {
    let mut env = Env::new(kind);
    let mut expert = env.expert();
    let status = play_expert_episode(&mut env, expert.as_mut(), seed, 0, |_, _, _| {});
    env.camera(640)
        .write_png(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(format!(
        "{}: {kind} episode {seed}, expert mode {}, {:?} after {} steps",
        out.display(),
        expert.mode(),
        status,
        env.steps()
    ))
}

/// A table of each task's expert success rate when it acts on states `stale` steps old.
pub fn calibration_table(kinds: &[TaskKind], stale: &[usize], episodes: u64) -> String {
    let mut table = format!("{:<10}", "task");
    for k in stale {
        table.push_str(&format!(" {:>8}", format!("k = {k}")));
    }
    table.push('\n');
    for &kind in kinds {
        table.push_str(&format!("{:<10}", kind.name()));
        for &k in stale {
            table.push_str(&format!(
                " {:>8.3}",
                stale_success_rate(kind, k, episodes, 0)
            ));
        }
        table.push('\n');
    }
    table.push_str(&format!(
        "expert success over {episodes} episodes acting on k-step-old states; the delay benchmark needs >= 0.8 at k = 7\n"
    ));
    table
}

#[derive(clap::Subcommand)]
pub enum SimCommand {
    /// Run a task's scripted expert and write its solved episodes as a training dataset (.npz, or a
    /// LeRobotDataset v3.0 directory with --format lerobot).
    Collect {
        /// reach, cartpole, lander or catch.
        #[arg(long)]
        task: TaskKind,
        /// Episodes to run.
        #[arg(long, default_value_t = 1000)]
        episodes: u64,
        /// Seed of the first episode.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Each episode's expert acts on states this many steps old at most (drawn per episode from 0..=N):
        /// demonstrations whose action sequences were planned from older states, like a committed prefix.
        #[arg(long, default_value_t = 0)]
        max_stale_steps: usize,
        /// Also store what the task's camera saw at each step (`camera0`, RGB), this many pixels wide (the height
        /// follows the task's view): the images `rtchunk sim serve --camera-width` sends.
        #[arg(long)]
        camera_width: Option<usize>,
        /// The dataset file (npz) or directory (lerobot, new or empty) to write.
        #[arg(long)]
        out: PathBuf,
        /// npz (one file) or lerobot (a LeRobotDataset v3.0 directory: parquet frames, the camera as PNG images).
        #[arg(long, value_enum, default_value = "npz")]
        format: DatasetFormat,
    },
    /// Run a task as its own process on its own clock, over zenoh: publish state, apply the commands that
    /// arrive (with injected delay, jitter and loss), and report episodes and state-to-command latency.
    Serve {
        /// reach, cartpole, lander or catch.
        #[arg(long)]
        task: TaskKind,
        /// Episodes to run.
        #[arg(long, default_value_t = 1)]
        episodes: u64,
        /// Seed of the first episode.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Control rate in Hz.
        #[arg(long, default_value_t = 30.0)]
        rate_hz: f64,
        /// Injected one-way delay of arriving commands, in milliseconds.
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        /// Extra delay drawn uniformly from 0..jitter, in milliseconds.
        #[arg(long, default_value_t = 0.0)]
        jitter_ms: f64,
        /// Probability of dropping each published state and each arriving command.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Listen (default none) and connect (default tcp/127.0.0.1:7450, where `rtchunk run` listens; with
        /// --ros2 tcp/127.0.0.1:7447, where ROS 2's router rmw_zenohd listens) endpoints, and the topic
        /// namespace.
        #[command(flatten)]
        zenoh: Box<ZenohArgs>,
        /// After the last episode, send the runtime a stop, repeated until its status says it stopped (at most 3 s).
        #[arg(long)]
        stop_runtime_when_done: bool,
        /// Brake (stop applying commands and stepping, end the episode as "braked") when no command has
        /// arrived for this many milliseconds during an episode; 0: never.
        #[arg(long, default_value_t = 250.0)]
        command_timeout_ms: f64,
        /// Also render the task into an RGB camera image this many pixels wide (the height follows the
        /// task's view) and send it with every state.
        #[arg(long)]
        camera_width: Option<usize>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Be a ROS 2 robot over rmw_zenoh instead: joint states on /joint_states (one joint per observation
        /// entry), commands on /forward_command_controller/commands of this type (float64-multi-array or
        /// joint-trajectory), the camera on /camera/image_raw; domain 0. It connects to rmw_zenohd's
        /// tcp/127.0.0.1:7447 unless given endpoints (`--listen tcp/127.0.0.1:7447` stands in for the router).
        #[arg(long, value_parser = parse_command_type)]
        ros2: Option<CommandType>,
        /// Run the node's zenoh threads (the sockets' reactor, receiving and transmitting) under SCHED_FIFO at
        /// this priority, as a robot's real-time driver runs its I/O, so a busy process on the same machine (the
        /// runtime's inference) does not hold a state or a command; 0: the normal scheduler. Needs the right
        /// to SCHED_FIFO; the report says whether it took effect.
        #[arg(long, default_value_t = 0)]
        io_fifo_priority: u8,
    },
    /// Run a task's expert on one episode and draw where it went (PNG).
    Render {
        /// reach, cartpole, lander or catch.
        #[arg(long)]
        task: TaskKind,
        /// The episode.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The PNG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Each expert's success rate acting on stale states (the check that a task can separate the methods).
    Calibrate {
        /// Only this task.
        #[arg(long)]
        task: Option<TaskKind>,
        /// Episodes per rate.
        #[arg(long, default_value_t = 500)]
        episodes: u64,
    },
}

/// Runs `rtchunk sim`.
pub fn run(command: SimCommand) -> anyhow::Result<()> {
    match command {
        SimCommand::Collect {
            task,
            episodes,
            seed,
            max_stale_steps,
            camera_width,
            out,
            format,
        } => println!(
            "{}",
            collect_demonstrations(
                task,
                episodes,
                seed,
                max_stale_steps,
                camera_width,
                (&out, format)
            )?
        ),
        SimCommand::Serve {
            task,
            episodes,
            seed,
            rate_hz,
            delay_ms,
            jitter_ms,
            loss,
            zenoh,
            stop_runtime_when_done,
            command_timeout_ms,
            camera_width,
            report,
            ros2,
            io_fifo_priority,
        } => {
            let router = if ros2.is_some() {
                ROS2_ROUTER
            } else {
                RUNTIME_ENDPOINT
            };
            let io = zenoh.io(&[], &[router]);
            let settings = SimNodeSettings {
                episodes,
                first_seed: seed,
                rate_hz,
                delay_ms,
                jitter_ms,
                loss,
                stop_runtime_when_done,
                command_timeout_ms,
                camera_width,
                ros2,
                io_fifo_priority,
                ..SimNodeSettings::new(task)
            };
            let result = serve_task(&io, &settings, report.as_deref())?;
            print!("{result}");
        }
        SimCommand::Render { task, seed, out } => {
            println!("{}", render_expert_rollout(task, seed, &out)?)
        }
        SimCommand::Calibrate { task, episodes } => {
            let kinds = task.map_or(TaskKind::ALL.to_vec(), |kind| vec![kind]);
            print!("{}", calibration_table(&kinds, &[0, 3, 5, 7, 9], episodes));
        }
    }
    Ok(())
}

/// Where `rtchunk run` listens by default.
const RUNTIME_ENDPOINT: &str = "tcp/127.0.0.1:7450";
/// Where ROS 2's zenoh router (`rmw_zenohd`) listens by default.
const ROS2_ROUTER: &str = "tcp/127.0.0.1:7447";

/// `float64-multi-array` or `joint-trajectory`.
fn parse_command_type(text: &str) -> Result<CommandType, String> {
    match text {
        "float64-multi-array" => Ok(CommandType::Float64MultiArray),
        "joint-trajectory" => Ok(CommandType::JointTrajectory),
        other => Err(format!(
            "unknown command type {other:?}; expected float64-multi-array or joint-trajectory"
        )),
    }
}
