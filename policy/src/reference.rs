//! Pure-Rust reference policies with exact velocity fields and exact VJPs: a Gaussian over chunks and a
//! mixture of Gaussians (e.g. two modes, "pass above" and "pass below").
//!
//! For a mixture `sum_k pi_k N(mu_k, K ⊗ I)` with a shared temporal covariance K, the flow's denoiser is the
//! posterior mean `A1_hat(x) = sum_k w_k(x) m_k(x)`, where `m_k` is component k's posterior mean and `w_k` its
//! posterior weight; the velocity is `(A1_hat - x) / (1 - tau)` per token. With one component the velocity is
//! affine in A. Everything here is closed form, so tests can compare the samplers with exact answers.

use crate::gaussian::{NoisedPrior, conditional_mean, smooth_covariance};
use crate::interface::{batch_of, flat, flat_mut};
use crate::{FlowPolicy, Normalization, PolicyError, PolicySpec};
use nalgebra::DMatrix;
use ndarray::{ArrayView2, ArrayView3, ArrayViewMut3, Axis};

/// The mean chunk of each mode given an observation.
pub trait ModeMeans: Send {
    /// Dimension of the observation vector (0 for an unconditional policy).
    fn observation_dim(&self) -> usize;
    /// Number of modes.
    fn modes(&self) -> usize;
    /// Writes mode `mode`'s mean chunk (H x action_dim, token-major) for `observation` into `mean`.
    fn mean(&self, observation: &[f32], mode: usize, mean: &mut [f64]);
}

/// Modes whose means do not depend on the observation.
pub struct ConstantModes {
    means: Vec<Vec<f64>>,
}

impl ConstantModes {
    /// One mode per mean chunk (each H x action_dim, token-major).
    pub fn new(means: Vec<Vec<f64>>) -> Self {
        ConstantModes { means }
    }
}

impl ModeMeans for ConstantModes {
    fn observation_dim(&self) -> usize {
        0
    }

    fn modes(&self) -> usize {
        self.means.len()
    }

    fn mean(&self, _observation: &[f32], mode: usize, mean: &mut [f64]) {
        mean.copy_from_slice(&self.means[mode]);
    }
}

/// A mixture of equally weighted Gaussians over chunks with a smooth temporal covariance, as a flow policy.
pub struct MixtureFlow {
    spec: PolicySpec,
    kernel: DMatrix<f64>,
    modes: Box<dyn ModeMeans>,
    /// Per prepared context, per mode: the mean chunk as an H x action_dim matrix.
    contexts: Vec<Vec<DMatrix<f64>>>,
    factor: Option<NoisedPrior>,
    normalization: Option<Normalization>,
}

/// The posterior of one noised chunk: the denoised estimate and what its VJP needs.
struct Posterior {
    denoised: DMatrix<f64>,
    weights: Vec<f64>,
    component_means: Vec<DMatrix<f64>>,
    whitened: Vec<DMatrix<f64>>,
}

impl MixtureFlow {
    /// A mixture with the given modes; `spread` is each action's standard deviation and `correlation_length`
    /// the temporal correlation length in actions.
    pub fn new(
        horizon: usize,
        action_dim: usize,
        spread: f64,
        correlation_length: f64,
        modes: Box<dyn ModeMeans>,
    ) -> Self {
        MixtureFlow {
            spec: PolicySpec {
                horizon,
                action_dim,
                robot_action_dim: action_dim,
                observation_dim: modes.observation_dim(),
                cameras: Vec::new(),
                exact_vjp: true,
                prefix_conditioned: true,
            },
            kernel: smooth_covariance(horizon, spread, correlation_length),
            modes,
            contexts: Vec::new(),
            factor: None,
            normalization: None,
        }
    }

    /// The same policy defined in a normalised action space: its modes and spread are in model units, and
    /// `normalization` maps the robot's units to them.
    pub fn with_normalization(mut self, normalization: Normalization) -> Self {
        self.normalization = Some(normalization);
        self
    }

