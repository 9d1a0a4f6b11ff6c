//! The `rtchunk sim` commands: expert demonstrations, pictures of rollouts, and the calibration check.

use crate::io::sim_node::{SimNodeSettings, serve};
use crate::progress::Progress;
use crate::shutdown::StopFlag;
use anyhow::Context;
use rtchunk_config::IoConfig;
use rtchunk_sim::{Env, TaskKind, collect, play_expert_episode, stale_success_rate};
use std::path::Path;

/// Runs the expert of `kind` for `episodes` episodes from `seed` (each acting on states up to `max_stale_steps`
/// old, see [`collect`]; with `camera_width`, also the task's camera images) and writes its solved episodes to
/// `out`.
pub fn collect_demonstrations(
    kind: TaskKind,
    episodes: u64,
    seed: u64,
    max_stale_steps: usize,
    camera_width: Option<usize>,
    out: &Path,
) -> anyhow::Result<String> {
    let mut progress = Progress::new(format!("collecting {kind}"), episodes);
    let (dataset, report) = collect(
        kind,
        episodes,
        seed,
        max_stale_steps,
        camera_width,
        |done| progress.update(done),
    );
    progress.finish();
    if dataset.is_empty() {
        anyhow::bail!("the {kind} expert solved none of {episodes} episodes; nothing to write");
    }
    dataset.write_npz(out)?;
    Ok(format!(
        "{}: {} of {} expert episodes solved and kept ({} control steps); episodes per mode {:?}",
        out.display(),
        report.successes,
        report.episodes,
        report.rows,
        report.modes
    ))
}

/// Serves `settings.task` over the zenoh session `io` describes until its episodes are done (or Ctrl-C), and
/// returns a summary; the full report also goes to `report` as JSON when given.
pub fn serve_task(
    io: &IoConfig,
    settings: &SimNodeSettings,
    report: Option<&Path>,
) -> anyhow::Result<String> {
    let stop = StopFlag::install(None);
    let result = serve(io, settings, stop.flag())?;
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let solved = result.episodes.iter().filter(|e| e.success).count();
    let latency = &result.state_to_action_ms;
    Ok(format!(
        "{}: {solved} of {} episodes solved; state to first command p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         {} states published ({} lost), {} commands received ({} lost, {} held, {} rejected)\n",
        result.task,
        result.episodes.len(),
        latency.p50,
        latency.p99,
        latency.max,
        result.states_published,
        result.states_lost,
        result.actions_received,
        result.actions_lost,
        result.actions_held,
        result.actions_rejected
    ))
}

/// Runs the expert on episode `seed` and writes a picture of its end (with the path it took) to `out`.
pub fn render_expert_rollout(kind: TaskKind, seed: u64, out: &Path) -> anyhow::Result<String> {
    let mut env = Env::new(kind);
    let mut expert = env.expert();
    let status = play_expert_episode(&mut env, expert.as_mut(), seed, 0, |_, _, _| {});
    env.camera(640)
        .write_png(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(format!(
        "{}: {kind} episode {seed}, expert mode {}, {:?} after {} steps",
        out.display(),
        expert.mode(),
        status,
        env.steps()
    ))
}

/// A table of each task's expert success rate when it acts on states `stale` steps old.
pub fn calibration_table(kinds: &[TaskKind], stale: &[usize], episodes: u64) -> String {
    let mut table = format!("{:<10}", "task");
    for k in stale {
        table.push_str(&format!(" {:>8}", format!("k = {k}")));
    }
    table.push('\n');
    for &kind in kinds {
        table.push_str(&format!("{:<10}", kind.name()));
        for &k in stale {
            table.push_str(&format!(
                " {:>8.3}",
                stale_success_rate(kind, k, episodes, 0)
            ));
        }
        table.push('\n');
    }
    table.push_str(&format!(
        "expert success over {episodes} episodes acting on k-step-old states; the delay benchmark needs >= 0.8 at k = 7\n"
    ));
    table
}
