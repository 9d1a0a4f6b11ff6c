//! `rtchunk latency`: the runtime against `rtchunk sim serve` in separate processes, per method and latency.

use crate::cli::repository_default;
use rtchunk_runtime::studies::latency::{
    LatencyClock, LatencyMethod, LatencySettings, LatencyWire, latency_study,
};
use rtchunk_sim::TaskKind;
use std::path::PathBuf;

/// The arguments of `rtchunk latency`.
#[derive(clap::Args)]
pub struct LatencyArgs {
    /// reach, cartpole, lander or catch.
    #[arg(long, default_value = "reach")]
    task: TaskKind,
    /// The policy bundle (default: the task's committed one).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Extra inference latency per run, in milliseconds, separated by commas (the delay plus s must fit
    /// in the policy's horizon: 8 ticks of 33 ms for the committed policies).
    #[arg(long, default_value = "0,50,100", value_delimiter = ',')]
    extra_latency: Vec<f64>,
    /// Methods: sync, naive, rtc, separated by commas.
    #[arg(long, default_value = "sync,naive,rtc", value_delimiter = ',')]
    methods: Vec<LatencyMethod>,
    /// Wires: rtchunk (its own protocol), ros2 (the simulator as a ROS 2 robot over rmw_zenoh), separated by
    /// commas; every method and latency runs on each.
    #[arg(long, default_value = "rtchunk", value_delimiter = ',')]
    wires: Vec<LatencyWire>,
    /// Clocks: real (the controller's own deadlines at --controller-rate-hz), state (a tick per state the
    /// simulator sends), separated by commas; every method, latency and wire runs on each.
    #[arg(long, default_value = "real", value_delimiter = ',')]
    clocks: Vec<LatencyClock>,
    /// Episodes per run.
    #[arg(long, default_value_t = 3)]
    episodes: u64,
    /// The real clock's controller rate in Hz (default 30, the task's rate; the state clock follows the
    /// simulator's 30 Hz states).
    #[arg(long)]
    controller_rate_hz: Option<f64>,
    /// Output folder.
    #[arg(long, default_value = "latency")]
    out: PathBuf,
}

/// Runs `rtchunk latency`.
pub fn run(args: LatencyArgs) -> anyhow::Result<()> {
    let LatencyArgs {
        task,
        policy,
        extra_latency,
        methods,
        wires,
        clocks,
        episodes,
        controller_rate_hz,
        out,
    } = args;
    let settings = LatencySettings {
        task,
        policy: match policy {
            Some(policy) => policy,
            None => repository_default(&format!("sim/policies/{task}/base-s0"), "--policy")?,
        },
        extra_ms: extra_latency,
        methods,
        wires,
        clocks,
        episodes,
        controller_rate_hz,
        out,
    };
    print!("{}", latency_study(&settings)?);
    Ok(())
}
