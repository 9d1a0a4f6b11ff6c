//! One Euler loop from noise (tau = 0) to data (tau = 1), with the guidance mode chosen by configuration.

use crate::bid::select_candidate;
use crate::guidance::{guidance_weight, pad_committed, soft_mask};
use crate::interface::{chunks_of, chunks_of_mut, rows_of, tokens_of};
use crate::{FlowPolicy, NormalRng, PolicyError};
use rtchunk_config::{SamplerConfig, SamplerMode};

/// The previous chunk's actions that the new chunk must continue.
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// The previous chunk's not-yet-executed actions `A_cur[s..H]`, in the model's action space, token-major:
    /// `H - s` whole actions.
    pub actions: &'a [f32],
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
    /// Given by the caller, for one integration.
    Given(&'a [f32]),
}

impl NoiseSource<'_> {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), PolicyError> {
        match self {
            NoiseSource::Seeded(streams) => {
                let share = out.len() / streams.len().max(1);
                for (rng, part) in streams.iter_mut().zip(out.chunks_mut(share.max(1))) {
                    rng.fill_normal(part);
                }
            }
            NoiseSource::Given(noise) if noise.len() == out.len() => out.copy_from_slice(noise),
            NoiseSource::Given(noise) => {
                return Err(PolicyError::Shape {
                    what: "the given noise",
                    got: noise.len(),
                    expected: out.len(),
                });
            }
        }
        Ok(())
    }
}

