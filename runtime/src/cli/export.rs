//! `rtchunk export`: a session log in another format.

use rtchunk_runtime::recording::lerobot_export::export_lerobot;
use rtchunk_runtime::recording::mcap_export::export_mcap;
use std::path::PathBuf;

/// The formats `rtchunk export` writes.
#[derive(clap::Subcommand)]
pub enum ExportCommand {
    /// An MCAP file (chunked, LZ4, indexed; JSON messages with JSON Schemas) that Foxglove, Rerun and the mcap
    /// tools open: every tick, every inference with its chunk, and the camera images.
    Mcap {
        /// The session log (`rtchunk run --record`).
        log: PathBuf,
        /// The MCAP file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// A LeRobotDataset v3.0 directory (parquet frames and `meta/`, loadable with LeRobot's `LeRobotDataset`),
    /// one episode per log: a frame per policy tick with the observation read and the action in force.
    Lerobot {
        /// The session logs (`rtchunk run --record`), one episode each, in this order.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// The dataset directory to write (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// The task every episode is labelled with (default: each run's label).
        #[arg(long)]
        task: Option<String>,
    },
}

/// Runs `rtchunk export`.
pub fn run(command: ExportCommand) -> anyhow::Result<()> {
    match command {
        ExportCommand::Mcap { log, out } => {
            let started = std::time::Instant::now();
            let summary = export_mcap(&log, &out)?;
            println!(
                "{}: {} ticks, {} inferences, {} images, {} bytes in {:.2} s",
                out.display(),
                summary.ticks,
                summary.inferences,
                summary.images,
                summary.bytes,
                started.elapsed().as_secs_f64()
            );
        }
        ExportCommand::Lerobot { logs, out, task } => {
            let started = std::time::Instant::now();
            let summary = export_lerobot(&logs, &out, task.as_deref())?;
            println!(
                "{}: {} episodes, {} frames at {} fps in {:.2} s",
                out.display(),
                summary.episodes,
                summary.frames,
                summary.fps,
                started.elapsed().as_secs_f64()
            );
            if !summary.cameras.is_empty() {
                println!("cameras: {}", summary.cameras.join(", "));
            }
            if !summary.cameras_left_out.is_empty() {
                println!(
                    "cameras left out ({}): the log keeps their images only with each inference; record with \
                     `rtchunk run --record LOG --record-camera-frames` to export them",
                    summary.cameras_left_out.join(", ")
                );
            }
        }
    }
    Ok(())
}
