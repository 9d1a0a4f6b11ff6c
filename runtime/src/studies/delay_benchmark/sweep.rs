//! One sweep of the delay benchmark: every task, method and delay, its rollouts run in parallel, written as a
//! report.

use crate::core::worker::InferenceEngine;
use crate::studies::delay_benchmark::methods::Method;
use crate::studies::delay_benchmark::report::{PointRecord, Sweep};
use crate::studies::delay_benchmark::rollouts::{RolloutSettings, run_rollouts};
use anyhow::Context;
use rtchunk_policy::onnx::{OnnxPolicy, OnnxRuntimeOptions};
use rtchunk_policy::{FlowPolicy, Sampler};
use rtchunk_sim::TaskKind;
use std::path::{Path, PathBuf};

/// Horizon of the benchmark's policies (H = 8, as in the paper).
pub const HORIZON: usize = 8;

/// The first evaluation episode by default: far from the training episodes (`scripts/train-bench-policies.sh`
/// collects demonstrations from seeds 0..4000; each bundle records its range and an overlap is refused).
pub const DEFAULT_FIRST_EPISODE: u64 = 1_000_000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Tasks.
    pub tasks: Vec<TaskKind>,
    /// Methods.
    pub methods: Vec<Method>,
    /// Delays d of the delay sweep.
    pub delays: Vec<usize>,
    /// The delay sweep's execution horizon s; `None`: s = max(d, 1), the paper's protocol.
    pub execution_horizon: Option<usize>,
    /// Also sweep s = 1..H - 1 at d = 1.
    pub horizon_sweep: bool,
    /// Rollouts per point.
    pub rollouts: usize,
    /// Training seeds of the policies (bundles `<task>/base-s<seed>`, `<task>/trained-prefix-s<seed>`).
    pub policy_seeds: Vec<u64>,
    /// Folder of the trained bundles.
    pub policies: PathBuf,
    /// Seed of the first rollout's episode.
    pub seed: u64,
    /// ONNX Runtime settings.
    pub runtime: OnnxRuntimeOptions,
    /// Most chunks per policy call.
    pub max_batch: usize,
}

/// A point to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Which sweep.
    pub sweep: Sweep,
    /// d.
    pub delay: usize,
    /// s.
    pub execution_horizon: usize,
}

impl SweepSettings {
    /// The (sweep, d, s) points, checked against the protocol (1 <= s, d <= s, d + s <= H: no starvation).
    pub fn points(&self) -> anyhow::Result<Vec<Point>> {
        let mut points: Vec<Point> = self
            .delays
            .iter()
            .map(|&d| Point {
                sweep: Sweep::Delay,
                delay: d,
                execution_horizon: self.execution_horizon.unwrap_or(d.max(1)),
            })
            .collect();
        if self.horizon_sweep {
            points.extend((1..HORIZON).map(|s| Point {
                sweep: Sweep::Horizon,
                delay: 1,
                execution_horizon: s,
            }));
        }
        for p in &points {
            if p.execution_horizon == 0 {
                anyhow::bail!("execution horizon 0: s must be at least 1");
            }
            if p.delay + p.execution_horizon > HORIZON {
                anyhow::bail!(
                    "delay {} with execution horizon {}: d + s must be at most H = {HORIZON} (d <= 4)",
                    p.delay,
                    p.execution_horizon
                );
            }
        }
        Ok(points)
    }

    /// Number of points measured (per task, seed and method).
    pub fn total_points(&self) -> anyhow::Result<usize> {
        Ok(self.points()?.len() * self.tasks.len() * self.policy_seeds.len() * self.methods.len())
    }
}

/// The bundle of `task`'s policy for training seed `seed`, plain or trained with training-time RTC.
pub fn bundle_path(policies: &Path, task: TaskKind, seed: u64, trained_prefix: bool) -> PathBuf {
    let kind = if trained_prefix {
        "trained-prefix"
    } else {
        "base"
    };
    policies.join(task.name()).join(format!("{kind}-s{seed}"))
}

/// Loads a benchmark policy, refusing one whose training episodes overlap the evaluation's `episodes`.
fn load(
    path: &Path,
    options: &OnnxRuntimeOptions,
    episodes: std::ops::Range<u64>,
) -> anyhow::Result<Box<dyn FlowPolicy>> {
    let policy = OnnxPolicy::load(path, options).with_context(|| {
        format!(
            "loading {} (the benchmark's trained policies: scripts/train-bench-policies.sh)",
            path.display()
        )
    })?;
    anyhow::ensure!(
        policy.spec().horizon == HORIZON,
        "{}: horizon {}, the benchmark needs H = {HORIZON}",
        path.display(),
        policy.spec().horizon
    );
    if let Some(training) = &policy.manifest().training {
        let [first, end] = training.episode_seeds;
        anyhow::ensure!(
            end <= episodes.start || episodes.end <= first,
            "{}: trained on episode seeds {first}..{end}, which overlap the evaluation's {}..{}: choose --seed \
             at {end} or above (the default, {DEFAULT_FIRST_EPISODE}, is clear of every committed policy's)",
            path.display(),
            episodes.start,
            episodes.end
        );
    }
    Ok(Box::new(policy))
}

/// Runs every point of `settings`; `on_point` hears of each as it finishes (with the count done and the total).
/// Returns the per-seed records.
pub fn run_sweep(
    settings: &SweepSettings,
    mut on_point: impl FnMut(usize, usize, &PointRecord),
) -> anyhow::Result<Vec<PointRecord>> {
    let points = settings.points()?;
    let total = settings.total_points()?;
    let mut records = Vec::with_capacity(total);
    for &task in &settings.tasks {
        for &policy_seed in &settings.policy_seeds {
            let mut engines: [Option<InferenceEngine>; 2] = [None, None];
            for &method in &settings.methods {
                let slot = usize::from(method.uses_trained_prefix_policy());
                let sampler = |policy: &dyn FlowPolicy| {
                    Sampler::new(method.sampler(), HORIZON, policy.spec().action_dim)
                };
                let engine = match &mut engines[slot] {
                    Some(engine) => {
                        engine.sampler = sampler(engine.policy.as_ref());
                        engine
                    }
                    empty => {
                        let path = bundle_path(&settings.policies, task, policy_seed, slot == 1);
                        let episodes = settings.seed..settings.seed + settings.rollouts as u64;
                        let policy = load(&path, &settings.runtime, episodes)?;
                        let sampler = sampler(policy.as_ref());
                        empty.insert(InferenceEngine::new(policy, None, sampler, settings.seed))
                    }
                };
                engine
                    .sampler
                    .check_policy(engine.policy.as_ref())
                    .with_context(|| format!("{task}: {method}"))?;
                for point in &points {
                    let rollout = RolloutSettings {
                        task,
                        execution: method.execution(),
                        delay: point.delay,
                        execution_horizon: point.execution_horizon,
                        rollouts: settings.rollouts,
                        first_seed: settings.seed,
                        max_batch: settings.max_batch,
                        keep_actions: false,
                    };
                    let outcome = run_rollouts(engine, &rollout)
                        .with_context(|| format!("{task} with {method} at d = {}", point.delay))?;
                    let record = PointRecord::new(
                        point.sweep,
                        task.name(),
                        Some(policy_seed),
                        method,
                        (point.delay, point.execution_horizon),
                        (outcome.successes, outcome.rollouts),
                        outcome.seam_jump,
                        outcome.seconds,
                    );
                    records.push(record);
                    on_point(records.len(), total, records.last().expect("just pushed"));
                }
            }
        }
    }
    Ok(records)
}
