//! `rtchunk bench delay`: runs a sweep with a progress bar and writes its CSV, JSON, table and figures.

use crate::studies::delay_benchmark::figure::write_figure;
use crate::studies::delay_benchmark::report::{self, Sweep};
use crate::studies::delay_benchmark::sweep::{SweepSettings, run_sweep};
use crate::studies::progress::Progress;
use anyhow::Context;
use std::path::Path;

/// Parses a list of delays: "0..4" (inclusive), "0,2,4", or "none" (only the horizon sweep).
pub fn parse_delays(text: &str) -> Result<Vec<usize>, String> {
    if text == "none" {
        return Ok(Vec::new());
    }
    let bad = |_| format!("delays {text:?}: expected a range like 0..4 or a list like 0,2,4");
    if let Some((low, high)) = text.split_once("..") {
        let (low, high): (usize, usize) = (
            low.trim().parse().map_err(bad)?,
            high.trim().parse().map_err(bad)?,
        );
        return if low <= high {
            Ok((low..=high).collect())
        } else {
            Err(format!("delays {text:?}: empty range"))
        };
    }
    text.split(',')
        .map(|d| d.trim().parse().map_err(bad))
        .collect()
}

/// Writes the combined outputs of finished sweeps (their delay.csv files, e.g. one per task or method run on
/// several machines) into `out`; returns the terminal report.
pub fn combine_reports(inputs: &[std::path::PathBuf], out: &Path) -> anyhow::Result<String> {
    let mut records = Vec::new();
    for input in inputs {
        let path = if input.is_dir() {
            input.join("delay.csv")
        } else {
            input.clone()
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        records.extend(
            report::from_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
    }
    anyhow::ensure!(
        !records.is_empty(),
        "no per-seed records in {} inputs",
        inputs.len()
    );
    let seconds: f64 = records.iter().map(|r| r.seconds).sum();
    let horizon = records.iter().any(|r| r.sweep == Sweep::Horizon);
    write_outputs(
        records,
        horizon,
        out,
        &format!(
            "combined from {} inputs; {seconds:.0} s of sweeps",
            inputs.len()
        ),
    )
}

/// Runs the sweep and writes `out`/delay.csv, delay.json, delay.png and (with the horizon sweep) horizon.png.
/// Returns the terminal report.
pub fn bench_delay(settings: &SweepSettings, out: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let total = settings.total_points()?;
    let mut progress = Progress::new(
        format!("{} points x {} rollouts", total, settings.rollouts),
        total as u64,
    );
    let started = std::time::Instant::now();
    let records = run_sweep(settings, |done, _, _| progress.update(done as u64))?;
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let seeds: Vec<String> = settings.policy_seeds.iter().map(u64::to_string).collect();
    let horizon = settings
        .execution_horizon
        .map_or(String::new(), |s| format!(", s = {s} at every d"));
    let summary = format!(
        "{} rollouts per point and training seed (seeds {}), episodes from seed {}{horizon}; {seconds:.0} s on this machine",
        settings.rollouts,
        seeds.join(", "),
        settings.seed
    );
    write_outputs(records, settings.horizon_sweep, out, &summary)
}

/// Adds the pooled records to per-seed `records`, writes delay.csv, delay.json and the figures of the sweeps
/// present into `out`, and returns the tables with `summary` below them.
fn write_outputs(
    mut records: Vec<report::PointRecord>,
    horizon: bool,
    out: &Path,
    summary: &str,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let per_task = report::pool(&records, false);
    let averages = report::pool(&records, true);
    records.extend(per_task);
    records.extend(averages);
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("delay.csv", report::to_csv(&records))?;
    write("delay.json", serde_json::to_string_pretty(&records)? + "\n")?;
    let delay = records.iter().any(|r| r.sweep == Sweep::Delay);
    let mut text = String::new();
    if delay {
        write_figure(&records, Sweep::Delay, &out.join("delay.png"))?;
        text.push_str(&report::table(&records, Sweep::Delay));
    }
    if horizon {
        write_figure(&records, Sweep::Horizon, &out.join("horizon.png"))?;
        text.push('\n');
        text.push_str(&report::table(&records, Sweep::Horizon));
    }
    text.push_str(&format!(
        "\nsolve rate [95 % interval: Wilson over the rollouts, widened where training seeds were pooled to Student's t \
         over the per-seed rates]; {summary}\nwrote {}/delay.csv, delay.json{}{}\n",
        out.display(),
        if delay { ", delay.png" } else { "" },
        if horizon { ", horizon.png" } else { "" }
    ));
    Ok(text)
}
