//! The controller loop's real-time discipline, watched on the controller thread between the loop's first and
//! last tick, in real time and on the simulated clock, in every execution mode, with chunk swaps,
//! interpolation, the PD controller and the safety filter all exercised, and on a robot over zenoh (state in,
//! commands out, a stale gap held) while the session is recorded, on the real clock and on the state clock:
//! - no allocation or free: a counting global allocator;
//! - no I/O, memory mapping or other system call beyond clock reads, sleeps to a deadline and futex wake/wait
//!   (the doorbells; an uncontended lock would need none, a contended one would show as futex): a seccomp
//!   filter on the controller thread that traps every other call ([`sealed`], x86-64);
//! - no logging: a tracing subscriber that counts the thread's events during the loop.

use rtchunk_config::{
    ClockKind, ControllerKind, Execution, IoConfig, Limit, PlantKind, SamplerMode,
};
use rtchunk_runtime::core::clock::wall_clock_ns;
use rtchunk_runtime::core::policies::load_policy;
use rtchunk_runtime::core::record::TickKind;
use rtchunk_runtime::io::link::RobotLink;
use rtchunk_runtime::io::protocol::{Encode, StateMessage};
use rtchunk_runtime::io::session::{Topics, free_loopback_port, open_session};
use rtchunk_runtime::recording::writer::LogWriter;
use rtchunk_runtime::{LoopHooks, RunOptions, run};
use rtchunk_tests::{run_for, simulated};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use zenoh::Wait;

#[path = "counting_allocator.rs"]
mod counting_allocator;
#[path = "sealed.rs"]
mod sealed;

#[global_allocator]
static ALLOCATOR: counting_allocator::CountingAllocator = counting_allocator::CountingAllocator;

/// What a watched loop did: allocations, and what the seal caught.
#[derive(Debug, Default)]
struct Observed {
    allocations: AtomicU64,
    breaches: std::sync::Mutex<Option<sealed::Breaches>>,
}

impl Observed {
    /// Asserts the loop ran, allocated nothing, made no forbidden system call and logged nothing.
    fn assert_clean(&self, what: &str) {
        assert_eq!(
            self.allocations.load(Ordering::SeqCst),
            0,
            "{what}: the loop allocated"
        );
        let breaches = self.breaches.lock().unwrap().expect("the loop ran");
        assert_eq!(
            breaches,
            sealed::Breaches::default(),
            "{what}: the loop broke its seal"
        );
    }
}

/// Seals and watches the controller thread from the loop's start to its end and reports what it saw.
struct Watch(Arc<Observed>);

impl LoopHooks for Watch {
    fn loop_started(&mut self) {
        sealed::seal_this_thread();
        counting_allocator::watch();
    }
    fn loop_finished(&mut self) {
        let n = counting_allocator::stop();
        let breaches = sealed::loop_ended();
        self.0.allocations.store(n, Ordering::SeqCst);
        *self.0.breaches.lock().unwrap() = Some(breaches);
    }
}

fn watched(label: &str) -> (RunOptions, Arc<Observed>) {
    let observed = Arc::new(Observed {
        allocations: AtomicU64::new(u64::MAX),
        ..Observed::default()
    });
    let mut options = RunOptions::new(label, 0);
    options.hooks = Box::new(Watch(observed.clone()));
    (options, observed)
}

#[test]
#[cfg(target_arch = "x86_64")]
fn the_watch_sees_allocations_system_calls_and_log_events_of_a_sealed_thread() {
    // On a thread of its own: a seal cannot be lifted.
    std::thread::spawn(|| {
        let (mut options, observed) = watched("self-check");
        options.hooks.loop_started();
        let boxed = std::hint::black_box(Box::new([0u8; 64]));
        drop(boxed);
        let opened = std::fs::File::open("/proc/self/stat");
        tracing::warn!("a log line from the loop");
        // SAFETY: getppid takes no arguments and cannot fail; here it is the forbidden system call to be trapped.
        let pid = unsafe { libc::getppid() };
        options.hooks.loop_finished();
        assert!(opened.is_err(), "the open was trapped, not executed");
        assert_eq!(pid, -libc::ENOSYS, "the call was trapped, not executed");
        assert_eq!(observed.allocations.load(Ordering::SeqCst), 2);
        let breaches = observed.breaches.lock().unwrap().unwrap();
        assert_eq!(breaches.system_calls, 2, "{breaches:?}");
        assert_eq!(breaches.last_system_call, Some(110), "getppid");
        assert_eq!(breaches.log_events, 1);
    })
    .join()
    .unwrap();
}

#[test]
fn the_loop_does_not_allocate_on_the_simulated_clock_in_any_mode() {
    for (execution, mode) in [
        (Execution::Async, SamplerMode::Rtc),
        (Execution::Async, SamplerMode::Bid),
        (Execution::Sync, SamplerMode::Plain),
        (Execution::Ensemble, SamplerMode::Plain),
    ] {
        let mut config = simulated(8, 4, 3, mode);
        config.scheduler.execution = execution;
        config.sampler.bid_candidates = 4;
        let (options, observed) = watched("sim");
        let outcome = run_for(&config, 2_000, Some(options));
        assert!(
            outcome.metrics.swaps > 100,
            "{execution:?}: the run swapped chunks"
        );
        observed.assert_clean(&format!("{execution:?} / {mode:?}"));
    }
}

