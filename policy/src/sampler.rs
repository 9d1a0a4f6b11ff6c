//! One Euler loop from noise (tau = 0) to data (tau = 1), with the guidance mode chosen by configuration.
//!
//! Chunks are `[B, H, A]` arrays throughout (B chunks of H actions of A values), per-token values `[B, H]`; a
//! request's candidates (BID) are consecutive chunks of the batch.

use crate::bid::select_candidate;
use crate::guidance::{guidance_weight, pad_committed, soft_mask};
use crate::interface::rows_of;
use crate::{FlowPolicy, NormalRng, PolicyError};
use ndarray::{
    Array, Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis, Dimension,
    Ix2, Ix3, Zip, s,
};
use rtchunk_config::{SamplerConfig, SamplerMode};

/// The previous chunk's actions that the new chunk must continue.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// The previous chunk's not-yet-executed actions `A_cur[s..H]`, in the model's action space: `[H - s, A]`.
    pub actions: ArrayView2<'a, f32>,
    /// The inference delay d: how many of these actions will have executed when the new chunk arrives. Clamped
    /// to the number of committed actions.
    pub delay: usize,
}

/// How the loop steers the chunk towards the committed actions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Guide {
    None,
    /// ΠGDM guidance; `exact` uses the policy's VJP, otherwise the Jacobian is taken as the identity.
    Pinv {
        exact: bool,
    },
    /// Replace the first d actions by their noised target at every step.
    Overwrite,
    /// Give the first d actions clean, with tau = 1.
    Trained,
}

/// Where the initial noise A^0 comes from.
enum NoiseSource<'a> {
    /// Drawn from one seeded stream per request, each filling its request's share of the batch.
    Seeded(Vec<NormalRng>),
    /// Given by the caller, for one integration: `[candidates, H, A]`.
    Given(ArrayView3<'a, f32>),
}

impl NoiseSource<'_> {
    fn fill(&mut self, out: &mut Array3<f32>) -> Result<(), PolicyError> {
        match self {
            NoiseSource::Seeded(streams) => {
                let share = (out.len_of(Axis(0)) / streams.len().max(1)).max(1);
                for (rng, mut part) in streams
                    .iter_mut()
                    .zip(out.axis_chunks_iter_mut(Axis(0), share))
                {
                    let values = part
                        .as_slice_mut()
                        .ok_or(PolicyError::Layout("the sampler's chunks"))?;
                    rng.fill_normal(values);
                }
            }
            NoiseSource::Given(noise) if noise.dim() == out.dim() => out.assign(noise),
            NoiseSource::Given(noise) => {
                return Err(PolicyError::Dims {
                    what: "the given noise",
                    got: noise.shape().to_vec(),
                    expected: out.shape().to_vec(),
                });
            }
        }
        Ok(())
    }
}

/// `buffer` with shape `dim`, reallocated (as zeros) only when its shape changes, so repeated calls of one shape
/// do not allocate. Callers overwrite what they read.
fn fit<D: Dimension>(buffer: &mut Array<f32, D>, dim: D) {
    if buffer.raw_dim() != dim {
        *buffer = Array::zeros(dim);
    }
}

/// Samples chunks from a [`FlowPolicy`]; holds its buffers so repeated calls do not allocate.
///
/// Not real-time: runs in the inference worker.
pub struct Sampler {
    config: SamplerConfig,
    horizon: usize,
    action_dim: usize,
    /// Per request of the batch being sampled: d, the overlap H - s (0: nothing committed), Y `[R, H, A]` and
    /// W `[R, H]`.
    delays: Vec<usize>,
    overlaps: Vec<usize>,
    target: Array3<f32>,
    mask: Array2<f32>,
    /// Per chunk of the batch (`[B, H, A]`, B = requests x candidates): the state of the integration and what
    /// each step computes from it.
    x: Array3<f32>,
    noise: Array3<f32>,
    velocity: Array3<f32>,
    correction: Array3<f32>,
    cotangent: Array3<f32>,
    vjp_velocity: Array3<f32>,
    /// Per chunk of the batch: Y and W, for a policy that takes them in its guided step.
    chunk_target: Array3<f32>,
    chunk_mask: Array2<f32>,
    tau: Array2<f32>,
    observations: Vec<f32>,
    images: Vec<u8>,
    /// BID's weak policy's candidates, integrated from the same noise streams after the strong ones.
    weak_candidates: Array3<f32>,
}

/// One chunk to sample in a batch: its observation, the previous chunk's actions it must continue (none for a
/// first chunk), and the seed of its noise.
#[derive(Debug, Clone, Copy)]
pub struct SampleRequest<'a> {
    /// The observation (in the policy's normalised space).
    pub observation: &'a [f32],
    /// Its camera images (`image_bytes` of the policy's spec; empty for a policy without cameras).
    pub images: &'a [u8],
    /// The committed actions, if any.
    pub committed: Option<Committed<'a>>,
    /// Seed of this chunk's noise stream.
    pub seed: u64,
}

