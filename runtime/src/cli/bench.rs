//! `rtchunk bench`: the benchmarks (policy, delay, transport, loop).

use crate::cli::{DeviceArgs, parse_list, print_report, repository_default};
use anyhow::Context;
use rtchunk_policy::onnx::{Device, OnnxRuntimeOptions};
use rtchunk_runtime::studies::delay_benchmark::command::{bench_delay, combine_reports};
use rtchunk_runtime::studies::delay_benchmark::methods::Method;
use rtchunk_runtime::studies::delay_benchmark::sweep::SweepSettings;
use rtchunk_runtime::studies::{bench, graph_bench, transport};
use rtchunk_sim::TaskKind;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
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
    /// ONNX graphs timed alone on the CPU or a GPU with the same deterministic float32 inputs (their shapes
    /// fixed): each one's time per run, against the first's, and how far its first output is from the first
    /// graph's (forms of one computation, e.g. attention written out against a fused operator).
    Graphs {
        /// The graph files.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        /// Timed runs per graph (after ten untimed).
        #[arg(long, default_value_t = 200)]
        runs: usize,
        #[command(flatten)]
        run_on: DeviceArgs,
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
        #[arg(long, default_value = "0..4", value_parser = rtchunk_runtime::studies::delay_benchmark::command::parse_delays)]
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
        #[arg(long, default_value_t = rtchunk_runtime::studies::delay_benchmark::sweep::DEFAULT_FIRST_EPISODE)]
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

/// Runs `rtchunk bench`.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Policy {
            bundle,
            iterations,
            threads,
            run_on,
            host_context,
            json,
        } => {
            let options = OnnxRuntimeOptions {
                intra_threads: threads,
                context_on_device: !host_context,
                ..run_on.options()
            };
            let result = bench::policy_benchmark(&bundle, &options, iterations)?;
            print_report(json, &result, |r| r.summary())?;
        }
        BenchCommand::Graphs {
            graphs,
            runs,
            run_on,
            json,
        } => {
            let rows = graph_bench::graph_benchmark(&graphs, &run_on.options(), runs)?;
            print_report(json, &rows, |rows| graph_bench::graph_table(rows))?;
        }
        BenchCommand::Delay {
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
        BenchCommand::DelayReport { inputs, out } => print!("{}", combine_reports(&inputs, &out)?),
        BenchCommand::Loop {
            seconds,
            rate,
            cpu,
            json,
        } => {
            let result = bench::loop_benchmark(seconds, rate, cpu)?;
            print_report(json, &result, |r| r.summary())?;
        }
        BenchCommand::Transport {
            images,
            samples,
            rate_hz,
            shared_memory,
            json,
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
            print_report(json, &rows, |rows| {
                transport::transport_table(rows, shared_memory)
            })?;
        }
    }
    Ok(())
}
