//! Run metrics: timing, delays, seams, starvation and safety, computed off the controller thread from the
//! tick and inference records; printed as a table or written as JSON.

use crate::core::inference_fault::InferenceFault;
use crate::core::record::InferenceRecord;
use crate::core::record::{StepClass, TickKind, TickRecord};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Quantiles of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Quantiles {
    /// Minimum.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Sample size.
    pub count: usize,
}

impl Quantiles {
    /// The quantiles of `values` (any order).
    pub fn of(mut values: Vec<f64>) -> Self {
        if values.is_empty() {
            return Quantiles::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((q * values.len() as f64) as usize).min(values.len() - 1)];
        Quantiles {
            min: values[0],
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: values[values.len() - 1],
            mean: values.iter().sum::<f64>() / values.len() as f64,
            count: values.len(),
        }
    }
}

/// A stream of non-negative values summarised in constant memory, however long the run: count, sum, minimum and
/// maximum exactly; the quantiles from a log-linear (HDR) histogram to three significant digits of the value
/// (a quantile is off by at most 0.1 %, or by the resolution for values near it). Values are kept in units of
/// `resolution` up to `largest` (larger ones count in the top bucket; the exact maximum is still reported);
/// negative values count as zero in the quantiles. The histogram's memory is allocated and touched when it is
/// made, so recording never grows the process.
#[derive(Debug, Clone)]
pub struct Distribution {
    histogram: Histogram<u64>,
    resolution: f64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Distribution {
    /// Three significant digits of every value.
    const SIGNIFICANT_DIGITS: u8 = 3;

    /// A distribution of values resolved to `resolution` and tracked up to `largest` (both positive, in the
    /// values' unit; `largest / resolution` at most 2^62).
    pub fn new(resolution: f64, largest: f64) -> Self {
        let highest = (largest / resolution)
            .ceil()
            .clamp(2.0, (1u64 << 62) as f64) as u64;
        let mut histogram = Histogram::new_with_bounds(1, highest, Self::SIGNIFICANT_DIGITS)
            .unwrap_or_else(|e| {
                panic!("a histogram of 1..{highest} at three significant digits: {e}")
            });
        // The counts come zeroed from the allocator, but their pages only when first written: writing them all now
        // keeps the resident memory from growing as new buckets fill during the run.
        histogram.reset();
        Distribution {
            histogram,
            resolution,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Wake lateness in microseconds: resolved to the nanosecond, up to 1 000 s.
    pub fn microseconds() -> Self {
        Distribution::new(1e-3, 1e9)
    }

    /// Durations in milliseconds: resolved to the microsecond, up to 10 000 s.
    pub fn milliseconds() -> Self {
        Distribution::new(1e-3, 1e7)
    }

    /// Counts (ticks): resolved to one, up to 10^9.
    pub fn counts() -> Self {
        Distribution::new(1.0, 1e9)
    }

    /// Action-space distances: resolved to 10^-7, up to 10^6.
    pub fn distances() -> Self {
        Distribution::new(1e-7, 1e6)
    }

    /// Adds one value.
    pub fn push(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let units = (value / self.resolution).round();
        // NaN and negative values count as zero; `as` saturates anything too large for u64.
        self.histogram
            .saturating_record(if units > 0.0 { units as u64 } else { 0 });
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Values added above `threshold` (to the histogram's three significant digits).
    pub fn count_above(&self, threshold: f64) -> u64 {
        let units = (threshold / self.resolution).round().max(0.0) as u64;
        self.histogram
            .count_between(units.saturating_add(1), self.histogram.high())
    }

    /// The summary: exact count, mean, minimum and maximum; quantiles from the histogram, within the exact
    /// minimum and maximum.
    pub fn quantiles(&self) -> Quantiles {
        if self.count == 0 {
            return Quantiles::default();
        }
        let at = |q: f64| {
            (self.histogram.value_at_quantile(q) as f64 * self.resolution)
                .max(self.min)
                .min(self.max)
        };
        Quantiles {
            min: self.min,
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: self.max,
            mean: self.sum / self.count as f64,
            count: self.count as usize,
        }
    }
}

/// Clamps by safety rule (one target can be clamped by several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SafetyClamps {
    /// To the position limits.
    pub position: u64,
    /// By the velocity limit.
    pub velocity: u64,
    /// To the per-tick delta against the measured state.
    pub delta: u64,
    /// Targets whose per-tick delta gave way to the position or velocity limits (see the safety filter).
    pub conflicts: u64,
}

/// Everything measured in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunMetrics {
    /// What ran (method and clock).
    pub label: String,
    /// Controller ticks run.
    pub controller_ticks: u64,
    /// Policy ticks run.
    pub policy_ticks: u64,
    /// Wake lateness after each deadline, in microseconds (zero on the simulated clock).
    pub wake_lateness_us: Quantiles,
    /// Periods skipped after overruns (on the state clock: states that arrived during a tick, coalesced).
    pub missed_ticks: u64,
    /// Time between consecutive controller ticks, in milliseconds (on the state clock: the robot's state
    /// period as the controller saw it; empty on the simulated clock).
    pub tick_period_ms: Quantiles,
    /// Tick periods longer than 1.5 times the median: gaps in the robot's states on the state clock, late
    /// wake-ups on the real clock.
    pub tick_gaps: u64,
    /// Inferences run.
    pub inferences: usize,
    /// Inferences that failed, all kinds together.
    pub inference_failures: u64,
    /// Of those, inferences whose policy panicked.
    pub inference_panics: u64,
    /// Of those, inferences that ran past the inference timeout.
    pub inference_timeouts: u64,
    /// Wall-clock inference time, in milliseconds.
    pub inference_ms: Quantiles,
    /// Chunks adopted after the first.
    pub swaps: usize,
    /// Observed inference delays in policy ticks (the first, cold inference excluded).
    pub observed_delay_ticks: Quantiles,
    /// |a_t - a_(t-1)| at chunk swaps.
    pub seam_jump: Quantiles,
    /// |a_t - a_(t-1)| between consecutive actions of one chunk.
    pub within_chunk_step: Quantiles,
    /// Policy ticks that found the chunk exhausted (held).
    pub starved_ticks: u64,
    /// Policy ticks paused for synchronous inference.
    pub paused_ticks: u64,
    /// Policy ticks before the first chunk.
    pub warmup_ticks: u64,
    /// Policy ticks held because the robot state was stale.
    pub held_ticks: u64,
    /// Targets the safety filter rejected (NaN/Inf, held).
    pub safety_rejections: u64,
    /// Targets the safety filter clamped.
    pub safety_clamps: u64,
    /// Which safety rules clamped, and how often.
    pub safety_clamps_by_rule: SafetyClamps,
    /// Tick records lost because the record ring was full.
    pub records_dropped: u64,
}

impl RunMetrics {
    /// Computes the metrics of a run from its records.
    pub fn compute(
        label: &str,
        ticks: &[TickRecord],
        inferences: &[InferenceRecord],
        records_dropped: u64,
    ) -> Self {
        let mut accumulator = TickMetrics::default();
        ticks.iter().for_each(|tick| accumulator.add(tick));
        let mut summary = InferenceSummary::default();
        inferences.iter().for_each(|record| summary.add(record));
        accumulator.finish(label, summary, records_dropped)
    }
}

/// The inference side of [`RunMetrics`], gathered one inference at a time in constant memory.
#[derive(Debug, Clone)]
pub struct InferenceSummary {
    /// Inferences.
    pub count: usize,
    /// Inferences that failed.
    pub failures: u64,
    /// Of those, inferences whose policy panicked.
    pub panics: u64,
    /// Of those, inferences that ran past the inference timeout.
    pub timeouts: u64,
    /// Their wall-clock durations, milliseconds.
    pub duration_ms: Distribution,
}

impl Default for InferenceSummary {
    fn default() -> Self {
        InferenceSummary {
            count: 0,
            failures: 0,
            panics: 0,
            timeouts: 0,
            duration_ms: Distribution::milliseconds(),
        }
    }
}

impl InferenceSummary {
    /// Counts one inference.
    pub fn add(&mut self, record: &InferenceRecord) {
        self.count += 1;
        if let Some(error) = &record.error {
            self.failures += 1;
            match InferenceFault::of(error) {
                InferenceFault::Panic => self.panics += 1,
                InferenceFault::Timeout => self.timeouts += 1,
                InferenceFault::Error => {}
            }
        }
        self.duration_ms.push(record.duration_us as f64 / 1e3);
    }
}

/// The tick side of [`RunMetrics`], gathered one record at a time, so that a long run need not keep its records:
/// it holds the counters and a constant-memory [`Distribution`] per quantity.
#[derive(Debug)]
pub struct TickMetrics {
    metrics: RunMetrics,
    lateness_us: Distribution,
    periods_ms: Distribution,
    last_tick_ns: u64,
    delays: Distribution,
    seams: Distribution,
    within: Distribution,
    cold_seen: bool,
}

impl Default for TickMetrics {
    fn default() -> Self {
        TickMetrics {
            metrics: RunMetrics::default(),
            lateness_us: Distribution::microseconds(),
            periods_ms: Distribution::milliseconds(),
            last_tick_ns: 0,
            delays: Distribution::counts(),
            seams: Distribution::distances(),
            within: Distribution::distances(),
            cold_seen: false,
        }
    }
}

impl TickMetrics {
    /// Counts one controller tick.
    pub fn add(&mut self, tick: &TickRecord) {
        let metrics = &mut self.metrics;
        metrics.controller_ticks += 1;
        self.lateness_us.push(tick.lateness_ns as f64 / 1e3);
        // The simulated clock's ticks have no time; a record lost in between shows as one long period.
        if tick.time_ns > 0 && self.last_tick_ns > 0 {
            self.periods_ms
                .push(tick.time_ns.saturating_sub(self.last_tick_ns) as f64 / 1e6);
        }
        self.last_tick_ns = tick.time_ns;
        metrics.missed_ticks += tick.missed as u64;
        metrics.safety_rejections += tick.safety_rejected as u64;
        metrics.safety_clamps += tick.safety_clamped as u64;
        let Some(policy) = tick.policy else { return };
        metrics.policy_ticks += 1;
        match policy.kind {
            TickKind::Starved => metrics.starved_ticks += 1,
            TickKind::Paused => metrics.paused_ticks += 1,
            TickKind::Warmup => metrics.warmup_ticks += 1,
            TickKind::Held => metrics.held_ticks += 1,
            TickKind::Executed => {}
        }
        if policy.swapped {
            if self.cold_seen {
                self.delays.push(policy.observed_delay as f64);
            }
            self.cold_seen = true;
        }
        match policy.step_class {
            StepClass::Seam => self.seams.push(policy.step as f64),
            StepClass::Within => self.within.push(policy.step as f64),
            StepClass::Other => {}
        }
    }

    /// The run's metrics: these ticks with `inferences`.
    pub fn finish(
        self,
        label: &str,
        inferences: InferenceSummary,
        records_dropped: u64,
    ) -> RunMetrics {
        RunMetrics {
            label: label.to_string(),
            records_dropped,
            inferences: inferences.count,
            inference_failures: inferences.failures,
            inference_panics: inferences.panics,
            inference_timeouts: inferences.timeouts,
            inference_ms: inferences.duration_ms.quantiles(),
            wake_lateness_us: self.lateness_us.quantiles(),
            tick_period_ms: self.periods_ms.quantiles(),
            tick_gaps: self
                .periods_ms
                .count_above(1.5 * self.periods_ms.quantiles().p50),
            swaps: self.delays.count() as usize,
            observed_delay_ticks: self.delays.quantiles(),
            seam_jump: self.seams.quantiles(),
            within_chunk_step: self.within.quantiles(),
            ..self.metrics
        }
    }
}

/// One row of the table: how a run's metric is written.
type Cell = fn(&RunMetrics) -> String;

/// Formats runs side by side, one column per run.
pub fn table(runs: &[&RunMetrics]) -> String {
    let rows: Vec<(&str, Cell)> = vec![
        ("policy ticks", (|m| m.policy_ticks.to_string())),
        (
            "wake lateness p50 / p99 (us)",
            (|m| {
                format!(
                    "{:.1} / {:.1}",
                    m.wake_lateness_us.p50, m.wake_lateness_us.p99
                )
            }),
        ),
        (
            "wake lateness p99.9 / max (us)",
            (|m| {
                format!(
                    "{:.1} / {:.1}",
                    m.wake_lateness_us.p999, m.wake_lateness_us.max
                )
            }),
        ),
        ("missed ticks", (|m| m.missed_ticks.to_string())),
        (
            "tick period p50 / p99 (ms), gaps",
            (|m| {
                format!(
                    "{:.2} / {:.2}, {}",
                    m.tick_period_ms.p50, m.tick_period_ms.p99, m.tick_gaps
                )
            }),
        ),
        (
            "inferences (failed: panicked, timed out)",
            (|m| {
                format!(
                    "{} ({}: {}, {})",
                    m.inferences, m.inference_failures, m.inference_panics, m.inference_timeouts
                )
            }),
        ),
        (
            "inference ms p50 / max",
            (|m| format!("{:.2} / {:.2}", m.inference_ms.p50, m.inference_ms.max)),
        ),
        (
            "observed delay ticks min..max",
            (|m| {
                format!(
                    "{:.0}..{:.0} (mean {:.2})",
                    m.observed_delay_ticks.min,
                    m.observed_delay_ticks.max,
                    m.observed_delay_ticks.mean
                )
            }),
        ),
        (
            "seam jump mean / max",
            (|m| format!("{:.4} / {:.4}", m.seam_jump.mean, m.seam_jump.max)),
        ),
        (
            "within-chunk step mean / max",
            (|m| {
                format!(
                    "{:.4} / {:.4}",
                    m.within_chunk_step.mean, m.within_chunk_step.max
                )
            }),
        ),
        (
            "seam / within ratio",
            (|m| match m.within_chunk_step.count {
                0 => "n/a".to_string(),
                _ => format!(
                    "{:.2}",
                    m.seam_jump.mean / m.within_chunk_step.mean.max(1e-12)
                ),
            }),
        ),
        (
            "starved / paused ticks",
            (|m| format!("{} / {}", m.starved_ticks, m.paused_ticks)),
        ),
        (
            "safety rejections / clamps",
            (|m| {
                let rules = m.safety_clamps_by_rule;
                format!(
                    "{} / {} (pos {}, vel {}, delta {}, conflicts {})",
                    m.safety_rejections,
                    m.safety_clamps,
                    rules.position,
                    rules.velocity,
                    rules.delta,
                    rules.conflicts
                )
            }),
        ),
        ("records dropped", (|m| m.records_dropped.to_string())),
    ];
    let label_width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(_, cell)| runs.iter().map(|m| cell(m)).collect())
        .collect();
    let width = runs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            cells
                .iter()
                .map(|row| row[i].len())
                .chain([m.label.len()])
                .max()
                .unwrap_or(0)
        })
        .collect::<Vec<_>>();
    let mut out = format!("{:label_width$}", "");
    for (run, w) in runs.iter().zip(&width) {
        out += &format!("  {:>w$}", run.label);
    }
    out.push('\n');
    for ((label, _), row) in rows.iter().zip(&cells) {
        out += &format!("{label:label_width$}");
        for (cell, w) in row.iter().zip(&width) {
            out += &format!("  {cell:>w$}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distribution_keeps_constant_memory_with_exact_moments_and_close_quantiles() {
        let mut distribution = Distribution::microseconds();
        let before = distribution.histogram.distinct_values();
        let n = 1_000_000u64;
        // A permutation of 0..n (in a scrambled order), scaled to [0, 1000) microseconds.
        for i in 0..n {
            distribution.push(((i * 2_654_435_761) % n) as f64 / 1e3);
        }
        assert_eq!(distribution.histogram.distinct_values(), before);
        let q = distribution.quantiles();
        assert_eq!(q.count, n as usize);
        assert_eq!((q.min, q.max), (0.0, (n - 1) as f64 / 1e3));
        assert!((q.mean - 499.9995).abs() < 1e-6, "{}", q.mean);
        for (estimate, exact) in [(q.p50, 500.0), (q.p99, 990.0), (q.p999, 999.0)] {
            assert!(
                (estimate - exact).abs() <= exact * 1e-3,
                "{estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn a_distribution_reports_small_samples_exactly_and_clamps_what_it_cannot_hold() {
        let mut small = Distribution::counts();
        [3.0, 1.0, 2.0].into_iter().for_each(|v| small.push(v));
        assert_eq!(small.quantiles(), Quantiles::of(vec![1.0, 2.0, 3.0]));
        let mut odd = Distribution::new(1.0, 100.0);
        [-5.0, 1e30, 50.0].into_iter().for_each(|v| odd.push(v));
        let q = odd.quantiles();
        assert_eq!((q.count, q.min), (3, -5.0));
        assert!(q.p50 >= -5.0 && q.p999 <= 1e30, "{q:?}");
        assert_eq!(Distribution::counts().quantiles(), Quantiles::default());
        let mut undefined = Distribution::counts();
        undefined.push(f64::NAN);
        assert_eq!(undefined.quantiles().count, 1);
    }
}
