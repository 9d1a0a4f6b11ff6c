//! Faults of the policy inside inference, on the real clock with real threads (the tokio worker, the
//! controller thread): a panic, a hang past the inference timeout, a non-finite chunk and a backend error, each
//! injected into chosen inferences of the real reference policy. Each must cost only the inferences it hits:
//! the controller is told (on a hang, at the timeout, not when the policy returns), keeps executing its chunk
//! and then holds; the run goes on, counts the fault by kind, records it, and the inferences after it succeed.
//! On a robot over zenoh, the status topic reports the failures by kind while the run goes on.

use ndarray::{ArrayView2, ArrayView3, ArrayViewMut3};
use rtchunk_config::{ClockKind, Config, SamplerMode};
use rtchunk_config::{IoConfig, PlantKind};
use rtchunk_policy::{FlowPolicy, Normalization, PolicyError, PolicySpec};
use rtchunk_runtime::RunOutcome;
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::core::inference_fault::InferenceFault;
use rtchunk_runtime::core::policies::load_policy;
use rtchunk_runtime::core::record::TickKind;
use rtchunk_runtime::io::link::RobotLink;
use rtchunk_runtime::io::protocol::{
    Encode, MessageKind, Phase, StateMessage, StatusMessage, decode_header,
};
use rtchunk_runtime::io::session::{Topics, free_loopback_port, open_session};
use rtchunk_runtime::{RunOptions, run};
use rtchunk_sim::PointMass;
use rtchunk_tests::{run_policy, simulated};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zenoh::Wait;

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

/// The real policy with each fault of its schedule in that fault's inferences (counted from 1 by `prepare`,
/// once per inference).
struct Faulty {
    inner: Box<dyn FlowPolicy>,
    schedule: Vec<(Fault, Range<u64>)>,
    inferences: u64,
}

impl Faulty {
    /// The reference policy of `config` with `schedule`.
    fn new(config: &Config, schedule: Vec<(Fault, Range<u64>)>) -> Self {
        Faulty {
            inner: load_policy(config).expect("the reference policy loads"),
            schedule,
            inferences: 0,
        }
    }

    /// The fault of the current inference, if any.
    fn fault(&self) -> Option<Fault> {
        self.schedule
            .iter()
            .find(|(_, at)| at.contains(&self.inferences))
            .map(|&(fault, _)| fault)
    }

    /// Makes a computed velocity NaN, in the inferences that return non-finite values.
    fn spoil(&self, mut velocity: ArrayViewMut3<f32>) {
        if self.fault() == Some(Fault::NonFinite) {
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
        if let Some(fault) = self.fault() {
            match fault {
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
    let policy = Faulty::new(&config, vec![(fault, at)]);
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

/// Publishes a robot's state at 500 Hz to the runtime at `config.io` until `done`.
fn publish_state(
    config: &Config,
    observation_dim: usize,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let robot = open_session(&IoConfig {
        listen: vec![],
        connect: config.io.listen.clone(),
        ..config.io.clone()
    })
    .expect("the robot's zenoh session");
    let topic = Topics::new(&config.io.namespace).state;
    let joints = config.policy.action_dim;
    std::thread::spawn(move || {
        let mut seq = 0u64;
        while !done.load(Ordering::Relaxed) {
            seq += 1;
            let state = StateMessage {
                position: vec![0.0; joints],
                velocity: vec![0.0; joints],
                observation: vec![0.1; observation_dim],
                images: Vec::new(),
            };
            robot
                .put(topic.as_str(), state.encode(0, 1, seq, wall_clock_ns()))
                .wait()
                .expect("the state is published");
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn the_status_topic_counts_each_failed_inference_by_kind_while_the_run_goes_on() {
    let mut config = configuration();
    config.plant.kind = PlantKind::Zenoh;
    let endpoint = format!("tcp/127.0.0.1:{}", free_loopback_port().unwrap());
    config.io = IoConfig {
        listen: vec![endpoint],
        namespace: format!("faults{}", std::process::id()),
        stale_after_ms: 100.0,
        status_rate_hz: 20.0,
        ..IoConfig::default()
    };
    config.validate().expect("valid");
    let hang = Duration::from_millis(300);
    let policy = Faulty::new(
        &config,
        vec![
            (Fault::Panic, 3..4),
            (Fault::Error, 6..7),
            (Fault::Hang(hang), 9..10),
        ],
    );
    let observation_dim = policy.spec().observation_dim;
    let (link, plant) =
        RobotLink::open(&config.io, config.policy.action_dim, observation_dim, &[]).unwrap();
    let watcher = open_session(&IoConfig {
        listen: vec![],
        connect: config.io.listen.clone(),
        ..config.io.clone()
    })
    .unwrap();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let _subscriber = {
        let statuses = statuses.clone();
        watcher
            .declare_subscriber(Topics::new(&config.io.namespace).status)
            .callback(move |sample| {
                let bytes = sample.payload().to_bytes();
                let (_, body) = decode_header(&bytes, MessageKind::Status).unwrap();
                statuses
                    .lock()
                    .unwrap()
                    .push(StatusMessage::decode(body).unwrap());
            })
            .wait()
            .unwrap()
    };
    let done = Arc::new(AtomicBool::new(false));
    let robot = publish_state(&config, observation_dim, done.clone());
    link.wait_for_first_state(Duration::from_secs(10)).unwrap();
    let mut options = RunOptions::new("status", 150 * config.clock.decimation() as u64);
    options.inference_faults = Some(link.counters().inference_faults.clone());
    let outcome = run(&config, plant, Box::new(policy), options).expect("the run");
    link.close();
    done.store(true, Ordering::Relaxed);
    robot.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline
        && statuses.lock().unwrap().last().map(|s| s.phase) != Some(Phase::Stopped)
    {
        std::thread::sleep(Duration::from_millis(10));
    }

    let metrics = &outcome.metrics;
    assert_eq!(
        (
            metrics.inference_failures,
            metrics.inference_panics,
            metrics.inference_timeouts
        ),
        (3, 1, 1),
        "{metrics:?}"
    );
    let statuses = statuses.lock().unwrap();
    let last = statuses.last().expect("statuses arrived");
    assert_eq!(last.phase, Phase::Stopped, "the last status closes the run");
    assert_eq!(
        (
            last.inference_failures,
            last.inference_panics,
            last.inference_timeouts
        ),
        (3, 1, 1),
        "{last:?}"
    );
    // Live: statuses during the run saw the failures come one by one, and the run go on after them.
    let running: Vec<&StatusMessage> = statuses
        .iter()
        .filter(|s| s.phase != Phase::Stopped)
        .collect();
    for failures in 1..=3 {
        let first = running
            .iter()
            .position(|s| s.inference_failures == failures)
            .unwrap_or_else(|| panic!("no status while running showed {failures} failures"));
        assert!(
            running[first..]
                .iter()
                .any(|s| s.swaps > running[first].swaps),
            "chunks were adopted after failure {failures}"
        );
    }
    assert!(
        running
            .windows(2)
            .all(|w| w[0].inference_failures <= w[1].inference_failures)
    );
}
