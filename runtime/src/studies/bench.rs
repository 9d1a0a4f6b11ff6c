//! `rtchunk bench loop`: the controller loop's timing under load, beside a naive `thread::sleep(period)` loop
//! run in the same command under the same load.

use crate::core::clock::{Clock, Wake, monotonic_ns};
use crate::core::metrics::{Quantiles, RunMetrics};
use crate::core::policies::load_policy;
use crate::core::rt_setup::RealtimeReport;
use crate::core::session::{ClockChoice, RunError, RunOptions, run_with_clock};
use crate::studies::cpu_activity::{CpuActivity, CpuCounters};
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
            time_ns: now,
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
    /// What else ran on the controller's CPU during rtchunk's loop (when it had one).
    pub controller_cpu: Option<CpuActivity>,
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
        let cpu = match &self.controller_cpu {
            Some(activity) => {
                let sources: Vec<String> = activity
                    .interrupts
                    .iter()
                    .take(4)
                    .map(|(source, count)| format!("{count} {source}"))
                    .collect();
                format!(
                    "on the controller's CPU {} during its loop: {:.0} interrupts/s ({}), steal {:.0} ms\n",
                    activity.cpu,
                    activity.interrupts_per_second,
                    sources.join(", "),
                    activity.steal_ms
                )
            }
            None => String::new(),
        };
        format!(
            "{}\nreal-time setup: {}\ninference worker busy: {:.0} % (rtchunk run), {:.0} % (naive run)\n\
             naive / rtchunk lateness: p50 {:.1}x, p99 {:.1}x, max {:.1}x\n{cpu}",
            crate::core::metrics::table(&[&self.rtchunk, &self.naive]),
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
    let busy = |inferences: &[crate::core::record::InferenceRecord]| {
        inferences.iter().map(|i| i.duration_us as f64).sum::<f64>() / (seconds * 1e6)
    };
    let counters = CpuCounters::read();
    let started = std::time::Instant::now();
    let ours = run_with_clock::<_, NaiveSleepClock>(
        &config,
        plant(),
        load_policy(&config)?,
        RunOptions::new("rtchunk loop", ticks),
        ClockChoice::Configured,
    )?;
    let controller_cpu = ours
        .realtime
        .reservation
        .as_ref()
        .map(|r| r.cpu)
        .or(config.realtime.cpu)
        .map(|cpu| {
            counters.activity_until(&CpuCounters::read(), cpu, started.elapsed().as_secs_f64())
        });
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
        controller_cpu,
    })
}

/// Timings of one policy's graphs and of whole inferences, each the same call repeated.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyBenchmark {
    /// The bundle's name.
    pub policy: String,
    /// Where the graphs ran.
    pub device: String,
    /// Whether the prefix and the steps replayed captured CUDA graphs.
    pub cuda_graphs: bool,
    /// Whether a guided step is one call of the bundle's guided graph (otherwise a velocity and a VJP call).
    pub fused_guidance: bool,
    /// Repetitions per measurement.
    pub iterations: usize,
    /// The prefix graph (one observation, its images and prompt), ms.
    pub prefix_ms: Quantiles,
    /// One plain denoising step: one velocity query, ms.
    pub plain_step_ms: Quantiles,
    /// One guided denoising step as the RTC sampler takes it, ms.
    pub guided_step_ms: Quantiles,
    /// Guided over plain step, by median.
    pub guided_over_plain: f64,
    /// A whole plain inference with 5 steps (prefix and steps), ms.
    pub plain5_ms: Quantiles,
    /// A whole plain inference with 10 steps, ms.
    pub plain10_ms: Quantiles,
    /// A whole RTC inference with 5 guided steps (d = 2, half the chunk committed), ms.
    pub rtc5_ms: Quantiles,
    /// The same with 10 guided steps (the n of openpi's and LeRobot's policies), ms.
    pub rtc10_ms: Quantiles,
    /// RTC inference over plain inference with 5 steps, by median.
    pub rtc_over_plain5: f64,
}

impl PolicyBenchmark {
    /// The report printed by `rtchunk bench policy`.
    pub fn summary(&self) -> String {
        let row = |name: &str, q: &Quantiles| {
            format!("{name:<28} {:>9.3} {:>9.3} {:>9.3}\n", q.p50, q.p99, q.max)
        };
        let rows: String = [
            ("prefix", &self.prefix_ms),
            ("plain step (velocity)", &self.plain_step_ms),
            ("guided step (v and VJP)", &self.guided_step_ms),
            ("plain inference, n = 5", &self.plain5_ms),
            ("plain inference, n = 10", &self.plain10_ms),
            ("RTC inference, n = 5", &self.rtc5_ms),
            ("RTC inference, n = 10", &self.rtc10_ms),
        ]
        .iter()
        .map(|(name, q)| row(name, q))
        .collect();
        format!(
            "policy {} on {} ({} repetitions each; CUDA graphs {}; guided step {})\n{:<28} {:>9} {:>9} {:>9}\n{rows}\
             guided / plain step (p50): {:.2}; RTC / plain inference, n = 5 (p50): {:.2}\n",
            self.policy,
            self.device,
            self.iterations,
            if self.cuda_graphs { "on" } else { "off" },
            if self.fused_guidance {
                "fused"
            } else {
                "velocity + VJP"
            },
            "ms",
            "p50",
            "p99",
            "max",
            self.guided_over_plain,
            self.rtc_over_plain5,
        )
    }
}

