//! Recording a run and replaying it: exact-output and re-infer replays of a faithful log find no divergence, a
//! tampered chunk is found at the tick that first executes it, a log cut short still replays up to the cut, and
//! a file that is not a log is refused with its name.

use rtchunk_runtime::core::record::TickKind;
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
        .arg("run")
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

/// The log's bytes without the inference record of chunk `seq` and without its end record (records: kind u8,
/// length u32, payload; an inference's payload starts with its u64 request number).
fn without_chunk_and_end(bytes: &[u8], seq: u64) -> Vec<u8> {
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut out = bytes[..12 + header_len].to_vec();
    let mut offset = 12 + header_len;
    while offset < bytes.len() {
        let kind = bytes[offset];
        let length = u32::from_le_bytes(bytes[offset + 1..offset + 5].try_into().unwrap()) as usize;
        let record = &bytes[offset..offset + 5 + length];
        let record_seq = (kind == 2).then(|| u64::from_le_bytes(record[5..13].try_into().unwrap()));
        if kind != 3 && record_seq != Some(seq) {
            out.extend_from_slice(record);
        }
        offset += 5 + length;
    }
    out
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

    // A crash can keep a tick that swapped to a chunk and lose the chunk's record (the writer interleaves the
    // controller's ticks and the worker's inferences): the log replays up to that tick.
    let whole = read_log(&log).unwrap();
    let (adopted_at, last_adopted) = whole
        .ticks
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, t)| {
            t.policy
                .as_ref()
                .filter(|p| p.swapped)
                .map(|p| (i, p.chunk_seq))
        })
        .unwrap();
    let lost = temp("lost-chunk.log");
    std::fs::write(&lost, without_chunk_and_end(&bytes, last_adopted)).unwrap();
    let session = read_log(&lost).unwrap();
    assert!(!session.complete);
    assert_eq!(session.ticks.len(), adopted_at);
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

/// A log written by a scheduler that executes each chunk one action late (index + 1, with that index's action):
/// the log agrees with itself, but the re-run executor does not.
#[test]
fn a_scheduler_that_shifts_actions_is_found_by_replay() {
    let log = record("gaussian-bundle.toml", "2", "shifted.log");
    let mut session = read_log(&log).unwrap();
    let action_dim = session.header.action_dim;
    let horizon = session.header.config.policy.horizon;
    let chunks: std::collections::HashMap<u64, Vec<f32>> = session
        .inferences
        .iter()
        .map(|r| (r.seq, r.chunk.clone()))
        .collect();
    let mut first_shifted = None;
    for tick in &mut session.ticks {
        let Some(policy) = &mut tick.policy else {
            continue;
        };
        if policy.kind != TickKind::Executed || policy.index as usize + 1 >= horizon {
            continue;
        }
        policy.index += 1;
        let index = policy.index as usize;
        tick.action[..action_dim]
            .copy_from_slice(&chunks[&policy.chunk_seq][index * action_dim..][..action_dim]);
        first_shifted.get_or_insert(tick.controller_tick);
    }
    assert!(first_shifted.is_some());
    let report = replay(&session, ReplayMode::ExactOutput, None).unwrap();
    assert!(!report.identical());
    assert_eq!(report.schedule.first, first_shifted, "{report:?}");
    assert_eq!(report.actions.first, first_shifted, "{report:?}");
    assert!(report.actions.differing > 10, "{report:?}");
}

/// Crafted logs whose header and records disagree are refused with the record and the field at fault.
#[test]
fn an_inconsistent_log_is_refused_naming_the_record_and_field() {
    let log = record("gaussian-bundle.toml", "1", "crafted.log");
    let original = read_log(&log).unwrap();
    type Craft = fn(&mut rtchunk_runtime::recording::format::RecordedSession);
    let cases: [(&str, Craft, &str); 6] = [
        (
            "header: action_dim",
            |s| s.header.action_dim = 65,
            "action dimension above the record capacity",
        ),
        (
            "header: action_dim",
            |s| s.header.action_dim = 0,
            "action dimension 0",
        ),
        (
            "header: observation_dim",
            |s| s.header.observation_dim = 3,
            "an observation the plant cannot take",
        ),
        (
            "index = 1000, beyond the horizon",
            |s| {
                let executed = s.ticks.iter_mut().filter_map(|t| t.policy.as_mut());
                let policy = executed
                    .filter(|p| p.kind == TickKind::Executed)
                    .nth(2)
                    .unwrap();
                policy.index = 1000;
            },
            "a chunk index beyond the chunk",
        ),
        (
            "chunk holds 5 values",
            |s| s.inferences[1].chunk.truncate(5),
            "a short chunk",
        ),
        (
            "tick record 7: controller_tick",
            |s| {
                s.ticks.remove(7);
            },
            "a missing tick",
        ),
    ];
    for (expected, craft, what) in cases {
        let mut session = original.clone();
        craft(&mut session);
        let error = replay(&session, ReplayMode::ExactOutput, None)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{what}: {error}");
    }
}

/// Random damage (one to three bytes flipped) never makes the reader or replay panic: each damaged log reads
/// and replays, or is refused with an error.
#[test]
fn damaged_logs_never_panic_the_reader_or_replay() {
    let log = record("gaussian-bundle.toml", "1", "fuzzed.log");
    let bytes = std::fs::read(&log).unwrap();
    let damaged = temp("damaged.log");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut parsed, mut replayed, mut panics) = (0, 0, Vec::new());
    for case in 0..3000 {
        let mut copy = bytes.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() % copy.len() as u64) as usize;
            copy[at] ^= 1 << (next() % 8);
        }
        std::fs::write(&damaged, &copy).unwrap();
        let mode = if case % 100 == 0 {
            ReplayMode::ReInfer
        } else {
            ReplayMode::ExactOutput
        };
        let outcome = std::panic::catch_unwind(|| {
            let session = read_log(&damaged).ok()?;
            Some(replay(&session, mode, None).is_ok())
        });
        match outcome {
            Ok(Some(ok)) => {
                parsed += 1;
                replayed += usize::from(ok);
            }
            Ok(None) => {}
            Err(_) => panics.push(case),
        }
    }
    assert!(panics.is_empty(), "panicked on damaged logs {panics:?}");
    assert!(
        parsed > 1000 && replayed > 100,
        "{parsed} parsed, {replayed} replayed"
    );
}
