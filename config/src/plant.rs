//! `[plant]`: the built-in simulated plant, a force-controlled point mass in a walled box with one obstacle.

use serde::{Deserialize, Serialize};

/// Settings of the point-mass plant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlantConfig {
    /// Mass.
    pub mass: f64,
    /// Viscous damping coefficient.
    pub damping: f64,
    /// Where each episode starts.
    pub start: [f64; 2],
    /// Centre of the goal disc.
    pub goal: [f64; 2],
    /// Radius of the goal disc.
    pub goal_radius: f64,
    /// Centre of the obstacle disc.
    pub obstacle: [f64; 2],
    /// Radius of the obstacle disc.
    pub obstacle_radius: f64,
    /// Half-width of the square box bounded by walls.
    pub half_extent: f64,
}

impl Default for PlantConfig {
    fn default() -> Self {
        PlantConfig {
            mass: 1.0,
            damping: 0.5,
            start: [-0.9, 0.0],
            goal: [0.9, 0.0],
            goal_radius: 0.08,
            obstacle: [0.0, 0.0],
            obstacle_radius: 0.25,
            half_extent: 1.2,
        }
    }
}
