//! Thruster cart-pole: a cart pushed by two thrusters (left, right) carries a pole balanced upright to one of
//! two markers and stops there. The pole falling past 0.6 rad or the cart touching a wall fails. Gravity is
//! low (2 m/s^2) so that the task tolerates the open-loop windows the delay benchmark forces (calibrated: the
//! expert still solves it acting on 7-step-old states).

use super::{side_of, uniform};
use crate::canvas::{Canvas, palette};
use crate::expert::Expert;
use crate::task::{CONTROL_PERIOD, Status, Task, TaskSpec};
use nalgebra::{Matrix1, Matrix4, RowVector4, Vector4};
use rtchunk_policy::NormalRng;

const SPEC: TaskSpec = TaskSpec {
    name: "cartpole",
    summary: "a thruster cart carries a balanced pole to either marker and stops there",
    observation: &["x", "x_dot", "angle", "angle_dot"],
    action: &["thrust_left", "thrust_right"],
    action_low: &[0.0, 0.0],
    action_high: &[1.0, 1.0],
};

const GRAVITY: f64 = 2.0;
const CART_MASS: f64 = 1.0;
const POLE_MASS: f64 = 0.1;
/// Half the pole's length.
const POLE_HALF: f64 = 1.0;
/// Force of one thruster at full action.
const THRUST: f64 = 3.0;
const WALL: f64 = 2.4;
const CART_HALF: f64 = 0.2;
const MARKER: f64 = 1.5;
const FALLEN: f64 = 0.6;

/// Cart position and velocity, pole angle (0 upright, positive counter-clockwise) and angular velocity.
#[derive(Debug, Clone, Default)]
pub struct Cartpole {
    state: [f64; 4],
}

/// Accelerations (cart, pole) for a horizontal force on the cart (the classic cart-pole equations).
fn accelerations(state: &[f64; 4], force: f64) -> (f64, f64) {
    let [_, _, angle, angle_dot] = *state;
    let total = CART_MASS + POLE_MASS;
    let (sin, cos) = angle.sin_cos();
    // Angle positive counter-clockwise: gravity tips the pole further the way it leans (towards -x for angle > 0).
    let temp = (force - POLE_MASS * POLE_HALF * angle_dot * angle_dot * sin) / total;
    let angle_acc =
        (GRAVITY * sin + cos * temp) / (POLE_HALF * (4.0 / 3.0 - POLE_MASS * cos * cos / total));
    let cart_acc = temp + POLE_MASS * POLE_HALF * angle_acc * cos / total;
    (cart_acc, angle_acc)
}

impl Task for Cartpole {
    fn spec(&self) -> &'static TaskSpec {
        &SPEC
    }

    fn reset(&mut self, rng: &mut NormalRng) {
        self.state = [uniform(rng, -0.1, 0.1), 0.0, uniform(rng, -0.05, 0.05), 0.0];
    }

    fn observe(&self, out: &mut [f32]) {
        out.copy_from_slice(&self.state.map(|v| v as f32));
    }

    fn advance(&mut self, action: &[f64], dt: f64) -> Status {
        let force = THRUST * (action[1] - action[0]);
        let (cart_acc, angle_acc) = accelerations(&self.state, force);
        self.state[1] += cart_acc * dt;
        self.state[0] += self.state[1] * dt;
        self.state[3] += angle_acc * dt;
        self.state[2] += self.state[3] * dt;
        let [x, x_dot, angle, angle_dot] = self.state;
        if angle.abs() > FALLEN || x.abs() > WALL - CART_HALF {
            return Status::Failure;
        }
        let at_marker = (x.abs() - MARKER).abs() < 0.15;
        if at_marker && x_dot.abs() < 0.25 && angle.abs() < 0.15 && angle_dot.abs() < 0.3 {
            return Status::Success;
        }
        Status::Running
    }

    fn draw(&self, canvas: &mut Canvas) {
        canvas.rect([0.0, -0.05], [WALL, 0.02], 0.0, palette::NEUTRAL);
        for side in [-1.0, 1.0] {
            canvas.rect([side * WALL, 0.8], [0.03, 0.9], 0.0, palette::HAZARD);
            canvas.rect([side * MARKER, 2.1], [0.15, 0.06], 0.0, palette::GOAL);
        }
        let [x, _, angle, _] = self.state;
        canvas.rect([x, 0.08], [CART_HALF, 0.1], 0.0, palette::NEUTRAL);
        let tip = [
            x - 2.0 * POLE_HALF * angle.sin(),
            0.08 + 2.0 * POLE_HALF * angle.cos(),
        ];
        canvas.line([x, 0.08], tip, 0.05, palette::AGENT);
    }

    fn expert(&self) -> Box<dyn Expert> {
        Box::new(CartpoleExpert::new())
    }
}

