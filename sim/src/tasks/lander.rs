//! Lunar lander: a 2-D rigid body with two angled thrusters lands upright and slowly on one of two pads.
//! Touching the ground anywhere else, too fast or tilted, or leaving the arena fails.

use super::{side_of, uniform};
use crate::canvas::{Canvas, palette};
use crate::expert::Expert;
use crate::task::{Status, Task, TaskSpec};
use rtchunk_policy::NormalRng;

const SPEC: TaskSpec = TaskSpec {
    name: "lander",
    summary: "a lander with two angled thrusters lands upright and slowly on either pad",
    observation: &["x", "y", "angle", "vx", "vy", "angular_velocity"],
    action: &["thrust_left", "thrust_right"],
    action_low: &[0.0, 0.0],
    action_high: &[1.0, 1.0],
};

const GRAVITY: f64 = 1.6;
const MASS: f64 = 1.0;
const INERTIA: f64 = 0.08;
/// Force of one thruster at full action.
const THRUST: f64 = 1.4;
/// Each thruster points this far (radians) off the body's vertical, towards the middle.
const CANT: f64 = 0.44;
/// Thruster mounts in the body frame (left one; the right one mirrored).
const MOUNT: [f64; 2] = [-0.3, -0.1];
/// Feet in the body frame (mirrored), and half the body's size for drawing.
const FOOT: [f64; 2] = [-0.25, -0.25];
const HALF_X: f64 = 3.0;
const TOP: f64 = 5.0;
const PAD: f64 = 1.6;
const PAD_HALF: f64 = 0.35;
const SAFE_VERTICAL: f64 = 0.5;
const SAFE_HORIZONTAL: f64 = 0.4;
const SAFE_ANGLE: f64 = 0.25;
/// The expert's attitude loop gains (per unit inertia).
const ANGLE_GAIN: f64 = 6.0;
const SPIN_GAIN: f64 = 4.0;
const VELOCITY_GAIN: f64 = 1.0;

/// Position, angle (counter-clockwise), velocity and angular velocity of the lander.
#[derive(Debug, Clone, Default)]
pub struct Lander {
    state: [f64; 6],
    trace: Vec<[f64; 2]>,
}

/// Lever arm of a thruster about the centre of mass, per unit thrust (torque, counter-clockwise positive).
fn torque_per_thrust(side: f64) -> f64 {
    let (mount_x, mount_y) = (side * -MOUNT[0], MOUNT[1]);
    let (fx, fy) = (-side * CANT.sin(), CANT.cos());
    mount_x * fy - mount_y * fx
}

impl Lander {
    fn lowest_foot(&self) -> (f64, f64) {
        let [x, y, angle, ..] = self.state;
        let (sin, cos) = angle.sin_cos();
        [-1.0, 1.0]
            .map(|side| {
                let (fx, fy) = (side * -FOOT[0], FOOT[1]);
                (x + cos * fx - sin * fy, y + sin * fx + cos * fy)
            })
            .into_iter()
            .fold((0.0, f64::INFINITY), |low, foot| {
                if foot.1 < low.1 { foot } else { low }
            })
    }
}

