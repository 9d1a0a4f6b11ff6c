//! `rtchunk export lerobot`: session logs as a LeRobotDataset v3.0, one episode per log.
//!
//! A frame is a policy tick (the dataset's fps is the policy rate): `observation.state` is the observation the
//! controller read at that tick and `action` the policy's action in force; on warm-up and held ticks, which
//! execute no action, `action` is the command written (the target held). A log recorded with every camera frame
//! (`rtchunk run --record-camera-frames`) gives each frame `observation.images.<camera>`: the images that came
//! with the state the controller read (the newest frame up to that state), and the episode starts at the first
//! policy tick that has them. Without those frames the cameras are left out (a log otherwise keeps images only
//! with each inference) and the summary says so.

use crate::core::messages::CameraFrame;
use crate::core::record::{MAX_VALUES, TickRecord};
use crate::recording::format::{RecordedSession, read_log};
use anyhow::{Context, bail};
use rtchunk_sim::lerobot::{CameraFeature, Features, LeRobotWriter};
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
    /// Cameras exported (from logs with every camera frame).
    pub cameras: Vec<String>,
    /// Cameras the logs' policy had, left out (their logs lack the camera frames).
    pub cameras_left_out: Vec<String>,
}

/// The shape every log of one export must share.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    fps: u32,
    observation_dim: usize,
    action_dim: usize,
    /// The cameras exported (none when the log lacks camera frames).
    cameras: Vec<CameraFeature>,
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
    let cameras = if session.camera_frames.is_empty() {
        Vec::new()
    } else {
        header
            .cameras
            .iter()
            .map(|camera| CameraFeature {
                name: camera.name.clone(),
                height: camera.height,
                width: camera.width,
                channels: camera.channels,
            })
            .collect()
    };
    Ok(Shape {
        fps: rate as u32,
        observation_dim: header.observation_dim,
        action_dim: header.action_dim,
        cameras,
    })
}

/// The camera frame that came with the state `tick` read: the newest up to its sequence number (`frames` in
/// arrival order, `next` the first not yet passed).
fn frame_at<'a>(
    frames: &'a [CameraFrame],
    next: &mut usize,
    tick: &TickRecord,
) -> Option<&'a CameraFrame> {
    while frames
        .get(*next)
        .is_some_and(|f| f.state_seq <= tick.state_seq)
    {
        *next += 1;
    }
    next.checked_sub(1).map(|last| &frames[last])
}

/// Adds the policy ticks of `session` to `writer` as one episode under `task`.
fn add_episode(
    writer: &mut LeRobotWriter,
    session: &RecordedSession,
    shape: &Shape,
    task: &str,
) -> anyhow::Result<()> {
    let mut next_frame = 0;
    for tick in &session.ticks {
        let Some(policy) = tick.policy else { continue };
        let action = if policy.kind.carries_action() {
            &tick.action
        } else {
            &tick.command
        };
        let mut images = Vec::with_capacity(shape.cameras.len());
        if !shape.cameras.is_empty() {
            let Some(frame) = frame_at(&session.camera_frames, &mut next_frame, tick) else {
                continue;
            };
            let mut pixels = frame.pixels.as_slice();
            for camera in &shape.cameras {
                let bytes = camera.height * camera.width * camera.channels;
                if pixels.len() < bytes {
                    bail!(
                        "the camera frame of state {} is shorter than the cameras' images",
                        frame.state_seq
                    );
                }
                let (image, rest) = pixels.split_at(bytes);
                images.push(image);
                pixels = rest;
            }
        }
        writer.push_frame(
            &tick.observation[..shape.observation_dim],
            &action[..shape.action_dim],
            &images,
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
        cameras: Vec::new(),
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
                cameras: shape.cameras.clone(),
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
                 observation, action and cameras",
                log.display(),
                first_log.display()
            );
        }
        let task = task.unwrap_or(&session.header.label);
        add_episode(writer, &session, &shape, task).with_context(|| log.display().to_string())?;
        summary.episodes += 1;
        summary.fps = shape.fps;
        let names = session.header.cameras.iter().map(|c| c.name.clone());
        if shape.cameras.is_empty() {
            summary.cameras_left_out.extend(names);
        } else {
            summary.cameras.extend(names);
        }
        summary.cameras.dedup();
        summary.cameras_left_out.dedup();
    }
    let Some((writer, _, _)) = writer else {
        bail!("no logs to export")
    };
    summary.frames = writer.frames();
    writer.write(out)?;
    Ok(summary)
}
