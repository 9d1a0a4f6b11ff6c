//! The `rtchunk` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use rtchunk_config::Config;
use rtchunk_config::{IoConfig, PlantKind, PolicyKind, SamplerConfig};
use rtchunk_policy::onnx::{Device, OnnxPolicy, OnnxRuntimeOptions, check_recorded};
use rtchunk_runtime::benchmark::SweepSettings;
use rtchunk_runtime::benchmark::command::{bench_delay, combine_reports};
use rtchunk_runtime::benchmark::methods::Method;
use rtchunk_runtime::io::sim_node::SimNodeSettings;
use rtchunk_runtime::io::transport;
use rtchunk_runtime::latency::{LatencyMethod, LatencySettings, latency_study};
use rtchunk_runtime::policies::{adopt_bundle_shape, load_policy};
use rtchunk_runtime::recording::format::read_log;
use rtchunk_runtime::recording::replay::{ReplayMode, ReplayReport, replay};
use rtchunk_runtime::recording::task_replay::SimRecording;
use rtchunk_runtime::shutdown::StopFlag;
use rtchunk_runtime::{RunOptions, bench, demo, run, sim_commands};
use rtchunk_sim::{PointMass, TaskKind};
use std::path::PathBuf;

/// Real-time execution of action-chunking flow policies.
#[derive(Parser)]
#[command(name = "rtchunk", version)]
struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Where a bundle's graphs run and how (the commands that load one bundle).
#[derive(clap::Args)]
struct DeviceArgs {
    /// Where to run the graphs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: Device,
    /// On a GPU, run the prefix and the steps without capturing them as CUDA graphs (for comparison).
    #[arg(long)]
    no_cuda_graphs: bool,
    /// On a GPU, run nodes without CUDA kernels on the CPU instead of refusing the bundle.
    #[arg(long)]
    allow_cpu_nodes: bool,
    /// Write ONNX Runtime's per-node timings of each graph to PATH-<graph>_<time>.json (summed up by
    /// `python -m rtchunk_train.ort_profile`). On a GPU, add --no-cuda-graphs (captured graphs are timed whole)
    /// and set CUDA_LAUNCH_BLOCKING=1 so that each node's time is its kernels' time.
    #[arg(long, value_name = "PATH")]
    ort_profile: Option<PathBuf>,
}

impl DeviceArgs {
    /// ONNX Runtime options with these settings and the defaults otherwise.
    fn options(&self) -> OnnxRuntimeOptions {
        OnnxRuntimeOptions {
            device: self.device,
            cuda_graphs: !self.no_cuda_graphs,
            allow_cpu_nodes: self.allow_cpu_nodes,
            profile: self.ort_profile.clone(),
            ..OnnxRuntimeOptions::default()
        }
    }
}

/// Where a zenoh node listens and connects, and its topic namespace.
#[derive(clap::Args)]
struct ZenohArgs {
    /// Zenoh endpoints to listen on (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// Zenoh endpoints to connect to (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// Topic namespace.
    #[arg(long, default_value = "rtchunk")]
    namespace: String,
}

