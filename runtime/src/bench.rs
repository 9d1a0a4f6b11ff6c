//! `rtchunk bench loop`: the controller loop's timing under load, beside a naive `thread::sleep(period)` loop
//! run in the same command under the same load.

use crate::clock::{Clock, Wake, monotonic_ns};
use crate::metrics::RunMetrics;
use crate::policies::load_policy;
use crate::rt_setup::RealtimeReport;
use crate::session::{ClockChoice, RunError, RunOptions, run_with_clock};
use rtchunk_config::{ClockKind, Config, PolicyKind, SamplerMode};
use rtchunk_sim::PointMass;
use serde::Serialize;
use std::time::Duration;

/// The baseline: sleep one period after each tick, as a first attempt at a control loop does. Its lateness is
/// measured per tick against the previous wake plus one period (so its drift is not even counted).
pub struct NaiveSleepClock {
    period: Duration,
    previous_wake_ns: Option<u64>,
}

impl NaiveSleepClock {
    /// A naive loop of period `period`.
    pub fn new(period: Duration) -> Self {
        NaiveSleepClock {
            period,
            previous_wake_ns: None,
        }
    }
}

impl Clock for NaiveSleepClock {
    fn wait_next_tick(&mut self) -> Wake {
        std::thread::sleep(self.period);
        let now = monotonic_ns();
        let period = self.period.as_nanos() as u64;
        let lateness_ns = self
            .previous_wake_ns
            .map_or(0, |previous| now.saturating_sub(previous + period));
        self.previous_wake_ns = Some(now);
        Wake {
            lateness_ns,
            missed: 0,
        }
    }

    fn inference_ticks(&mut self) -> usize {
        0
    }

    fn stall_until(&mut self, _ready: &dyn Fn() -> bool) {}
}

/// The result of the loop benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct LoopBenchmark {
    /// Controller rate, Hz.
    pub rate_hz: f64,
    /// Seconds per loop.
    pub seconds: f64,
    /// rtchunk's controller loop.
    pub rtchunk: RunMetrics,
    /// The naive sleep loop.
    pub naive: RunMetrics,
    /// Fraction of the wall time the inference worker spent inferring, per loop.
    pub worker_busy: [f64; 2],
    /// Which real-time measures took effect for rtchunk's loop.
    pub realtime: RealtimeReport,
}

impl LoopBenchmark {
    /// The report printed by `rtchunk bench loop`.
    pub fn summary(&self) -> String {
        let ratio = |ours: f64, naive: f64| {
            if ours > 0.0 {
                naive / ours
            } else {
                f64::INFINITY
            }
        };
        let (ours, naive) = (&self.rtchunk.wake_lateness_us, &self.naive.wake_lateness_us);
        format!(
            "{}\nreal-time setup: {}\ninference worker busy: {:.0} % (rtchunk run), {:.0} % (naive run)\n\
             naive / rtchunk lateness: p50 {:.1}x, p99 {:.1}x, max {:.1}x\n",
            crate::metrics::table(&[&self.rtchunk, &self.naive]),
            self.realtime,
            100.0 * self.worker_busy[0],
            100.0 * self.worker_busy[1],
            ratio(ours.p50, naive.p50),
            ratio(ours.p99, naive.p99),
            ratio(ours.max, naive.max),
        )
    }
}

/// The configuration of the benchmark: the bimodal reference policy sampled with BID over 640 candidates (about
/// one policy period of compute on one core here) and a new inference at every policy tick, so the worker keeps
/// the other core busy.
pub fn bench_config(rate_hz: f64, cpu: Option<usize>) -> Config {
    let mut config = Config::default();
    config.realtime.cpu = cpu;
    config.clock.kind = ClockKind::Real;
    config.clock.policy_rate_hz = 50.0;
    config.clock.controller_rate_hz = Some(rate_hz);
    config.policy.kind = PolicyKind::Bimodal;
    config.sampler.mode = SamplerMode::Bid;
    config.sampler.bid_candidates = 640;
    config.scheduler.execution_horizon = Some(1);
    config
}

/// Runs rtchunk's loop, then the naive loop, each for `seconds` at `rate_hz` under the same inference load;
/// rtchunk's controller thread is pinned to `cpu` if given.
pub fn loop_benchmark(
    seconds: f64,
    rate_hz: f64,
    cpu: Option<usize>,
) -> Result<LoopBenchmark, RunError> {
    let config = bench_config(rate_hz, cpu);
    let ticks = (seconds * rate_hz) as u64;
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let plant = || PointMass::new(config.plant.clone(), period.as_secs_f64());
    let busy = |inferences: &[crate::worker::InferenceRecord]| {
        inferences.iter().map(|i| i.duration_us as f64).sum::<f64>() / (seconds * 1e6)
    };
    let ours = run_with_clock::<_, NaiveSleepClock>(
        &config,
        plant(),
        load_policy(&config)?,
        RunOptions::new("rtchunk loop", ticks),
        ClockChoice::Configured,
    )?;
    let naive = run_with_clock(
        &config,
        plant(),
        load_policy(&config)?,
        RunOptions::new("thread::sleep loop", ticks),
        ClockChoice::Custom(NaiveSleepClock::new(period)),
    )?;
    Ok(LoopBenchmark {
        rate_hz,
        seconds,
        worker_busy: [busy(&ours.inferences), busy(&naive.inferences)],
        rtchunk: ours.metrics,
        naive: naive.metrics,
        realtime: ours.realtime,
    })
}
