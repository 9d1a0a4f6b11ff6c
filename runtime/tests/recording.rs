//! Recording a run and replaying it: exact-output and re-infer replays of a faithful log find no divergence, a
//! tampered chunk is found at the tick that first executes it, a log cut short still replays up to the cut, and
//! a file that is not a log is refused with its name.

use rtchunk_runtime::recording::format::read_log;
use rtchunk_runtime::recording::replay::{ReplayMode, replay};
use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config/examples")
        .join(name)
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rtchunk-{}-{name}", std::process::id()))
}

/// Runs an example configuration for `seconds` with `--record` into the log `name` and returns its path.
fn record(config: &str, seconds: &str, name: &str) -> PathBuf {
    let log = temp(name);
    let output = Command::new(env!("CARGO_BIN_EXE_rtchunk"))
        .args(["run", "--config"])
        .arg(example(config))
        .args(["--seconds", seconds, "--record"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    log
}

#[test]
fn a_recorded_run_replays_without_divergence_in_both_modes() {
    let log = record("gaussian-bundle.toml", "3", "faithful.log");
    let session = read_log(&log).unwrap();
    assert!(session.complete);
    assert_eq!(session.ticks.len(), 150);
    assert!(session.inferences.len() > 10);
    for mode in [ReplayMode::ExactOutput, ReplayMode::ReInfer] {
        let report = replay(&session, mode, None).unwrap();
        assert!(report.identical(), "{mode:?}: {report:?}");
        assert_eq!(report.actions.compared, 150 * 2);
        assert_eq!(report.commands.unwrap().compared, 150 * 2);
    }
    // The real-clock example too (SCHED_FIFO where allowed): timing differs run to run, the log still replays.
    let session = read_log(&record("point-mass-rtc.toml", "1", "real-clock.log")).unwrap();
    assert!(
        replay(&session, ReplayMode::ExactOutput, None)
            .unwrap()
            .identical()
    );
}

#[test]
fn a_tampered_chunk_is_found_where_it_is_first_executed() {
    let log = record("gaussian-bundle.toml", "2", "tampered.log");
    let mut session = read_log(&log).unwrap();
    let target = session.inferences[3].seq;
    let (first_use, index) = session
        .ticks
        .iter()
        .find_map(|t| {
            let policy = t.policy.filter(|p| p.chunk_seq == target)?;
            Some((t.controller_tick, policy.index as usize))
        })
        .unwrap();
    let action_dim = session.header.action_dim;
    session.inferences[3].chunk[index * action_dim] += 0.25;
    let first_use = Some(first_use);
    let report = replay(&session, ReplayMode::ExactOutput, None).unwrap();
    assert!(!report.identical());
    let commands = report.commands.unwrap();
    assert_eq!(report.actions.first, first_use, "{report:?}");
    assert!((report.actions.max_abs - 0.25).abs() < 1e-6, "{report:?}");
    assert!(commands.differing >= 1, "{report:?}");
}

#[test]
fn a_log_cut_short_replays_up_to_the_cut_and_garbage_is_refused() {
    let log = record("gaussian-bundle.toml", "2", "whole.log");
    let bytes = std::fs::read(&log).unwrap();
    let cut = temp("cut.log");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let session = read_log(&cut).unwrap();
    assert!(!session.complete);
    assert!(session.ticks.len() > 20 && session.ticks.len() < 100);
    assert!(
        replay(&session, ReplayMode::ExactOutput, None)
            .unwrap()
            .identical()
    );

    let garbage = temp("garbage.log");
    std::fs::write(&garbage, b"not a log at all").unwrap();
    let error = read_log(&garbage).unwrap_err().to_string();
    assert!(
        error.contains("garbage.log") && error.contains("RTCKLOG2"),
        "{error}"
    );
}
