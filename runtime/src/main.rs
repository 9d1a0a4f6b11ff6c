//! The `rtchunk` command.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // A file size limit (RLIMIT_FSIZE) reached while recording must fail the write, which the log writer
    // reports, not kill the process with SIGXFSZ while it drives a robot.
    // SAFETY: sets the disposition of one signal to "ignore" before any other thread exists; no handler runs.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let cli = cli::Cli::parse();
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
    cli.command.run()
}
