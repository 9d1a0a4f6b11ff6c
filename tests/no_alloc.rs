//! The controller loop does not allocate or free memory: a counting global allocator watches the controller
//! thread between the loop's first and last tick, in real time and on the simulated clock, in every execution
//! mode, with chunk swaps, interpolation, the PD controller and the safety filter all exercised, and on a robot
//! over zenoh (state in, commands out, a stale gap held) while the session is recorded.

use rtchunk_config::{
    ClockKind, ControllerKind, Execution, IoConfig, Limit, PlantKind, SamplerMode,
};
use rtchunk_runtime::io::link::RobotLink;
use rtchunk_runtime::io::protocol::{Encode, StateMessage, wall_clock_ns};
use rtchunk_runtime::io::session::{Topics, free_loopback_port, open_session};
use rtchunk_runtime::policies::load_policy;
use rtchunk_runtime::record::TickKind;
use rtchunk_runtime::{LoopHooks, RunOptions, run};
use rtchunk_tests::{run_for, simulated};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use zenoh::Wait;

thread_local! {
    /// Allocations, frees and reallocations by this thread while it is watched; `None` when not watched.
    static WATCHED: Cell<Option<u64>> = const { Cell::new(None) };
}

struct CountingAllocator;

fn count() {
    let _ = WATCHED.try_with(|watched| {
        if let Some(n) = watched.get() {
            watched.set(Some(n + 1));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only a thread-local.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Watches the controller thread from the loop's start to its end and reports the count.
struct Watch(Arc<AtomicU64>);

impl LoopHooks for Watch {
    fn loop_started(&mut self) {
        WATCHED.with(|w| w.set(Some(0)));
    }
    fn loop_finished(&mut self) {
        let n = WATCHED.with(|w| w.replace(None)).unwrap_or(0);
        self.0.store(n, Ordering::SeqCst);
    }
}

fn watched(label: &str) -> (RunOptions, Arc<AtomicU64>) {
    let counter = Arc::new(AtomicU64::new(u64::MAX));
    let mut options = RunOptions::new(label, 0);
    options.hooks = Box::new(Watch(counter.clone()));
    (options, counter)
}

#[test]
fn the_counter_sees_allocations_of_a_watched_thread() {
    let (mut options, counter) = watched("self-check");
    options.hooks.loop_started();
    let boxed = std::hint::black_box(Box::new([0u8; 64]));
    drop(boxed);
    options.hooks.loop_finished();
    assert_eq!(counter.load(Ordering::SeqCst), 2);
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
        let (options, counter) = watched("sim");
        let outcome = run_for(&config, 2_000, Some(options));
        assert!(
            outcome.metrics.swaps > 100,
            "{execution:?}: the run swapped chunks"
        );
        assert_eq!(
            counter.load(Ordering::SeqCst),
            0,
            "{execution:?} / {mode:?}: the loop allocated"
        );
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
    let (options, counter) = watched("real");
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
    assert_eq!(
        counter.load(Ordering::SeqCst),
        0,
        "the real-time loop allocated"
    );
}

#[test]
fn the_loop_does_not_allocate_on_a_zenoh_plant_while_recording_holding_and_replanning() {
    let mut config = simulated(8, 4, 2, SamplerMode::Rtc);
    config.clock.kind = ClockKind::Real;
    config.clock.policy_rate_hz = 200.0;
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
    let (mut options, counter) = watched("zenoh");
    options.controller_ticks = 200;
    options.record =
        Some(std::env::temp_dir().join(format!("rtchunk-{}-noalloc.log", std::process::id())));
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
    assert_eq!(outcome.log.unwrap().ticks, 200);
    assert!(counters.actions_published.load(Ordering::Relaxed) >= 200);
    assert_eq!(
        counter.load(Ordering::SeqCst),
        0,
        "the loop allocated on a zenoh plant"
    );
}