    /// One Gaussian with a fixed mean chunk.
    pub fn gaussian(
        horizon: usize,
        action_dim: usize,
        spread: f64,
        correlation_length: f64,
        mean: Vec<f64>,
    ) -> Self {
        Self::new(
            horizon,
            action_dim,
            spread,
            correlation_length,
            Box::new(ConstantModes::new(vec![mean])),
        )
    }

    /// Two stationary modes, every action at `+separation` or at `-separation`.
    pub fn bimodal(
        horizon: usize,
        action_dim: usize,
        spread: f64,
        correlation_length: f64,
        separation: f64,
    ) -> Self {
        let len = horizon * action_dim;
        let modes = ConstantModes::new(vec![vec![separation; len], vec![-separation; len]]);
        Self::new(
            horizon,
            action_dim,
            spread,
            correlation_length,
            Box::new(modes),
        )
    }

    /// The mode whose Gaussian makes the clean chunk most likely, under prepared context `context`.
    pub fn mode_of(&self, chunk: &[f32], context: usize) -> usize {
        let x = self.matrix(chunk);
        let clean = NoisedPrior::new(&self.kernel, &vec![1.0; self.spec.horizon]);
        let energy = |mean: &DMatrix<f64>| clean.whiten(&x, mean).1;
        let means = &self.contexts[context];
        (0..means.len())
            .min_by(|&a, &b| energy(&means[a]).total_cmp(&energy(&means[b])))
            .unwrap_or(0)
    }

    /// The closed-form mean of tokens `d..H` of mode `mode` given the first d tokens `prefix` (d x action_dim).
    pub fn conditional_mean(&self, mode: usize, prefix: &[f32], context: usize) -> Vec<f32> {
        let d = prefix.len() / self.spec.action_dim;
        let prefix = DMatrix::from_row_slice(d, self.spec.action_dim, &to_f64(prefix));
        let mean = conditional_mean(&self.kernel, &self.contexts[context][mode], &prefix);
        mean.transpose().iter().map(|&v| v as f32).collect()
    }

    /// The mean chunk of mode `mode` under context `context` (token-major).
    pub fn mode_mean(&self, mode: usize, context: usize) -> Vec<f32> {
        self.contexts[context][mode]
            .transpose()
            .iter()
            .map(|&v| v as f32)
            .collect()
    }

    fn matrix(&self, chunk: &[f32]) -> DMatrix<f64> {
        DMatrix::from_row_slice(self.spec.horizon, self.spec.action_dim, &to_f64(chunk))
    }

    fn posterior(
        &mut self,
        chunk: &[f32],
        tau: &[f32],
        context: usize,
    ) -> Result<Posterior, PolicyError> {
        let means = self.contexts.get(context).ok_or(PolicyError::NotPrepared)?;
        if !self.factor.as_ref().is_some_and(|f| f.matches(tau)) {
            self.factor = Some(NoisedPrior::new(&self.kernel, tau));
        }
        let factor = self.factor.as_ref().expect("factor was just set");
        let x = DMatrix::from_row_slice(self.spec.horizon, self.spec.action_dim, &to_f64(chunk));
        let (whitened, energies): (Vec<DMatrix<f64>>, Vec<f64>) =
            means.iter().map(|m| factor.whiten(&x, m)).unzip();
        let log_likelihood: Vec<f64> = energies.iter().map(|e| -0.5 * e).collect();
        let peak = log_likelihood
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        let mut weights: Vec<f64> = log_likelihood.iter().map(|l| (l - peak).exp()).collect();
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        let component_means: Vec<DMatrix<f64>> = means
            .iter()
            .zip(&whitened)
            .map(|(mean, z)| factor.posterior_mean(mean, z))
            .collect();
        let mut denoised = DMatrix::zeros(self.spec.horizon, self.spec.action_dim);
        for (w, m) in weights.iter().zip(&component_means) {
            denoised += m * *w;
        }
        Ok(Posterior {
            denoised,
            weights,
            component_means,
            whitened,
        })
    }

    fn write_velocity(&self, chunk: &[f32], tau: &[f32], denoised: &DMatrix<f64>, out: &mut [f32]) {
        let a = self.spec.action_dim;
        for (i, &t) in tau.iter().enumerate() {
            for j in 0..a {
                let k = i * a + j;
                out[k] = if t < 1.0 {
                    ((denoised[(i, j)] - chunk[k] as f64) / (1.0 - t as f64)) as f32
                } else {
                    0.0
                };
            }
        }
    }