fn time_ms(iterations: usize, mut call: impl FnMut()) -> Quantiles {
    for _ in 0..iterations.min(10) {
        call();
    }
    Quantiles::of(
        (0..iterations)
            .map(|_| {
                let started = std::time::Instant::now();
                call();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

/// Times the bundle in `directory`: its graphs one call at a time, and whole inferences of 5 and 10 plain
/// steps and of 5 and 10 guided steps (RTC, d = 2, half the chunk committed), on one observation with mid-grey images
/// for every camera.
pub fn policy_benchmark(
    directory: &std::path::Path,
    options: &rtchunk_policy::onnx::OnnxRuntimeOptions,
    iterations: usize,
) -> Result<PolicyBenchmark, RunError> {
    use ndarray::{Array2, Array3, Axis, aview1};
    use rtchunk_config::SamplerMode;
    use rtchunk_policy::{Committed, FlowPolicy, Sampler};
    let mut policy = rtchunk_policy::onnx::OnnxPolicy::load(directory, options)?;
    let manifest = policy.manifest().clone();
    let spec = policy.spec().clone();
    let (h, a) = (manifest.horizon, manifest.action_dim);
    let observation = vec![0.1f32; manifest.observation_dim()];
    let row = aview1(&observation).insert_axis(Axis(0));
    let images = vec![128u8; spec.image_bytes()];
    let actions = Array3::from_elem((1, h, a), 0.2f32);
    let tau = Array2::from_elem((1, h), 0.4f32);
    let weights = Array2::from_elem((1, h), 0.5f32);
    let (mut velocity, mut vjp) = (Array3::zeros((1, h, a)), Array3::zeros((1, h, a)));
    let failed =
        |e: rtchunk_policy::PolicyError| RunError::Runtime(format!("benchmark call failed: {e}"));
    policy.prepare_with_images(row, &images).map_err(failed)?;
    let mut error = None;
    let mut note = |result: Result<(), rtchunk_policy::PolicyError>| {
        if let Err(e) = result {
            error.get_or_insert(e);
        }
    };
    let prefix_ms = time_ms(iterations, || {
        note(policy.prepare_with_images(row, &images))
    });
    let plain_step_ms = time_ms(iterations, || {
        note(policy.velocity(actions.view(), tau.view(), velocity.view_mut()))
    });
    let fused_guidance = policy.fuses_guidance();
    let guided_step_ms = time_ms(iterations, || {
        if fused_guidance {
            note(policy.guided_vjp(
                actions.view(),
                tau.view(),
                actions.view(),
                weights.view(),
                velocity.view_mut(),
                vjp.view_mut(),
            ));
        } else {
            note(policy.velocity(actions.view(), tau.view(), velocity.view_mut()));
            note(policy.denoiser_vjp(
                actions.view(),
                tau.view(),
                actions.view(),
                velocity.view_mut(),
                vjp.view_mut(),
            ));
        }
    });
    let noise = Array3::from_shape_fn((1, h, a), |(_, i, j)| {
        ((i * a + j) * 37 % 101) as f32 / 50.0 - 1.0
    });
    let mut inference = |mode: SamplerMode, steps: usize| {
        let config = rtchunk_config::SamplerConfig {
            mode,
            steps,
            beta: manifest.defaults.beta,
            ..Default::default()
        };
        let mut sampler = Sampler::new(config, h, a);
        let committed = Array2::from_elem((h / 2, a), 0.2f32);
        let mut chunk = Array2::zeros((h, a));
        time_ms(iterations, || {
            let committed = Committed {
                actions: committed.view(),
                delay: 2,
            };
            note(sampler.sample_from_noise(
                &mut policy,
                &observation,
                &images,
                Some(committed),
                noise.view(),
                chunk.view_mut(),
            ));
        })
    };
    let plain5_ms = inference(SamplerMode::Plain, 5);
    let plain10_ms = inference(SamplerMode::Plain, 10);
    let rtc5_ms = inference(SamplerMode::Rtc, 5);
    let rtc10_ms = inference(SamplerMode::Rtc, 10);
    if let Some(e) = error {
        return Err(failed(e));
    }
    let cuda_graphs = policy.cuda_graphs();
    Ok(PolicyBenchmark {
        policy: manifest.name,
        device: options.device.to_string(),
        cuda_graphs,
        fused_guidance,
        iterations,
        guided_over_plain: guided_step_ms.p50 / plain_step_ms.p50,
        rtc_over_plain5: rtc5_ms.p50 / plain5_ms.p50,
        prefix_ms,
        plain_step_ms,
        guided_step_ms,
        plain5_ms,
        plain10_ms,
        rtc5_ms,
        rtc10_ms,
    })
}
