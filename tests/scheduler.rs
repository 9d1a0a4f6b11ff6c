//! The scheduler on the simulated clock against Algorithm 1, step by step.

use rtchunk_config::{Execution, SamplerMode};
use rtchunk_policy::Normalization;
use rtchunk_policy::reference::MixtureFlow;
use rtchunk_runtime::core::record::TickKind;
use rtchunk_tests::{executed, policy_ticks, run_for, run_policy, simulated};

/// Algorithm 1 (GETACTION and INFERENCELOOP) executed sequentially, with every inference lasting exactly
/// `delay` GETACTION calls, starting from A_init = chunk 1 with t = 0. Returns the (chunk, index) of each call.
fn algorithm1(horizon: usize, s_min: usize, delay: usize, calls: usize) -> Vec<(u64, u32)> {
    let mut t = 0usize;
    let mut current = 1u64;
    let mut next = 2u64;
    // (chunk id, s, calls remaining)
    let mut inference: Option<(u64, usize, usize)> = None;
    let mut sequence = Vec::new();
    let start_if_ready = |t: usize, inference: &mut Option<(u64, usize, usize)>, next: &mut u64| {
        if inference.is_none() && t >= s_min {
            *inference = Some((*next, t, delay));
            *next += 1;
        }
    };
    start_if_ready(t, &mut inference, &mut next);
    while sequence.len() < calls {
        // GETACTION
        t += 1;
        assert!(t <= horizon, "Algorithm 1 ran past the chunk");
        sequence.push((current, (t - 1) as u32));
        // The worker: a running inference consumed one more call; when done, swap and re-index.
        if let Some((id, s, remaining)) = inference.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                current = *id;
                t -= *s;
                inference = None;
            }
        }
        start_if_ready(t, &mut inference, &mut next);
    }
    sequence
}

#[test]
fn a_thousand_swaps_follow_algorithm_1_step_by_step() {
    let (horizon, s_min, delay) = (8, 4, 3);
    let config = simulated(horizon, s_min, delay, SamplerMode::Rtc);
    let outcome = run_for(&config, 4_100, None);
    let swaps = policy_ticks(&outcome).iter().filter(|p| p.swapped).count();
    assert!(swaps > 1_000, "only {swaps} swaps");
    let ours = executed(&outcome);
    let expected = algorithm1(horizon, s_min, delay, ours.len());
    assert_eq!(ours.len(), expected.len());
    for (k, (got, want)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "executed action {k} differs from Algorithm 1");
    }
    // Observed delays are counted ticks: exactly the simulated inference time.
    for tick in policy_ticks(&outcome).iter().filter(|p| p.swapped).skip(1) {
        assert_eq!(tick.observed_delay, delay as u32);
    }
}

#[test]
fn no_action_is_skipped_or_executed_twice() {
    for (horizon, s_min, delay) in [(8, 4, 3), (8, 3, 3), (16, 8, 5), (8, 2, 0)] {
        let config = simulated(horizon, s_min, delay, SamplerMode::Plain);
        let outcome = run_for(&config, 2_000, None);
        let executed_at: std::collections::HashMap<u64, usize> = outcome
            .inferences
            .iter()
            .map(|i| (i.seq, i.executed))
            .collect();
        let ticks = policy_ticks(&outcome);
        let mut previous: Option<(u64, u32)> = None;
        for tick in ticks.iter().filter(|p| p.kind == TickKind::Executed) {
            if let Some((chunk, index)) = previous {
                if tick.chunk_seq == chunk {
                    assert_eq!(
                        tick.index,
                        index + 1,
                        "H={horizon} s_min={s_min} d={delay}: gap or repeat in chunk {chunk}"
                    );
                } else {
                    // The new chunk's action i replaces the old chunk's action s + i: continuing at index
                    // (last old index + 1) - s means nothing was skipped or repeated across the seam.
                    let s = executed_at[&tick.chunk_seq] as u32;
                    assert_eq!(
                        tick.index + s,
                        index + 1,
                        "H={horizon} s_min={s_min} d={delay}: seam misaligned"
                    );
                }
            }
            previous = Some((tick.chunk_seq, tick.index));
        }
        assert!(
            ticks.iter().all(|p| p.kind != TickKind::Starved),
            "no starvation when d <= H - s"
        );
    }
}