impl Sampler {
    /// A sampler for chunks of `horizon` actions of `action_dim` values.
    pub fn new(config: SamplerConfig, horizon: usize, action_dim: usize) -> Self {
        let chunks = || Array3::zeros((0, horizon, action_dim));
        let tokens = || Array2::zeros((0, horizon));
        Sampler {
            config,
            horizon,
            action_dim,
            delays: Vec::new(),
            overlaps: Vec::new(),
            target: chunks(),
            mask: tokens(),
            x: chunks(),
            noise: chunks(),
            velocity: chunks(),
            correction: chunks(),
            cotangent: chunks(),
            vjp_velocity: chunks(),
            chunk_target: chunks(),
            chunk_mask: tokens(),
            tau: tokens(),
            observations: Vec::new(),
            images: Vec::new(),
            weak_candidates: chunks(),
        }
    }

    /// Checks that `policy` supports this sampler's mode.
    pub fn check_policy(&self, policy: &dyn FlowPolicy) -> Result<(), PolicyError> {
        let spec = policy.spec();
        if spec.horizon != self.horizon || spec.action_dim != self.action_dim {
            return Err(PolicyError::Dims {
                what: "the policy's chunk (horizon x action_dim)",
                got: vec![spec.horizon, spec.action_dim],
                expected: vec![self.horizon, self.action_dim],
            });
        }
        match self.config.mode {
            SamplerMode::Rtc if !spec.exact_vjp => Err(PolicyError::NoVjp),
            SamplerMode::TrainedPrefix if !spec.prefix_conditioned => {
                Err(PolicyError::NotPrefixConditioned)
            }
            _ => Ok(()),
        }
    }