/// Samples chunks from a [`FlowPolicy`]; holds its buffers so repeated calls do not allocate.
///
/// Not real-time: runs in the inference worker.
pub struct Sampler {
    config: SamplerConfig,
    horizon: usize,
    action_dim: usize,
    /// Per request of the batch being sampled: d, the overlap H - s (0: nothing committed), Y and W.
    delays: Vec<usize>,
    overlaps: Vec<usize>,
    target: Vec<f32>,
    mask: Vec<f32>,
    x: Vec<f32>,
    noise: Vec<f32>,
    velocity: Vec<f32>,
    correction: Vec<f32>,
    cotangent: Vec<f32>,
    vjp_velocity: Vec<f32>,
    /// Per chunk of the batch: Y and W, for a policy that takes them in its guided step.
    chunk_target: Vec<f32>,
    chunk_mask: Vec<f32>,
    tau: Vec<f32>,
    observations: Vec<f32>,
    images: Vec<u8>,
    weak_candidates: Vec<f32>,
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
        Sampler {
            config,
            horizon,
            action_dim,
            delays: Vec::new(),
            overlaps: Vec::new(),
            target: Vec::new(),
            mask: Vec::new(),
            x: Vec::new(),
            noise: Vec::new(),
            velocity: Vec::new(),
            correction: Vec::new(),
            cotangent: Vec::new(),
            vjp_velocity: Vec::new(),
            chunk_target: Vec::new(),
            chunk_mask: Vec::new(),
            tau: Vec::new(),
            observations: Vec::new(),
            images: Vec::new(),
            weak_candidates: Vec::new(),
        }
    }

    /// Checks that `policy` supports this sampler's mode.
    pub fn check_policy(&self, policy: &dyn FlowPolicy) -> Result<(), PolicyError> {
        let spec = policy.spec();
        if spec.horizon != self.horizon || spec.action_dim != self.action_dim {
            return Err(PolicyError::Shape {
                what: "the policy's chunk (horizon x action_dim)",
                got: spec.chunk_len(),
                expected: self.horizon * self.action_dim,
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

    /// Samples one chunk for `observation` into `out` (H x action_dim). With `committed`, the chunk continues
    /// the previous one as the mode prescribes; without it (the first chunk) every mode samples plainly.
    /// `weak` is BID's weak policy for forward contrast. The result depends only on the inputs and `seed`.
    pub fn sample(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        observation: &[f32],
        committed: Option<Committed>,
        seed: u64,
        out: &mut [f32],
    ) -> Result<(), PolicyError> {
        let request = SampleRequest {
            observation,
            images: &[],
            committed,
            seed,
        };
        self.sample_batch(policy, weak, &[request], out)
    }

    /// Samples one chunk per request into `out` (requests x H x action_dim) with one batched policy call per
    /// Euler step. Each chunk equals what [`Sampler::sample`] gives for its request alone (up to the backend's
    /// arithmetic across batch sizes): the benchmark runs many robots through one call this way.
    pub fn sample_batch(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        requests: &[SampleRequest],
        out: &mut [f32],
    ) -> Result<(), PolicyError> {
        let mut noise =
            NoiseSource::Seeded(requests.iter().map(|r| NormalRng::new(r.seed)).collect());
        self.sample_with(policy, weak, requests, &mut noise, out)
    }

    /// [`Sampler::sample`] (with the observation's camera images, if the policy takes any) from the given initial
    /// noise A^0 (one chunk, or `bid_candidates` chunks for BID) instead of a seed: for comparing with other implementations of the same sampler.
    pub fn sample_from_noise(
        &mut self,
        policy: &mut dyn FlowPolicy,
        observation: &[f32],
        images: &[u8],
        committed: Option<Committed>,
        noise: &[f32],
        out: &mut [f32],
    ) -> Result<(), PolicyError> {
        let mut noise = NoiseSource::Given(noise);
        let request = SampleRequest {
            observation,
            images,
            committed,
            seed: 0,
        };
        self.sample_with(policy, None, &[request], &mut noise, out)
    }

    fn sample_with(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        requests: &[SampleRequest],
        noise: &mut NoiseSource,
        out: &mut [f32],
    ) -> Result<(), PolicyError> {
        self.check_policy(policy)?;
        let len = self.horizon * self.action_dim;
        if out.len() != requests.len() * len || requests.is_empty() {
            return Err(PolicyError::Shape {
                what: "the output chunks",
                got: out.len(),
                expected: requests.len().max(1) * len,
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
        if candidates > 1 && guided {
            if let Some(weak) = weak {
                weak.prepare_with_images(
                    rows_of(&self.observations, requests.len())?,
                    &self.images,
                )?;
                let strong = std::mem::take(&mut self.x);
                self.integrate(weak, candidates, Guide::None, noise)?;
                self.weak_candidates = std::mem::replace(&mut self.x, strong);
            } else {
                self.weak_candidates.clear();
            }
        }
        let (h, a) = (self.horizon, self.action_dim);
        for (r, chunk) in out.chunks_mut(len).enumerate() {
            let overlap = self.overlaps[r];
            let pool = r * candidates * len..(r + 1) * candidates * len;
            let chosen = if candidates > 1 && overlap > 0 {
                select_candidate(
                    &self.x[pool.clone()],
                    (!self.weak_candidates.is_empty()).then(|| &self.weak_candidates[pool.clone()]),
                    &self.target[r * h * a..][..overlap * a],
                    a,
                    len,
                )
            } else {
                0
            };
            chunk.copy_from_slice(&self.x[pool.start + chosen * len..][..len]);
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
        self.target.resize(requests.len() * h * a, 0.0);
        self.mask.resize(requests.len() * h, 0.0);
        for (r, request) in requests.iter().enumerate() {
            let (target, mask) = (
                &mut self.target[r * h * a..][..h * a],
                &mut self.mask[r * h..][..h],
            );
            let committed = request.committed.filter(|c| !c.actions.is_empty());
            let Some(committed) = committed else {
                self.delays.push(0);
                self.overlaps.push(0);
                mask.fill(0.0);
                continue;
            };
            let overlap = committed.actions.len() / a;
            if committed.actions.len() != overlap * a || overlap > h {
                return Err(PolicyError::Shape {
                    what: "the committed actions",
                    got: committed.actions.len(),
                    expected: (overlap * a).min(h * a),
                });
            }
            let delay = committed.delay.min(overlap);
            self.delays.push(delay);
            self.overlaps.push(overlap);
            pad_committed(committed.actions, a, target);
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
        let len = h * a;
        let batch = self.delays.len() * candidates;
        for buffer in [
            &mut self.x,
            &mut self.noise,
            &mut self.velocity,
            &mut self.correction,
            &mut self.cotangent,
            &mut self.vjp_velocity,
        ] {
            buffer.resize(batch * len, 0.0);
        }
        self.tau.resize(batch * h, 0.0);
        noise.fill(&mut self.x)?;
        self.noise.copy_from_slice(&self.x);
        let steps = self.config.steps;
        for step in 0..steps {
            let tau = step as f64 / steps as f64;
            self.tau.fill(tau as f32);
            for b in 0..batch {
                let r = b / candidates;
                let (prefix, target) = (self.delays[r] * a, &self.target[r * len..][..len]);
                let chunk = &mut self.x[b * len..(b + 1) * len];
                match guide {
                    Guide::Trained => {
                        chunk[..prefix].copy_from_slice(&target[..prefix]);
                        self.tau[b * h..b * h + self.delays[r]].fill(1.0);
                    }
                    Guide::Overwrite => {
                        let noise = &self.noise[b * len..b * len + prefix];
                        for ((x, y), e) in chunk[..prefix].iter_mut().zip(target).zip(noise) {
                            *x = ((1.0 - tau) * *e as f64 + tau * *y as f64) as f32;
                        }
                    }
                    Guide::None | Guide::Pinv { .. } => {}
                }
            }
            match guide {
                Guide::Pinv { exact: true } if policy.fuses_guidance() => {
                    self.fused_guidance(policy, candidates, tau)?;
                }
                Guide::Pinv { exact } => {
                    policy.velocity(
                        chunks_of(&self.x, h, a)?,
                        tokens_of(&self.tau, h)?,
                        chunks_of_mut(&mut self.velocity, h, a)?,
                    )?;
                    self.add_guidance(policy, candidates, tau, exact)?;
                }
                _ => policy.velocity(
                    chunks_of(&self.x, h, a)?,
                    tokens_of(&self.tau, h)?,
                    chunks_of_mut(&mut self.velocity, h, a)?,
                )?,
            }
            let dt = 1.0 / steps as f32;
            for (x, v) in self.x.iter_mut().zip(&self.velocity) {
                *x += dt * v;
            }
        }
        if matches!(guide, Guide::Trained | Guide::Overwrite) {
            for b in 0..batch {
                let r = b / candidates;
                let prefix = self.delays[r] * a;
                self.x[b * len..b * len + prefix]
                    .copy_from_slice(&self.target[r * len..][..prefix]);
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
        let (h, a) = (self.horizon, self.action_dim);
        let len = h * a;
        for (b, ((cotangent, x), v)) in self
            .cotangent
            .chunks_mut(len)
            .zip(self.x.chunks(len))
            .zip(self.velocity.chunks(len))
            .enumerate()
        {
            let r = b / candidates;
            let (target, mask) = (&self.target[r * len..][..len], &self.mask[r * h..][..h]);
            for k in 0..len {
                let denoised = x[k] as f64 + (1.0 - tau) * v[k] as f64;
                cotangent[k] = (mask[k / a] as f64 * (target[k] as f64 - denoised)) as f32;
            }
        }
        if exact {
            policy.denoiser_vjp(
                chunks_of(&self.x, h, a)?,
                tokens_of(&self.tau, h)?,
                chunks_of(&self.cotangent, h, a)?,
                chunks_of_mut(&mut self.vjp_velocity, h, a)?,
                chunks_of_mut(&mut self.correction, h, a)?,
            )?;
        } else {
            self.correction.copy_from_slice(&self.cotangent);
        }
        self.apply_correction(tau);
        Ok(())
    }

    /// The velocity and the guidance of Eq. 2 in one policy call ([`FlowPolicy::guided_vjp`]): the policy
    /// takes each chunk's Y and W and forms the weighted error from its own velocity.
    fn fused_guidance(
        &mut self,
        policy: &mut dyn FlowPolicy,
        candidates: usize,
        tau: f64,
    ) -> Result<(), PolicyError> {
        let (h, a) = (self.horizon, self.action_dim);
        let len = h * a;
        let batch = self.x.len() / len;
        self.chunk_target.resize(batch * len, 0.0);
        self.chunk_mask.resize(batch * h, 0.0);
        for b in 0..batch {
            let r = b / candidates;
            self.chunk_target[b * len..][..len].copy_from_slice(&self.target[r * len..][..len]);
            self.chunk_mask[b * h..][..h].copy_from_slice(&self.mask[r * h..][..h]);
        }
        policy.guided_vjp(
            chunks_of(&self.x, h, a)?,
            tokens_of(&self.tau, h)?,
            chunks_of(&self.chunk_target, h, a)?,
            tokens_of(&self.chunk_mask, h)?,
            chunks_of_mut(&mut self.velocity, h, a)?,
            chunks_of_mut(&mut self.correction, h, a)?,
        )?;
        self.apply_correction(tau);
        Ok(())
    }

    /// Adds `w(tau)` times the correction to the velocity.
    fn apply_correction(&mut self, tau: f64) {
        let weight = guidance_weight(tau, self.config.beta) as f32;
        for (v, g) in self.velocity.iter_mut().zip(&self.correction) {
            *v += weight * g;
        }
    }
}
