//! A hold holds one command. When the robot's state goes stale (and in the warm-up of the re-plan that follows
//! a long gap) the controller has no new action; with the controller faster than the policy, every controller
//! tick of such a stretch must send the same command, with interpolation and with the PD controller, on the
//! simulated and on the real clock.

use nalgebra::DVector;
use rtchunk_config::{ClockKind, Config, ControllerKind, Limit, SamplerMode};
use rtchunk_controllers::{Freshness, Plant, RobotState};
use rtchunk_runtime::core::policies::load_policy;
use rtchunk_runtime::core::record::{TickKind, TickRecord};
use rtchunk_runtime::{RunOptions, run};
use rtchunk_sim::PointMass;
use rtchunk_tests::simulated;

/// The point mass behind a link that goes quiet for controller ticks `quiet`: there it reports the last state
/// it read before the gap, marked stale, as a robot link whose states stopped arriving does. It keeps every
/// state it reported (read 0 is the controller's read before its first tick).
struct QuietLink {
    plant: PointMass,
    quiet: std::ops::Range<u64>,
    reads: u64,
    stale: bool,
    last: RobotState,
    last_observation: Vec<f32>,
    reported: Vec<RobotState>,
}

impl QuietLink {
    fn new(config: &Config, quiet: std::ops::Range<u64>) -> Self {
        let plant = PointMass::new(config.plant.clone(), 1.0 / config.clock.controller_rate());
        QuietLink {
            last: RobotState::zeros(plant.dims()),
            last_observation: vec![0.0; plant.observation_dim()],
            plant,
            quiet,
            reads: 0,
            stale: false,
            reported: Vec::new(),
        }
    }
}

impl Plant for QuietLink {
    fn dims(&self) -> usize {
        self.plant.dims()
    }
    fn observation_dim(&self) -> usize {
        self.plant.observation_dim()
    }
    fn read(&mut self, state: &mut RobotState, observation: &mut [f32]) {
        // Read 0 comes before the first tick; read k belongs to controller tick k - 1.
        self.stale = self
            .reads
            .checked_sub(1)
            .is_some_and(|tick| self.quiet.contains(&tick));
        self.reads += 1;
        if !self.stale {
            self.plant.read(&mut self.last, &mut self.last_observation);
        }
        state.clone_from(&self.last);
        observation.copy_from_slice(&self.last_observation);
        self.reported.push(self.last.clone());
    }
    fn write(&mut self, command: &DVector<f64>) {
        self.plant.write(command);
    }
    fn freshness(&self) -> Freshness {
        if self.stale {
            Freshness::Stale
        } else {
            Freshness::Fresh
        }
    }
}

const DECIMATION: u64 = 10;
const KP: f64 = 20.0;
const KD: f64 = 2.0;
/// Controller ticks 300..500 are quiet: 20 policy ticks, longer than the re-plan limit of 10.
const GAP: std::ops::Range<u64> = 300..500;

fn configuration(clock: ClockKind, controller: ControllerKind) -> Config {
    let mut config = simulated(16, 8, 2, SamplerMode::Rtc);
    config.clock.kind = clock;
    config.clock.policy_rate_hz = 50.0;
    config.clock.controller_rate_hz = Some(50.0 * DECIMATION as f64);
    config.controller.kind = controller;
    config.controller.kp = Limit::All(KP);
    config.controller.kd = Limit::All(KD);
    config.controller.max_effort = Limit::All(1e6);
    config.io.replan_after_ms = 200.0;
    config.realtime.fifo_priority = 0;
    config.realtime.lock_memory = false;
    config.validate().expect("valid");
    config
}

/// Controller ticks from each hold's first tick up to the next policy tick that brings an action.
fn held_stretches(ticks: &[TickRecord]) -> Vec<&[TickRecord]> {
    let brings_action = |t: &TickRecord| {
        t.policy
            .is_some_and(|p| !matches!(p.kind, TickKind::Held | TickKind::Warmup))
    };
    let mut stretches = Vec::new();
    let mut start = None;
    for (i, tick) in ticks.iter().enumerate() {
        let holds = tick
            .policy
            .is_some_and(|p| matches!(p.kind, TickKind::Held | TickKind::Warmup));
        if holds && start.is_none() {
            start = Some(i);
        }
        if brings_action(tick)
            && let Some(first) = start.take()
        {
            stretches.push(&ticks[first..i]);
        }
    }
    stretches
}

fn check_holds(clock: ClockKind, controller: ControllerKind) {
    let config = configuration(clock, controller);
    let policy = load_policy(&config).expect("policy");
    let ticks = 80 * DECIMATION;
    let outcome = run(
        &config,
        QuietLink::new(&config, GAP),
        policy,
        RunOptions::new("holds", ticks),
    )
    .expect("run");
    let label = format!("{clock:?} clock, {controller:?}");
    let kinds = |kind| {
        outcome
            .ticks
            .iter()
            .filter(|t| t.policy.is_some_and(|p| p.kind == kind))
            .count()
    };
    assert_eq!(kinds(TickKind::Held), 20, "{label}: the gap is held");
    assert!(
        kinds(TickKind::Warmup) >= 3,
        "{label}: a cold start and a re-plan warm up"
    );
    let stretches = held_stretches(&outcome.ticks);
    assert!(
        stretches.len() >= 2,
        "{label}: holds at the start and in the gap"
    );
    let in_gap = stretches
        .iter()
        .find(|s| s[0].controller_tick >= GAP.start)
        .expect("a hold in the gap");
    assert!(
        in_gap.len() as u64 >= GAP.end - GAP.start,
        "{label}: the gap and the re-plan's warm-up hold together ({} ticks)",
        in_gap.len()
    );
    // The target each command was made from: the command itself, or what the PD law inverts to (the effort
    // limit is set too high to clamp).
    let reported = &outcome.plant.reported;
    let target = |tick: &TickRecord, joint: usize| {
        let command = f64::from(tick.command[joint]);
        match controller {
            ControllerKind::Passthrough => command,
            ControllerKind::Pd => {
                let state = &reported[tick.controller_tick as usize + 1];
                state.position[joint] + (command + KD * state.velocity[joint]) / KP
            }
        }
    };
    for stretch in stretches {
        for tick in stretch {
            for joint in 0..2 {
                let (held, now) = (target(&stretch[0], joint), target(tick, joint));
                assert!(
                    (now - held).abs() < 1e-5,
                    "{label}: at controller tick {} joint {joint} aims at {now}, not at {held} held since \
                     tick {}",
                    tick.controller_tick,
                    stretch[0].controller_tick
                );
            }
        }
    }
}

#[test]
fn a_stale_gap_and_a_replan_warm_up_hold_one_command_on_the_simulated_clock() {
    check_holds(ClockKind::Simulated, ControllerKind::Passthrough);
    check_holds(ClockKind::Simulated, ControllerKind::Pd);
}

#[test]
fn a_stale_gap_and_a_replan_warm_up_hold_one_command_on_the_real_clock() {
    check_holds(ClockKind::Real, ControllerKind::Passthrough);
    check_holds(ClockKind::Real, ControllerKind::Pd);
}
