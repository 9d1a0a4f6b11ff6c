//! The samplers against closed-form answers of the Gaussian reference policy.

use rtchunk_config::{MaskSchedule, SamplerConfig, SamplerMode};
use rtchunk_policy::ndarray::{ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3};
use rtchunk_policy::reference::MixtureFlow;
use rtchunk_policy::{
    Committed, FlowPolicy, SampleRequest, Sampler, actions_of, chunks_of_mut, rows_of,
};

const H: usize = 8;
const SAMPLES: u64 = 8000;

fn sampler(mode: SamplerMode, schedule: MaskSchedule) -> Sampler {
    let config = SamplerConfig {
        mode,
        schedule,
        ..SamplerConfig::default()
    };
    Sampler::new(config, H, 1)
}

fn gaussian() -> MixtureFlow {
    MixtureFlow::gaussian(H, 1, 1.0, 3.0, vec![0.0; H])
}

/// A chunk of one-dimensional actions as `[H, 1]`.
fn column(values: &mut [f32]) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((values.len(), 1), values).unwrap()
}

/// One chunk into `chunk`, continuing the one-dimensional committed actions `previous` with delay `delay`.
fn sample_continuing(
    sampler: &mut Sampler,
    policy: &mut dyn FlowPolicy,
    previous: &[f32],
    delay: usize,
    seed: u64,
    chunk: &mut [f32],
) -> Result<(), rtchunk_policy::PolicyError> {
    let committed = Committed {
        actions: actions_of(previous, 1)?,
        delay,
    };
    sampler.sample(policy, None, &[], Some(committed), seed, column(chunk))
}

/// The mean over many seeds of the chunks sampled with committed `previous` and delay `d`.
fn sample_mean(
    sampler: &mut Sampler,
    policy: &mut dyn FlowPolicy,
    previous: &[f32],
    d: usize,
) -> Vec<f64> {
    let mut mean = vec![0.0f64; H];
    let mut chunk = vec![0.0f32; H];
    for seed in 0..SAMPLES {
        sample_continuing(sampler, policy, previous, d, seed, &mut chunk).unwrap();
        for (m, c) in mean.iter_mut().zip(&chunk) {
            *m += *c as f64 / SAMPLES as f64;
        }
    }
    mean
}

/// The previous chunk's remaining actions: a smooth trajectory, typical of the prior as a real previous chunk is.
const PREVIOUS: [f32; 5] = [0.8, 0.9, 0.9, 0.8, 0.6];

/// Largest deviation of the sampled free part (tokens d..H) from the closed-form conditional mean.
///
/// ΠGDM's guidance weight assumes a posterior variance r^2 I, exact only for an i.i.d. unit-variance prior; for
/// the smooth prior here it is an approximation, which is why the tolerance is stated rather than zero.
fn free_part_error(mode: SamplerMode, schedule: MaskSchedule) -> f64 {
    let d = 3;
    let previous = PREVIOUS;
    let mut policy = gaussian();
    let mut sampler = sampler(mode, schedule);
    let mean = sample_mean(&mut sampler, &mut policy, &previous, d);
    let exact = policy.conditional_mean(0, &previous[..d], 0);
    mean[d..]
        .iter()
        .zip(&exact)
        .map(|(m, e)| (m - *e as f64).abs())
        .fold(0.0, f64::max)
}

// Monte Carlo error of a mean of 8000 draws of at most unit variance: at most 0.011 (one standard error). Exact
// conditioning (trained-prefix) must land within that noise; ΠGDM's guidance adds its approximation bias of about
// 0.03 on this smooth prior (0.0295 measured at 8000 samples, 0.0175 at 2000: the bias, not noise, dominates).
const EXACT_TOLERANCE: f64 = 0.015;
const GUIDED_TOLERANCE: f64 = 0.05;

#[test]
fn hard_mask_rtc_matches_the_conditional_mean_and_plain_sampling_does_not() {
    let guided = free_part_error(SamplerMode::Rtc, MaskSchedule::Zeros);
    let plain = free_part_error(SamplerMode::Plain, MaskSchedule::Zeros);
    println!("free-part error: rtc hard mask {guided:.4}, plain {plain:.4}");
    assert!(guided < GUIDED_TOLERANCE, "guided error {guided}");
    assert!(plain > 10.0 * GUIDED_TOLERANCE, "plain error {plain}");
}

#[test]
fn trained_prefix_is_exact_conditioning_on_the_reference_gaussian() {
    let error = free_part_error(SamplerMode::TrainedPrefix, MaskSchedule::Exp);
    println!("free-part error: trained-prefix {error:.4}");
    assert!(error < EXACT_TOLERANCE, "trained-prefix error {error}");
}