/// Linear-quadratic regulator gains for the cart-pole linearised upright, at the control period, from the
/// discrete Riccati equation.
fn lqr_gains() -> RowVector4<f64> {
    let total = CART_MASS + POLE_MASS;
    let lever = POLE_HALF * (4.0 / 3.0 - POLE_MASS / total);
    // Linearised: angle_acc = (g angle + F / total) / lever; cart_acc = F / total + m l angle_acc / total.
    let angle_per_angle = GRAVITY / lever;
    let angle_per_force = 1.0 / (total * lever);
    let mut a = Matrix4::identity();
    a[(0, 1)] = CONTROL_PERIOD;
    a[(2, 3)] = CONTROL_PERIOD;
    a[(1, 2)] = CONTROL_PERIOD * POLE_MASS * POLE_HALF * angle_per_angle / total;
    a[(3, 2)] = CONTROL_PERIOD * angle_per_angle;
    let b = Vector4::new(
        0.0,
        CONTROL_PERIOD * (1.0 / total + POLE_MASS * POLE_HALF * angle_per_force / total),
        0.0,
        CONTROL_PERIOD * angle_per_force,
    );
    let q = Matrix4::from_diagonal(&Vector4::new(2.0, 0.2, 10.0, 1.0));
    let r = Matrix1::new(1.0);
    let mut p = q;
    for _ in 0..2000 {
        let gain =
            (r + b.transpose() * p * b).try_inverse().expect("positive") * b.transpose() * p * a;
        p = q + a.transpose() * p * (a - b * gain);
    }
    (r + b.transpose() * p * b).try_inverse().expect("positive") * b.transpose() * p * a
}

/// Picks a marker (left or right) and a travel speed (how far ahead it aims); an LQR controller drives the cart
/// there with the pole upright.
#[derive(Debug, Clone)]
pub struct CartpoleExpert {
    gains: RowVector4<f64>,
    side: f64,
    lead: f64,
}

impl CartpoleExpert {
    fn new() -> Self {
        CartpoleExpert {
            gains: lqr_gains(),
            side: 1.0,
            lead: 0.4,
        }
    }
}

impl Expert for CartpoleExpert {
    fn reset(&mut self, seed: u64) {
        self.side = side_of(seed, 0);
        self.lead = if side_of(seed, 1) > 0.0 { 1.5 } else { 0.8 };
    }

    fn act(&mut self, observation: &[f32], action: &mut [f32]) {
        let [x, x_dot, angle, angle_dot] = [0, 1, 2, 3].map(|i| f64::from(observation[i]));
        // The position error is capped at the mode's lead, which sets the cruise speed; near the marker the
        // regulator holds it there with the pole upright.
        let lead = (self.side * MARKER - x).clamp(-self.lead, self.lead);
        let error = Vector4::new(-lead, x_dot, angle, angle_dot);
        let force = -(self.gains * error)[0];
        let thrust = (force / THRUST).clamp(-1.0, 1.0);
        action[0] = (-thrust).max(0.0) as f32;
        action[1] = thrust.max(0.0) as f32;
    }

    fn mode(&self) -> usize {
        usize::from(self.side > 0.0) + 2 * usize::from(self.lead > 1.0)
    }
}
