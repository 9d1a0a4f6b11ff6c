//! `rtchunk replay`: a recorded session re-run, and where it diverges.

use crate::cli::print_report;
use anyhow::Context;
use rtchunk_runtime::recording::format::read_log;
use rtchunk_runtime::recording::replay::{ReplayMode, ReplayReport, replay};
use rtchunk_runtime::recording::task_replay::SimRecording;
use std::path::PathBuf;

/// The arguments of `rtchunk replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
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
}

/// Runs `rtchunk replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplayArgs {
        log,
        re_infer,
        sim_report,
        json,
    } = args;
    let session = read_log(&log)?;
    let mode = if re_infer {
        ReplayMode::ReInfer
    } else {
        ReplayMode::ExactOutput
    };
    let simulator = sim_report.as_deref().map(SimRecording::read).transpose()?;
    let report = replay(&session, mode, simulator.as_ref())
        .with_context(|| format!("replaying {}", log.display()))?;
    print_report(json, &report, |report| replay_summary(&log, report))
}

/// The replay's findings in words.
fn replay_summary(log: &std::path::Path, report: &ReplayReport) -> String {
    let line =
        |name: &str, d: &rtchunk_runtime::recording::divergence::Divergence, unit: &str| match d
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
