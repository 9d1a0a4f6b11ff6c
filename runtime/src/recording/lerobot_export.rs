//! `rtchunk export lerobot`: session logs as a LeRobotDataset v3.0, one episode per log.
//!
//! A frame is a policy tick (the dataset's fps is the policy rate): `observation.state` is the observation the
//! controller read at that tick and `action` the policy's action in force; on warm-up and held ticks, which
//! execute no action, `action` is the command written (the target held). Camera images are not exported: a
//! log keeps them only with each inference, not at every frame.

use crate::core::record::MAX_VALUES;
use crate::recording::format::{RecordedSession, read_log};
use anyhow::{Context, bail};
use rtchunk_sim::lerobot::{Features, LeRobotWriter};
use std::path::{Path, PathBuf};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeRobotSummary {
    /// Episodes (logs).
    pub episodes: usize,
    /// Frames (policy ticks) over all episodes.
    pub frames: usize,
    /// The dataset's frame rate (the policy rate).
    pub fps: u32,
    /// Cameras the logs' policy had, not exported.
    pub cameras_left_out: Vec<String>,
}

/// The shape every log of one export must share.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    fps: u32,
    observation_dim: usize,
    action_dim: usize,
}

fn shape_of(log: &Path, session: &RecordedSession) -> anyhow::Result<Shape> {
    let header = &session.header;
    let rate = header.config.clock.policy_rate_hz;
    if rate.fract() != 0.0 || rate < 1.0 {
        bail!(
            "{}: clock.policy_rate_hz = {rate}; a LeRobotDataset's fps is a whole number of frames per second",
            log.display()
        );
    }
    if !session.policy_tick_observations {
        bail!(
            "{}: its policy ticks carry no observations (recorded by an earlier rtchunk); record the run again to \
             export it",
            log.display()
        );
    }
    if header.observation_dim > MAX_VALUES {
        bail!(
            "{}: observations of {} values; a log keeps the first {MAX_VALUES} per tick, so it cannot be exported whole",
            log.display(),
            header.observation_dim
        );
    }
    Ok(Shape {
        fps: rate as u32,
        observation_dim: header.observation_dim,
        action_dim: header.action_dim,
    })
}

/// Adds the policy ticks of `session` to `writer` as one episode under `task`.
fn add_episode(
    writer: &mut LeRobotWriter,
    session: &RecordedSession,
    shape: &Shape,
    task: &str,
) -> anyhow::Result<()> {
    for tick in &session.ticks {
        let Some(policy) = tick.policy else { continue };
        let action = if policy.kind.carries_action() {
            &tick.action
        } else {
            &tick.command
        };
        writer.push_frame(
            &tick.observation[..shape.observation_dim],
            &action[..shape.action_dim],
            &[],
        )?;
    }
    writer.end_episode(task);
    Ok(())
}

/// Reads `logs` and writes them to the new directory `out` as a LeRobotDataset v3.0, every episode under
/// `task` (default: each run's label).
pub fn export_lerobot(
    logs: &[PathBuf],
    out: &Path,
    task: Option<&str>,
) -> anyhow::Result<LeRobotSummary> {
    let mut writer: Option<(LeRobotWriter, Shape, PathBuf)> = None;
    let mut summary = LeRobotSummary {
        episodes: 0,
        frames: 0,
        fps: 0,
        cameras_left_out: Vec::new(),
    };
    for log in logs {
        let session = read_log(log)?;
        let shape = shape_of(log, &session)?;
        let (writer, first_shape, first_log) = writer.get_or_insert_with(|| {
            let features = Features {
                state_dim: shape.observation_dim,
                state_names: None,
                action_dim: shape.action_dim,
                action_names: None,
                cameras: Vec::new(),
            };
            (
                LeRobotWriter::new(shape.fps, None, features),
                shape.clone(),
                log.clone(),
            )
        });
        if shape != *first_shape {
            bail!(
                "{}: {shape:?} differs from {}'s {first_shape:?}; the episodes of one dataset share fps, \
                 observation and action",
                log.display(),
                first_log.display()
            );
        }
        let task = task.unwrap_or(&session.header.label);
        add_episode(writer, &session, &shape, task).with_context(|| log.display().to_string())?;
        summary.episodes += 1;
        summary.fps = shape.fps;
        for camera in &session.header.cameras {
            if !summary.cameras_left_out.contains(&camera.name) {
                summary.cameras_left_out.push(camera.name.clone());
            }
        }
    }
    let Some((writer, _, _)) = writer else {
        bail!("no logs to export")
    };
    summary.frames = writer.frames();
    writer.write(out)?;
    Ok(summary)
}
