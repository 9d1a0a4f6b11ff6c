//! Re-running the task of a session against `rtchunk sim serve`: the simulator's report records, for every step
//! of every episode, the controller tick of the command it applied and what it observed next; the task is reset
//! to each episode's seed and stepped with the replayed commands of those ticks. The task is deterministic for a
//! seed, so a faithful log and report reproduce every observation bit for bit; re-inferred chunks that differ
//! show here as a different trajectory and, perhaps, a different outcome.

use crate::io::sim_node::{BRAKED, EpisodeReport};
use crate::recording::divergence::{Divergence, ReplayError};
use rtchunk_sim::{Env, TaskKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What `rtchunk sim serve --report FILE` wrote about its episodes.
#[derive(Debug, Clone, Deserialize)]
pub struct SimRecording {
    /// The task's name.
    pub task: String,
    /// Every episode, with its steps.
    pub episodes: Vec<EpisodeReport>,
}

impl SimRecording {
    /// Reads a simulator report, naming the file in any error.
    pub fn read(path: &Path) -> Result<Self, ReplayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ReplayError::Simulator(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            ReplayError::Simulator(format!(
                "{}: not an `rtchunk sim serve --report` file: {e}",
                path.display()
            ))
        })
    }
}

/// The task re-run with the replayed commands against the recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReplay {
    /// The task.
    pub task: String,
    /// Episodes re-run.
    pub episodes: u64,
    /// Observations after every step; items are steps, counted across the episodes from 0.
    pub observations: Divergence,
    /// Episodes that ended differently (success, failure, timeout) or after another number of steps.
    pub outcomes_changed: u64,
}

/// Re-runs every recorded episode with `commands` (by controller tick, `action_dim` values each).
pub fn resimulate_task(
    recording: &SimRecording,
    commands: &HashMap<u64, Vec<f32>>,
    action_dim: usize,
) -> Result<TaskReplay, ReplayError> {
    let kind: TaskKind = recording.task.parse().map_err(ReplayError::Simulator)?;
    let mut env = Env::new(kind);
    if env.spec().action_dim() != action_dim {
        return Err(ReplayError::Simulator(format!(
            "{} takes {} action values, the log's policy makes {action_dim}",
            recording.task,
            env.spec().action_dim()
        )));
    }
    let idle = vec![0.0f32; action_dim];
    let mut observation = vec![0.0f32; env.spec().observation_dim()];
    let mut replay = TaskReplay {
        task: recording.task.clone(),
        episodes: recording.episodes.len() as u64,
        observations: Divergence::default(),
        outcomes_changed: 0,
    };
    let mut step_number = 0u64;
    for episode in &recording.episodes {
        env.reset(episode.seed);
        for step in &episode.step_records {
            let command = match step.command_tick {
                None => &idle,
                Some(tick) => commands.get(&tick).ok_or_else(|| {
                    ReplayError::Simulator(format!(
                        "episode {} step applies controller tick {tick}, which the log does not hold",
                        episode.seed
                    ))
                })?,
            };
            env.step(command);
            env.observe(&mut observation);
            replay
                .observations
                .compare(step_number, &observation, &step.observation);
            step_number += 1;
        }
        // Named as the simulator names it in its report (a braked episode's task was still running).
        let outcome = format!("{:?}", env.status()).to_lowercase();
        let recorded = if episode.outcome == BRAKED {
            "running"
        } else {
            episode.outcome.as_str()
        };
        if outcome != recorded || env.steps() != episode.steps {
            replay.outcomes_changed += 1;
        }
    }
    Ok(replay)
}
