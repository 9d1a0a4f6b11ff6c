//! A force-controlled point mass with a disc obstacle and a goal disc.

use nalgebra::{DVector, Vector2};
use rtchunk_config::PlantConfig;
use rtchunk_controllers::{Plant, RobotState};
use serde::Serialize;

/// What happened during a run of the point mass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PointMassReport {
    /// Times the mass touched the obstacle (each contact counted once, when it begins).
    pub obstacle_contacts: u64,
    /// Times the mass touched a wall.
    pub wall_contacts: u64,
    /// Time, in seconds, at which the mass first came to rest inside the goal disc.
    pub reached_goal_at: Option<f64>,
    /// Simulated time, in seconds.
    pub elapsed: f64,
}

/// A 2-D point mass driven by a force command, integrated with semi-implicit Euler once per controller period.
/// Observation for the policy: `[x, y, vx, vy]`.
#[derive(Debug, Clone)]
pub struct PointMass {
    config: PlantConfig,
    period: f64,
    position: Vector2<f64>,
    velocity: Vector2<f64>,
    in_obstacle: bool,
    at_wall: bool,
    report: PointMassReport,
    trajectory: Vec<[f32; 2]>,
}

/// Speed below which the mass counts as at rest in the goal.
const REST_SPEED: f64 = 0.05;

impl PointMass {
    /// A point mass at `config.start`, at rest, stepped every `period` seconds.
    pub fn new(config: PlantConfig, period: f64) -> Self {
        PointMass {
            position: Vector2::from(config.start),
            velocity: Vector2::zeros(),
            config,
            period,
            in_obstacle: false,
            at_wall: false,
            report: PointMassReport::default(),
            trajectory: Vec::new(),
        }
    }

    /// Also records the position after each step, up to `capacity` steps (reserved now, so stepping never
    /// allocates).
    pub fn with_trajectory(mut self, capacity: usize) -> Self {
        self.trajectory = Vec::with_capacity(capacity);
        self
    }

    /// The recorded positions, one per step.
    pub fn trajectory(&self) -> &[[f32; 2]] {
        &self.trajectory
    }

    /// What happened so far.
    pub fn report(&self) -> PointMassReport {
        self.report
    }

    /// The current position.
    pub fn position(&self) -> Vector2<f64> {
        self.position
    }

    /// Advances one period under `force`.
    pub fn step(&mut self, force: Vector2<f64>) {
        let acceleration = (force - self.velocity * self.config.damping) / self.config.mass;
        self.velocity += acceleration * self.period;
        self.position += self.velocity * self.period;
        self.resolve_obstacle();
        self.resolve_walls();
        self.report.elapsed += self.period;
        if self.trajectory.len() < self.trajectory.capacity() {
            self.trajectory
                .push([self.position.x as f32, self.position.y as f32]);
        }
        let goal = Vector2::from(self.config.goal);
        if self.report.reached_goal_at.is_none()
            && (self.position - goal).norm() < self.config.goal_radius
            && self.velocity.norm() < REST_SPEED
        {
            self.report.reached_goal_at = Some(self.report.elapsed);
        }
    }

    /// Pushes the mass out of the obstacle and removes its inward velocity; counts new contacts.
    fn resolve_obstacle(&mut self) {
        let centre = Vector2::from(self.config.obstacle);
        let offset = self.position - centre;
        let distance = offset.norm();
        let inside = distance < self.config.obstacle_radius;
        if inside {
            let normal = if distance > 1e-12 {
                offset / distance
            } else {
                Vector2::new(0.0, 1.0)
            };
            self.position = centre + normal * self.config.obstacle_radius;
            let inward = self.velocity.dot(&normal).min(0.0);
            self.velocity -= normal * inward;
            if !self.in_obstacle {
                self.report.obstacle_contacts += 1;
            }
        }
        self.in_obstacle = inside;
    }

    /// Keeps the mass inside the box; counts new contacts.
    fn resolve_walls(&mut self) {
        let limit = self.config.half_extent;
        let mut touching = false;
        for axis in 0..2 {
            if self.position[axis].abs() > limit {
                self.position[axis] = self.position[axis].clamp(-limit, limit);
                self.velocity[axis] = 0.0;
                touching = true;
            }
        }
        if touching && !self.at_wall {
            self.report.wall_contacts += 1;
        }
        self.at_wall = touching;
    }
}

impl Plant for PointMass {
    fn dims(&self) -> usize {
        2
    }

    fn observation_dim(&self) -> usize {
        4
    }

    fn read(&mut self, state: &mut RobotState, observation: &mut [f32]) {
        state.position.copy_from_slice(self.position.as_slice());
        state.velocity.copy_from_slice(self.velocity.as_slice());
        observation[0] = self.position.x as f32;
        observation[1] = self.position.y as f32;
        observation[2] = self.velocity.x as f32;
        observation[3] = self.velocity.y as f32;
    }

    fn write(&mut self, command: &DVector<f64>) {
        self.step(Vector2::new(command[0], command[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_force_accelerates_and_the_run_is_deterministic() {
        let run = || {
            let mut plant = PointMass::new(PlantConfig::default(), 0.01);
            for _ in 0..50 {
                plant.step(Vector2::new(1.0, 0.5));
            }
            plant.position()
        };
        let position = run();
        assert!(position.x > -0.9 + 0.1 && position.y > 0.05);
        assert_eq!(position, run());
    }

    #[test]
    fn the_obstacle_is_solid_and_contacts_are_counted() {
        let config = PlantConfig {
            start: [-0.5, 0.0],
            ..PlantConfig::default()
        };
        let mut plant = PointMass::new(config, 0.01);
        for _ in 0..300 {
            plant.step(Vector2::new(2.0, 0.0));
        }
        assert!(plant.position().norm() >= 0.25 - 1e-9);
        assert_eq!(plant.report().obstacle_contacts, 1);
    }

    #[test]
    fn coming_to_rest_in_the_goal_is_recorded() {
        let config = PlantConfig {
            start: [0.9, 0.0],
            ..PlantConfig::default()
        };
        let mut plant = PointMass::new(config, 0.01);
        plant.step(Vector2::zeros());
        assert_eq!(plant.report().reached_goal_at, Some(0.01));
    }
}
