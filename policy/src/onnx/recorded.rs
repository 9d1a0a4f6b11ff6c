//! Replaying the inputs a bundle recorded at export (`expected.json`) and measuring how far this runtime's
//! outputs are from those recorded (JAX's, or LeRobot's for an imported checkpoint).

use super::BundleError;
use super::manifest::TimeConvention;
use super::policy::OnnxPolicy;
use crate::convention::TimeFlip;
use crate::{Committed, FlowPolicy, Sampler, actions_of, chunks_of, widen_actions};
use ndarray::{Array2, Array3, s};
use rtchunk_config::{SamplerConfig, SamplerMode};
use serde_json::Value;
use std::path::Path;

/// How closely the graphs, run here, reproduce the recorded outputs (JAX's, or LeRobot's).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordedCheck {
    /// What computed the recorded outputs (`JAX` unless the recording names another, e.g. `LeRobot`).
    pub source: String,
    /// The export's tolerance.
    pub tolerance: f32,
    /// Largest difference of the velocity.
    pub velocity_error: f32,
    /// Largest difference of the VJP.
    pub vjp_error: f32,
    /// Largest difference of the guided graph's VJP (against the recorded target and weights), if the bundle
    /// has that graph and recorded it.
    pub guided_error: Option<f32>,
    /// Largest difference of a whole RTC inference from the recorded noise, if one was recorded.
    pub rtc_error: Option<f32>,
    /// Whole chunks that another implementation sampled from recorded noise (`expected.json`'s `chunks`, e.g.
    /// LeRobot's plain and RTC chunks), replayed here with the same sampler settings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkCheck>,
}

/// One recorded chunk replayed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChunkCheck {
    /// The sampler mode (`plain`, `rtc-identity`, ...).
    pub mode: String,
    /// Largest difference from the recorded chunk over the action dimensions it recorded.
    pub error: f32,
}

impl RecordedCheck {
    /// Whether both differences are within the tolerance.
    pub fn passes(&self) -> bool {
        self.velocity_error <= self.tolerance
            && self.vjp_error <= self.tolerance
            && self.guided_error.is_none_or(|e| e <= self.tolerance)
            && self.rtc_error.is_none_or(|e| e <= self.tolerance)
            && self.chunks.iter().all(|c| c.error <= self.tolerance)
    }
}

/// Every number of a recorded value (nested arrays flattened, in order), as `f32`.
pub fn recorded_values(value: &Value) -> Vec<f32> {
    match value {
        Value::Array(items) => items.iter().flat_map(recorded_values).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN) as f32],
        _ => vec![f32::NAN],
    }
}

/// The recorded camera images (absent for bundles without cameras) as bytes, one observation after another.
fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Array(items) => items.iter().flat_map(bytes).collect(),
        Value::Number(n) => vec![n.as_u64().unwrap_or(0).min(255) as u8],
        _ => Vec::new(),
    }
}

fn max_difference<'a>(a: impl ExactSizeIterator<Item = &'a f32>, b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// What the graphs gave for the recorded inputs, one value per recorded value.
struct RecordedOutputs {
    velocity: Array3<f32>,
    vjp: Array3<f32>,
    plain: Array3<f32>,
    guided_velocity: Array3<f32>,
    guided_vjp: Array3<f32>,
}

impl RecordedOutputs {
    fn new(shape: (usize, usize, usize)) -> Self {
        RecordedOutputs {
            velocity: Array3::zeros(shape),
            vjp: Array3::zeros(shape),
            plain: Array3::zeros(shape),
            guided_velocity: Array3::zeros(shape),
            guided_vjp: Array3::zeros(shape),
        }
    }
}

