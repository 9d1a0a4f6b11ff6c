//! The flow-policy interface every backend implements.

use crate::{Normalization, PolicyError};
use ndarray::{ArrayView, ArrayView2, ArrayView3, ArrayViewMut, ArrayViewMut3, Dimension};
use serde::{Deserialize, Serialize};

/// The shape and capabilities of a flow policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// Prediction horizon H.
    pub horizon: usize,
    /// Dimension of one action, as the model samples it.
    pub action_dim: usize,
    /// How many of an action's dimensions (the first ones) the robot executes; the rest are the model's padding
    /// (LeRobot's `max_action_dim`): sampled with the chunk, never sent to the robot, zero in the committed
    /// actions that guide the next chunk. Equal to `action_dim` for most policies.
    pub robot_action_dim: usize,
    /// Dimension of one observation vector.
    pub observation_dim: usize,
    /// The camera images one observation includes, in order (none for most policies).
    pub cameras: Vec<Camera>,
    /// Whether [`FlowPolicy::denoiser_vjp`] is available (exact RTC guidance).
    pub exact_vjp: bool,
    /// Whether the policy was trained with clean prefix tokens at tau = 1 (training-time RTC).
    pub prefix_conditioned: bool,
}

/// `actions` (robot actions of `robot_dim` values each) widened to `model_dim` values each, zero in the padding
/// (LeRobot's RTC pads the previous chunk the same way), into `out`.
pub fn widen_actions(actions: &[f32], robot_dim: usize, model_dim: usize, out: &mut Vec<f32>) {
    out.clear();
    for action in actions.chunks(robot_dim) {
        out.extend_from_slice(action);
        out.resize(out.len() + model_dim - action.len(), 0.0);
    }
}

impl PolicySpec {
    /// Values in one chunk: H * action_dim.
    pub fn chunk_len(&self) -> usize {
        self.horizon * self.action_dim
    }

    /// Values in one chunk as the robot executes it: H * robot_action_dim.
    pub fn robot_chunk_len(&self) -> usize {
        self.horizon * self.robot_action_dim
    }

    /// Bytes of all camera images of one observation, one camera after another.
    pub fn image_bytes(&self) -> usize {
        self.cameras.iter().map(Camera::bytes).sum()
    }
}

/// A camera image a policy observes: `uint8 [height, width, channels]`, rows top to bottom, pixels left to
/// right, channels interleaved (RGB for 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// The camera's name (in a bundle, the prefix graph's input).
    pub name: String,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels per pixel: 1 (grey) or 3 (RGB).
    pub channels: usize,
}

impl Camera {
    /// Bytes of one image.
    pub fn bytes(&self) -> usize {
        self.height * self.width * self.channels
    }
}

/// A flow-matching chunk policy in the paper's convention: tau = 0 is noise, tau = 1 is data.
///
/// Chunks cross this boundary as `[B, H, A]` arrays (chunk, action, joint), in standard layout; `tau` and
/// per-token weights as `[B, H]`; observations as `[P, observation_dim]`. A batch of `B` chunks over `P` prepared
/// contexts needs `B` to be a multiple of `P`; chunk `b` uses context `b / (B / P)`.
///
/// Not real-time: called from the inference worker only.
pub trait FlowPolicy: Send {
    /// The policy's shape and capabilities.
    fn spec(&self) -> &PolicySpec;

    /// The map from the robot's units to the policy's normalised space; `None` when they coincide. The runtime
    /// applies it once: to observations and committed actions before sampling, and back to sampled chunks.
    fn normalization(&self) -> Option<&Normalization> {
        None
    }

    /// Computes the contexts (the prefix / KV cache) of `observations`, one row each. Called once per
    /// inference, before any velocity query.
    fn prepare(&mut self, observations: ArrayView2<f32>) -> Result<(), PolicyError>;

    /// [`FlowPolicy::prepare`] with the observations' camera images: `spec().image_bytes()` bytes per
    /// observation, one observation after another. A policy without cameras takes an empty slice only.
    fn prepare_with_images(
        &mut self,
        observations: ArrayView2<f32>,
        images: &[u8],
    ) -> Result<(), PolicyError> {
        if !images.is_empty() {
            return Err(PolicyError::Shape {
                what: "the camera images (this policy takes none)",
                got: images.len(),
                expected: 0,
            });
        }
        self.prepare(observations)
    }

    /// Writes the velocity v(A, tau) of every chunk of `actions` into `velocity`.
    fn velocity(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        velocity: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError>;

    /// Writes v(A, tau) into `velocity` and the vector-Jacobian product of the denoiser
    /// `A1_hat(A) = A + (1 - tau) v(A, tau)` with `cotangent` into `vjp`. Only if `spec().exact_vjp`.
    fn denoiser_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        cotangent: ArrayView3<f32>,
        velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let _ = (actions, tau, cotangent, velocity, vjp);
        Err(PolicyError::NoVjp)
    }

