//! Faults of the policy inside inference, on the real clock with real threads (the tokio worker, the
//! controller thread): a panic, a hang past the inference timeout, a non-finite chunk and a backend error, each
//! injected into chosen inferences of the real reference policy. Each must cost only the inferences it hits:
//! the controller is told (on a hang, at the timeout, not when the policy returns), keeps executing its chunk
//! and then holds; the run goes on, counts the fault by kind, records it, and the inferences after it succeed.

use ndarray::{ArrayView2, ArrayView3, ArrayViewMut3};
use rtchunk_config::{ClockKind, Config, SamplerMode};
use rtchunk_policy::{FlowPolicy, Normalization, PolicyError, PolicySpec};
use rtchunk_runtime::RunOutcome;
use rtchunk_runtime::core::inference_fault::InferenceFault;
use rtchunk_runtime::core::policies::load_policy;
use rtchunk_runtime::core::record::TickKind;
use rtchunk_sim::PointMass;
use rtchunk_tests::{run_policy, simulated};
use std::ops::Range;
use std::time::Duration;

/// What goes wrong in the chosen inferences.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The policy panics.
    Panic,
    /// The policy takes this long before it answers (correctly).
    Hang(Duration),
    /// The policy's velocities are NaN.
    NonFinite,
    /// The backend fails, as ONNX Runtime failing mid-run does.
    Error,
}

/// The real policy with `fault` in inferences `at` (counted from 1 by `prepare`, once per inference).
struct Faulty {
    inner: Box<dyn FlowPolicy>,
    fault: Fault,
    at: Range<u64>,
    inferences: u64,
}

impl Faulty {
    fn faulting(&self) -> bool {
        self.at.contains(&self.inferences)
    }

    /// Makes a computed velocity NaN, in the inferences that return non-finite values.
    fn spoil(&self, mut velocity: ArrayViewMut3<f32>) {
        if self.faulting() && self.fault == Fault::NonFinite {
            velocity.fill(f32::NAN);
        }
    }
}

impl FlowPolicy for Faulty {
    fn spec(&self) -> &PolicySpec {
        self.inner.spec()
    }
    fn normalization(&self) -> Option<&Normalization> {
        self.inner.normalization()
    }
    fn prepare(&mut self, observations: ArrayView2<f32>) -> Result<(), PolicyError> {
        self.inferences += 1;
        if self.faulting() {
            match self.fault {
                Fault::Panic => panic!("injected fault in inference {}", self.inferences),
                Fault::Hang(duration) => std::thread::sleep(duration),
                Fault::Error => {
                    return Err(PolicyError::Backend(format!(
                        "injected failure in inference {}",
                        self.inferences
                    )));
                }
                Fault::NonFinite => {}
            }
        }
        self.inner.prepare(observations)
    }
    fn velocity(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        mut velocity: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        self.inner.velocity(actions, tau, velocity.view_mut())?;
        self.spoil(velocity);
        Ok(())
    }
    fn denoiser_vjp(
        &mut self,
        actions: ArrayView3<f32>,
        tau: ArrayView2<f32>,
        cotangent: ArrayView3<f32>,
        mut velocity: ArrayViewMut3<f32>,
        vjp: ArrayViewMut3<f32>,
    ) -> Result<(), PolicyError> {
        self.inner
            .denoiser_vjp(actions, tau, cotangent, velocity.view_mut(), vjp)?;
        self.spoil(velocity);
        Ok(())
    }
}

/// RTC on the real clock: 50 Hz policy, H = 16, s_min = 8, inference timeout 100 ms.
fn configuration() -> Config {
    let mut config = simulated(16, 8, 0, SamplerMode::Rtc);
    config.clock.kind = ClockKind::Real;
    config.clock.policy_rate_hz = 50.0;
    config.policy.inference_timeout_ms = 100.0;
    config.realtime.fifo_priority = 0;
    config.realtime.lock_memory = false;
    config.validate().expect("valid");
    config
}

/// Runs 150 policy ticks (3 s) with `fault` in inferences `at`.
fn run_with(fault: Fault, at: Range<u64>) -> RunOutcome<PointMass> {
    let config = configuration();
    let policy = Faulty {
        inner: load_policy(&config).expect("the reference policy loads"),
        fault,
        at,
        inferences: 0,
    };
    run_policy(&config, Box::new(policy), 150, None)
}