    /// Writes the velocity of chunk `b` of a batch of `batch` and returns its posterior.
    fn chunk_velocity(
        &mut self,
        actions: &ArrayView3<f32>,
        tau: &ArrayView2<f32>,
        b: usize,
        batch: usize,
        velocity: &mut ArrayViewMut3<f32>,
    ) -> Result<Posterior, PolicyError> {
        let (chunk, tau_b) = (actions.index_axis(Axis(0), b), tau.row(b));
        let (chunk, tau_b) = (flat(&chunk, "the action batch")?, flat(&tau_b, "tau")?);
        let posterior = self.posterior(chunk, tau_b, self.context_of(b, batch))?;
        let mut out = velocity.index_axis_mut(Axis(0), b);
        let out = flat_mut(&mut out, "the velocity")?;
        self.write_velocity(chunk, tau_b, &posterior.denoised, out);
        Ok(posterior)
    }

    fn context_of(&self, index: usize, batch: usize) -> usize {
        index / (batch / self.contexts.len().max(1)).max(1)
    }
}

fn to_f64(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| v as f64).collect()
}

impl FlowPolicy for MixtureFlow {
    fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }

    fn prepare(&mut self, observations: ArrayView2<f32>) -> Result<(), PolicyError> {
        let dim = self.spec.observation_dim;
        // An unconditional policy (dim 0) has one context, whatever it is given.
        let count = if dim == 0 { 1 } else { observations.nrows() };
        if dim > 0 && (count == 0 || observations.ncols() != dim) {
            return Err(PolicyError::Dims {
                what: "the observation batch",
                got: observations.shape().to_vec(),
                expected: vec![count.max(1), dim],
            });
        }
        let rows = flat(&observations, "the observation batch")?;
        let (h, a) = (self.spec.horizon, self.spec.action_dim);
        let mut buffer = vec![0.0; h * a];
        self.contexts = (0..count)
            .map(|c| {
                let observation = &rows[c * dim..(c + 1) * dim];
                (0..self.modes.modes())
                    .map(|mode| {
                        self.modes.mean(observation, mode, &mut buffer);
                        DMatrix::from_row_slice(h, a, &buffer)
                    })
                    .collect()
            })
            .collect();
        Ok(())
    }

    fn velocity(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        mut velocity: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let batch = batch_of(&self.spec, &actions, &tau)?;
        for b in 0..batch {
            self.chunk_velocity(&actions, &tau, b, batch, &mut velocity)?;
        }
        Ok(())
    }

    fn denoiser_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        cotangent: ArrayView3<f32>,
        mut velocity: ArrayViewMut3<f32>,
        mut vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let batch = batch_of(&self.spec, &actions, &tau)?;
        let (h, a) = (self.spec.horizon, self.spec.action_dim);
        for b in 0..batch {
            let posterior = self.chunk_velocity(&actions, &tau, b, batch, &mut velocity)?;
            let g = DMatrix::from_fn(h, a, |i, j| cotangent[[b, i, j]] as f64);
            let factor = self.factor.as_ref().expect("posterior factored tau");
            // Each component's mean is affine with Jacobian K D C^-1; the weights add
            // sum_k w_k (m_k . g) (z_bar - z_k), since d log N_k / dx = -z_k.
            let mut result = factor.transpose_jacobian(&g);
            let mut mean_whitened = DMatrix::zeros(h, a);
            for (w, z) in posterior.weights.iter().zip(&posterior.whitened) {
                mean_whitened += z * *w;
            }
            for ((w, m), z) in posterior
                .weights
                .iter()
                .zip(&posterior.component_means)
                .zip(&posterior.whitened)
            {
                result += (&mean_whitened - z) * (w * m.dot(&g));
            }
            for ((i, j), out) in vjp.index_axis_mut(Axis(0), b).indexed_iter_mut() {
                *out = result[(i, j)] as f32;
            }
        }
        Ok(())
    }
}