/// Runs the recorded inputs of the bundle in `directory` through `policy`; `None` if it recorded none.
pub fn check_recorded(
    policy: &mut OnnxPolicy,
    directory: &Path,
) -> Result<Option<RecordedCheck>, BundleError> {
    let path = directory.join("expected.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let bad = |message: String| BundleError::Manifest {
        path: path.clone(),
        message,
    };
    let recorded: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let inputs = &recorded["inputs"];
    let actions = recorded_values(&inputs["actions"]);
    // The recording is in the bundle's time convention; the policy is driven in the paper's.
    let noise_at_one = policy.manifest().time_convention == TimeConvention::TOneIsNoise;
    let mut tau = recorded_values(&inputs["tau"]);
    let mut expected_velocity = recorded_values(&recorded["velocity"]);
    if noise_at_one {
        tau = TimeFlip::default().times(&tau).to_vec();
        TimeFlip::velocity(&mut expected_velocity);
    }
    let run = |e: crate::PolicyError| bad(format!("replaying the recorded inputs: {e}"));
    let observation = recorded_values(&inputs["observation"]);
    let images = bytes(&inputs["images"]);
    let (cotangent, target, weights) = (
        recorded_values(&inputs["cotangent"]),
        recorded_values(&inputs["target"]),
        recorded_values(&inputs["weights"]),
    );
    let guided = recorded
        .get("guided_vjp")
        .filter(|_| policy.fuses_guidance());
    let spec = policy.spec().clone();
    let (len, h) = (spec.chunk_len(), spec.horizon);
    let chunks = actions.len() / len.max(1);
    if chunks == 0 || chunks * len != actions.len() || tau.len() != chunks * h {
        return Err(bad(format!(
            "inputs.actions and inputs.tau hold {} and {} values, not whole chunks of {len} and {h}",
            actions.len(),
            tau.len()
        )));
    }
    let (dim, image_bytes) = (observation.len() / chunks, images.len() / chunks);
    let shape = (chunks, h, spec.action_dim);
    let whole = |values: Vec<f32>, what: &str| {
        Array3::from_shape_vec(shape, values).map_err(|_| {
            bad(format!(
                "inputs.{what} is not {chunks} chunks of {h} x {}",
                spec.action_dim
            ))
        })
    };
    let per_token = |values: Vec<f32>, what: &str| {
        Array2::from_shape_vec((chunks, h), values)
            .map_err(|_| bad(format!("inputs.{what} is not {chunks} x {h} values")))
    };
    let (actions, cotangent) = (whole(actions, "actions")?, whole(cotangent, "cotangent")?);
    let tau = per_token(tau, "tau")?;
    let rows = Array2::from_shape_vec((chunks, dim), observation.clone())
        .map_err(|_| bad(format!("inputs.observation is not {chunks} observations")))?;
    let guided_inputs = match guided {
        Some(_) => Some((whole(target, "target")?, per_token(weights, "weights")?)),
        None => None,
    };
    let mut outputs = RecordedOutputs::new(shape);
    // One observation and its chunk at a time: the way an inference runs (on a GPU, the path that keeps the
    // context in device memory and replays captured steps).
    for i in 0..chunks {
        let (one, row) = (s![i..i + 1, .., ..], s![i..i + 1, ..]);
        policy
            .prepare_with_images(
                rows.slice(row),
                &images[i * image_bytes..(i + 1) * image_bytes],
            )
            .map_err(run)?;
        let (actions, tau) = (actions.slice(one), tau.slice(row));
        policy
            .denoiser_vjp(
                actions,
                tau,
                cotangent.slice(one),
                outputs.velocity.slice_mut(one),
                outputs.vjp.slice_mut(one),
            )
            .map_err(run)?;
        policy
            .velocity(actions, tau, outputs.plain.slice_mut(one))
            .map_err(run)?;
        if let Some((target, weights)) = &guided_inputs {
            policy
                .guided_vjp(
                    actions,
                    tau,
                    target.slice(one),
                    weights.slice(row),
                    outputs.guided_velocity.slice_mut(one),
                    outputs.guided_vjp.slice_mut(one),
                )
                .map_err(run)?;
        }
    }
    let vjp_error = max_difference(outputs.vjp.iter(), &recorded_values(&recorded["vjp"]));
    let guided_error = guided.map(|expected| {
        max_difference(outputs.guided_vjp.iter(), &recorded_values(expected)).max(max_difference(
            outputs.guided_velocity.iter(),
            &expected_velocity,
        ))
    });
    let rtc_error = match recorded.get("rtc") {
        Some(rtc) => Some(replay_chunk(policy, rtc, &observation, &images).map_err(run)?),
        None => None,
    };
    let mut chunks = Vec::new();
    for entry in recorded["chunks"].as_array().into_iter().flatten() {
        chunks.push(ChunkCheck {
            mode: entry["mode"].as_str().unwrap_or("rtc").to_string(),
            error: replay_chunk(policy, entry, &observation, &images).map_err(run)?,
        });
    }
    Ok(Some(RecordedCheck {
        source: recorded["source"].as_str().unwrap_or("JAX").to_string(),
        tolerance: recorded["tolerance"].as_f64().unwrap_or(0.0) as f32,
        velocity_error: max_difference(outputs.velocity.iter(), &expected_velocity)
            .max(max_difference(outputs.plain.iter(), &expected_velocity)),
        vjp_error,
        guided_error,
        rtc_error,
        chunks,
    }))
}

/// The recorded setting `key` (a sampler mode or schedule by its configuration name), if there is one.
fn setting<T: serde::de::DeserializeOwned>(recorded: &Value, key: &str) -> Option<T> {
    serde_json::from_value(recorded[key].clone()).ok()
}

/// Runs the sampler a recorded chunk names (`mode`, default exact RTC; `steps`, `beta`, `schedule`) from its
/// noise for the first recorded observation (and its images); returns the largest difference from the recorded
/// chunk over the first `dims` action dimensions (default all). Committed actions of fewer dimensions are
/// widened with zeros, as the inference engine does for the robot's.
fn replay_chunk(
    policy: &mut OnnxPolicy,
    rtc: &Value,
    observations: &[f32],
    images: &[u8],
) -> Result<f32, crate::PolicyError> {
    let spec = policy.spec().clone();
    let config = SamplerConfig {
        mode: setting(rtc, "mode").unwrap_or(SamplerMode::Rtc),
        steps: rtc["steps"].as_u64().unwrap_or(5) as usize,
        beta: rtc["beta"].as_f64().unwrap_or(5.0),
        schedule: setting(rtc, "schedule").unwrap_or_default(),
        ..SamplerConfig::default()
    };
    let dims = rtc["dims"].as_u64().map_or(spec.action_dim, |d| d as usize);
    let mut committed = Vec::new();
    widen_actions(
        &recorded_values(&rtc["committed"]),
        dims,
        spec.action_dim,
        &mut committed,
    );
    let committed = (!committed.is_empty())
        .then(|| actions_of(&committed, spec.action_dim))
        .transpose()?
        .map(|actions| Committed {
            actions,
            delay: rtc["delay"].as_u64().unwrap_or(0) as usize,
        });
    let noise = recorded_values(&rtc["noise"]);
    let mut chunk = Array2::zeros((spec.horizon, spec.action_dim));
    Sampler::new(config, spec.horizon, spec.action_dim).sample_from_noise(
        policy,
        &observations[..spec.observation_dim.min(observations.len())],
        &images[..spec.image_bytes().min(images.len())],
        committed,
        chunks_of(&noise, spec.horizon, spec.action_dim)?,
        chunk.view_mut(),
    )?;
    Ok(max_difference(
        chunk.slice(s![.., ..dims.min(spec.action_dim)]).iter(),
        &recorded_values(&rtc["chunk"]),
    ))
}
