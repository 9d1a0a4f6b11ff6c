//! One Euler loop from noise (tau = 0) to data (tau = 1), with the guidance mode chosen by configuration.

use crate::bid::select_candidate;
use crate::guidance::{guidance_weight, pad_committed, soft_mask};
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
    /// Drawn from a seeded stream.
    Seeded(NormalRng),
    /// Given by the caller, for one integration.
    Given(&'a [f32]),
}

impl NoiseSource<'_> {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), PolicyError> {
        match self {
            NoiseSource::Seeded(rng) => rng.fill_normal(out),
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
    delay: usize,
    x: Vec<f32>,
    noise: Vec<f32>,
    velocity: Vec<f32>,
    correction: Vec<f32>,
    cotangent: Vec<f32>,
    vjp_velocity: Vec<f32>,
    tau: Vec<f32>,
    target: Vec<f32>,
    mask: Vec<f32>,
    weak_candidates: Vec<f32>,
}

impl Sampler {
    /// A sampler for chunks of `horizon` actions of `action_dim` values.
    pub fn new(config: SamplerConfig, horizon: usize, action_dim: usize) -> Self {
        Sampler {
            config,
            horizon,
            action_dim,
            delay: 0,
            x: Vec::new(),
            noise: Vec::new(),
            velocity: Vec::new(),
            correction: Vec::new(),
            cotangent: Vec::new(),
            vjp_velocity: Vec::new(),
            tau: Vec::new(),
            target: vec![0.0; horizon * action_dim],
            mask: vec![0.0; horizon],
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
        let mut noise = NoiseSource::Seeded(NormalRng::new(seed));
        self.sample_with(policy, weak, observation, committed, &mut noise, out)
    }

    /// [`Sampler::sample`] from the given initial noise A^0 (one chunk, or `bid_candidates` chunks for BID)
    /// instead of a seed: for comparing with other implementations of the same sampler.
    pub fn sample_from_noise(
        &mut self,
        policy: &mut dyn FlowPolicy,
        observation: &[f32],
        committed: Option<Committed>,
        noise: &[f32],
        out: &mut [f32],
    ) -> Result<(), PolicyError> {
        let mut noise = NoiseSource::Given(noise);
        self.sample_with(policy, None, observation, committed, &mut noise, out)
    }

    fn sample_with(
        &mut self,
        policy: &mut dyn FlowPolicy,
        weak: Option<&mut dyn FlowPolicy>,
        observation: &[f32],
        committed: Option<Committed>,
        noise: &mut NoiseSource,
        out: &mut [f32],
    ) -> Result<(), PolicyError> {
        self.check_policy(policy)?;
        let len = self.horizon * self.action_dim;
        if out.len() != len {
            return Err(PolicyError::Shape {
                what: "the output chunk",
                got: out.len(),
                expected: len,
            });
        }
        let overlap = self.set_target(committed)?;
        policy.prepare(observation)?;
        let mode = self.config.mode;
        let guide = match (mode, overlap) {
            (_, None) | (SamplerMode::Plain | SamplerMode::Bid, _) => Guide::None,
            (SamplerMode::Rtc, _) => Guide::Pinv { exact: true },
            (SamplerMode::RtcIdentity, _) => Guide::Pinv { exact: false },
            (SamplerMode::PrefixOverwrite, _) => Guide::Overwrite,
            (SamplerMode::TrainedPrefix, _) => Guide::Trained,
        };
        let batch = if mode == SamplerMode::Bid {
            self.config.bid_candidates
        } else {
            1
        };
        self.integrate(policy, batch, guide, noise)?;
        let chosen = match (overlap, weak) {
            (Some(overlap), weak) if batch > 1 => {
                let weak_candidates = match weak {
                    Some(weak) => {
                        weak.prepare(observation)?;
                        let strong = std::mem::take(&mut self.x);
                        self.integrate(weak, batch, Guide::None, noise)?;
                        self.weak_candidates = std::mem::replace(&mut self.x, strong);
                        Some(self.weak_candidates.as_slice())
                    }
                    None => None,
                };
                select_candidate(
                    &self.x,
                    weak_candidates,
                    &self.target[..overlap * self.action_dim],
                    self.action_dim,
                    len,
                )
            }
            _ => 0,
        };
        out.copy_from_slice(&self.x[chosen * len..(chosen + 1) * len]);
        if out.iter().any(|v| !v.is_finite()) {
            return Err(PolicyError::NonFinite("the sampled chunk"));
        }
        Ok(())
    }

    /// Sets Y, W and d from the committed actions; returns the overlap length H - s, if any.
    fn set_target(&mut self, committed: Option<Committed>) -> Result<Option<usize>, PolicyError> {
        let Some(committed) = committed else {
            self.delay = 0;
            return Ok(None);
        };
        let a = self.action_dim;
        let overlap = committed.actions.len() / a;
        if committed.actions.len() != overlap * a || overlap > self.horizon {
            return Err(PolicyError::Shape {
                what: "the committed actions",
                got: committed.actions.len(),
                expected: (overlap * a).min(self.horizon * a),
            });
        }
        if overlap == 0 {
            self.delay = 0;
            return Ok(None);
        }
        self.delay = committed.delay.min(overlap);
        pad_committed(committed.actions, a, &mut self.target);
        soft_mask(
            self.delay,
            self.horizon - overlap,
            self.config.schedule,
            &mut self.mask,
        );
        Ok(Some(overlap))
    }

    fn integrate(
        &mut self,
        policy: &mut dyn FlowPolicy,
        batch: usize,
        guide: Guide,
        noise: &mut NoiseSource,
    ) -> Result<(), PolicyError> {
        let (h, a) = (self.horizon, self.action_dim);
        let len = h * a;
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
        let prefix = self.delay * a;
        for step in 0..steps {
            let tau = step as f64 / steps as f64;
            self.tau.fill(tau as f32);
            for b in 0..batch {
                let chunk = &mut self.x[b * len..(b + 1) * len];
                match guide {
                    Guide::Trained => {
                        chunk[..prefix].copy_from_slice(&self.target[..prefix]);
                        self.tau[b * h..b * h + self.delay].fill(1.0);
                    }
                    Guide::Overwrite => {
                        let noise = &self.noise[b * len..b * len + prefix];
                        for ((x, y), e) in chunk[..prefix].iter_mut().zip(&self.target).zip(noise) {
                            *x = ((1.0 - tau) * *e as f64 + tau * *y as f64) as f32;
                        }
                    }
                    Guide::None | Guide::Pinv { .. } => {}
                }
            }
            policy.velocity(&self.x, &self.tau, &mut self.velocity)?;
            if let Guide::Pinv { exact } = guide {
                self.add_guidance(policy, batch, tau, exact)?;
            }
            let dt = 1.0 / steps as f32;
            for (x, v) in self.x.iter_mut().zip(&self.velocity) {
                *x += dt * v;
            }
        }
        if matches!(guide, Guide::Trained | Guide::Overwrite) {
            for b in 0..batch {
                self.x[b * len..b * len + prefix].copy_from_slice(&self.target[..prefix]);
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
        batch: usize,
        tau: f64,
        exact: bool,
    ) -> Result<(), PolicyError> {
        let (h, a) = (self.horizon, self.action_dim);
        let len = h * a;
        for b in 0..batch {
            for i in 0..h {
                for j in 0..a {
                    let k = b * len + i * a + j;
                    let denoised = self.x[k] as f64 + (1.0 - tau) * self.velocity[k] as f64;
                    self.cotangent[k] =
                        (self.mask[i] as f64 * (self.target[i * a + j] as f64 - denoised)) as f32;
                }
            }
        }
        if exact {
            policy.denoiser_vjp(
                &self.x,
                &self.tau,
                &self.cotangent,
                &mut self.vjp_velocity,
                &mut self.correction,
            )?;
        } else {
            self.correction.copy_from_slice(&self.cotangent);
        }
        let weight = guidance_weight(tau, self.config.beta) as f32;
        for (v, g) in self.velocity.iter_mut().zip(&self.correction) {
            *v += weight * g;
        }
        Ok(())
    }
}
