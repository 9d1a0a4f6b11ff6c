//! The `rtchunk` command line: [`Cli`] parses it, and each command lives in its own module, which owns its
//! arguments and its body.

pub mod bench;
pub mod check_config;
pub mod demo;
pub mod export;
pub mod inspect;
pub mod latency;
pub mod replay;
pub mod run;
pub mod serve_policy;
pub mod sim;

use clap::{Parser, Subcommand};
use rtchunk_config::{IoConfig, TlsConfig};
use rtchunk_policy::onnx::{Device, OnnxRuntimeOptions};
use std::path::PathBuf;

/// Real-time execution of action-chunking flow policies.
#[derive(Parser)]
#[command(name = "rtchunk", version)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Drive the simulated point mass with the bimodal reference policy in real time, with RTC and with naive
    /// async at the same injected delay, and compare.
    Demo(demo::DemoArgs),
    /// Check a policy bundle (manifest, hashes, graphs), print its manifest, and replay the inputs it recorded
    /// at export against the outputs recorded with them (JAX's, or LeRobot's).
    Inspect(inspect::InspectArgs),
    /// Validate a configuration file.
    CheckConfig(check_config::CheckConfigArgs),
    /// Run a configuration: against the simulated point mass, or (plant.kind = "zenoh") on a robot or
    /// `rtchunk sim serve` over zenoh, until stopped (Ctrl-C, or stop / emergency stop on the control topic).
    Run(run::RunArgs),
    /// Serve a policy to robots over zenoh (e.g. on a GPU host): each robot's runtime, configured with
    /// policy.kind = "remote", sends its observation and RTC inputs and gets the chunk. Runs until Ctrl-C.
    ServePolicy(serve_policy::ServePolicyArgs),
    /// The runtime against `rtchunk sim serve` over zenoh (separate processes, loopback) with extra inference
    /// latency injected, per method: end-to-end latency against a bare zenoh hop, d, wake lateness, seams,
    /// starvation, success and time to completion, and a trajectory figure.
    Latency(latency::LatencyArgs),
    /// Re-run a recorded session and report where and by how much it diverges: from the recorded chunks
    /// (exact output), or running the policy again on the recorded inputs (--re-infer).
    Replay(replay::ReplayArgs),
    /// Write a session log in another format (MCAP).
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The benchmark tasks: expert demonstrations, pictures, calibration.
    #[command(subcommand)]
    Sim(sim::SimCommand),
}

impl Command {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Demo(args) => demo::run(args),
            Command::Inspect(args) => inspect::run(args),
            Command::CheckConfig(args) => check_config::run(args),
            Command::Run(args) => run::run(args),
            Command::ServePolicy(args) => serve_policy::run(args),
            Command::Latency(args) => latency::run(args),
            Command::Replay(args) => replay::run(args),
            Command::Export(command) => export::run(command),
            Command::Bench(command) => bench::run(command),
            Command::Sim(command) => sim::run(command),
        }
    }
}

#[derive(clap::Args)]
pub struct DeviceArgs {
    /// Where to run the graphs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// On a GPU, run the prefix and the steps without capturing them as CUDA graphs (for comparison).
    #[arg(long)]
    pub no_cuda_graphs: bool,
    /// On a GPU, run nodes the CUDA provider hands to the CPU there (each copying its tensors across) instead of
    /// refusing the bundle; nodes that only compute shapes are allowed without it.
    #[arg(long)]
    pub allow_cpu_nodes: bool,
    /// Write ONNX Runtime's per-node timings of each graph to PATH-<graph>_<time>.json (summed up by
    /// `python -m rtchunk_train.ort_profile`). On a GPU, add --no-cuda-graphs (captured graphs are timed whole)
    /// and set CUDA_LAUNCH_BLOCKING=1 so that each node's time is its kernels' time.
    #[arg(long, value_name = "PATH")]
    pub ort_profile: Option<PathBuf>,
}

impl DeviceArgs {
    /// ONNX Runtime options with these settings and the defaults otherwise.
    pub fn options(&self) -> OnnxRuntimeOptions {
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
pub struct ZenohArgs {
    /// Zenoh endpoints to listen on (repeatable).
    #[arg(long)]
    listen: Vec<String>,
    /// Zenoh endpoints to connect to (repeatable).
    #[arg(long)]
    connect: Vec<String>,
    /// Topic namespace.
    #[arg(long, default_value = "rtchunk")]
    namespace: String,
    /// TLS: the CA certificate (PEM) that signs every node's certificate (with --tls-certificate and
    /// --tls-key; endpoints tls/host:port; peers must present a certificate signed by it).
    #[arg(long, requires_all = ["tls_certificate", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// TLS: this node's certificate (PEM).
    #[arg(long, requires = "tls_ca")]
    tls_certificate: Option<PathBuf>,
    /// TLS: this node's private key (PEM).
    #[arg(long, requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// A zenoh configuration file (JSON5) to start from, e.g. with `access_control` rules.
    #[arg(long)]
    zenoh_config: Option<PathBuf>,
    /// Allow listening beyond loopback without TLS (anyone who reaches the port could talk to this node).
    #[arg(long)]
    allow_insecure: bool,
}

impl ZenohArgs {
    /// The `[io]` settings, with `listen` and `connect` as the defaults of endpoints not given.
    pub fn io(self, listen: &[&str], connect: &[&str]) -> IoConfig {
        let or = |given: Vec<String>, default: &[&str]| {
            if given.is_empty() {
                default.iter().map(|e| e.to_string()).collect()
            } else {
                given
            }
        };
        let tls = match (self.tls_ca, self.tls_certificate, self.tls_key) {
            (Some(ca), Some(certificate), Some(key)) => Some(TlsConfig {
                ca,
                certificate,
                key,
                mutual: true,
            }),
            _ => None,
        };
        IoConfig {
            listen: or(self.listen, listen),
            connect: or(self.connect, connect),
            namespace: self.namespace,
            tls,
            zenoh_config: self.zenoh_config,
            allow_insecure: self.allow_insecure,
            ..IoConfig::default()
        }
    }
}

/// "all" or a comma-separated list of names, each parsed with `FromStr`.
pub fn parse_list<T: std::str::FromStr<Err = String> + Copy>(
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

/// Says on standard error what went into the log; a closed standard error (its reader gone) is not an error.
pub fn note_log(log: &rtchunk_runtime::core::events::RecordSummary) {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    let _ = writeln!(
        stderr,
        "recorded {} ticks, {} inferences and {} camera frames ({} bytes)",
        log.ticks, log.inferences, log.camera_frames, log.bytes
    );
    if let Some(failure) = &log.failure {
        let _ = writeln!(
            stderr,
            "the log stopped early: {failure}; it reads up to its last complete record, and {} ticks, {} \
             inferences and {} camera frames after it were not recorded",
            log.lost_ticks, log.lost_inferences, log.lost_camera_frames
        );
    }
}

/// The repository's `relative` path, the default of `flag`: found in the current folder or one above it, or above
/// the rtchunk binary (a build inside the repository); otherwise an error that names the default, where it was
/// looked for and the flag that sets it.
pub fn repository_default(relative: &str, flag: &str) -> anyhow::Result<PathBuf> {
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

/// Prints `report` as JSON with `--json`, else the text `summary` makes of it.
pub fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    summary: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", summary(report));
    }
    Ok(())
}
