//! Cross-field validation: each rule names the key, the value and the rule.

use crate::{Config, ConfigError, Execution, Limit, SamplerMode, Starvation};

/// Checks every rule of `config`.
pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    validate_policy(config)?;
    validate_sampler(config)?;
    validate_scheduler(config)?;
    validate_clock(config)?;
    validate_limits(config)?;
    validate_plant(config)?;
    validate_io(config)
}

fn endpoint_ok(endpoint: &str) -> bool {
    endpoint.split_once('/').is_some_and(|(protocol, address)| {
        ["tcp", "tls", "unixsock-stream"].contains(&protocol) && !address.is_empty()
    })
}

fn validate_io(config: &Config) -> Result<(), ConfigError> {
    let io = &config.io;
    for (key, endpoints) in [("io.listen", &io.listen), ("io.connect", &io.connect)] {
        for endpoint in endpoints {
            check(
                endpoint_ok(endpoint),
                key,
                format!("{endpoint:?}"),
                "must hold endpoints like \"tcp/127.0.0.1:7450\", \"tls/robot.local:7450\" or \
                 \"unixsock-stream//tmp/rtchunk.sock\"",
            )?;
        }
    }
    let namespace_ok = !io.namespace.is_empty()
        && io
            .namespace
            .split('/')
            .all(|part| !part.is_empty() && !part.contains(['*', '$', '#', '?', ' ']));
    check(
        namespace_ok,
        "io.namespace",
        format!("{:?}", io.namespace),
        "must be a zenoh key such as \"robot1\" or \"lab/arm\" (no empty parts, wildcards or spaces)",
    )?;
    check(
        !config.plant.kind.over_zenoh() || config.clock.kind != crate::ClockKind::Simulated,
        "clock.kind",
        "\"simulated\"",
        "must be \"real\" or \"state\" when plant.kind is \"zenoh\" or \"ros2\" (a robot runs on the wall \
         clock or on its own states)",
    )?;
    check(
        config.plant.kind.over_zenoh() || config.clock.kind != crate::ClockKind::State,
        "clock.kind",
        "\"state\"",
        "needs a robot that sends states (plant.kind = \"zenoh\" or \"ros2\"); the point mass runs on \"real\" \
         or \"simulated\"",
    )?;
    check(
        config.policy.kind != crate::PolicyKind::Remote || config.plant.kind.over_zenoh(),
        "plant.kind",
        "\"point-mass\"",
        "must be \"zenoh\" or \"ros2\" when policy.kind = \"remote\" (the policy server is reached over the \
         [io] session)",
    )?;
    within(
        config.policy.server_timeout_ms,
        "policy.server_timeout_ms",
        MILLISECONDS_IN_AN_HOUR,
    )?;
    within(
        config.policy.inference_timeout_ms,
        "policy.inference_timeout_ms",
        MILLISECONDS_IN_AN_HOUR,
    )?;
    within(
        io.stale_after_ms,
        "io.stale_after_ms",
        MILLISECONDS_IN_AN_HOUR,
    )?;
    check(
        io.replan_after_ms > 0.0,
        "io.replan_after_ms",
        io.replan_after_ms,
        "must be a positive number of milliseconds (inf: never re-plan)",
    )?;
    between(io.status_rate_hz, "io.status_rate_hz", 0.1, 1000.0)
}

/// The longest time any timeout or staleness limit may be set to.
const MILLISECONDS_IN_AN_HOUR: f64 = 3.6e6;
/// The largest physical or policy parameter accepted (anything larger overflows downstream arithmetic).
const LARGEST_PARAMETER: f64 = 1e6;

/// `value` must be finite, above 0 and at most `high`.
pub(crate) fn within(value: f64, key: &str, high: f64) -> Result<(), ConfigError> {
    check(
        value.is_finite() && value > 0.0 && value <= high,
        key,
        value,
        &format!("must be a number above 0 and at most {high}"),
    )
}

/// `value` must be finite and in `[low, high]`.
fn between(value: f64, key: &str, low: f64, high: f64) -> Result<(), ConfigError> {
    check(
        value.is_finite() && value >= low && value <= high,
        key,
        value,
        &format!("must be a number between {low} and {high}"),
    )
}