    /// Whether [`FlowPolicy::guided_vjp`] runs a guided step's model work in one call.
    fn fuses_guidance(&self) -> bool {
        false
    }

    /// One guided RTC step's model work in one call: writes v(A, tau) into `velocity` and into `vjp` the
    /// vector-Jacobian product of the denoiser A1_hat with the weighted error `weights * (target - A1_hat)`
    /// (`weights`: one per token, `[B, H]`), the error taken from this very velocity. The same as
    /// [`FlowPolicy::velocity`] then [`FlowPolicy::denoiser_vjp`] with that cotangent, at the cost of one
    /// forward pass instead of two. Only if [`FlowPolicy::fuses_guidance`].
    fn guided_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        target: ArrayView3<f32>,
        weights: ArrayView2<f32>,
        velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let _ = (actions, tau, target, weights, velocity, vjp);
        Err(PolicyError::NoVjp)
    }
}

/// Checks that `actions` is `[B, H, A]` and `tau` `[B, H]` for the policy's H and A; returns B.
pub(crate) fn batch_of(
    spec: &PolicySpec,
    actions: &ArrayView3<f32>,
    tau: &ArrayView2<f32>,
) -> Result<usize, PolicyError> {
    let (batch, h, a) = actions.dim();
    if batch == 0 || (h, a) != (spec.horizon, spec.action_dim) {
        return Err(PolicyError::Dims {
            what: "the action batch",
            got: actions.shape().to_vec(),
            expected: vec![batch.max(1), spec.horizon, spec.action_dim],
        });
    }
    if tau.dim() != (batch, spec.horizon) {
        return Err(PolicyError::Dims {
            what: "tau",
            got: tau.shape().to_vec(),
            expected: vec![batch, spec.horizon],
        });
    }
    Ok(batch)
}

/// The values of `view` in order, for a backend that takes flat buffers; an error naming `what` unless the view
/// is in standard layout.
pub(crate) fn flat<'a, D: Dimension>(
    view: &'a ArrayView<'_, f32, D>,
    what: &'static str,
) -> Result<&'a [f32], PolicyError> {
    view.as_slice().ok_or(PolicyError::Layout(what))
}

/// [`flat`] for an output.
pub(crate) fn flat_mut<'a, D: Dimension>(
    view: &'a mut ArrayViewMut<'_, f32, D>,
    what: &'static str,
) -> Result<&'a mut [f32], PolicyError> {
    view.as_slice_mut().ok_or(PolicyError::Layout(what))
}

/// A flat, token-major buffer of whole chunks of `horizon` x `action_dim` values as `[B, H, A]`, without a copy.
pub fn chunks_of(
    values: &[f32],
    horizon: usize,
    action_dim: usize,
) -> Result<ArrayView3<'_, f32>, PolicyError> {
    let chunk = horizon * action_dim;
    ArrayView3::from_shape((values.len() / chunk.max(1), horizon, action_dim), values)
        .map_err(|_| whole_chunks_error("the chunk buffer", values.len(), chunk))
}

/// [`chunks_of`] for an output buffer.
pub fn chunks_of_mut(
    values: &mut [f32],
    horizon: usize,
    action_dim: usize,
) -> Result<ArrayViewMut3<'_, f32>, PolicyError> {
    let (len, chunk) = (values.len(), horizon * action_dim);
    ArrayViewMut3::from_shape((len / chunk.max(1), horizon, action_dim), values)
        .map_err(|_| whole_chunks_error("the chunk buffer", len, chunk))
}

/// A flat, token-major buffer of whole actions of `action_dim` values as `[n, A]`, without a copy.
pub fn actions_of(values: &[f32], action_dim: usize) -> Result<ArrayView2<'_, f32>, PolicyError> {
    rows_of_width(values, action_dim, "the actions")
}

/// A flat buffer of one value per token of whole chunks as `[B, H]`.
pub fn tokens_of(values: &[f32], horizon: usize) -> Result<ArrayView2<'_, f32>, PolicyError> {
    rows_of_width(values, horizon, "the per-token buffer")
}

/// `values` as whole rows of `width` values, `[n, width]`; `what` names the buffer in the error.
fn rows_of_width<'a>(
    values: &'a [f32],
    width: usize,
    what: &'static str,
) -> Result<ArrayView2<'a, f32>, PolicyError> {
    ArrayView2::from_shape((values.len() / width.max(1), width), values)
        .map_err(|_| whole_chunks_error(what, values.len(), width))
}

/// `count` observations of one length, one after another, as `[count, observation_dim]`.
pub fn rows_of(values: &[f32], count: usize) -> Result<ArrayView2<'_, f32>, PolicyError> {
    let dim = values.len() / count.max(1);
    ArrayView2::from_shape((count, dim), values)
        .map_err(|_| whole_chunks_error("the observations", values.len(), dim.max(1)))
}

fn whole_chunks_error(what: &'static str, got: usize, unit: usize) -> PolicyError {
    PolicyError::Shape {
        what,
        got,
        expected: got.div_ceil(unit.max(1)) * unit,
    }
}
