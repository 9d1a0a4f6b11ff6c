//! Scripted experts, and the calibration check that a task still separates delay-handling methods.

use crate::env::Env;
use crate::task::Status;
use crate::tasks::TaskKind;

/// A scripted controller that solves a task from its observation. Each episode it draws one of several
/// strategies (its mode) at random, so its demonstrations are multimodal.
pub trait Expert: Send {
    /// Starts an episode; `seed` picks the mode.
    fn reset(&mut self, seed: u64);
    /// The action for `observation` (before the environment's noise).
    fn act(&mut self, observation: &[f32], action: &mut [f32]);
    /// The strategy drawn for this episode, for analysis.
    fn mode(&self) -> usize;
}

/// Seed of the expert's mode for episode `seed` (a stream separate from the environment's).
pub fn expert_seed(seed: u64) -> u64 {
    seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x6a09_e667_f3bc_c908
}

/// Plays episode `seed` with `expert` acting on the observation from `stale_steps` control steps ago (the initial
/// observation until that many steps have passed; 0: the current one). `on_step` sees the environment, each
/// current observation and the action chosen at it. Returns how the episode ended.
pub fn play_expert_episode(
    env: &mut Env,
    expert: &mut dyn Expert,
    seed: u64,
    stale_steps: usize,
    mut on_step: impl FnMut(&Env, &[f32], &[f32]),
) -> Status {
    env.reset(seed);
    expert.reset(expert_seed(seed));
    let dim = env.spec().observation_dim();
    let mut history = vec![0.0f32; dim * (stale_steps + 1)];
    for slot in history.chunks_mut(dim) {
        env.observe(slot);
    }
    let mut action = vec![0.0f32; env.spec().action_dim()];
    let mut step = 0usize;
    while !env.status().is_done() {
        let current = (step % (stale_steps + 1)) * dim;
        env.observe(&mut history[current..][..dim]);
        let seen = ((step + 1) % (stale_steps + 1)) * dim;
        expert.act(&history[seen..][..dim], &mut action);
        on_step(env, &history[current..][..dim], &action);
        env.step(&action);
        step += 1;
    }
    env.status()
}

/// Fraction of `episodes` (seeds `first_seed..`) the task's expert solves when it acts on the observation from
/// `stale_steps` control steps ago. The RTC benchmark needs at least 0.8 at 7 steps (d_max + s_max - 1 for H = 8):
/// a task whose expert fails that cannot separate the methods, because every method must run that long open loop.
pub fn stale_success_rate(
    kind: TaskKind,
    stale_steps: usize,
    episodes: u64,
    first_seed: u64,
) -> f64 {
    let mut env = Env::new(kind);
    let mut expert = env.expert();
    let solved = (first_seed..first_seed + episodes)
        .filter(|&seed| {
            play_expert_episode(&mut env, expert.as_mut(), seed, stale_steps, |_, _, _| {})
                == Status::Success
        })
        .count();
    solved as f64 / episodes as f64
}
