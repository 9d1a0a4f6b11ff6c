//! `rtchunk run`: a configuration run on the point mass or on a robot over zenoh.

use crate::cli::note_log;
use anyhow::Context;
use rtchunk_config::Config;
use rtchunk_runtime::RunOptions;
use rtchunk_runtime::core::events::Recorder;
use rtchunk_runtime::core::policies::{adopt_bundle_shape, load_policy};
use rtchunk_runtime::recording::writer::LogWriter;
use rtchunk_sim::PointMass;
use std::path::PathBuf;

/// The arguments of `rtchunk run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The configuration (TOML).
    config: PathBuf,
    /// Seconds of controller time (default: 5 on the point mass, until stopped on a robot).
    #[arg(long)]
    seconds: Option<f64>,
    /// Record every tick and inference to this log (replay it with `rtchunk replay`).
    #[arg(long)]
    record: Option<PathBuf>,
    /// With --record on a robot with cameras: also keep every camera frame it sends, not only those each
    /// inference saw (what `rtchunk export lerobot` needs for the cameras; the log grows by every image).
    #[arg(long, requires = "record")]
    record_camera_frames: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `rtchunk run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        config,
        seconds,
        record,
        record_camera_frames,
        json,
    } = args;
    let file = config.display().to_string();
    let record = record.map(|path| {
        let writer = LogWriter::new(&path);
        let writer = if record_camera_frames {
            writer.with_camera_frames()
        } else {
            writer
        };
        Box::new(writer) as Box<dyn Recorder>
    });
    let mut config = Config::load(&config)?;
    if adopt_bundle_shape(&mut config)?.is_some() {
        config
            .validate()
            .with_context(|| format!("{file} with its bundle's shape"))?;
    }
    if config.plant.kind.over_zenoh() {
        let (outcome, link) = rtchunk_runtime::io::deploy::run_on_robot(&config, seconds, record)
            .with_context(|| format!("running {file}"))?;
        if json {
            let both = serde_json::json!({"metrics": outcome.metrics, "link": link});
            println!("{}", serde_json::to_string_pretty(&both)?);
        } else {
            print!(
                "{}",
                rtchunk_runtime::core::metrics::table(&[&outcome.metrics])
            );
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
    let outcome = rtchunk_runtime::run(&config, plant, load_policy(&config)?, options)
        .with_context(|| format!("running {file}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome.metrics)?);
    } else {
        print!(
            "{}",
            rtchunk_runtime::core::metrics::table(&[&outcome.metrics])
        );
        println!("real-time setup: {}", outcome.realtime);
    }
    if let Some(log) = outcome.log {
        note_log(&log);
    }
    Ok(())
}
