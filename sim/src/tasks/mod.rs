//! The benchmark's tasks: force- or torque-controlled, dynamic, with multimodal scripted experts.

mod cartpole;
mod catch;
mod lander;
mod reach;

use crate::task::Task;

/// Which task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// A point mass passes two obstacles, each above or below, and stops in a goal disc.
    Reach,
    /// A thruster-driven cart carries a balanced pole to one of two markers.
    Cartpole,
    /// A 2-D lander with two angled thrusters lands upright on one of two pads.
    Lander,
    /// A paddle with two cups catches a thrown ball in either cup.
    Catch,
}

impl TaskKind {
    /// Every task, in the order the benchmark reports them.
    pub const ALL: [TaskKind; 4] = [
        TaskKind::Reach,
        TaskKind::Cartpole,
        TaskKind::Lander,
        TaskKind::Catch,
    ];

    /// The task's command-line name.
    pub fn name(self) -> &'static str {
        self.build().spec().name
    }

    /// The world rectangle the task is drawn in (x range, y range): what pictures of it and its camera show.
    pub fn view(self) -> ([f64; 2], [f64; 2]) {
        match self {
            TaskKind::Reach => ([-0.1, 4.1], [-1.1, 1.1]),
            TaskKind::Cartpole => ([-2.6, 2.6], [-0.3, 2.4]),
            TaskKind::Lander => ([-3.1, 3.1], [-0.2, 3.2]),
            TaskKind::Catch => ([-2.4, 2.4], [-0.3, 3.2]),
        }
    }

    /// A fresh instance of the task's dynamics.
    pub fn build(self) -> Box<dyn Task> {
        match self {
            TaskKind::Reach => Box::new(reach::Reach::default()),
            TaskKind::Cartpole => Box::new(cartpole::Cartpole::default()),
            TaskKind::Lander => Box::new(lander::Lander::default()),
            TaskKind::Catch => Box::new(catch::Catch::default()),
        }
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        TaskKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = TaskKind::ALL.iter().map(|kind| kind.name()).collect();
                format!(
                    "unknown task {name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A uniform draw in `[low, high)`.
fn uniform(rng: &mut rtchunk_policy::NormalRng, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.uniform()
}

/// A fair coin as -1 or +1 from a seed.
fn side_of(seed: u64, bit: u32) -> f64 {
    if rtchunk_policy::NormalRng::new(seed).next_u64() >> (63 - bit) & 1 == 1 {
        1.0
    } else {
        -1.0
    }
}