#[test]
fn the_loop_does_not_allocate_in_real_time_with_interpolation_pd_and_safety() {
    let mut config = simulated(16, 8, 2, SamplerMode::Rtc);
    config.clock.kind = ClockKind::Real;
    config.clock.controller_rate_hz = Some(500.0);
    config.controller.kind = ControllerKind::Pd;
    config.safety.max_delta = Some(Limit::All(0.05));
    config.safety.max_velocity = Some(Limit::All(2.0));
    config.safety.position_min = Some(Limit::All(-0.5));
    config.safety.position_max = Some(Limit::All(0.5));
    config.validate().unwrap();
    let (options, observed) = watched("real");
    let outcome = run_for(&config, 75, Some(options));
    assert!(
        outcome.metrics.swaps >= 5,
        "swaps: {}",
        outcome.metrics.swaps
    );
    assert!(
        outcome.metrics.safety_clamps > 0,
        "the safety filter was exercised"
    );
    let rules = outcome.metrics.safety_clamps_by_rule;
    assert!(
        rules.position + rules.velocity + rules.delta >= outcome.metrics.safety_clamps,
        "every clamped tick is attributed to a rule: {rules:?}"
    );
    observed.assert_clean("real clock");
}

#[test]
fn the_loop_does_not_allocate_on_a_zenoh_plant_while_recording_holding_and_replanning() {
    check_zenoh_plant(ClockKind::Real);
}

#[test]
fn the_loop_does_not_allocate_on_the_state_clock_while_recording_holding_and_replanning() {
    check_zenoh_plant(ClockKind::State);
}

/// A run on a robot over zenoh paced by `clock` (policy at 200 Hz; on the state clock the robot's ~1 kHz states
/// are the controller ticks, every fifth a policy tick), with a quiet gap the controller holds through and
/// re-plans after, recorded: the loop stays clean.
fn check_zenoh_plant(clock: ClockKind) {
    let mut config = simulated(8, 4, 2, SamplerMode::Rtc);
    config.clock.kind = clock;
    config.clock.policy_rate_hz = 200.0;
    let on_states = clock == ClockKind::State;
    if on_states {
        config.clock.controller_rate_hz = Some(1000.0);
    }
    config.plant.kind = PlantKind::Zenoh;
    let port = free_loopback_port().unwrap();
    let endpoint = format!("tcp/127.0.0.1:{port}");
    config.io = IoConfig {
        listen: vec![endpoint.clone()],
        namespace: format!("noalloc{}", std::process::id()),
        stale_after_ms: 30.0,
        replan_after_ms: 100.0,
        ..IoConfig::default()
    };
    config.validate().unwrap();
    let policy = load_policy(&config).unwrap();
    let (joints, observation_dim) = (config.policy.action_dim, policy.spec().observation_dim);
    let (link, plant) = RobotLink::open(&config.io, joints, observation_dim, &[]).unwrap();
    // The robot: state at 1 kHz for 0.4 s, quiet for 0.2 s (the controller holds), then 0.4 s more.
    let robot = open_session(&IoConfig {
        listen: vec![],
        connect: vec![endpoint],
        ..config.io.clone()
    })
    .unwrap();
    let topic = Topics::new(&config.io.namespace).state;
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let publisher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seq = 0u64;
            let start = std::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                let t = start.elapsed().as_secs_f64();
                let quiet = (0.6..0.8).contains(&(t % 1.0));
                if !quiet {
                    seq += 1;
                    let message = StateMessage {
                        position: vec![0.1; joints],
                        velocity: vec![0.0; joints],
                        observation: vec![0.2; observation_dim],
                        images: Vec::new(),
                    };
                    let bytes = message.encode(0, 1, seq, wall_clock_ns());
                    robot.put(topic.as_str(), bytes).wait().unwrap();
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    link.wait_for_first_state(Duration::from_secs(10)).unwrap();
    let (mut options, observed) = watched("zenoh");
    let controller_ticks = if on_states { 1000 } else { 200 };
    options.controller_ticks = controller_ticks;
    options.state_signal = Some(link.state_signal());
    let log = std::env::temp_dir().join(format!("rtchunk-{}-noalloc.log", std::process::id()));
    options.record = Some(Box::new(LogWriter::new(&log)));
    let outcome = run(&config, plant, policy, options).unwrap();
    done.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    let counters = link.counters().clone();
    link.close();
    assert!(
        outcome.metrics.swaps >= 10,
        "swaps: {}",
        outcome.metrics.swaps
    );
    assert!(
        outcome.metrics.held_ticks >= 10,
        "held: {}",
        outcome.metrics.held_ticks
    );
    // The ~170 ms hold outlasts io.replan_after_ms: the loop re-planned (warm-up ticks after the hold).
    let kinds: Vec<TickKind> = outcome
        .ticks
        .iter()
        .filter_map(|t| t.policy.map(|p| p.kind))
        .collect();
    assert!(
        kinds
            .windows(2)
            .any(|w| w == [TickKind::Held, TickKind::Warmup]),
        "no re-plan after the hold"
    );
    assert_eq!(outcome.log.unwrap().ticks, controller_ticks);
    assert!(counters.actions_published.load(Ordering::Relaxed) >= controller_ticks);
    if on_states {
        // A tick per state (about 1 ms apart), and the quiet stretch seen as a gap.
        let period = &outcome.metrics.tick_period_ms;
        assert!((0.5..3.0).contains(&period.p50), "{period:?}");
        assert!(outcome.metrics.tick_gaps >= 1, "{:?}", outcome.metrics);
    }
    observed.assert_clean(&format!("zenoh plant, {clock:?} clock"));
}
