//! Reach around obstacles: a force-controlled point mass passes two disc obstacles, each above or below, and
//! stops inside a goal disc. Touching an obstacle or a wall fails.

use super::{side_of, uniform};
use crate::canvas::{Canvas, palette};
use crate::expert::Expert;
use crate::task::{Status, Task, TaskSpec};
use rtchunk_policy::NormalRng;

const SPEC: TaskSpec = TaskSpec {
    name: "reach",
    summary: "a point mass passes two obstacles (each above or below) and stops in the goal disc",
    observation: &["x", "y", "vx", "vy"],
    action: &["force_x", "force_y"],
    action_low: &[-1.0, -1.0],
    action_high: &[1.0, 1.0],
};

/// Arena: x in [0, LENGTH], y in [-HALF_WIDTH, HALF_WIDTH].
const LENGTH: f64 = 4.0;
const HALF_WIDTH: f64 = 1.0;
const RADIUS: f64 = 0.05;
const OBSTACLES: [[f64; 3]; 2] = [[1.2, 0.0, 0.3], [2.5, 0.0, 0.3]];
const GOAL: [f64; 2] = [3.5, 0.0];
const GOAL_RADIUS: f64 = 0.15;
const REST_SPEED: f64 = 0.3;
/// Force at full action (unit mass).
const MAX_FORCE: f64 = 3.0;
const DRAG: f64 = 1.0;

/// State of the point mass.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    position: [f64; 2],
    velocity: [f64; 2],
    trace: Vec<[f64; 2]>,
}

impl Task for Reach {
    fn spec(&self) -> &'static TaskSpec {
        &SPEC
    }

    fn reset(&mut self, rng: &mut NormalRng) {
        self.position = [0.35, uniform(rng, -0.1, 0.1)];
        self.velocity = [0.0, 0.0];
        self.trace.clear();
    }

    fn observe(&self, out: &mut [f32]) {
        out.copy_from_slice(
            &[
                self.position[0],
                self.position[1],
                self.velocity[0],
                self.velocity[1],
            ]
            .map(|v| v as f32),
        );
    }

    fn advance(&mut self, action: &[f64], dt: f64) -> Status {
        for ((velocity, position), force) in
            self.velocity.iter_mut().zip(&mut self.position).zip(action)
        {
            *velocity += (MAX_FORCE * force - DRAG * *velocity) * dt;
            *position += *velocity * dt;
        }
        if self.trace.len() < 1024 {
            self.trace.push(self.position);
        }
        let [x, y] = self.position;
        let hits_obstacle = OBSTACLES
            .iter()
            .any(|[ox, oy, r]| (x - ox).hypot(y - oy) < r + RADIUS);
        let hits_wall = !(RADIUS..=LENGTH - RADIUS).contains(&x) || y.abs() > HALF_WIDTH - RADIUS;
        if hits_obstacle || hits_wall {
            return Status::Failure;
        }
        let speed = self.velocity[0].hypot(self.velocity[1]);
        if (x - GOAL[0]).hypot(y - GOAL[1]) < GOAL_RADIUS && speed < REST_SPEED {
            return Status::Success;
        }
        Status::Running
    }

    fn draw(&self, canvas: &mut Canvas) {
        canvas.rect(
            [LENGTH / 2.0, 0.0],
            [LENGTH / 2.0, HALF_WIDTH],
            0.0,
            palette::HAZARD,
        );
        canvas.rect(
            [LENGTH / 2.0, 0.0],
            [LENGTH / 2.0 - 0.03, HALF_WIDTH - 0.03],
            0.0,
            palette::BACKGROUND,
        );
        for [ox, oy, r] in OBSTACLES {
            canvas.disc([ox, oy], r, palette::HAZARD);
        }
        canvas.disc(GOAL, GOAL_RADIUS, palette::GOAL);
        for point in &self.trace {
            canvas.disc(*point, 0.012, palette::TRACE);
        }
        canvas.disc(self.position, RADIUS, palette::AGENT);
    }

    fn expert(&self) -> Box<dyn Expert> {
        Box::new(ReachExpert::default())
    }
}

/// Clearance of the via-points from the obstacles' centre line.
const VIA_OFFSET: f64 = 0.62;
const CRUISE_SPEED: f64 = 0.8;

/// Goes above or below each obstacle (four modes) through via-points, then brakes into the goal.
#[derive(Debug, Clone, Default)]
pub struct ReachExpert {
    sides: [f64; 2],
}

impl Expert for ReachExpert {
    fn reset(&mut self, seed: u64) {
        self.sides = [side_of(seed, 0), side_of(seed, 1)];
    }

    fn act(&mut self, observation: &[f32], action: &mut [f32]) {
        let [x, y, vx, vy] = [0, 1, 2, 3].map(|i| f64::from(observation[i]));
        // Via-points: a gate beside each obstacle (its entry and exit on the chosen side), then the goal.
        let next = OBSTACLES
            .iter()
            .zip(self.sides)
            .flat_map(|([ox, oy, r], side)| {
                [
                    [ox - r, oy + side * VIA_OFFSET],
                    [ox + 0.1, oy + side * VIA_OFFSET],
                ]
            })
            .find(|[via_x, _]| x < *via_x);
        let desired = match next {
            Some([via_x, via_y]) => {
                let (dx, dy) = (via_x - x, via_y - y);
                let distance = dx.hypot(dy).max(1e-6);
                [CRUISE_SPEED * dx / distance, CRUISE_SPEED * dy / distance]
            }
            None => {
                let (dx, dy) = (GOAL[0] - x, GOAL[1] - y);
                let speed = (1.2 * dx.hypot(dy)).min(CRUISE_SPEED);
                let distance = dx.hypot(dy).max(1e-6);
                [speed * dx / distance, speed * dy / distance]
            }
        };
        let gain = 2.0 / MAX_FORCE;
        action[0] =
            ((DRAG * desired[0] / MAX_FORCE + gain * (desired[0] - vx)).clamp(-1.0, 1.0)) as f32;
        action[1] =
            ((DRAG * desired[1] / MAX_FORCE + gain * (desired[1] - vy)).clamp(-1.0, 1.0)) as f32;
    }

    fn mode(&self) -> usize {
        usize::from(self.sides[0] > 0.0) + 2 * usize::from(self.sides[1] > 0.0)
    }
}
