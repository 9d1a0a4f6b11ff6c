//! Run metrics: timing, delays, seams, starvation and safety, computed off the controller thread from the
//! tick and inference records; printed as a table or written as JSON.

use crate::core::inference_fault::InferenceFault;
use crate::core::record::InferenceRecord;
use crate::core::record::{StepClass, TickKind, TickRecord};
use rtchunk_policy::NormalRng;
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

/// A stream of values summarised in bounded memory: count, sum, minimum and maximum exactly, and for the
/// quantiles the values themselves up to [`Sample::CAPACITY`], then a uniform reservoir of that many (Vitter's
/// algorithm R, seeded, so a run's summary is reproducible). Quantiles are exact up to the capacity (about
/// 8.7 minutes of a 500 Hz loop) and estimates beyond it; memory stays constant however long the run.
#[derive(Debug, Clone)]
pub struct Sample {
    values: Vec<f64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    rng: NormalRng,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            values: Vec::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            rng: NormalRng::new(0x9e37_79b9_7f4a_7c15),
        }
    }
}

impl Sample {
    /// The most values kept for the quantiles (2 MiB).
    pub const CAPACITY: usize = 1 << 18;

    /// Adds one value.
    pub fn push(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if self.values.len() < Self::CAPACITY {
            self.values.push(value);
            return;
        }
        // Algorithm R: the new value takes a uniformly drawn slot of the first `count`, if that slot is kept.
        let slot = (self.rng.next_u64() % self.count) as usize;
        if let Some(kept) = self.values.get_mut(slot) {
            *kept = value;
        }
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The summary: exact count, mean, minimum and maximum; quantiles of what is kept.
    pub fn quantiles(self) -> Quantiles {
        if self.count == 0 {
            return Quantiles::default();
        }
        Quantiles {
            min: self.min,
            max: self.max,
            mean: self.sum / self.count as f64,
            count: self.count as usize,
            ..Quantiles::of(self.values)
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
    /// Periods skipped after overruns.
    pub missed_ticks: u64,
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

/// The inference side of [`RunMetrics`], gathered one inference at a time in bounded memory.
#[derive(Debug, Clone, Default)]
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
    pub duration_ms: Sample,
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
/// it holds the counters and a bounded [`Sample`] per quantity.
#[derive(Debug, Default)]
pub struct TickMetrics {
    metrics: RunMetrics,
    lateness_us: Sample,
    delays: Sample,
    seams: Sample,
    within: Sample,
    cold_seen: bool,
}

impl TickMetrics {
    /// Counts one controller tick.
    pub fn add(&mut self, tick: &TickRecord) {
        let metrics = &mut self.metrics;
        metrics.controller_ticks += 1;
        self.lateness_us.push(tick.lateness_ns as f64 / 1e3);
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
    fn a_sample_keeps_bounded_memory_with_exact_moments_and_close_quantiles() {
        let mut sample = Sample::default();
        let n = 4 * Sample::CAPACITY as u64;
        // A permutation of 0..n (in a scrambled order), scaled to [0, 1).
        for i in 0..n {
            sample.push(((i * 2_654_435_761) % n) as f64 / n as f64);
        }
        assert_eq!(sample.values.len(), Sample::CAPACITY);
        assert_eq!(sample.values.capacity(), Sample::CAPACITY);
        let q = sample.quantiles();
        assert_eq!(q.count, n as usize);
        assert_eq!((q.min, q.max), (0.0, (n - 1) as f64 / n as f64));
        assert!((q.mean - 0.5).abs() < 1e-6);
        for (estimate, exact) in [(q.p50, 0.5), (q.p99, 0.99), (q.p999, 0.999)] {
            assert!((estimate - exact).abs() < 0.005, "{estimate} vs {exact}");
        }
        let mut small = Sample::default();
        [3.0, 1.0, 2.0].into_iter().for_each(|v| small.push(v));
        assert_eq!(small.quantiles(), Quantiles::of(vec![1.0, 2.0, 3.0]));
    }
}