impl Task for Lander {
    fn spec(&self) -> &'static TaskSpec {
        &SPEC
    }

    fn reset(&mut self, rng: &mut NormalRng) {
        self.state = [
            uniform(rng, -0.2, 0.2),
            2.5,
            uniform(rng, -0.05, 0.05),
            uniform(rng, -0.2, 0.2),
            0.0,
            0.0,
        ];
        self.trace.clear();
    }

    fn observe(&self, out: &mut [f32]) {
        out.copy_from_slice(&self.state.map(|v| v as f32));
    }

    fn advance(&mut self, action: &[f64], dt: f64) -> Status {
        let [_, _, angle, ..] = self.state;
        let (sin, cos) = angle.sin_cos();
        // Body-frame force and torque of the two thrusters (left pushes right and up, right pushes left and up).
        let (left, right) = (THRUST * action[0], THRUST * action[1]);
        let body_x = (left - right) * CANT.sin();
        let body_y = (left + right) * CANT.cos();
        let torque = left * torque_per_thrust(-1.0) + right * torque_per_thrust(1.0);
        let ax = (cos * body_x - sin * body_y) / MASS;
        let ay = (sin * body_x + cos * body_y) / MASS - GRAVITY;
        self.state[3] += ax * dt;
        self.state[4] += ay * dt;
        self.state[5] += torque / INERTIA * dt;
        self.state[0] += self.state[3] * dt;
        self.state[1] += self.state[4] * dt;
        self.state[2] += self.state[5] * dt;
        if self.trace.len() < 1024 {
            self.trace.push([self.state[0], self.state[1]]);
        }
        let [x, y, angle, vx, vy, _] = self.state;
        if x.abs() > HALF_X || y > TOP {
            return Status::Failure;
        }
        let (foot_x, foot_y) = self.lowest_foot();
        if foot_y > 0.0 {
            return Status::Running;
        }
        let on_pad = (foot_x.abs() - PAD).abs() < PAD_HALF && (x.abs() - PAD).abs() < PAD_HALF;
        let gentle =
            vy.abs() < SAFE_VERTICAL && vx.abs() < SAFE_HORIZONTAL && angle.abs() < SAFE_ANGLE;
        if on_pad && gentle {
            Status::Success
        } else {
            Status::Failure
        }
    }

    fn draw(&self, canvas: &mut Canvas) {
        canvas.rect([0.0, -0.05], [HALF_X, 0.05], 0.0, palette::HAZARD);
        for side in [-1.0, 1.0] {
            canvas.rect([side * PAD, -0.04], [PAD_HALF, 0.06], 0.0, palette::GOAL);
        }
        for point in &self.trace {
            canvas.disc(*point, 0.015, palette::TRACE);
        }
        let [x, y, angle, ..] = self.state;
        canvas.rect([x, y], [0.25, 0.2], angle, palette::AGENT);
        let (sin, cos) = angle.sin_cos();
        for side in [-1.0, 1.0] {
            let (fx, fy) = (side * -FOOT[0], FOOT[1]);
            let foot = [x + cos * fx - sin * fy, y + sin * fx + cos * fy];
            canvas.line([x, y], foot, 0.04, palette::NEUTRAL);
        }
    }

    fn expert(&self) -> Box<dyn Expert> {
        Box::new(LanderExpert::default())
    }
}

/// Picks a pad (left or right) and a braking profile (early and slow, or late and fast): a cascade of
/// velocity, attitude and thrust loops.
#[derive(Debug, Clone, Default)]
pub struct LanderExpert {
    side: f64,
    late: bool,
}

impl Expert for LanderExpert {
    fn reset(&mut self, seed: u64) {
        self.side = side_of(seed, 0);
        self.late = side_of(seed, 1) > 0.0;
    }

    fn act(&mut self, observation: &[f32], action: &mut [f32]) {
        let [x, y, angle, vx, vy, spin] = [0, 1, 2, 3, 4, 5].map(|i| f64::from(observation[i]));
        let pad = self.side * PAD;
        let height = y - 0.25;
        let (max_descent, descent_gain) = if self.late { (0.7, 0.5) } else { (0.45, 0.3) };
        let vx_wanted = (0.6 * (pad - x)).clamp(-0.5, 0.5);
        // Away from the pad, descend to a cruise height and hold it; above the pad, come down.
        let vy_wanted = if (pad - x).abs() > 0.3 {
            (0.8 * (0.8 - height)).clamp(-max_descent, 0.3)
        } else {
            -(0.2 + descent_gain * height).min(max_descent)
        };
        let ax_wanted = VELOCITY_GAIN * (vx_wanted - vx);
        // Level off for the touchdown.
        let tilt_limit = (0.3 * height / 0.6).clamp(0.0, 0.3);
        let angle_wanted = (-ax_wanted / GRAVITY).atan().clamp(-tilt_limit, tilt_limit);
        let ay_wanted = 2.0 * (vy_wanted - vy);
        let total = (MASS * (GRAVITY + ay_wanted) / angle.cos().max(0.5)).max(0.0);
        let torque = INERTIA * (ANGLE_GAIN * (angle_wanted - angle) - SPIN_GAIN * spin);
        // Solve left + right = total / cos(cant), torque = (right - left) * lever.
        let lever = torque_per_thrust(1.0);
        let sum = total / CANT.cos();
        let difference = torque / lever;
        action[0] = ((sum - difference) / 2.0 / THRUST).clamp(0.0, 1.0) as f32;
        action[1] = ((sum + difference) / 2.0 / THRUST).clamp(0.0, 1.0) as f32;
    }

    fn mode(&self) -> usize {
        usize::from(self.side > 0.0) + 2 * usize::from(self.late)
    }
}
