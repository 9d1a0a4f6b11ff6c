//! `rtchunk demo`: the bimodal obstacle policy drives the point mass in real time, once with RTC and once with
//! naive asynchronous chunking at the same injected inference delay.

use crate::core::metrics::RunMetrics;
use crate::core::policies::load_policy;
use crate::core::record::InferenceRecord;
use crate::core::rt_setup::RealtimeReport;
use crate::core::session::{RunError, RunOptions, run};
use rtchunk_config::{ClockKind, Config, Limit, SamplerMode};
use rtchunk_sim::{PointMass, PointMassReport};
use serde::Serialize;

/// One method's run in the demo.
#[derive(Debug, Clone, Serialize)]
pub struct DemoRun {
    /// The runtime's metrics.
    pub metrics: RunMetrics,
    /// What happened to the point mass.
    pub plant: PointMassReport,
    /// Consecutive chunks that pass the obstacle on different sides.
    pub side_switches: usize,
    /// Which real-time measures took effect.
    pub realtime: RealtimeReport,
    /// The mass's position at every controller tick.
    #[serde(skip)]
    pub trajectory: Vec<[f32; 2]>,
}

/// The demo's defaults: policy actions at 50 Hz, a 500 Hz PD controller with linear interpolation, H = 16,
/// s_min = 8, an injected inference delay of `delay` policy ticks, and safety limits on the targets.
pub fn demo_config(delay: usize) -> Config {
    let mut config = Config::default();
    config.clock.kind = ClockKind::Real;
    config.clock.controller_rate_hz = Some(500.0);
    config.clock.inference_delay_ticks = delay;
    config.safety.position_min = Some(Limit::All(-1.2));
    config.safety.position_max = Some(Limit::All(1.2));
    config.safety.max_velocity = Some(Limit::All(4.0));
    config.safety.max_delta = Some(Limit::All(0.3));
    config
}

/// Which side of the obstacle a chunk passes: +1 above, -1 below, 0 when it is clear of the obstacle.
fn side(chunk: &[f32], centre_y: f64) -> i32 {
    let offset: f64 =
        chunk.chunks(2).map(|a| a[1] as f64 - centre_y).sum::<f64>() / (chunk.len() / 2) as f64;
    if offset > 0.03 {
        1
    } else if offset < -0.03 {
        -1
    } else {
        0
    }
}

/// Counts consecutive chunks that pass on opposite sides.
fn side_switches(inferences: &[InferenceRecord], centre_y: f64) -> usize {
    let sides: Vec<i32> = inferences
        .iter()
        .filter(|i| !i.chunk.is_empty())
        .map(|i| side(&i.chunk, centre_y))
        .collect();
    sides.windows(2).filter(|w| w[0] * w[1] < 0).count()
}

/// Runs `config` for `seconds` with RTC and with naive async (plain sampling), in that order.
pub fn run_demo(config: &Config, seconds: f64) -> Result<Vec<DemoRun>, RunError> {
    let methods = [
        ("rtc", SamplerMode::Rtc),
        ("naive async", SamplerMode::Plain),
    ];
    methods
        .iter()
        .map(|(label, mode)| {
            let mut config = config.clone();
            config.sampler.mode = *mode;
            let period = 1.0 / config.clock.controller_rate();
            let ticks = (seconds * config.clock.controller_rate()) as u64;
            let plant =
                PointMass::new(config.plant.clone(), period).with_trajectory(ticks as usize);
            let outcome = run(
                &config,
                plant,
                load_policy(&config)?,
                RunOptions::new(label, ticks),
            )?;
            Ok(DemoRun {
                side_switches: side_switches(&outcome.inferences, config.plant.obstacle[1]),
                plant: outcome.plant.report(),
                trajectory: outcome.plant.trajectory().to_vec(),
                metrics: outcome.metrics,
                realtime: outcome.realtime,
            })
        })
        .collect()
}

/// The demo's report: the metrics side by side, then what happened to the robot.
pub fn demo_summary(runs: &[DemoRun], delay: usize) -> String {
    let metrics: Vec<&RunMetrics> = runs.iter().map(|r| &r.metrics).collect();
    let mut out = format!(
        "injected inference delay: {delay} policy ticks\n\n{}",
        crate::core::metrics::table(&metrics)
    );
    for run in runs {
        let goal = run
            .plant
            .reached_goal_at
            .map_or("not reached".to_string(), |t| {
                format!("reached at {t:.2} s")
            });
        out += &format!(
            "{:>12}: obstacle contacts {}, wall contacts {}, goal {goal}, chunks switching sides {}\n",
            run.metrics.label,
            run.plant.obstacle_contacts,
            run.plant.wall_contacts,
            run.side_switches
        );
    }
    if let Some(run) = runs.first() {
        out += &format!("real-time setup: {}\n", run.realtime);
    }
    out
}