#[test]
fn a_run_on_the_simulated_clock_is_deterministic() {
    let config = simulated(8, 4, 3, SamplerMode::Rtc);
    let first = run_for(&config, 500, None);
    let second = run_for(&config, 500, None);
    assert_eq!(executed(&first), executed(&second));
    let chunks = |o: &rtchunk_runtime::RunOutcome<_>| {
        o.inferences
            .iter()
            .map(|i| i.chunk.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(chunks(&first), chunks(&second));
}

#[test]
fn the_first_cold_inference_does_not_enter_the_delay_forecast() {
    // Every inference takes 2 ticks and d_init = 1: had the cold inference's 2 entered the buffer, the second
    // inference would already forecast d = 2.
    let mut config = simulated(8, 4, 2, SamplerMode::Rtc);
    config.scheduler.initial_delay = 1;
    let outcome = run_for(&config, 200, None);
    let delays: Vec<usize> = outcome.inferences.iter().map(|i| i.delay).collect();
    assert_eq!(delays[0], 0, "the first chunk has nothing to continue");
    assert_eq!(
        delays[1], 1,
        "the second uses d_init: the cold delay was not recorded"
    );
    assert!(delays[2..].iter().all(|&d| d == 2), "{delays:?}");
}

#[test]
fn starvation_holds_and_is_counted_then_execution_continues_after_the_last_action() {
    // s_min = 6 leaves 2 actions; an inference of 4 ticks starves for 2.
    let mut config = simulated(8, 6, 0, SamplerMode::Plain);
    config.clock.inference_delay_ticks = 4;
    let outcome = run_for(&config, 400, None);
    assert!(outcome.metrics.starved_ticks > 0);
    let ticks = policy_ticks(&outcome);
    let mut resumes = 0;
    let mut starved_in_a_row = 0;
    for window in ticks.windows(2) {
        if window[0].kind == TickKind::Starved {
            starved_in_a_row += 1;
        }
        if window[0].kind == TickKind::Starved && window[1].kind == TickKind::Executed {
            // The robot held the old chunk's last action for the 2 ticks the chunk ran short; the new chunk
            // resumes right after it.
            assert_eq!(window[1].index, 2, "resumes at H - s");
            assert_eq!(starved_in_a_row, 2, "starved for 4 - (8 - 6) ticks");
            resumes += 1;
            starved_in_a_row = 0;
        }
    }
    // Every chunk after the first starves and resumes: one cycle is 6 + 4 policy ticks.
    assert!(resumes >= 400 / 10 - 2, "{resumes} resumes");
    assert_eq!(
        outcome.metrics.starved_ticks,
        2 * resumes as u64 + starved_in_a_row as u64
    );
}

#[test]
fn sync_execution_pauses_while_inferring_and_starts_chunks_from_their_first_action() {
    let mut config = simulated(8, 8, 0, SamplerMode::Plain);
    config.scheduler.execution = Execution::Sync;
    config.clock.inference_delay_ticks = 3;
    let outcome = run_for(&config, 220, None);
    let ticks = policy_ticks(&outcome);
    assert!(ticks.iter().any(|p| p.kind == TickKind::Paused));
    for tick in ticks.iter().filter(|p| p.swapped) {
        assert_eq!(tick.index, 0);
    }
    // Each cycle: 8 executed actions, then 3 paused ticks.
    let paused = outcome.metrics.paused_ticks as f64;
    let executed = ticks
        .iter()
        .filter(|p| p.kind == TickKind::Executed)
        .count() as f64;
    assert!(
        (paused / executed - 3.0 / 8.0).abs() < 0.05,
        "{paused} paused, {executed} executed"
    );
}

#[test]
fn temporal_ensembling_executes_the_average_of_the_chunks_that_cover_a_tick() {
    let mut config = simulated(8, 2, 1, SamplerMode::Plain);
    config.scheduler.execution = Execution::Ensemble;
    config.policy.action_dim = 2;
    let outcome = run_for(&config, 300, None);
    let (h, a) = (config.policy.horizon, config.policy.action_dim);
    let ticks = policy_ticks(&outcome);
    // Each chunk covers the ticks after its adoption, at index tick - 1 - start: the request tick, except for
    // the first (cold) chunk, which starts at its first action when adopted.
    let adopted_at: std::collections::HashMap<u64, u64> = ticks
        .iter()
        .filter(|p| p.swapped)
        .map(|p| (p.chunk_seq, p.tick))
        .collect();
    let average_at = |tick: u64| -> Vec<f64> {
        let mut sum = vec![0.0; a];
        let mut count = 0.0;
        for inference in &outcome.inferences {
            let Some(&adopted) = adopted_at.get(&inference.seq) else {
                continue;
            };
            let start = if inference.seq == 1 {
                adopted - 1
            } else {
                inference.tick
            };
            let index = tick as i64 - 1 - start as i64;
            if adopted <= tick && (0..h as i64).contains(&index) {
                let action = &inference.chunk[index as usize * a..(index as usize + 1) * a];
                sum.iter_mut()
                    .zip(action)
                    .for_each(|(s, v)| *s += *v as f64);
                count += 1.0;
            }
        }
        sum.iter().map(|s| s / count).collect()
    };
    let mut checked = 0;
    for pair in ticks.windows(2).skip(5) {
        if pair[0].kind == TickKind::Executed && pair[1].kind == TickKind::Executed {
            let (before, after) = (average_at(pair[0].tick), average_at(pair[1].tick));
            let step = before
                .iter()
                .zip(&after)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(
                (step - pair[1].step as f64).abs() < 1e-4,
                "tick {}: {step} vs {}",
                pair[1].tick,
                pair[1].step
            );
            checked += 1;
        }
    }
    assert!(checked > 250);
}

#[test]
fn actions_are_normalised_once_on_the_way_in_and_once_on_the_way_out() {
    // A model-space bimodal at +-1 behind a normalisation with offset 5 and scale 2: chunks in the robot's units
    // sit at 5 +- 2, and prefix conditioning, exact on this policy, continues the committed mode at its level.
    let config = simulated(8, 4, 3, SamplerMode::TrainedPrefix);
    let policy = MixtureFlow::bimodal(8, 2, 0.3, 3.0, 1.0)
        .with_normalization(Normalization::actions(vec![5.0, 5.0], vec![2.0, 2.0]));
    let outcome = run_policy(&config, Box::new(policy), 800, None);
    let means: Vec<f32> = outcome
        .inferences
        .iter()
        .map(|i| i.chunk.iter().sum::<f32>() / i.chunk.len() as f32)
        .collect();
    // Each chunk mean sits near its mode (prior spread 0.3 x scale 2 per value, averaged over a correlated chunk:
    // at most 0.64 from the mode over these 200 chunks), and the chunks of each mode average to the mode itself,
    // which a wrong offset or scale would move.
    let near = |m: f32| (m - 7.0).abs().min((m - 3.0).abs());
    assert!(means.iter().all(|&m| near(m) < 0.9), "{means:?}");
    for mode in [3.0f32, 7.0] {
        let members: Vec<f32> = means
            .iter()
            .copied()
            .filter(|m| (m - mode).abs() < 2.0)
            .collect();
        if members.len() >= 20 {
            let average = members.iter().sum::<f32>() / members.len() as f32;
            assert!(
                (average - mode).abs() < 0.15,
                "mode {mode}: chunks average {average}"
            );
        }
    }
    let switches = means
        .windows(2)
        .filter(|w| (w[0] > 5.0) != (w[1] > 5.0))
        .count();
    assert!(
        switches <= 2,
        "{switches} mode switches: committed actions were not normalised once"
    );
}

#[test]
fn a_replan_drops_every_chunk_and_the_request_in_flight_and_starts_cold() {
    use rtchunk_runtime::core::executor::{ChunkExecutor, ExecutorSettings};
    use rtchunk_runtime::core::messages::{ChunkMessage, InferenceRequest};
    let config = simulated(8, 2, 0, SamplerMode::Rtc);
    let mut executor = ChunkExecutor::new(ExecutorSettings::from_config(&config));
    let mut request = InferenceRequest::with_capacity(8 * 2, 1);
    let chunk = |seq: u64, start_tick: u64, value: f32| ChunkMessage {
        seq,
        start_tick,
        release_tick: start_tick,
        ok: true,
        actions: vec![value; 16],
    };
    let step = |executor: &mut ChunkExecutor, request: &mut InferenceRequest| {
        executor.step(&[0.0], &mut || 0, request)
    };
    // Cold start: request 1, its chunk, then executing with request 2 in flight.
    assert_eq!(step(&mut executor, &mut request).request_seq, 1);
    executor.offer(&chunk(1, 1, 1.0));
    let mut in_flight = 0;
    for _ in 0..3 {
        let tick = step(&mut executor, &mut request);
        assert_eq!(tick.kind, TickKind::Executed);
        in_flight = in_flight.max(tick.request_seq);
    }
    assert_eq!(in_flight, 2);
    assert!(request.committed().is_some());

    executor.replan();
    let cold = step(&mut executor, &mut request);
    assert_eq!((cold.kind, cold.request_seq), (TickKind::Warmup, 3));
    assert_eq!(request.committed(), None, "a re-plan continues nothing");
    // The answer to the request made before the gap is ignored; the new one starts at its first action.
    executor.offer(&chunk(2, 3, 2.0));
    assert_eq!(step(&mut executor, &mut request).kind, TickKind::Warmup);
    executor.offer(&chunk(3, 5, 3.0));
    let resumed = step(&mut executor, &mut request);
    assert_eq!(
        (resumed.kind, resumed.chunk_seq, resumed.index),
        (TickKind::Executed, 3, 0)
    );
    assert_eq!(executor.action(), &[3.0, 3.0]);
}

#[test]
fn a_run_that_keeps_no_records_in_memory_reports_the_same_metrics() {
    // What a deployment does: records go to the log only, the metrics are gathered as the run goes.
    let config = simulated(8, 4, 3, SamplerMode::Rtc);
    let kept = run_for(&config, 500, None);
    let options = rtchunk_runtime::RunOptions {
        keep_records: false,
        ..rtchunk_runtime::RunOptions::new("test", 0)
    };
    let lean = run_for(&config, 500, Some(options));
    assert!(lean.ticks.is_empty() && lean.inferences.is_empty());
    assert_eq!(lean.metrics.inferences, kept.inferences.len());
    let (mut lean_metrics, kept_metrics) = (lean.metrics, kept.metrics);
    // Inference wall time is measured, not simulated; everything else is deterministic.
    lean_metrics.inference_ms = kept_metrics.inference_ms;
    assert_eq!(lean_metrics, kept_metrics);
    assert_eq!(kept_metrics.controller_ticks, 500);
    assert!(kept_metrics.swaps > 50);
}