impl ZenohArgs {
    /// The `[io]` settings, with `listen` and `connect` as the defaults of endpoints not given.
    fn io(self, listen: &[&str], connect: &[&str]) -> IoConfig {
        let or = |given: Vec<String>, default: &[&str]| {
            if given.is_empty() {
                default.iter().map(|e| e.to_string()).collect()
            } else {
                given
            }
        };
        IoConfig {
            listen: or(self.listen, listen),
            connect: or(self.connect, connect),
            namespace: self.namespace,
            ..IoConfig::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Drive the simulated point mass with the bimodal reference policy in real time, with RTC and with naive
    /// async at the same injected delay, and compare.
    Demo {
        /// Seconds per method.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Injected inference delay, in policy ticks (20 ms each).
        #[arg(long, default_value_t = 4)]
        delay: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write a figure of both runs (SVG) to this file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Run this policy bundle instead of the built-in two-mode policy.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Check a policy bundle (manifest, hashes, graphs), print its manifest, and replay the inputs it recorded
    /// at export against the outputs recorded with them (JAX's, or LeRobot's).
    Inspect {
        /// The bundle directory.
        bundle: PathBuf,
        #[command(flatten)]
        run_on: DeviceArgs,
        /// Print the replay's differences from the recorded outputs as JSON instead of the manifest and a summary.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Run a configuration: against the simulated point mass, or (plant.kind = "zenoh") on a robot or
    /// `rtchunk sim serve` over zenoh, until stopped (Ctrl-C, or stop / emergency stop on the control topic).
    Run {
        /// The TOML file.
        #[arg(long)]
        config: PathBuf,
        /// Seconds of controller time (default: 5 on the point mass, until stopped on a robot).
        #[arg(long)]
        seconds: Option<f64>,
        /// Record every tick and inference to this log (replay it with `rtchunk replay`).
        #[arg(long)]
        record: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve a policy to robots over zenoh (e.g. on a GPU host): each robot's runtime, configured with
    /// policy.kind = "remote", sends its observation and RTC inputs and gets the chunk. Runs until Ctrl-C.
    ServePolicy {
        /// The policy bundle.
        #[arg(long)]
        policy: PathBuf,
        /// Sampler settings ([sampler]) and, optionally, [io]; the bundle replaces [policy].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where to run the graphs: cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Listen (default tcp/127.0.0.1:7448) and connect endpoints, and the namespace robots set
        /// policy.server to.
        #[command(flatten)]
        zenoh: ZenohArgs,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// The runtime against `rtchunk sim serve` over zenoh (separate processes, loopback) with extra inference
    /// latency injected, per method: end-to-end latency against a bare zenoh hop, d, wake lateness, seams,
    /// starvation, success and time to completion, and a trajectory figure.
    Latency {
        /// reach, cartpole, lander or catch.
        #[arg(long, default_value = "reach")]
        task: TaskKind,
        /// The policy bundle (default: the task's committed one).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Extra inference latency per run, in milliseconds, separated by commas (the delay plus s must fit
        /// in the policy's horizon: 8 ticks of 33 ms for the committed policies).
        #[arg(long, default_value = "0,50,100", value_delimiter = ',')]
        extra_latency: Vec<f64>,
        /// Methods: sync, naive, rtc, separated by commas.
        #[arg(long, default_value = "sync,naive,rtc", value_delimiter = ',')]
        methods: Vec<LatencyMethod>,
        /// Episodes per run.
        #[arg(long, default_value_t = 3)]
        episodes: u64,
        /// The runtime's controller rate in Hz (default 30, the task's rate).
        #[arg(long)]
        controller_rate_hz: Option<f64>,
        /// Output folder.
        #[arg(long, default_value = "latency")]
        out: PathBuf,
    },
    /// Re-run a recorded session and report where and by how much it diverges: from the recorded chunks
    /// (exact output), or running the policy again on the recorded inputs (--re-infer).
    Replay {
        /// The log written by `rtchunk run --record`.
        log: PathBuf,
        /// Run the policy again instead of feeding the recorded chunks.
        #[arg(long)]
        re_infer: bool,
        /// The report (`rtchunk sim serve --report FILE`) of the simulator the session ran against: re-run its
        /// task with the replayed commands too.
        #[arg(long)]
        sim_report: Option<PathBuf>,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// The benchmark tasks: expert demonstrations, pictures, calibration.
    Sim {
        #[command(subcommand)]
        which: Sim,
    },
}

#[derive(Subcommand)]
enum Sim {
    /// Run a task's scripted expert and write its solved episodes as a training dataset (.npz).
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
        /// The dataset file to write.
        #[arg(long)]
        out: PathBuf,
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
        /// Listen (default none) and connect (default tcp/127.0.0.1:7447, where `rtchunk run` listens)
        /// endpoints, and the topic namespace.
        #[command(flatten)]
        zenoh: ZenohArgs,
        /// Send a stop command to the runtime after the last episode.
        #[arg(long)]
        stop_runtime_when_done: bool,
        /// Also render the task into an RGB camera image this many pixels wide (the height follows the
        /// task's view) and send it with every state.
        #[arg(long)]
        camera_width: Option<usize>,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
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

#[derive(Subcommand)]
enum Bench {
    /// A policy bundle's graphs and inferences on the CPU or a GPU (--device): prefix, plain and guided steps,
    /// whole inferences, and their ratios.
    Policy {
        /// The bundle directory.
        bundle: PathBuf,
        /// Repetitions per measurement.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Threads of ONNX Runtime's intra-op pool.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[command(flatten)]
        run_on: DeviceArgs,
        /// On a GPU, send the context with every step instead of keeping it in device memory (for comparison).
        #[arg(long)]
        host_context: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Success against inference delay for each chunk-execution method on the simulator's tasks (the RTC
    /// paper's Fig. 5 protocol), with the trained policies under sim/policies.
    Delay {
        /// A task (reach, cartpole, lander, catch), several separated by commas, or all.
        #[arg(long, default_value = "all")]
        task: String,
        /// Methods, separated by commas (sync, naive, rtc, rtc-hard, rtc-identity, prefix-overwrite, bid,
        /// ensemble, trained-prefix), or all.
        #[arg(long, default_value = "all")]
        methods: String,
        /// Inference delays d: a range (0..4, inclusive), a list (0,2,4), or none; s = max(d, 1).
        #[arg(long, default_value = "0..4", value_parser = rtchunk_runtime::benchmark::command::parse_delays)]
        delays: std::vec::Vec<usize>,
        /// Run the delay sweep at this execution horizon s instead of s = max(d, 1) (e.g. 4 = H / 2, the
        /// paper's real-robot synchronous baseline); d + s must stay within H = 8.
        #[arg(long)]
        execution_horizon: Option<usize>,
        /// Also sweep the execution horizon s = 1..7 at d = 1.
        #[arg(long)]
        horizon_sweep: bool,
        /// Rollouts per point.
        #[arg(long, default_value_t = 2048)]
        rollouts: usize,
        /// Training seeds of the policies to evaluate, separated by commas.
        #[arg(long, default_value = "0")]
        policy_seeds: String,
        /// Folder of the trained bundles (default: the repository's sim/policies).
        #[arg(long)]
        policies: Option<PathBuf>,
        /// Seed of the first rollout's episode (rollout i runs episode seed + i). The default is clear of the
        /// episodes the committed policies were trained on; a bundle whose recorded training episodes overlap
        /// the evaluation's is refused.
        #[arg(long, default_value_t = rtchunk_runtime::benchmark::DEFAULT_FIRST_EPISODE)]
        seed: u64,
        /// Threads of ONNX Runtime's intra-op pool.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Where to run the graphs: cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: Device,
        /// Most chunks per policy call.
        #[arg(long, default_value_t = 4096)]
        max_batch: usize,
        /// Folder for delay.csv, delay.json and the figures.
        #[arg(long, default_value = "delay-benchmark")]
        out: PathBuf,
    },
    /// Combine finished delay sweeps (their delay.csv files or folders) into one set of tables and figures.
    DelayReport {
        /// The sweeps' output folders or delay.csv files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Folder for the combined delay.csv, delay.json and figures.
        #[arg(long, default_value = "delay-benchmark")]
        out: PathBuf,
    },
    /// State messages with camera images over zenoh on loopback: a bare hop against the same bytes through
    /// rtchunk's link to the inference side's camera buffer, per image size.
    Transport {
        /// RGB image sizes, ROWSxCOLUMNS, comma-separated.
        #[arg(long, default_value = "22x42,224x224,480x640")]
        images: String,
        /// Messages per size.
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// Messages per second.
        #[arg(long, default_value_t = 30.0)]
        rate_hz: f64,
        /// Use zenoh's shared-memory transport (build with --features shm).
        #[arg(long)]
        shared_memory: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The controller loop under inference load, beside a naive thread::sleep loop: wake lateness and missed
    /// periods.
    Loop {
        /// Seconds per loop.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Controller rate, Hz.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Pin rtchunk's controller thread to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// "all" or a comma-separated list of names, each parsed with `FromStr`.
fn parse_list<T: std::str::FromStr<Err = String> + Copy>(
    text: &str,
    all: &[T],
) -> anyhow::Result<Vec<T>> {
    if text == "all" {
        return Ok(all.to_vec());
    }
    text.split(',')
        .map(|name| name.trim().parse().map_err(anyhow::Error::msg))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = ["info", "debug", "trace"][cli.verbose.min(2) as usize];
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!(
                    "rtchunk={level},rtchunk_runtime={level}"
                ))
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo {
            seconds,
            delay,
            json,
            plot,
            policy,
        } => {
            let mut config = demo::demo_config(delay);
            if let Some(bundle) = policy {
                config.policy.kind = PolicyKind::Bundle;
                config.policy.bundle = Some(bundle);
                adopt_bundle_shape(&mut config)?;
            }
            config.validate().context("the demo configuration")?;
            let runs = demo::run_demo(&config, seconds)?;
            if let Some(path) = plot {
                let period = 1.0 / config.clock.controller_rate();
                rtchunk_runtime::plot::demo_figure(&runs, &config.plant, period, &path)
                    .map_err(anyhow::Error::msg)?;
                eprintln!("wrote {}", path.display());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                print!("{}", demo::demo_summary(&runs, delay));
            }
        }
        Command::Inspect {
            bundle,
            run_on,
            json,
        } => {
            let options = run_on.options();
            let device = run_on.device;
            let mut policy = OnnxPolicy::load(&bundle, &options)?;
            if !json {
                println!("{}", serde_json::to_string_pretty(policy.manifest())?);
                println!(
                    "{}: ok (manifest, hashes and graphs check out)",
                    bundle.display()
                );
            }
            if let Some(check) = check_recorded(&mut policy, &bundle)? {
                if json {
                    println!("{}", serde_json::to_string(&check)?);
                } else {
                    let chunks: String = check
                        .chunks
                        .iter()
                        .map(|c| format!(", {} chunk within {:.2e}", c.mode, c.error))
                        .collect();
                    println!(
                        "recorded outputs replayed on {device}: velocity within {:.2e}, VJP within {:.2e}, guided \
                         step's VJP within {}, RTC inference within {}{chunks} of {} (tolerance {:.0e})",
                        check.velocity_error,
                        check.vjp_error,
                        check
                            .guided_error
                            .map_or("(no guided graph)".into(), |e| format!("{e:.2e}")),
                        check
                            .rtc_error
                            .map_or("(not recorded)".into(), |e| format!("{e:.2e}")),
                        check.source,
                        check.tolerance
                    );
                }
                anyhow::ensure!(
                    check.passes(),
                    "{}: outputs differ from {}'s beyond the tolerance",
                    bundle.display(),
                    check.source
                );
            }
        }
        Command::CheckConfig { file } => {
            let mut config = Config::load(&file)?;
            if adopt_bundle_shape(&mut config)?.is_some() {
                config
                    .validate()
                    .with_context(|| format!("{} with its bundle's shape", file.display()))?;
            }
            let sampler = &config.sampler;
            println!(
                "{}: ok (policy {:?}, H = {}, sampler {} with n = {}, beta = {}, schedule {:?}, execution {}, \
                 clock {:?})",
                file.display(),
                config.policy.kind,
                config.policy.horizon,
                sampler.mode.name(),
                sampler.steps,
                sampler.beta,
                sampler.schedule,
                config.scheduler.execution.name(),
                config.clock.kind
            );
        }
        Command::Latency {
            task,
            policy,
            extra_latency,
            methods,
            episodes,
            controller_rate_hz,
            out,
        } => {
            let settings = LatencySettings {
                task,
                policy: match policy {
                    Some(policy) => policy,
                    None => {
                        repository_default(&format!("sim/policies/{task}/base-s0"), "--policy")?
                    }
                },
                extra_ms: extra_latency,
                methods,
                episodes,
                controller_rate_hz,
                out,
            };
            print!("{}", latency_study(&settings)?);
        }
        Command::ServePolicy {
            policy,
            config,
            device,
            zenoh,
            seconds,
        } => {
            let mut config = match &config {
                Some(file) => Config::load(file)?,
                // No file: the sampler takes the bundle's suggested settings.
                None => Config {
                    sampler: SamplerConfig::left_out(),
                    ..Config::default()
                },
            };
            config.policy.kind = PolicyKind::Bundle;
            config.policy.bundle = Some(policy);
            config.policy.device = device;
            adopt_bundle_shape(&mut config)?;
            config.validate().context("the server's configuration")?;
            let io = IoConfig {
                shared_memory: config.io.shared_memory,
                ..zenoh.io(&["tcp/127.0.0.1:7448"], &[])
            };
            let stop = StopFlag::install(seconds);
            let report = rtchunk_runtime::io::remote::serve_policy(&config, &io, stop.flag())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Replay {
            log,
            re_infer,
            sim_report,
            json,
        } => {
            let session = read_log(&log)?;
            let mode = if re_infer {
                ReplayMode::ReInfer
            } else {
                ReplayMode::ExactOutput
            };
            let simulator = sim_report.as_deref().map(SimRecording::read).transpose()?;
            let report = replay(&session, mode, simulator.as_ref())
                .with_context(|| format!("replaying {}", log.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", replay_summary(&log, &report));
            }
        }
        Command::Run {
            config,
            seconds,
            record,
            json,
        } => {
            let file = config.display().to_string();
            let mut config = Config::load(&config)?;
            if adopt_bundle_shape(&mut config)?.is_some() {
                config
                    .validate()
                    .with_context(|| format!("{file} with its bundle's shape"))?;
            }
            if config.plant.kind == PlantKind::Zenoh {
                let (outcome, link) =
                    rtchunk_runtime::deploy::run_on_robot(&config, seconds, record)
                        .with_context(|| format!("running {file}"))?;
                if json {
                    let both = serde_json::json!({"metrics": outcome.metrics, "link": link});
                    println!("{}", serde_json::to_string_pretty(&both)?);
                } else {
                    print!("{}", rtchunk_runtime::metrics::table(&[&outcome.metrics]));
                    println!("link: {}", serde_json::to_string(&link)?);
                    println!("real-time setup: {}", outcome.realtime);
                }
                if let Some(log) = outcome.log {
                    note_log(&log);
                }
                return Ok(());
            }
            let seconds = seconds.unwrap_or(5.0);
            let rate = config.clock.controller_rate();
            let plant = PointMass::new(config.plant.clone(), 1.0 / rate);
            let label = format!(
                "{} / {}",
                config.sampler.mode.name(),
                config.scheduler.execution.name()
            );
            let options = RunOptions {
                record,
                ..RunOptions::new(&label, (seconds * rate) as u64)
            };
            let outcome = run(&config, plant, load_policy(&config)?, options)
                .with_context(|| format!("running {file}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome.metrics)?);
            } else {
                print!("{}", rtchunk_runtime::metrics::table(&[&outcome.metrics]));
                println!("real-time setup: {}", outcome.realtime);
            }
            if let Some(log) = outcome.log {
                note_log(&log);
            }
        }
        Command::Bench {
            which:
                Bench::Policy {
                    bundle,
                    iterations,
                    threads,
                    run_on,
                    host_context,
                    json,
                },
        } => {
            let options = OnnxRuntimeOptions {
                intra_threads: threads,
                context_on_device: !host_context,
                ..run_on.options()
            };
            let result = bench::policy_benchmark(&bundle, &options, iterations)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", result.summary());
            }
        }
        Command::Bench {
            which:
                Bench::Delay {
                    task,
                    methods,
                    delays,
                    execution_horizon,
                    horizon_sweep,
                    rollouts,
                    policy_seeds,
                    policies,
                    seed,
                    threads,
                    device,
                    max_batch,
                    out,
                },
        } => {
            let settings = SweepSettings {
                tasks: parse_list(&task, &TaskKind::ALL)?,
                methods: parse_list(&methods, &Method::ALL)?,
                delays,
                execution_horizon,
                horizon_sweep,
                rollouts,
                policy_seeds: policy_seeds
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .with_context(|| format!("policy seed {s:?}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                policies: match policies {
                    Some(policies) => policies,
                    None => repository_default("sim/policies", "--policies")?,
                },
                seed,
                runtime: OnnxRuntimeOptions {
                    library: None,
                    intra_threads: threads,
                    device,
                    context_on_device: false,
                    cuda_graphs: false,
                    allow_cpu_nodes: false,
                    profile: None,
                },
                max_batch,
            };
            print!("{}", bench_delay(&settings, &out)?);
        }
        Command::Bench {
            which: Bench::DelayReport { inputs, out },
        } => print!("{}", combine_reports(&inputs, &out)?),
        Command::Bench {
            which:
                Bench::Loop {
                    seconds,
                    rate,
                    cpu,
                    json,
                },
        } => {
            let result = bench::loop_benchmark(seconds, rate, cpu)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", result.summary());
            }
        }
        Command::Bench {
            which:
                Bench::Transport {
                    images,
                    samples,
                    rate_hz,
                    shared_memory,
                    json,
                },
        } => {
            let sizes = images
                .split(',')
                .map(|size| {
                    let (rows, columns) = size.trim().split_once('x')?;
                    Some((rows.parse().ok()?, columns.parse().ok()?))
                })
                .collect::<Option<Vec<(usize, usize)>>>()
                .with_context(|| format!("--images {images:?}: expected ROWSxCOLUMNS,..."))?;
            let rows = transport::transport_benchmark(&sizes, samples, rate_hz, shared_memory)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", transport::transport_table(&rows, shared_memory));
            }
        }
        Command::Sim {
            which:
                Sim::Collect {
                    task,
                    episodes,
                    seed,
                    max_stale_steps,
                    camera_width,
                    out,
                },
        } => println!(
            "{}",
            sim_commands::collect_demonstrations(
                task,
                episodes,
                seed,
                max_stale_steps,
                camera_width,
                &out
            )?
        ),
        Command::Sim {
            which:
                Sim::Serve {
                    task,
                    episodes,
                    seed,
                    rate_hz,
                    delay_ms,
                    jitter_ms,
                    loss,
                    zenoh,
                    stop_runtime_when_done,
                    camera_width,
                    report,
                },
        } => {
            let io = zenoh.io(&[], &["tcp/127.0.0.1:7447"]);
            let settings = SimNodeSettings {
                episodes,
                first_seed: seed,
                rate_hz,
                delay_ms,
                jitter_ms,
                loss,
                stop_runtime_when_done,
                camera_width,
                ..SimNodeSettings::new(task)
            };
            let result = sim_commands::serve_task(&io, &settings, report.as_deref())?;
            print!("{result}");
        }
        Command::Sim {
            which: Sim::Render { task, seed, out },
        } => println!("{}", sim_commands::render_expert_rollout(task, seed, &out)?),
        Command::Sim {
            which: Sim::Calibrate { task, episodes },
        } => {
            let kinds = task.map_or(TaskKind::ALL.to_vec(), |kind| vec![kind]);
            print!(
                "{}",
                sim_commands::calibration_table(&kinds, &[0, 3, 5, 7, 9], episodes)
            );
        }
    }
    Ok(())
}

/// The replay's findings in words.
fn replay_summary(log: &std::path::Path, report: &ReplayReport) -> String {
    let line = |name: &str, d: &rtchunk_runtime::recording::replay::Divergence, unit: &str| match d
        .first
    {
        None => format!("  {name}: identical ({} values)\n", d.compared),
        Some(first) => format!(
            "  {name}: {} {unit} differ, max |difference| {:.3e}, first at {unit} {first}\n",
            d.differing, d.max_abs
        ),
    };
    let mut text = format!(
        "{}: {:?} replay of {} ticks and {} inferences{}\n",
        log.display(),
        report.mode,
        report.ticks,
        report.inferences,
        if report.complete {
            ""
        } else {
            " (the log was cut short)"
        }
    );
    if report.mode == ReplayMode::ReInfer {
        text += &line("chunks", &report.chunks, "request");
    }
    text += &line("schedule (executor re-run)", &report.schedule, "tick");
    text += &line("actions", &report.actions, "tick");
    match &report.commands {
        Some(commands) => text += &line("commands (action pipeline re-run)", commands, "tick"),
        None => {
            text += "  commands: not re-run (a robot over zenoh; give --sim-report for a simulator session)\n"
        }
    }
    if let Some(task) = &report.task {
        text += &line(
            &format!(
                "{} observations ({} episodes re-simulated, {} ended differently)",
                task.task, task.episodes, task.outcomes_changed
            ),
            &task.observations,
            "step",
        );
    }
    text += if report.identical() {
        "no divergence\n"
    } else {
        "diverged\n"
    };
    text
}

/// Says on standard error what went into the log; a closed standard error (its reader gone) is not an error.
fn note_log(log: &rtchunk_runtime::recording::writer::LogSummary) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "recorded {} ticks and {} inferences ({} bytes)",
        log.ticks,
        log.inferences,
        log.bytes
    );
}

/// The repository's `relative` path, the default of `flag`: found in the current folder or one above it, or above
/// the rtchunk binary (a build inside the repository); otherwise an error that names the default, where it was
/// looked for and the flag that sets it.
fn repository_default(relative: &str, flag: &str) -> anyhow::Result<PathBuf> {
    let roots = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    let found = roots
        .iter()
        .flatten()
        .flat_map(|root| root.ancestors())
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.exists());
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "{relative} (the default of {flag}) was not found in the current folder ({}), above it, or above the \
             rtchunk binary; run from the repository or pass {flag} PATH",
            roots[0].as_deref().unwrap_or(std::path::Path::new("?")).display()
        )
    })
}