#[test]
fn guided_modes_pull_the_frozen_prefix_to_the_committed_actions() {
    let previous = PREVIOUS;
    for mode in [
        SamplerMode::Rtc,
        SamplerMode::RtcIdentity,
        SamplerMode::PrefixOverwrite,
        SamplerMode::TrainedPrefix,
    ] {
        let mut policy = gaussian();
        let mut sampler = sampler(mode, MaskSchedule::Exp);
        let mean = sample_mean(&mut sampler, &mut policy, &previous, 3);
        for i in 0..3 {
            assert!(
                (mean[i] - previous[i] as f64).abs() < 0.15,
                "{mode:?}: {mean:?}"
            );
        }
    }
}

#[test]
fn the_sampler_is_deterministic_for_a_seed() {
    let previous = PREVIOUS;
    for mode in [SamplerMode::Plain, SamplerMode::Rtc, SamplerMode::Bid] {
        let run = |seed: u64| {
            let mut policy = MixtureFlow::bimodal(H, 1, 0.3, 3.0, 1.0);
            let mut sampler = sampler(mode, MaskSchedule::Exp);
            let mut chunk = vec![0.0f32; H];
            sample_continuing(&mut sampler, &mut policy, &previous, 2, seed, &mut chunk).unwrap();
            chunk
        };
        assert_eq!(run(11), run(11), "{mode:?}");
        assert_ne!(run(11), run(12), "{mode:?}");
    }
}

#[test]
fn bid_picks_the_candidate_that_continues_the_committed_mode() {
    let previous = [1.0f32; 5];
    let mut policy = MixtureFlow::bimodal(H, 1, 0.2, 3.0, 1.0);
    policy.prepare(rows_of(&[], 1).unwrap()).unwrap();
    let mut sampler = sampler(SamplerMode::Bid, MaskSchedule::Exp);
    let mut chunk = vec![0.0f32; H];
    for seed in 0..50 {
        sample_continuing(&mut sampler, &mut policy, &previous, 2, seed, &mut chunk).unwrap();
        assert_eq!(policy.mode_of(&chunk, 0), 0, "seed {seed}: {chunk:?}");
    }
}

#[test]
fn rtc_refuses_a_policy_without_a_vjp() {
    struct ForwardOnly(MixtureFlow);
    impl FlowPolicy for ForwardOnly {
        fn spec(&self) -> &rtchunk_policy::PolicySpec {
            self.0.spec()
        }
        fn prepare(&mut self, o: ArrayView2<f32>) -> Result<(), rtchunk_policy::PolicyError> {
            self.0.prepare(o)
        }
        fn velocity(
            &mut self,
            a: ArrayView3<f32>,
            t: ArrayView2<f32>,
            v: ArrayViewMut3<f32>,
        ) -> Result<(), rtchunk_policy::PolicyError> {
            self.0.velocity(a, t, v)
        }
    }
    let mut policy = ForwardOnly(gaussian());
    let mut chunk = vec![0.0f32; H];
    let mut rtc = sampler(SamplerMode::Rtc, MaskSchedule::Exp);
    let error = sample_continuing(&mut rtc, &mut policy, &[0.5; 4], 2, 0, &mut chunk).unwrap_err();
    assert!(error.to_string().contains("rtc-identity"), "{error}");
}

#[test]
fn a_batch_of_requests_samples_exactly_what_each_request_samples_alone() {
    // Mixed requests: different committed prefixes, delays and seeds, and one first chunk with nothing committed.
    let previous: [&[f32]; 4] = [&PREVIOUS, &PREVIOUS[1..], &[0.1, -0.2, 0.3, 0.0], &[]];
    let delays = [3, 1, 4, 0];
    for mode in [
        SamplerMode::Plain,
        SamplerMode::Rtc,
        SamplerMode::RtcIdentity,
        SamplerMode::PrefixOverwrite,
        SamplerMode::Bid,
    ] {
        let mut policy = MixtureFlow::bimodal(H, 1, 0.3, 3.0, 1.0);
        let mut sampler = sampler(mode, MaskSchedule::Exp);
        let requests: Vec<SampleRequest> = (0..4)
            .map(|r| SampleRequest {
                observation: &[],
                images: &[],
                committed: Some(Committed {
                    actions: actions_of(previous[r], 1).unwrap(),
                    delay: delays[r],
                }),
                seed: 100 + r as u64,
            })
            .collect();
        let mut batch = vec![0.0f32; 4 * H];
        sampler
            .sample_batch(
                &mut policy,
                None,
                &requests,
                chunks_of_mut(&mut batch, H, 1).unwrap(),
            )
            .unwrap();
        for (r, request) in requests.iter().enumerate() {
            let mut alone = vec![0.0f32; H];
            sampler
                .sample(
                    &mut policy,
                    None,
                    &[],
                    request.committed,
                    request.seed,
                    column(&mut alone),
                )
                .unwrap();
            assert_eq!(
                &batch[r * H..(r + 1) * H],
                &alone[..],
                "{mode:?}, request {r}"
            );
        }
    }
}
