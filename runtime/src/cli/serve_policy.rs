//! `rtchunk serve-policy`: a bundle served to robots over zenoh.

use crate::cli::ZenohArgs;
use anyhow::Context;
use rtchunk_config::{Config, IoConfig, PolicyKind, SamplerConfig};
use rtchunk_runtime::core::policies::adopt_bundle_shape;
use rtchunk_runtime::core::shutdown::StopFlag;
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
}

/// Runs `rtchunk serve-policy`.
pub fn run(args: ServePolicyArgs) -> anyhow::Result<()> {
    let ServePolicyArgs {
        policy,
        config,
        device,
        zenoh,
        seconds,
    } = args;
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
    Ok(())
}
