//! The reference policies' VJPs match finite differences, and the time-convention adapter is exact.

use rtchunk_policy::reference::MixtureFlow;
use rtchunk_policy::{
    FlowPolicy, NoiseAtOne, NormalRng, chunks_of, chunks_of_mut, rows_of, tokens_of,
};

/// A1_hat(x) = x + (1 - tau) v(x, tau), computed in f64 from the policy's velocity.
fn denoised(policy: &mut dyn FlowPolicy, x: &[f32], tau: &[f32]) -> Vec<f64> {
    let mut v = vec![0.0; x.len()];
    let (h, a) = (policy.spec().horizon, policy.spec().action_dim);
    policy
        .velocity(
            chunks_of(x, h, a).unwrap(),
            tokens_of(tau, h).unwrap(),
            chunks_of_mut(&mut v, h, a).unwrap(),
        )
        .unwrap();
    x.iter()
        .zip(&v)
        .enumerate()
        .map(|(k, (x, v))| *x as f64 + (1.0 - tau[k / a] as f64) * *v as f64)
        .collect()
}

/// Checks <g, J u> from central differences against <J^T g, u> from the VJP, for random g, u and x.
fn assert_vjp_matches_finite_differences(
    policy: &mut dyn FlowPolicy,
    observation: &[f32],
    tau: &[f32],
    seed: u64,
) {
    policy.prepare(rows_of(observation, 1).unwrap()).unwrap();
    let (len, h, a) = (
        policy.spec().chunk_len(),
        policy.spec().horizon,
        policy.spec().action_dim,
    );
    let mut rng = NormalRng::new(seed);
    let mut x = vec![0.0f32; len];
    let mut g = vec![0.0f32; len];
    let mut u = vec![0.0f32; len];
    rng.fill_normal(&mut x);
    rng.fill_normal(&mut g);
    rng.fill_normal(&mut u);
    x.iter_mut().for_each(|v| *v *= 0.5);
    let mut velocity = vec![0.0; len];
    let mut vjp = vec![0.0; len];
    policy
        .denoiser_vjp(
            chunks_of(&x, h, a).unwrap(),
            tokens_of(tau, h).unwrap(),
            chunks_of(&g, h, a).unwrap(),
            chunks_of_mut(&mut velocity, h, a).unwrap(),
            chunks_of_mut(&mut vjp, h, a).unwrap(),
        )
        .unwrap();
    let epsilon = 1e-3f32;
    let shifted = |sign: f32| -> Vec<f32> {
        x.iter()
            .zip(&u)
            .map(|(x, u)| x + sign * epsilon * u)
            .collect()
    };
    let plus = denoised(policy, &shifted(1.0), tau);
    let minus = denoised(policy, &shifted(-1.0), tau);
    let numeric: f64 = plus
        .iter()
        .zip(&minus)
        .zip(&g)
        .map(|((p, m), g)| (p - m) / (2.0 * epsilon as f64) * *g as f64)
        .sum();
    let analytic: f64 = vjp.iter().zip(&u).map(|(j, u)| *j as f64 * *u as f64).sum();
    let scale = numeric.abs().max(analytic.abs()).max(1e-3);
    assert!(
        (numeric - analytic).abs() / scale < 2e-2,
        "VJP {analytic} vs finite differences {numeric} at tau {tau:?}"
    );
}

fn tau_grid(horizon: usize) -> Vec<Vec<f32>> {
    let mut grids: Vec<Vec<f32>> = [0.0f32, 0.2, 0.4, 0.6, 0.8]
        .iter()
        .map(|&t| vec![t; horizon])
        .collect();
    // Per token: a clean prefix at tau = 1 (training-time RTC) and a ramp.
    let mut prefixed = vec![0.4f32; horizon];
    prefixed[..3].fill(1.0);
    grids.push(prefixed);
    grids.push((0..horizon).map(|i| i as f32 / horizon as f32).collect());
    grids
}

#[test]
fn gaussian_vjp_matches_finite_differences() {
    let mut policy = MixtureFlow::gaussian(
        8,
        2,
        0.7,
        2.5,
        (0..16).map(|i| (i as f64 * 0.3).sin()).collect(),
    );
    for (k, tau) in tau_grid(8).iter().enumerate() {
        assert_vjp_matches_finite_differences(&mut policy, &[], tau, k as u64);
    }
}

#[test]
fn bimodal_vjp_matches_finite_differences() {
    let mut policy = MixtureFlow::bimodal(8, 2, 0.6, 3.0, 0.5);
    for (k, tau) in tau_grid(8).iter().enumerate() {
        assert_vjp_matches_finite_differences(&mut policy, &[], tau, 100 + k as u64);
    }
}

#[test]
fn time_convention_adapter_flips_tau_and_velocity_and_is_its_own_inverse() {
    let mut native = MixtureFlow::bimodal(8, 1, 0.6, 3.0, 0.5);
    let mut twice = NoiseAtOne::new(NoiseAtOne::new(MixtureFlow::bimodal(8, 1, 0.6, 3.0, 0.5)));
    let mut once = NoiseAtOne::new(MixtureFlow::bimodal(8, 1, 0.6, 3.0, 0.5));
    for policy in [&mut native as &mut dyn FlowPolicy, &mut twice, &mut once] {
        policy.prepare(rows_of(&[], 1).unwrap()).unwrap();
    }
    let x: Vec<f32> = (0..8).map(|i| 0.1 * i as f32 - 0.3).collect();
    let tau = vec![0.3f32; 8];
    let flipped_tau = vec![0.7f32; 8];
    let velocity_of = |policy: &mut dyn FlowPolicy, tau: &[f32]| {
        let mut velocity = vec![0.0; 8];
        policy
            .velocity(
                chunks_of(&x, 8, 1).unwrap(),
                tokens_of(tau, 8).unwrap(),
                chunks_of_mut(&mut velocity, 8, 1).unwrap(),
            )
            .unwrap();
        velocity
    };
    let a = velocity_of(&mut native, &tau);
    let b = velocity_of(&mut twice, &tau);
    let c = velocity_of(&mut once, &flipped_tau);
    assert_eq!(a, b);
    for (native, flipped) in a.iter().zip(&c) {
        assert_eq!(*native, -*flipped);
    }
}

#[test]
fn mode_of_recognises_each_mode_mean() {
    let mut policy = MixtureFlow::bimodal(8, 2, 0.1, 3.0, 1.0);
    policy.prepare(rows_of(&[], 1).unwrap()).unwrap();
    assert_eq!(policy.mode_of(&policy.mode_mean(0, 0), 0), 0);
    assert_eq!(policy.mode_of(&policy.mode_mean(1, 0), 0), 1);
}