pub(crate) fn check(
    ok: bool,
    key: &str,
    value: impl std::fmt::Display,
    rule: &str,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, value, rule))
    }
}

fn positive_finite(value: f64, key: &str) -> Result<(), ConfigError> {
    within(value, key, LARGEST_PARAMETER)
}

fn validate_policy(config: &Config) -> Result<(), ConfigError> {
    let policy = &config.policy;
    check(
        (2..=1024).contains(&policy.horizon),
        "policy.horizon",
        policy.horizon,
        "must be between 2 and 1024",
    )?;
    check(
        (1..=64).contains(&policy.action_dim),
        "policy.action_dim",
        policy.action_dim,
        "must be between 1 and 64",
    )?;
    positive_finite(policy.spread, "policy.spread")?;
    positive_finite(policy.correlation_length, "policy.correlation_length")?;
    positive_finite(policy.separation, "policy.separation")?;
    positive_finite(policy.path_speed, "policy.path_speed")?;
    check(
        (1..=64).contains(&policy.intra_threads),
        "policy.intra_threads",
        policy.intra_threads,
        "must be between 1 and 64",
    )?;
    let device_ok = policy.device == "cpu"
        || policy.device == "cuda"
        || policy
            .device
            .strip_prefix("cuda:")
            .is_some_and(|id| id.parse::<u32>().is_ok());
    check(
        device_ok,
        "policy.device",
        &policy.device,
        "must be \"cpu\", \"cuda\" or \"cuda:N\"",
    )?;
    check(
        policy.kind != crate::PolicyKind::Bundle || policy.bundle.is_some(),
        "policy.bundle",
        "(unset)",
        "is required by policy.kind = \"bundle\"",
    )
}

fn validate_sampler(config: &Config) -> Result<(), ConfigError> {
    let sampler = &config.sampler;
    check(
        (1..=1000).contains(&sampler.steps),
        "sampler.steps",
        sampler.steps,
        "must be between 1 and 1000",
    )?;
    positive_finite(sampler.beta, "sampler.beta")?;
    check(
        sampler.mode != SamplerMode::Bid || (1..=1024).contains(&sampler.bid_candidates),
        "sampler.bid_candidates",
        sampler.bid_candidates,
        "must be between 1 and 1024 for mode \"bid\"",
    )?;
    let policy = &config.policy;
    check(
        !(sampler.mode == SamplerMode::Bid
            && policy.kind == crate::PolicyKind::Bundle
            && policy.device.starts_with("cuda")
            && policy.cuda_graphs),
        "policy.cuda_graphs",
        policy.cuda_graphs,
        "must be false for sampler.mode = \"bid\" on a GPU (its candidates run as one batch; CUDA graphs replay \
         single-chunk steps)",
    )
}

fn validate_scheduler(config: &Config) -> Result<(), ConfigError> {
    let scheduler = &config.scheduler;
    let horizon = config.policy.horizon;
    let s = scheduler.resolved_execution_horizon(horizon);
    check(
        (1..=horizon).contains(&s),
        "scheduler.execution_horizon",
        s,
        &format!("must be between 1 and the horizon H = {horizon}"),
    )?;
    check(
        (1..=1000).contains(&scheduler.delay_buffer),
        "scheduler.delay_buffer",
        scheduler.delay_buffer,
        "must be between 1 and 1000",
    )?;
    check(
        scheduler.initial_delay <= horizon - s,
        "scheduler.initial_delay",
        scheduler.initial_delay,
        &format!(
            "exceeds H - s = {}: the chunk cannot freeze more actions than it shares with the next",
            horizon - s
        ),
    )?;
    let d = config.clock.max_injected_delay();
    if scheduler.execution != Execution::Sync && d > 0 {
        check(
            s >= d,
            "scheduler.execution_horizon",
            s,
            &format!("is below the inference delay {d}: need d <= s <= H - d"),
        )?;
        check(
            s + d <= horizon,
            "scheduler.execution_horizon",
            s,
            &format!(
                "leaves H - s = {} actions, fewer than the inference delay {d}: need d <= s <= H - d",
                horizon - s
            ),
        )?;
    }
    match (&scheduler.on_starvation, &scheduler.safe_action) {
        (Starvation::SafeAction, None) => Err(ConfigError::invalid(
            "scheduler.safe_action",
            "(unset)",
            "is required by on_starvation = \"safe-action\"",
        )),
        (_, Some(action)) => check(
            action.len() == config.policy.action_dim && action.iter().all(|v| v.is_finite()),
            "scheduler.safe_action",
            format!("{action:?}"),
            &format!(
                "must hold policy.action_dim = {} finite numbers",
                config.policy.action_dim
            ),
        ),
        _ => Ok(()),
    }
}

