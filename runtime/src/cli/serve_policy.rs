//! `rtchunk serve-policy`: a bundle served to robots over zenoh.

use crate::cli::ZenohArgs;
use anyhow::Context;
use rtchunk_config::{Config, IoConfig, PolicyKind, SamplerConfig};
use rtchunk_runtime::core::policies::adopt_bundle_shape;
use rtchunk_runtime::core::shutdown::StopFlag;
use rtchunk_runtime::io::remote::{ServerSettings, serve_policy};
use std::path::PathBuf;

/// The arguments of `rtchunk serve-policy`.
#[derive(clap::Args)]
pub struct ServePolicyArgs {
    /// The policy bundle.
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
    /// The most robots served at once; a query from one more is refused.
    #[arg(long, default_value_t = 16)]
    max_robots: usize,
    /// A query that waited longer than this in the queue is refused unsampled (its robot has given up on it),
    /// in milliseconds.
    #[arg(long, default_value_t = 1000.0)]
    max_wait_ms: f64,
}

/// Runs `rtchunk serve-policy`.
pub fn run(args: ServePolicyArgs) -> anyhow::Result<()> {
    let ServePolicyArgs {
        policy,
        config,
        device,
        zenoh,
        seconds,
        max_robots,
        max_wait_ms,
    } = args;
    anyhow::ensure!(max_robots > 0, "--max-robots must be at least 1");
    anyhow::ensure!(
        max_wait_ms.is_finite() && max_wait_ms > 0.0,
        "--max-wait-ms must be a number of milliseconds above 0, not {max_wait_ms}"
    );
    let settings = ServerSettings {
        max_robots,
        max_wait: std::time::Duration::from_secs_f64(max_wait_ms / 1e3),
    };
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
    let report = serve_policy(&config, &io, settings, stop.flag())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
