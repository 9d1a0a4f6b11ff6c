//! The policy that `[policy]` names: a built-in reference policy or a bundle run by ONNX Runtime.

use rtchunk_config::{Config, PolicyKind};
use rtchunk_policy::onnx::{BundleError, Manifest, OnnxPolicy, OnnxRuntimeOptions, load_manifest};
use rtchunk_policy::reference::{MixtureFlow, ModeMeans};
use rtchunk_policy::{FlowPolicy, Normalization};
use std::path::Path;

/// The policy that `config.policy` names.
pub fn load_policy(config: &Config) -> Result<Box<dyn FlowPolicy>, BundleError> {
    let policy = &config.policy;
    let (h, a) = (policy.horizon, policy.action_dim);
    Ok(match policy.kind {
        PolicyKind::Bundle => {
            let options = OnnxRuntimeOptions {
                library: policy.onnxruntime.clone(),
                intra_threads: policy.intra_threads,
                context_on_device: true,
                cuda_graphs: policy.cuda_graphs,
                allow_cpu_nodes: policy.allow_cpu_nodes,
                profile: None,
                device: policy
                    .device
                    .parse()
                    .map_err(|e: String| BundleError::Library(format!("policy.device: {e}")))?,
            };
            let directory = policy.bundle.as_deref().unwrap_or(Path::new("."));
            let loaded = OnnxPolicy::load(directory, &options)?;
            if let Some(summary) = loaded.shape_nodes_summary() {
                tracing::info!("{summary}");
            }
            Box::new(loaded)
        }
        PolicyKind::Remote => {
            return Err(BundleError::Library(format!(
                "policy.kind = \"remote\": chunks come from the policy server {:?} (rtchunk serve-policy), \
                 there is no local policy to load",
                policy.server
            )));
        }
        PolicyKind::Gaussian => Box::new(MixtureFlow::gaussian(
            h,
            a,
            policy.spread,
            policy.correlation_length,
            vec![0.0; h * a],
        )),
        PolicyKind::Bimodal => Box::new(MixtureFlow::bimodal(
            h,
            a,
            policy.spread,
            policy.correlation_length,
            policy.separation,
        )),
        PolicyKind::ObstaclePaths => {
            let paths = ObstaclePaths::from_config(config);
            let normalization = Normalization::actions(vec![0.0; a], vec![paths.scale as f32; a]);
            Box::new(
                MixtureFlow::new(
                    h,
                    a,
                    policy.spread,
                    policy.correlation_length,
                    Box::new(paths),
                )
                .with_normalization(normalization),
            )
        }
    })
}

/// For `policy.kind = "bundle"`: reads the bundle's manifest and makes the configuration's horizon and action
/// dimension the bundle's (the dimensions the robot executes), so that validation and the scheduler see the
/// policy's real shape, and takes the bundle's suggested sampler settings (`defaults`: steps, beta, schedule)
/// for those the configuration file left out.
pub fn adopt_bundle_shape(config: &mut Config) -> Result<Option<Manifest>, BundleError> {
    let (PolicyKind::Bundle, Some(directory)) = (config.policy.kind, &config.policy.bundle) else {
        return Ok(None);
    };
    let manifest = load_manifest(directory)?;
    config.policy.horizon = manifest.horizon;
    config.policy.action_dim = manifest.robot_action_dim.unwrap_or(manifest.action_dim);
    let defaults = &manifest.defaults;
    config
        .sampler
        .adopt_policy_defaults(defaults.steps, defaults.beta, defaults.schedule);
    Ok(Some(manifest))
}

/// Two modes of waypoints for the point mass: towards the goal at a constant speed, passing the obstacle above
/// (mode 0) or below (mode 1) with a smooth bump. The waypoints start where the PD controller's target must be
/// for the mass to be where it is, `x + vx * lead` with `lead = (kd + damping) / kp` (a PD tracking a ramp
/// lags by that long), so consecutive chunks describe one continuous path. Observation: `[x, y, vx, vy]`.
/// The means are in the model's normalised space: positions divided by `scale`, a quarter of the box.
pub struct ObstaclePaths {
    horizon: usize,
    scale: f64,
    step: f64,
    lead: f64,
    goal: [f64; 2],
    obstacle: [f64; 2],
    clearance: f64,
    half_width: f64,
}

impl ObstaclePaths {
    /// Paths for the plant and policy rate of `config`.
    pub fn from_config(config: &Config) -> Self {
        let plant = &config.plant;
        ObstaclePaths {
            horizon: config.policy.horizon,
            scale: plant.half_extent / 4.0,
            step: config.policy.path_speed / config.clock.policy_rate_hz,
            lead: tracking_lag(config),
            goal: plant.goal,
            obstacle: plant.obstacle,
            clearance: plant.obstacle_radius + 0.12,
            half_width: plant.obstacle_radius + 0.45,
        }
    }

    fn bump(&self, x: f64) -> f64 {
        let u = (x - self.obstacle[0]) / self.half_width;
        if u.abs() >= 1.0 {
            0.0
        } else {
            self.clearance * (std::f64::consts::FRAC_PI_2 * u).cos().powi(2)
        }
    }
}

impl ModeMeans for ObstaclePaths {
    fn observation_dim(&self) -> usize {
        4
    }

    fn modes(&self) -> usize {
        2
    }

    fn mean(&self, observation: &[f32], mode: usize, mean: &mut [f64]) {
        let side = if mode == 0 { 1.0 } else { -1.0 };
        let x = observation[0] as f64 + self.lead * observation[2] as f64;
        let direction = (self.goal[0] - x).signum();
        for i in 0..self.horizon {
            let travelled = x + direction * (i + 1) as f64 * self.step;
            let xi = if direction > 0.0 {
                travelled.min(self.goal[0])
            } else {
                travelled.max(self.goal[0])
            };
            mean[2 * i] = xi / self.scale;
            mean[2 * i + 1] = (self.goal[1] + side * self.bump(xi)) / self.scale;
        }
    }
}

/// How long a PD controller tracking a ramp lags behind it: `(kd + damping) / kp` (0 for passthrough).
fn tracking_lag(config: &Config) -> f64 {
    match config.controller.kind {
        rtchunk_config::ControllerKind::Passthrough => 0.0,
        rtchunk_config::ControllerKind::Pd => {
            let kp = config.controller.kp.expand(1)[0];
            let kd = config.controller.kd.expand(1)[0];
            (kd + config.plant.damping) / kp
        }
    }
}
