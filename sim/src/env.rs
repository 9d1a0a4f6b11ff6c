//! One episode of a task as the benchmark runs it: seeded initial state, Gaussian action noise, clipping,
//! physics substeps and the timeout; and a batch of them stepped together.

use crate::canvas::Canvas;
use crate::expert::Expert;
use crate::task::{ACTION_NOISE, CONTROL_PERIOD, MAX_STEPS, SUBSTEPS, Status, Task, TaskSpec};
use crate::tasks::TaskKind;
use rtchunk_policy::NormalRng;

/// Offset that separates an episode's action-noise stream from its initial-state stream.
const NOISE_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

/// A task with the benchmark's shared rules. Deterministic for a seed: `reset(seed)` fixes the initial state and
/// the whole noise sequence, so the same actions give the same trajectory bit for bit.
pub struct Env {
    kind: TaskKind,
    task: Box<dyn Task>,
    noise: NormalRng,
    executed: Vec<f64>,
    steps: u32,
    status: Status,
}

impl Env {
    /// An environment of `kind`, reset with seed 0.
    pub fn new(kind: TaskKind) -> Self {
        let task = kind.build();
        let mut env = Env {
            kind,
            executed: vec![0.0; task.spec().action_dim()],
            task,
            noise: NormalRng::new(0),
            steps: 0,
            status: Status::Running,
        };
        env.reset(0);
        env
    }

    /// The task's description.
    pub fn spec(&self) -> &'static TaskSpec {
        self.task.spec()
    }

    /// A scripted expert for this task.
    pub fn expert(&self) -> Box<dyn Expert> {
        self.task.expert()
    }

    /// Starts episode `seed`.
    pub fn reset(&mut self, seed: u64) {
        self.task.reset(&mut NormalRng::new(seed));
        self.noise = NormalRng::new(seed ^ NOISE_STREAM);
        self.steps = 0;
        self.status = Status::Running;
    }

    /// Writes the current observation.
    pub fn observe(&self, out: &mut [f32]) {
        self.task.observe(out);
    }

    /// Executes `action` for one control period: adds the noise, clips to the action bounds, integrates. Once the
    /// episode has ended, further steps change nothing and return the final status. A non-finite action fails.
    pub fn step(&mut self, action: &[f32]) -> Status {
        if self.status.is_done() {
            return self.status;
        }
        let spec = self.task.spec();
        for (i, executed) in self.executed.iter_mut().enumerate() {
            let noisy = f64::from(action[i]) + ACTION_NOISE * self.noise.normal();
            if !noisy.is_finite() {
                self.status = Status::Failure;
                return self.status;
            }
            *executed = noisy.clamp(
                f64::from(spec.action_low[i]),
                f64::from(spec.action_high[i]),
            );
        }
        let dt = CONTROL_PERIOD / SUBSTEPS as f64;
        for _ in 0..SUBSTEPS {
            self.status = self.task.advance(&self.executed, dt);
            if self.status.is_done() {
                return self.status;
            }
        }
        self.steps += 1;
        if self.steps >= MAX_STEPS {
            self.status = Status::Timeout;
        }
        self.status
    }

    /// How the episode stands.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Control steps taken in this episode.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    /// Draws the current state.
    pub fn draw(&self, canvas: &mut Canvas) {
        self.task.draw(canvas);
    }

    /// The current state as the task's camera sees it: its view ([`TaskKind::view`]) drawn on a canvas `width`
    /// pixels wide (the height follows the view's aspect).
    pub fn camera(&self, width: usize) -> Canvas {
        let (x, y) = self.kind.view();
        let mut canvas = Canvas::new(width, x, y);
        self.draw(&mut canvas);
        canvas
    }
}

/// Many environments of one task, stepped together: the benchmark's rollouts of one configuration.
pub struct EnvBatch {
    envs: Vec<Env>,
}

impl EnvBatch {
    /// `count` environments of `kind`, episode `first_seed + i` in environment `i`.
    pub fn new(kind: TaskKind, count: usize, first_seed: u64) -> Self {
        let envs = (0..count)
            .map(|i| {
                let mut env = Env::new(kind);
                env.reset(first_seed + i as u64);
                env
            })
            .collect();
        EnvBatch { envs }
    }

    /// The environments.
    pub fn envs(&self) -> &[Env] {
        &self.envs
    }

    /// Number of environments.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Writes every environment's observation, one row each.
    pub fn observe(&self, out: &mut [f32]) {
        let dim = out.len() / self.envs.len().max(1);
        for (env, row) in self.envs.iter().zip(out.chunks_mut(dim)) {
            env.observe(row);
        }
    }

    /// Steps environment `i` with row `i` of `actions`; ended episodes stay as they are.
    pub fn step(&mut self, actions: &[f32]) {
        let dim = actions.len() / self.envs.len().max(1);
        for (env, action) in self.envs.iter_mut().zip(actions.chunks(dim)) {
            env.step(action);
        }
    }

    /// Whether every episode has ended.
    pub fn all_done(&self) -> bool {
        self.envs.iter().all(|env| env.status().is_done())
    }
}