    /// Samples one chunk for `observation` into `out` (`[H, A]`). With `committed`, the chunk continues the
    /// previous one as the mode prescribes; without it (the first chunk) every mode samples plainly. `weak` is
    /// BID's weak policy for forward contrast. The result depends only on the inputs and `seed`.
    pub fn sample<'a>(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        observation: &'a [f32],
        committed: Option<Committed<'a>>,
        seed: u64,
        out: ArrayViewMut2<f32>,
    ) -> Result<(), PolicyError> {
        let request = SampleRequest {
            observation,
            images: &[],
            committed,
            seed,
        };
        self.sample_batch(policy, weak, &[request], out.insert_axis(Axis(0)))
    }

    /// Samples one chunk per request into `out` (`[requests, H, A]`) with one batched policy call per Euler
    /// step. Each chunk equals what [`Sampler::sample`] gives for its request alone (up to the backend's
    /// arithmetic across batch sizes): the benchmark runs many robots through one call this way.
    pub fn sample_batch(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        requests: &[SampleRequest],
        out: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        let mut noise =
            NoiseSource::Seeded(requests.iter().map(|r| NormalRng::new(r.seed)).collect());
        self.sample_with(policy, weak, requests, &mut noise, out)
    }

    /// [`Sampler::sample`] (with the observation's camera images, if the policy takes any) from the given initial
    /// noise A^0 (`[1, H, A]`, or `[bid_candidates, H, A]` for BID) instead of a seed: for comparing with other
    /// implementations of the same sampler.
    pub fn sample_from_noise<'a>(
        &mut self,
        policy: &mut dyn FlowPolicy,
        observation: &'a [f32],
        images: &'a [u8],
        committed: Option<Committed<'a>>,
        noise: ArrayView3<f32>,
        out: ArrayViewMut2<f32>,
    ) -> Result<(), PolicyError> {
        let mut noise = NoiseSource::Given(noise);
        let request = SampleRequest {
            observation,
            images,
            committed,
            seed: 0,
        };
        self.sample_with(
            policy,
            None,
            &[request],
            &mut noise,
            out.insert_axis(Axis(0)),
        )
    }

    fn sample_with(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        requests: &[SampleRequest],
        noise: &mut NoiseSource,
        mut out: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        self.check_policy(policy)?;
        let (h, a) = (self.horizon, self.action_dim);
        if out.dim() != (requests.len(), h, a) || requests.is_empty() {
            return Err(PolicyError::Dims {
                what: "the output chunks",
                got: out.shape().to_vec(),
                expected: vec![requests.len().max(1), h, a],
            });
        }
        self.set_targets(requests)?;
        self.observations.clear();
        self.images.clear();
        for request in requests {
            self.observations.extend_from_slice(request.observation);
            self.images.extend_from_slice(request.images);
        }
        policy.prepare_with_images(rows_of(&self.observations, requests.len())?, &self.images)?;
        let mode = self.config.mode;
        let guided = self.overlaps.iter().any(|&o| o > 0);
        let guide = match (mode, guided) {
            (_, false) | (SamplerMode::Plain | SamplerMode::Bid, _) => Guide::None,
            (SamplerMode::Rtc, _) => Guide::Pinv { exact: true },
            (SamplerMode::RtcIdentity, _) => Guide::Pinv { exact: false },
            (SamplerMode::PrefixOverwrite, _) => Guide::Overwrite,
            (SamplerMode::TrainedPrefix, _) => Guide::Trained,
        };
        let candidates = if mode == SamplerMode::Bid {
            self.config.bid_candidates
        } else {
            1
        };
        self.integrate(policy, candidates, guide, noise)?;
        let contrasted = match weak {
            Some(weak) if candidates > 1 && guided => {
                weak.prepare_with_images(
                    rows_of(&self.observations, requests.len())?,
                    &self.images,
                )?;
                std::mem::swap(&mut self.x, &mut self.weak_candidates);
                let integrated = self.integrate(weak, candidates, Guide::None, noise);
                std::mem::swap(&mut self.x, &mut self.weak_candidates);
                integrated?;
                true
            }
            _ => false,
        };
        for (r, mut chunk) in out.outer_iter_mut().enumerate() {
            let pool = s![r * candidates..(r + 1) * candidates, .., ..];
            let overlap = self.overlaps[r];
            let chosen = if candidates > 1 && overlap > 0 {
                select_candidate(
                    self.x.slice(pool),
                    contrasted.then(|| self.weak_candidates.slice(pool)),
                    self.target.slice(s![r, ..overlap, ..]),
                    self.mask.slice(s![r, ..overlap]),
                )
            } else {
                0
            };
            chunk.assign(&self.x.index_axis(Axis(0), r * candidates + chosen));
        }
        if out.iter().any(|v| !v.is_finite()) {
            return Err(PolicyError::NonFinite("the sampled chunk"));
        }
        Ok(())
    }

    /// Sets Y, W, d and the overlap H - s of every request from its committed actions.
    fn set_targets(&mut self, requests: &[SampleRequest]) -> Result<(), PolicyError> {
        let (h, a) = (self.horizon, self.action_dim);
        self.delays.clear();
        self.overlaps.clear();
        fit(&mut self.target, Ix3(requests.len(), h, a));
        fit(&mut self.mask, Ix2(requests.len(), h));
        for ((request, target), mut mask) in requests
            .iter()
            .zip(self.target.outer_iter_mut())
            .zip(self.mask.outer_iter_mut())
        {
            let committed = request.committed.filter(|c| !c.actions.is_empty());
            let Some(committed) = committed else {
                self.delays.push(0);
                self.overlaps.push(0);
                mask.fill(0.0);
                continue;
            };
            let overlap = committed.actions.nrows();
            if committed.actions.ncols() != a || overlap > h {
                return Err(PolicyError::Dims {
                    what: "the committed actions",
                    got: committed.actions.shape().to_vec(),
                    expected: vec![overlap.min(h), a],
                });
            }
            let delay = committed.delay.min(overlap);
            self.delays.push(delay);
            self.overlaps.push(overlap);
            pad_committed(committed.actions, target);
            soft_mask(delay, h - overlap, self.config.schedule, mask);
        }
        Ok(())
    }

    /// Euler-integrates `candidates` chunks per request from noise to data under `guide`.
    fn integrate(
        &mut self,
        policy: &mut dyn FlowPolicy,
        candidates: usize,
        guide: Guide,
        noise: &mut NoiseSource,
    ) -> Result<(), PolicyError> {
        let (h, a) = (self.horizon, self.action_dim);
        let batch = self.delays.len() * candidates;
        for buffer in [
            &mut self.x,
            &mut self.noise,
            &mut self.velocity,
            &mut self.correction,
            &mut self.cotangent,
            &mut self.vjp_velocity,
        ] {
            fit(buffer, Ix3(batch, h, a));
        }
        fit(&mut self.tau, Ix2(batch, h));
        noise.fill(&mut self.x)?;
        self.noise.assign(&self.x);
        let fused = guide == (Guide::Pinv { exact: true }) && policy.fuses_guidance();
        if fused {
            self.spread_targets(candidates);
        }
        let steps = self.config.steps;
        for step in 0..steps {
            let tau = step as f64 / steps as f64;
            self.tau.fill(tau as f32);
            for (b, mut chunk) in self.x.outer_iter_mut().enumerate() {
                let r = b / candidates;
                let prefix = s![..self.delays[r], ..];
                let target = self.target.index_axis(Axis(0), r);
                match guide {
                    Guide::Trained => {
                        chunk.slice_mut(prefix).assign(&target.slice(prefix));
                        self.tau.slice_mut(s![b, ..self.delays[r]]).fill(1.0);
                    }
                    Guide::Overwrite => {
                        Zip::from(chunk.slice_mut(prefix))
                            .and(target.slice(prefix))
                            .and(self.noise.slice(s![b, ..self.delays[r], ..]))
                            .for_each(|x, &y, &e| {
                                *x = ((1.0 - tau) * e as f64 + tau * y as f64) as f32;
                            });
                    }
                    Guide::None | Guide::Pinv { .. } => {}
                }
            }
            match guide {
                Guide::Pinv { exact: true } if fused => self.fused_guidance(policy, tau)?,
                Guide::Pinv { exact } => {
                    policy.velocity(self.x.view(), self.tau.view(), self.velocity.view_mut())?;
                    self.add_guidance(policy, candidates, tau, exact)?;
                }
                _ => policy.velocity(self.x.view(), self.tau.view(), self.velocity.view_mut())?,
            }
            self.x.scaled_add(1.0 / steps as f32, &self.velocity);
        }
        if matches!(guide, Guide::Trained | Guide::Overwrite) {
            for (b, mut chunk) in self.x.outer_iter_mut().enumerate() {
                let r = b / candidates;
                let prefix = s![..self.delays[r], ..];
                chunk
                    .slice_mut(prefix)
                    .assign(&self.target.slice(s![r, ..self.delays[r], ..]));
            }
        }
        if self.x.iter().any(|v| !v.is_finite()) {
            return Err(PolicyError::NonFinite("the Euler integration"));
        }
        Ok(())
    }

    /// Adds `w(tau) * (W * (Y - A1_hat))^T dA1_hat/dA` to the velocity (Eq. 2).
    fn add_guidance(
        &mut self,
        policy: &mut dyn FlowPolicy,
        candidates: usize,
        tau: f64,
        exact: bool,
    ) -> Result<(), PolicyError> {
        for (b, ((cotangent, x), v)) in self
            .cotangent
            .outer_iter_mut()
            .zip(self.x.outer_iter())
            .zip(self.velocity.outer_iter())
            .enumerate()
        {
            let r = b / candidates;
            let mask = self.mask.row(r).insert_axis(Axis(1));
            Zip::from(cotangent)
                .and(x)
                .and(v)
                .and(self.target.index_axis(Axis(0), r))
                .and_broadcast(mask)
                .for_each(|cotangent, &x, &v, &y, &w| {
                    let denoised = x as f64 + (1.0 - tau) * v as f64;
                    *cotangent = (w as f64 * (y as f64 - denoised)) as f32;
                });
        }
        if exact {
            policy.denoiser_vjp(
                self.x.view(),
                self.tau.view(),
                self.cotangent.view(),
                self.vjp_velocity.view_mut(),
                self.correction.view_mut(),
            )?;
        } else {
            self.correction.assign(&self.cotangent);
        }
        self.apply_correction(tau);
        Ok(())
    }

    /// Spreads each request's Y and W over its candidates' chunks, for a policy that takes them in its guided step
    /// ([`FlowPolicy::guided_vjp`]); they are fixed for the whole integration.
    fn spread_targets(&mut self, candidates: usize) {
        fit(&mut self.chunk_target, self.x.raw_dim());
        fit(&mut self.chunk_mask, self.tau.raw_dim());
        for (b, (mut target, mut mask)) in self
            .chunk_target
            .outer_iter_mut()
            .zip(self.chunk_mask.outer_iter_mut())
            .enumerate()
        {
            target.assign(&self.target.index_axis(Axis(0), b / candidates));
            mask.assign(&self.mask.row(b / candidates));
        }
    }

    /// The velocity and the guidance of Eq. 2 in one policy call ([`FlowPolicy::guided_vjp`]): the policy
    /// takes each chunk's Y and W (spread by [`Sampler::spread_targets`]) and forms the weighted error from its
    /// own velocity.
    fn fused_guidance(&mut self, policy: &mut dyn FlowPolicy, tau: f64) -> Result<(), PolicyError> {
        policy.guided_vjp(
            self.x.view(),
            self.tau.view(),
            self.chunk_target.view(),
            self.chunk_mask.view(),
            self.velocity.view_mut(),
            self.correction.view_mut(),
        )?;
        self.apply_correction(tau);
        Ok(())
    }

    /// Adds `w(tau)` times the correction to the velocity.
    fn apply_correction(&mut self, tau: f64) {
        let weight = guidance_weight(tau, self.config.beta) as f32;
        self.velocity.scaled_add(weight, &self.correction);
    }
}