fn validate_clock(config: &Config) -> Result<(), ConfigError> {
    let clock = &config.clock;
    between(clock.policy_rate_hz, "clock.policy_rate_hz", 0.1, 10_000.0)?;
    if let Some(rate) = clock.controller_rate_hz {
        let ratio = rate / clock.policy_rate_hz;
        check(
            rate.is_finite()
                && rate <= 20_000.0
                && ratio >= 1.0
                && (ratio - ratio.round()).abs() < 1e-6,
            "clock.controller_rate_hz",
            rate,
            &format!(
                "must be an integer multiple of clock.policy_rate_hz = {} and at most 20000",
                clock.policy_rate_hz
            ),
        )?;
    }
    let horizon = config.policy.horizon;
    check(
        clock.max_injected_delay() < horizon,
        "clock.inference_delay_ticks",
        clock.inference_delay_ticks,
        &format!("plus the jitter must stay below the horizon H = {horizon}"),
    )?;
    check(
        config.realtime.fifo_priority <= 99,
        "realtime.fifo_priority",
        config.realtime.fifo_priority,
        "must be between 0 (off) and 99",
    )?;
    let realtime = &config.realtime;
    check(
        realtime.io_priority() == 0 || realtime.io_fifo_priority < realtime.fifo_priority,
        "realtime.io_fifo_priority",
        realtime.io_fifo_priority,
        &format!(
            "must be below realtime.fifo_priority = {} (the link's threads must never preempt the controller), \
             or 0 to leave them under the normal scheduler",
            realtime.fifo_priority
        ),
    )?;
    check(
        config.realtime.spin_margin_us <= 1_000_000,
        "realtime.spin_margin_us",
        config.realtime.spin_margin_us,
        "must be at most 1000000 (one second)",
    )?;
    let cpu = config.realtime.cpu.unwrap_or(0);
    check(
        cpu < 1024,
        "realtime.cpu",
        cpu,
        "must be a CPU number below 1024",
    )
}

fn check_limit(
    limit: &Option<Limit>,
    key: &str,
    dim: usize,
    must_be_positive: bool,
) -> Result<(), ConfigError> {
    let Some(limit) = limit else { return Ok(()) };
    if let Limit::Each(values) = limit {
        check(
            values.len() == dim,
            key,
            format!("{values:?}"),
            &format!("must hold one number or policy.action_dim = {dim} numbers"),
        )?;
    }
    for value in limit.expand(dim) {
        let ok = value.is_finite()
            && value.abs() <= LARGEST_PARAMETER
            && (!must_be_positive || value > 0.0);
        let rule = if must_be_positive {
            "must be above 0 and at most 1000000"
        } else {
            "must be a number between -1000000 and 1000000"
        };
        check(ok, key, value, rule)?;
    }
    Ok(())
}

fn validate_limits(config: &Config) -> Result<(), ConfigError> {
    let dim = config.policy.action_dim;
    let controller = &config.controller;
    check_limit(&Some(controller.kp.clone()), "controller.kp", dim, true)?;
    check_limit(&Some(controller.kd.clone()), "controller.kd", dim, false)?;
    check_limit(
        &Some(controller.max_effort.clone()),
        "controller.max_effort",
        dim,
        true,
    )?;
    let safety = &config.safety;
    check_limit(&safety.position_min, "safety.position_min", dim, false)?;
    check_limit(&safety.position_max, "safety.position_max", dim, false)?;
    check_limit(&safety.max_velocity, "safety.max_velocity", dim, true)?;
    check_limit(&safety.max_delta, "safety.max_delta", dim, true)?;
    if let (Some(min), Some(max)) = (&safety.position_min, &safety.position_max) {
        for (joint, (low, high)) in min.expand(dim).iter().zip(max.expand(dim)).enumerate() {
            check(
                *low < high,
                "safety.position_max",
                high,
                &format!("must be above safety.position_min = {low} (joint {joint})"),
            )?;
        }
    }
    Ok(())
}

