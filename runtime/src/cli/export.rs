//! `rtchunk export`: a session log in another format.

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
    }
    Ok(())
}
