//! Shared helpers of the integration tests: configurations and runs on the simulated point mass.

use rtchunk_config::{ClockKind, Config, ControllerKind, PolicyKind, SamplerMode};
use rtchunk_policy::FlowPolicy;
use rtchunk_runtime::core::policies::load_policy;
use rtchunk_runtime::core::record::{PolicyTick, TickKind};
use rtchunk_runtime::{RunOptions, RunOutcome, run};
use rtchunk_sim::PointMass;

/// A simulated-clock configuration: the stationary bimodal policy, H = `horizon`, s_min = `s_min`, and every
/// inference lasting exactly `delay` policy ticks.
pub fn simulated(horizon: usize, s_min: usize, delay: usize, mode: SamplerMode) -> Config {
    let mut config = Config::default();
    config.policy.kind = PolicyKind::Bimodal;
    config.policy.horizon = horizon;
    config.policy.spread = 0.3;
    config.policy.correlation_length = 3.0;
    config.policy.separation = 1.0;
    config.sampler.mode = mode;
    config.scheduler.execution_horizon = Some(s_min);
    config.clock.kind = ClockKind::Simulated;
    config.clock.inference_delay_ticks = delay;
    config.controller.kind = ControllerKind::Passthrough;
    config.validate().expect("test configuration is valid");
    config
}

/// Runs `config`'s reference policy on the point mass for `policy_ticks` policy ticks.
pub fn run_for(
    config: &Config,
    policy_ticks: u64,
    options: Option<RunOptions>,
) -> RunOutcome<PointMass> {
    let policy = load_policy(config).expect("the policy loads");
    run_policy(config, policy, policy_ticks, options)
}

/// Runs `policy` on the point mass as `config` says, for `policy_ticks` policy ticks.
pub fn run_policy(
    config: &Config,
    policy: Box<dyn FlowPolicy>,
    policy_ticks: u64,
    options: Option<RunOptions>,
) -> RunOutcome<PointMass> {
    let ticks = policy_ticks * config.clock.decimation() as u64;
    let plant = PointMass::new(config.plant.clone(), 1.0 / config.clock.controller_rate());
    let options = options.unwrap_or_else(|| RunOptions::new("test", ticks));
    run(
        config,
        plant,
        policy,
        RunOptions {
            controller_ticks: ticks,
            ..options
        },
    )
    .expect("run succeeds")
}

/// The policy-tick records of a run.
pub fn policy_ticks<P>(outcome: &RunOutcome<P>) -> Vec<PolicyTick> {
    outcome.ticks.iter().filter_map(|t| t.policy).collect()
}

/// The (chunk, index) of every executed policy tick.
pub fn executed<P>(outcome: &RunOutcome<P>) -> Vec<(u64, u32)> {
    policy_ticks(outcome)
        .iter()
        .filter(|p| p.kind == TickKind::Executed)
        .map(|p| (p.chunk_seq, p.index))
        .collect()
}
