//! `rtchunk demo`: the point mass driven in real time with RTC and with naive async chunking at one delay.

use crate::cli::print_report;
use anyhow::Context;
use rtchunk_config::PolicyKind;
use rtchunk_runtime::core::policies::adopt_bundle_shape;
use rtchunk_runtime::studies::demo;
use std::path::PathBuf;

/// The arguments of `rtchunk demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
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
}

/// Runs `rtchunk demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let DemoArgs {
        seconds,
        delay,
        json,
        plot,
        policy,
    } = args;
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
        rtchunk_runtime::studies::demo_figure::demo_figure(&runs, &config.plant, period, &path)
            .map_err(anyhow::Error::msg)?;
        eprintln!("wrote {}", path.display());
    }
    print_report(json, &runs, |runs| demo::demo_summary(runs, delay))
}