/// Checks what every fault must leave: the whole run ran, nothing executed twice or skipped, the faulty
/// inferences failed with `kind` and the later ones succeeded, and the chunk's end was held, not overrun.
fn check_contained(outcome: &RunOutcome<PointMass>, faulty: Range<u64>, kind: InferenceFault) {
    assert_eq!(outcome.ticks.len(), 150, "every controller tick ran");
    let failed: Vec<u64> = outcome
        .inferences
        .iter()
        .filter(|i| i.error.is_some())
        .map(|i| i.seq)
        .collect();
    assert_eq!(failed.len() as u64, faulty.end - faulty.start, "{failed:?}");
    for record in outcome.inferences.iter().filter(|i| i.error.is_some()) {
        let error = record.error.as_deref().unwrap();
        assert_eq!(InferenceFault::of(error), kind, "{error}");
    }
    let last_failed = *failed.last().unwrap();
    assert!(
        outcome
            .inferences
            .iter()
            .any(|i| i.seq > last_failed && i.error.is_none()),
        "inferences after the fault succeed"
    );
    let metrics = &outcome.metrics;
    assert_eq!(metrics.inference_failures, faulty.end - faulty.start);
    let executed: Vec<(u64, u32)> = outcome
        .ticks
        .iter()
        .filter_map(|t| t.policy)
        .filter(|p| p.kind == TickKind::Executed)
        .map(|p| (p.chunk_seq, p.index))
        .collect();
    let mut unique = executed.clone();
    unique.dedup();
    assert_eq!(unique, executed, "no action executed twice");
}

#[test]
fn a_panicking_policy_costs_its_inferences_and_the_worker_serves_the_next() {
    let outcome = run_with(Fault::Panic, 3..5);
    check_contained(&outcome, 3..5, InferenceFault::Panic);
    assert_eq!(outcome.metrics.inference_panics, 2);
    let error = outcome.inferences[2].error.as_deref().unwrap();
    assert!(error.contains("injected fault in inference 3"), "{error}");
}

#[test]
fn a_hanging_policy_is_reported_at_the_timeout_and_its_late_chunk_discarded() {
    let hang = Duration::from_millis(600);
    let outcome = run_with(Fault::Hang(hang), 4..5);
    check_contained(&outcome, 4..5, InferenceFault::Timeout);
    assert_eq!(outcome.metrics.inference_timeouts, 1);
    let record = &outcome.inferences[3];
    assert!(record.duration_us >= 600_000, "{record:?}");
    // Told at the timeout (100 ms, 5 policy ticks), the controller requested again long before the policy
    // returned (30 policy ticks); that request was served once it had.
    let next = &outcome.inferences[4];
    assert!(
        next.tick - record.tick <= 10,
        "requested at policy tick {} after {}",
        next.tick,
        record.tick
    );
    // The hang outlasts the chunk (8 policy ticks of 20 ms after the request): the controller held.
    assert!(outcome.metrics.starved_ticks > 10, "{:?}", outcome.metrics);
    // No action of the late chunk was executed.
    assert!(
        !outcome
            .ticks
            .iter()
            .filter_map(|t| t.policy)
            .any(|p| p.kind == TickKind::Executed && p.chunk_seq == record.seq),
        "the late chunk was discarded"
    );
}

#[test]
fn a_non_finite_chunk_is_refused_and_the_next_is_adopted() {
    let outcome = run_with(Fault::NonFinite, 2..3);
    check_contained(&outcome, 2..3, InferenceFault::Error);
    let error = outcome.inferences[1].error.as_deref().unwrap();
    assert!(error.contains("non-finite"), "{error}");
}

#[test]
fn a_backend_failure_mid_run_costs_only_its_inferences() {
    let outcome = run_with(Fault::Error, 5..8);
    check_contained(&outcome, 5..8, InferenceFault::Error);
    assert_eq!(
        outcome.metrics.inference_panics + outcome.metrics.inference_timeouts,
        0
    );
}
