//! `[plant]`: what the controller drives: the built-in simulated point mass (a force-controlled mass in a walled
//! box with one obstacle), a robot (or `rtchunk sim serve`) over zenoh as `[io]` describes, or a ROS 2 robot
//! over rmw_zenoh as `[ros2]` describes.

use serde::{Deserialize, Serialize};

/// Which plant a run drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlantKind {
    /// The built-in point mass, in process.
    #[default]
    PointMass,
    /// A robot over zenoh (`[io]`): state in, one command per controller tick out. Needs the real clock.
    Zenoh,
    /// A ROS 2 robot over rmw_zenoh (`[ros2]`, session from `[io]`): `sensor_msgs/JointState` in, one command
    /// per controller tick out. Needs the real clock.
    Ros2,
}

impl PlantKind {
    /// Whether the plant is reached through a zenoh session (`[io]`), which makes it a real robot on the wall
    /// clock.
    pub fn over_zenoh(self) -> bool {
        matches!(self, PlantKind::Zenoh | PlantKind::Ros2)
    }
}

/// Settings of the plant (the point-mass fields apply to the point mass only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlantConfig {
    /// Which plant.
    pub kind: PlantKind,
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
            kind: PlantKind::PointMass,
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
