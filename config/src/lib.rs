//! Typed, validated settings for rtchunk.
//!
//! Every section is a plain struct with `Default` (the RTC paper's values where the paper gives one) and
//! `deny_unknown_fields`, so a misspelt key is an error rather than a silently ignored setting. [`Config::load`]
//! reads a TOML file and validates it; every validation error names the file, the key, the value and the rule.
//!
//! ```
//! let config = rtchunk_config::Config::from_toml_str("[sampler]\nsteps = 10\nbeta = 10.0\n", "inline").unwrap();
//! assert_eq!(config.sampler.steps, 10);
//! assert_eq!(config.scheduler.resolved_execution_horizon(config.policy.horizon), config.policy.horizon / 2);
//! ```

mod controller;
mod error;
mod io;
mod plant;
mod policy;
mod ros2;
mod sampler;
mod scheduler;
mod timing;
mod validate;

pub use controller::{ControllerConfig, ControllerKind, Limit, SafetyConfig};
pub use error::ConfigError;
pub use io::{IoConfig, OnStale, TlsConfig, ZenohMode};
pub use plant::{PlantConfig, PlantKind};
pub use policy::{PolicyConfig, PolicyKind};
pub use ros2::{CommandType, Distribution, JointField, Ros2Config};
pub use sampler::{MaskSchedule, SamplerConfig, SamplerMode};
pub use scheduler::{Execution, SchedulerConfig, Starvation};
pub use timing::{ClockConfig, ClockKind, RealtimeConfig};

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole configuration of one rtchunk run: one field per TOML section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which policy produces the chunks (`[policy]`).
    pub policy: PolicyConfig,
    /// How a chunk is sampled from the flow policy (`[sampler]`).
    #[serde(default = "SamplerConfig::left_out")]
    pub sampler: SamplerConfig,
    /// When inference runs and how chunks are switched (`[scheduler]`, Algorithm 1).
    pub scheduler: SchedulerConfig,
    /// The clock that paces the controller (`[clock]`).
    pub clock: ClockConfig,
    /// Real-time setup of the controller thread (`[realtime]`).
    pub realtime: RealtimeConfig,
    /// What turns an action into a command (`[controller]`).
    pub controller: ControllerConfig,
    /// The safety filter every command passes (`[safety]`).
    pub safety: SafetyConfig,
    /// The built-in simulated plant (`[plant]`).
    pub plant: PlantConfig,
    /// The zenoh link to a robot or to `rtchunk sim serve` (`[io]`).
    pub io: IoConfig,
    /// The ROS 2 robot's topics and joint names (`[ros2]`, with `plant.kind = "ros2"`).
    pub ros2: Ros2Config,
}

impl Config {
    /// Reads and validates a TOML file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: origin.clone(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text, &origin)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [&mut config.policy.bundle, &mut config.policy.onnxruntime]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(config)
    }

    /// Parses and validates TOML text; `origin` names its source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            file: origin.to_string(),
            message: error.to_string(),
        })?;
        config
            .validate()
            .map_err(|problem| problem.in_file(origin))?;
        Ok(config)
    }

    /// The configuration as TOML text that [`Config::from_toml_str`] reads back unchanged.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("every configuration value has a TOML form")
    }

    /// Checks every rule that crosses fields or sections; the error names the key, the value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn a_configuration_written_as_toml_reads_back_unchanged() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut configs = vec![Config::default()];
        for entry in std::fs::read_dir(examples).unwrap() {
            configs.push(Config::load(&entry.unwrap().path()).unwrap());
        }
        for config in configs {
            let text = config.to_toml_string();
            assert_eq!(
                Config::from_toml_str(&text, "written").unwrap(),
                config,
                "{text}"
            );
        }
    }
}
