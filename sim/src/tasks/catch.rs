//! Catch: a force-driven paddle on a rail carries two cups; a ball is thrown and must land in either cup. The
//! ball bounces off the side walls; reaching the paddle's height anywhere but in a cup fails.

use super::{side_of, uniform};
use crate::canvas::{Canvas, palette};
use crate::expert::Expert;
use crate::task::{Status, Task, TaskSpec};
use rtchunk_policy::NormalRng;

const SPEC: TaskSpec = TaskSpec {
    name: "catch",
    summary: "a paddle with two cups catches a thrown ball in either cup",
    observation: &[
        "paddle_x", "paddle_v", "ball_x", "ball_y", "ball_vx", "ball_vy",
    ],
    action: &["force"],
    action_low: &[-1.0],
    action_high: &[1.0],
};

const GRAVITY: f64 = 1.0;
/// Force on the (unit-mass) paddle at full action.
const FORCE: f64 = 6.0;
const DRAG: f64 = 1.0;
const RAIL: f64 = 2.0;
const WALL: f64 = 2.2;
/// Cups sit this far left and right of the paddle's centre.
const CUP_OFFSET: f64 = 0.35;
const CUP_HALF: f64 = 0.12;
/// The expert's PD gains (per unit mass).
const POSITION_GAIN: f64 = 5.0;
const DAMPING_GAIN: f64 = 4.0;

/// Paddle position and velocity; ball position and velocity.
#[derive(Debug, Clone, Default)]
pub struct Catch {
    paddle: [f64; 2],
    ball: [f64; 4],
    trace: Vec<[f64; 2]>,
}

impl Task for Catch {
    fn spec(&self) -> &'static TaskSpec {
        &SPEC
    }

    fn reset(&mut self, rng: &mut NormalRng) {
        self.paddle = [uniform(rng, -0.2, 0.2), 0.0];
        self.ball = [
            uniform(rng, -0.8, 0.8),
            2.5,
            uniform(rng, -0.6, 0.6),
            uniform(rng, 0.0, 0.8),
        ];
        self.trace.clear();
    }

    fn observe(&self, out: &mut [f32]) {
        let [px, pv] = self.paddle;
        let [bx, by, bvx, bvy] = self.ball;
        out.copy_from_slice(&[px, pv, bx, by, bvx, bvy].map(|v| v as f32));
    }

    fn advance(&mut self, action: &[f64], dt: f64) -> Status {
        self.paddle[1] += (FORCE * action[0] - DRAG * self.paddle[1]) * dt;
        self.paddle[0] += self.paddle[1] * dt;
        if self.paddle[0].abs() > RAIL {
            self.paddle = [self.paddle[0].clamp(-RAIL, RAIL), 0.0];
        }
        self.ball[3] -= GRAVITY * dt;
        self.ball[0] += self.ball[2] * dt;
        self.ball[1] += self.ball[3] * dt;
        if self.ball[0].abs() > WALL {
            self.ball[0] = self.ball[0].signum() * (2.0 * WALL - self.ball[0].abs());
            self.ball[2] = -self.ball[2];
        }
        if self.trace.len() < 1024 {
            self.trace.push([self.ball[0], self.ball[1]]);
        }
        if self.ball[1] > 0.0 {
            return Status::Running;
        }
        let caught = [-1.0, 1.0]
            .iter()
            .any(|side| (self.ball[0] - self.paddle[0] - side * CUP_OFFSET).abs() < CUP_HALF);
        if caught {
            Status::Success
        } else {
            Status::Failure
        }
    }

    fn draw(&self, canvas: &mut Canvas) {
        for side in [-1.0, 1.0] {
            canvas.rect([side * WALL, 1.5], [0.03, 1.6], 0.0, palette::NEUTRAL);
        }
        canvas.rect(
            [0.0, -0.12],
            [RAIL + CUP_OFFSET, 0.02],
            0.0,
            palette::NEUTRAL,
        );
        for point in &self.trace {
            canvas.disc(*point, 0.015, palette::TRACE);
        }
        let x = self.paddle[0];
        canvas.rect(
            [x, -0.06],
            [CUP_OFFSET + CUP_HALF, 0.03],
            0.0,
            palette::AGENT,
        );
        for side in [-1.0, 1.0] {
            canvas.rect(
                [x + side * CUP_OFFSET, -0.02],
                [CUP_HALF, 0.03],
                0.0,
                palette::GOAL,
            );
        }
        canvas.disc([self.ball[0], self.ball[1]], 0.06, palette::HAZARD);
    }

    fn expert(&self) -> Box<dyn Expert> {
        Box::new(CatchExpert::default())
    }
}

/// Where the ball will reach the paddle's height, following its flight and wall bounces from an observation.
fn landing_x(ball: [f64; 4]) -> f64 {
    let [x, y, vx, vy] = ball;
    let time = (vy + (vy * vy + 2.0 * GRAVITY * y.max(0.0)).sqrt()) / GRAVITY;
    // Unfold the wall reflections: the free flight on a line, folded back into [-WALL, WALL].
    let period = 4.0 * WALL;
    let unfolded = (x + vx * time + WALL).rem_euclid(period);
    if unfolded <= 2.0 * WALL {
        unfolded - WALL
    } else {
        3.0 * WALL - unfolded
    }
}

/// Picks a cup (left or right; the inner one when the ball comes down near a wall) and drives the paddle, with a PD loop, to put that cup under the predicted landing
/// point.
#[derive(Debug, Clone, Default)]
pub struct CatchExpert {
    side: f64,
}

impl Expert for CatchExpert {
    fn reset(&mut self, seed: u64) {
        self.side = side_of(seed, 0);
    }

    fn act(&mut self, observation: &[f32], action: &mut [f32]) {
        let [px, pv, bx, by, bvx, bvy] = [0, 1, 2, 3, 4, 5].map(|i| f64::from(observation[i]));
        let landing = landing_x([bx, by, bvx, bvy]);
        // Near a wall only the inner cup can get under the ball.
        let side = if (landing - self.side * CUP_OFFSET).abs() > RAIL {
            -self.side
        } else {
            self.side
        };
        let target = (landing - side * CUP_OFFSET).clamp(-RAIL, RAIL);
        action[0] = ((POSITION_GAIN * (target - px) - DAMPING_GAIN * pv + DRAG * pv) / FORCE)
            .clamp(-1.0, 1.0) as f32;
    }

    fn mode(&self) -> usize {
        usize::from(self.side > 0.0)
    }
}
