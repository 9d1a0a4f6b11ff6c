//! Expert demonstrations: the scripted expert runs each episode closed loop (under the same action noise as the
//! benchmark) and its successful episodes become training data.

use crate::dataset::Dataset;
use crate::env::Env;
use crate::expert::play_expert_episode;
use crate::task::Status;
use crate::tasks::TaskKind;

/// What a collection produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectReport {
    /// Episodes run.
    pub episodes: u64,
    /// Episodes the expert solved (the ones kept).
    pub successes: u64,
    /// Rows (control steps) kept.
    pub rows: usize,
    /// Kept episodes per expert mode.
    pub modes: Vec<u64>,
}

/// Runs `episodes` expert episodes of `kind` (seeds `first_seed..`), keeping the solved ones: each row is the
/// observation and the expert's action before the noise. With `max_stale_steps` > 0 each episode's expert acts on
/// states a fixed number of steps old, drawn per episode from `0..=max_stale_steps` ([`episode_staleness`]), so
/// that the data holds action sequences planned from older states, as a committed prefix is at run time. With
/// `camera_width`, each row also holds what the task's camera saw ([`Env::camera`], that many pixels wide).
/// `progress` is called after every episode with the number done.
pub fn collect(
    kind: TaskKind,
    episodes: u64,
    first_seed: u64,
    max_stale_steps: usize,
    camera_width: Option<usize>,
    mut progress: impl FnMut(u64),
) -> (Dataset, CollectReport) {
    let mut env = Env::new(kind);
    let mut expert = env.expert();
    let spec = env.spec();
    let mut dataset = Dataset::new(spec.observation_dim(), spec.action_dim());
    if let Some(width) = camera_width {
        let (width, height) = env.camera(width).size();
        dataset = dataset.with_camera(height, width);
    }
    dataset.set_episode_seeds(first_seed, first_seed + episodes);
    let mut report = CollectReport {
        episodes,
        ..CollectReport::default()
    };
    for (done, seed) in (first_seed..first_seed + episodes).enumerate() {
        let start = dataset.len();
        let episode = report.successes as i64;
        let stale_steps = episode_staleness(seed, max_stale_steps);
        let status = play_expert_episode(
            &mut env,
            expert.as_mut(),
            seed,
            stale_steps,
            |env, observation, action| {
                let image = camera_width.map_or_else(Vec::new, |width| env.camera(width).rgb());
                dataset.push(episode, observation, action, &image);
            },
        );
        if status == Status::Success {
            report.successes += 1;
            let mode = expert.mode();
            if report.modes.len() <= mode {
                report.modes.resize(mode + 1, 0);
            }
            report.modes[mode] += 1;
        } else {
            dataset.truncate(start);
        }
        progress(done as u64 + 1);
    }
    report.rows = dataset.len();
    (dataset, report)
}

/// How many steps old the states are that episode `seed`'s expert acts on, uniform over `0..=max_stale_steps`
/// (a stream separate from the environment's and the expert's mode).
pub fn episode_staleness(seed: u64, max_stale_steps: usize) -> usize {
    let mixed = (seed ^ 0x3c6e_f372_fe94_f82b).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((mixed >> 32) % (max_stale_steps as u64 + 1)) as usize
}
