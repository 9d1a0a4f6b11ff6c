//! Seams with the bimodal reference policy: RTC continues the committed mode, naive async jumps between modes.

use rtchunk_config::SamplerMode;
use rtchunk_policy::reference::MixtureFlow;
use rtchunk_policy::{FlowPolicy, rows_of};
use rtchunk_runtime::RunOutcome;
use rtchunk_sim::PointMass;
use rtchunk_tests::{run_for, simulated};

struct SeamReport {
    mean_seam_jump: f64,
    mode_change_rate: f64,
    swaps: usize,
}

/// H = 8, s_min = 4, d = 3 on the simulated clock, with `steps` denoising steps and guidance clipping `beta`
/// (n = 10 and beta = n are LeRobot's defaults and the "beta = n" rule of thumb). With the paper's n = 5 the
/// first guided Euler step on this exact (and very sharp) two-mode denoiser overshoots along the mode direction,
/// and the chunks drift away from the modes over hundreds of swaps; the Euler discretisation, not the guidance
/// rule, is what fails there.
fn seams_with(mode: SamplerMode, steps: usize, beta: f64) -> SeamReport {
    let mut config = simulated(8, 4, 3, mode);
    config.sampler.steps = steps;
    config.sampler.beta = beta;
    let outcome: RunOutcome<PointMass> = run_for(&config, 4_100, None);
    let policy = &config.policy;
    let mut classifier = MixtureFlow::bimodal(
        policy.horizon,
        policy.action_dim,
        policy.spread,
        policy.correlation_length,
        policy.separation,
    );
    classifier.prepare(rows_of(&[], 1).unwrap()).unwrap();
    let modes: Vec<usize> = outcome
        .inferences
        .iter()
        .map(|i| classifier.mode_of(&i.chunk, 0))
        .collect();
    let changes = modes.windows(2).filter(|w| w[0] != w[1]).count();
    SeamReport {
        mean_seam_jump: outcome.metrics.seam_jump.mean,
        mode_change_rate: changes as f64 / (modes.len() - 1) as f64,
        swaps: outcome.metrics.swaps,
    }
}

/// RTC against naive async at `steps` and `beta`: prints both, checks that both ran over a thousand swaps, that
/// RTC keeps the committed mode and that naive changes it about every other swap; returns (rtc, naive).
fn rtc_against_naive(steps: usize, beta: f64) -> (SeamReport, SeamReport) {
    let rtc = seams_with(SamplerMode::Rtc, steps, beta);
    let naive = seams_with(SamplerMode::Plain, steps, beta);
    println!(
        "n = {steps}, beta = {beta}: swaps {} / {}: mean seam jump rtc {:.4}, naive {:.4}; mode changes rtc {:.2} %, \
         naive {:.1} %",
        rtc.swaps,
        naive.swaps,
        rtc.mean_seam_jump,
        naive.mean_seam_jump,
        100.0 * rtc.mode_change_rate,
        100.0 * naive.mode_change_rate
    );
    assert!(rtc.swaps >= 1_000 && naive.swaps >= 1_000);
    assert!(rtc.mode_change_rate < 0.01);
    assert!((0.4..0.6).contains(&naive.mode_change_rate));
    (rtc, naive)
}

#[test]
fn rtc_keeps_the_mode_and_the_seam_where_naive_async_jumps() {
    let (rtc, naive) = rtc_against_naive(10, 10.0);
    assert!(rtc.mean_seam_jump <= 0.25 * naive.mean_seam_jump);
}

/// At the paper's n = 5 and beta = 5 RTC still keeps the committed mode (0.59 % changes against naive's 50 %),
/// but on this sharp mixture the chunks drift from the modes (see [`seams_with`]), so its mean seam jump is no longer
/// small (measured 2.30 against naive's 1.44): README reports both settings.
#[test]
fn at_the_papers_defaults_rtc_still_keeps_the_mode() {
    rtc_against_naive(5, 5.0);
}