fn validate_plant(config: &Config) -> Result<(), ConfigError> {
    if config.plant.kind == crate::PlantKind::Ros2 {
        crate::ros2::validate(&config.ros2)?;
    }
    if config.plant.kind != crate::PlantKind::PointMass {
        return Ok(());
    }
    let plant = &config.plant;
    check(
        config.policy.action_dim == 2,
        "policy.action_dim",
        config.policy.action_dim,
        "does not match the point-mass plant, which takes 2",
    )?;
    positive_finite(plant.mass, "plant.mass")?;
    between(plant.damping, "plant.damping", 0.0, LARGEST_PARAMETER)?;
    positive_finite(plant.goal_radius, "plant.goal_radius")?;
    positive_finite(plant.obstacle_radius, "plant.obstacle_radius")?;
    positive_finite(plant.half_extent, "plant.half_extent")?;
    check(
        plant
            .obstacle
            .iter()
            .all(|c| c.is_finite() && c.abs() <= LARGEST_PARAMETER),
        "plant.obstacle",
        format!("{:?}", plant.obstacle),
        "must hold two numbers between -1000000 and 1000000",
    )?;
    for (key, point) in [("plant.start", plant.start), ("plant.goal", plant.goal)] {
        check(
            point
                .iter()
                .all(|c| c.is_finite() && c.abs() < plant.half_extent),
            key,
            format!("{point:?}"),
            &format!(
                "must lie inside the walls at +-plant.half_extent = {}",
                plant.half_extent
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn error_of(text: &str) -> String {
        Config::from_toml_str(text, "robot.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_policys_suggested_sampling_fills_only_what_the_file_left_out() {
        let mut config = Config::from_toml_str("[sampler]\nbeta = 2.0\n", "robot.toml").unwrap();
        config
            .sampler
            .adopt_policy_defaults(10, 10.0, Some(crate::MaskSchedule::Linear));
        assert_eq!(config.sampler.steps, 10);
        assert_eq!(config.sampler.beta, 2.0);
        assert_eq!(config.sampler.schedule, crate::MaskSchedule::Linear);
        // Without a [sampler] section every suggestion is taken; a schedule the policy does not name stays.
        let mut config = Config::from_toml_str("", "robot.toml").unwrap();
        config.sampler.adopt_policy_defaults(8, 3.0, None);
        assert_eq!(
            (
                config.sampler.steps,
                config.sampler.beta,
                config.sampler.schedule
            ),
            (8, 3.0, crate::MaskSchedule::Exp)
        );
        // Settings made in code count as given.
        let mut config = Config::default();
        config.sampler.adopt_policy_defaults(8, 3.0, None);
        assert_eq!((config.sampler.steps, config.sampler.beta), (5, 5.0));
    }

    #[test]
    fn defaults_are_the_papers() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.sampler.steps, 5);
        assert_eq!(config.sampler.beta, 5.0);
        assert_eq!(config.sampler.schedule, crate::MaskSchedule::Exp);
        assert_eq!(config.scheduler.delay_buffer, 10);
        assert_eq!(
            config
                .scheduler
                .resolved_execution_horizon(config.policy.horizon),
            8
        );
    }

    #[test]
    fn execution_horizon_below_delay_names_key_value_and_rule() {
        let message = error_of(
            "[policy]\nhorizon = 8\n[scheduler]\nexecution_horizon = 2\n[clock]\ninference_delay_ticks = 3\n",
        );
        assert_eq!(
            message,
            "robot.toml: scheduler.execution_horizon = 2 is below the inference delay 3: need d <= s <= H - d"
        );
    }

    #[test]
    fn link_threads_at_or_above_the_controllers_priority_are_refused_unless_the_controller_is_not_fifo()
     {
        let message = error_of("[realtime]\nfifo_priority = 60\nio_fifo_priority = 60\n");
        assert!(
            message.contains(
                "realtime.io_fifo_priority = 60 must be below realtime.fifo_priority = 60"
            ),
            "{message}"
        );
        let normal = "[realtime]\nfifo_priority = 0\nio_fifo_priority = 70\n";
        let config = Config::from_toml_str(normal, "robot.toml").unwrap();
        config.validate().unwrap();
        assert_eq!(config.realtime.io_priority(), 0);
        assert_eq!(Config::default().realtime.io_priority(), 70);
    }

    #[test]
    fn execution_horizon_above_h_minus_d_is_rejected() {
        let message = error_of(
            "[policy]\nhorizon = 8\n[scheduler]\nexecution_horizon = 6\n[clock]\ninference_delay_ticks = 3\n",
        );
        assert!(
            message.contains("scheduler.execution_horizon = 6 leaves H - s = 2"),
            "{message}"
        );
    }

    #[test]
    fn bid_on_a_gpu_needs_cuda_graphs_off() {
        let gpu_bid = "[policy]\nkind = \"bundle\"\nbundle = \"b\"\ndevice = \"cuda\"\n[sampler]\nmode = \"bid\"\n";
        let message = error_of(gpu_bid);
        assert!(message.contains("policy.cuda_graphs"), "{message}");
        let off = gpu_bid.replace(
            "device = \"cuda\"\n",
            "device = \"cuda\"\ncuda_graphs = false\n",
        );
        Config::from_toml_str(&off, "robot.toml").unwrap();
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let message = error_of("[sampler]\nstepz = 5\n");
        assert!(message.starts_with("robot.toml: "), "{message}");
        assert!(message.contains("stepz"), "{message}");
    }

    #[test]
    fn wrong_types_and_bad_enums_are_errors() {
        assert!(error_of("[sampler]\nmode = \"guided\"\n").contains("mode"));
        assert!(error_of("[sampler]\nsteps = \"five\"\n").contains("steps"));
    }

    #[test]
    fn limits_must_match_the_action_dimension() {
        let message = error_of("[safety]\nmax_delta = [0.1, 0.1, 0.1]\n");
        assert!(
            message.contains(
                "safety.max_delta = [0.1, 0.1, 0.1] must hold one number or policy.action_dim = 2"
            ),
            "{message}"
        );
        let message = error_of("[safety]\nposition_min = 1.0\nposition_max = -1.0\n");
        assert!(
            message.contains("safety.position_max = -1 must be above safety.position_min = 1"),
            "{message}"
        );
    }

    #[test]
    fn the_state_clock_needs_a_robot_and_a_robot_runs_on_the_real_or_state_clock() {
        let message = error_of("[clock]\nkind = \"state\"\n");
        assert!(
            message.contains("clock.kind = \"state\" needs a robot that sends states"),
            "{message}"
        );
        let message = error_of("[clock]\nkind = \"simulated\"\n[plant]\nkind = \"zenoh\"\n");
        assert!(
            message.contains("must be \"real\" or \"state\""),
            "{message}"
        );
        let robot =
            "[clock]\nkind = \"state\"\ncontroller_rate_hz = 150.0\n[plant]\nkind = \"zenoh\"\n";
        let config = Config::from_toml_str(robot, "robot.toml").unwrap();
        assert_eq!(
            config.clock.decimation(),
            3,
            "every third state is a policy tick"
        );
    }

    #[test]
    fn controller_rate_must_be_a_multiple_of_the_policy_rate() {
        let message = error_of("[clock]\npolicy_rate_hz = 50.0\ncontroller_rate_hz = 120.0\n");
        assert!(
            message.contains("clock.controller_rate_hz = 120 must be an integer multiple"),
            "{message}"
        );
        let config = Config::from_toml_str("[clock]\ncontroller_rate_hz = 500.0\n", "x").unwrap();
        assert_eq!(config.clock.decimation(), 10);
    }

    #[test]
    fn safe_action_is_required_and_sized() {
        assert!(
            error_of("[scheduler]\non_starvation = \"safe-action\"\n")
                .contains("scheduler.safe_action = (unset)")
        );
        assert!(
            error_of("[scheduler]\nsafe_action = [0.0]\n")
                .contains("must hold policy.action_dim = 2")
        );
    }

    #[test]
    fn a_bundle_policy_needs_its_directory() {
        let message = error_of("[policy]\nkind = \"bundle\"\n");
        assert!(
            message.contains("policy.bundle = (unset) is required by policy.kind = \"bundle\""),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Config::load(std::path::Path::new("/nonexistent/robot.toml")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/robot.toml: cannot read")
        );
    }
}
