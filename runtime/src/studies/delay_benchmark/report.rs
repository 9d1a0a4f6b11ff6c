//! The delay benchmark's results: one record per point, Wilson intervals, averages over tasks and training
//! seeds, and their CSV, JSON and terminal forms.

use crate::studies::delay_benchmark::methods::Method;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Which sweep a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sweep {
    /// d = 0..4 at s = max(d, 1).
    Delay,
    /// s = 1..H - d at d = 1.
    Horizon,
}

/// One measured point: a task, a training seed, a method, d and s.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointRecord {
    /// The sweep.
    pub sweep: Sweep,
    /// Task name, or "average" for aggregates.
    pub task: String,
    /// Training seed of the policy (`None` in aggregates over seeds).
    pub policy_seed: Option<u64>,
    /// The method.
    pub method: Method,
    /// Inference delay d, control steps.
    pub delay: usize,
    /// Execution horizon s.
    pub execution_horizon: usize,
    /// Rollouts.
    pub rollouts: usize,
    /// Solved first episodes.
    pub successes: usize,
    /// successes / rollouts.
    pub solve_rate: f64,
    /// 95 % Wilson interval, low end.
    pub wilson_low: f64,
    /// 95 % Wilson interval, high end.
    pub wilson_high: f64,
    /// Pooled over two or more training seeds: the 95 % Student's t interval of the mean of the per-seed rates.
    /// The seeds ran the same episodes with the same noise, so their rollouts are not independent draws and the
    /// Wilson interval of the pooled counts leaves the seed-to-seed variance out; this one includes it. `None`
    /// for a single seed.
    pub seed_interval: Option<(f64, f64)>,
    /// Mean action change at chunk seams.
    pub seam_jump: f64,
    /// Wall time of the point, seconds.
    pub seconds: f64,
}

/// The 95 % Wilson score interval of `successes` out of `n`.
pub fn wilson_interval(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let denominator = 1.0 + z * z / n;
    let center = (p + z * z / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom (df >= 1).
fn student_t_975(df: usize) -> f64 {
    const TABLE: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    TABLE
        .get(df.saturating_sub(1))
        .copied()
        .unwrap_or(1.96 + 2.4 / df as f64)
}

/// The 95 % Student's t interval of the mean of `rates` (two or more), clamped to [0, 1].
pub fn seed_interval(rates: &[f64]) -> Option<(f64, f64)> {
    let k = rates.len();
    if k < 2 {
        return None;
    }
    let mean = rates.iter().sum::<f64>() / k as f64;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
    let half = student_t_975(k - 1) * (variance / k as f64).sqrt();
    Some(((mean - half).max(0.0), (mean + half).min(1.0)))
}

impl PointRecord {
    /// The interval to report: the Wilson interval, widened to the seed interval where seeds were pooled.
    pub fn interval(&self) -> (f64, f64) {
        match self.seed_interval {
            Some((low, high)) => (low.min(self.wilson_low), high.max(self.wilson_high)),
            None => (self.wilson_low, self.wilson_high),
        }
    }

    /// A record from counts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sweep: Sweep,
        task: &str,
        policy_seed: Option<u64>,
        method: Method,
        (delay, execution_horizon): (usize, usize),
        (successes, rollouts): (usize, usize),
        seam_jump: f64,
        seconds: f64,
    ) -> Self {
        let (wilson_low, wilson_high) = wilson_interval(successes, rollouts);
        PointRecord {
            seed_interval: None,
            sweep,
            task: task.to_string(),
            policy_seed,
            method,
            delay,
            execution_horizon,
            rollouts,
            successes,
            solve_rate: successes as f64 / rollouts.max(1) as f64,
            wilson_low,
            wilson_high,
            seam_jump,
            seconds,
        }
    }
}

/// Pools the counts of per-seed `records` over training seeds, per task (`over_tasks` false), or over tasks and
/// seeds as task "average" (`over_tasks` true); one record per (sweep, task, method, d, s), with no seed. The
/// pooled rate equals the mean over what was pooled when each had the same number of rollouts; with two or more
/// seeds the record also carries the [`seed_interval`] of the per-seed rates (each seed's counts pooled over
/// the tasks first).
pub fn pool(records: &[PointRecord], over_tasks: bool) -> Vec<PointRecord> {
    /// What one group gathers; its success and rollout totals are the sums over `per_seed`.
    struct Pooled {
        method: Method,
        seam_sum: f64,
        seconds: f64,
        records: usize,
        /// Successes and rollouts per training seed.
        per_seed: BTreeMap<u64, (usize, usize)>,
    }
    type Key = (Sweep, String, usize, usize, usize);
    let mut groups: BTreeMap<Key, Pooled> = BTreeMap::new();
    for r in records.iter() {
        let Some(seed) = r.policy_seed else { continue };
        let order = Method::ALL.iter().position(|m| *m == r.method).unwrap_or(0);
        let task = if over_tasks {
            "average".to_string()
        } else {
            r.task.clone()
        };
        let group = groups
            .entry((r.sweep, task, order, r.delay, r.execution_horizon))
            .or_insert_with(|| Pooled {
                method: r.method,
                seam_sum: 0.0,
                seconds: 0.0,
                records: 0,
                per_seed: BTreeMap::new(),
            });
        group.seam_sum += r.seam_jump;
        group.seconds += r.seconds;
        group.records += 1;
        let counts = group.per_seed.entry(seed).or_default();
        counts.0 += r.successes;
        counts.1 += r.rollouts;
    }
    groups
        .into_iter()
        .map(|((sweep, task, _, d, s), group)| {
            let counts = group.per_seed.values();
            let successes = counts.clone().map(|c| c.0).sum();
            let rollouts = counts.clone().map(|c| c.1).sum();
            let rates: Vec<f64> = counts
                .map(|&(wins, n)| wins as f64 / n.max(1) as f64)
                .collect();
            PointRecord {
                seed_interval: seed_interval(&rates),
                ..PointRecord::new(
                    sweep,
                    &task,
                    None,
                    group.method,
                    (d, s),
                    (successes, rollouts),
                    group.seam_sum / group.records as f64,
                    group.seconds,
                )
            }
        })
        .collect()
}

/// The records as CSV, with a header.
pub fn to_csv(records: &[PointRecord]) -> String {
    let mut csv = String::from(
        "sweep,task,policy_seed,method,delay,execution_horizon,rollouts,successes,solve_rate,wilson_low,wilson_high,seam_jump,seconds,seed_low,seed_high\n",
    );
    for r in records {
        let sweep = match r.sweep {
            Sweep::Delay => "delay",
            Sweep::Horizon => "horizon",
        };
        let seed = r.policy_seed.map_or(String::new(), |s| s.to_string());
        let (seed_low, seed_high) = r
            .seed_interval
            .map_or((String::new(), String::new()), |(l, h)| {
                (format!("{l:.4}"), format!("{h:.4}"))
            });
        let _ = writeln!(
            csv,
            "{sweep},{},{seed},{},{},{},{},{},{:.4},{:.4},{:.4},{:.5},{:.2},{seed_low},{seed_high}",
            r.task,
            r.method,
            r.delay,
            r.execution_horizon,
            r.rollouts,
            r.successes,
            r.solve_rate,
            r.wilson_low,
            r.wilson_high,
            r.seam_jump,
            r.seconds
        );
    }
    csv
}

/// The per-seed records of a CSV written by [`to_csv`] (pooled rows are skipped: they are recomputed; CSVs of
/// earlier versions, without the seed interval's two columns, read too).
pub fn from_csv(text: &str) -> Result<Vec<PointRecord>, String> {
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let bad = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
        if fields.len() != 13 && fields.len() != 15 {
            return Err(bad("expected 15 fields (13 in earlier versions)"));
        }
        if fields[2].is_empty() {
            continue;
        }
        let sweep = match fields[0] {
            "delay" => Sweep::Delay,
            "horizon" => Sweep::Horizon,
            _ => return Err(bad("sweep must be delay or horizon")),
        };
        let number_at = |i: usize| fields[i].parse::<f64>().map_err(|_| bad("a number"));
        let count_at = |i: usize| fields[i].parse::<usize>().map_err(|_| bad("a count"));
        let method: Method = fields[3].parse().map_err(|e: String| bad(&e))?;
        let seed = fields[2].parse::<u64>().map_err(|_| bad("a seed"))?;
        records.push(PointRecord::new(
            sweep,
            fields[1],
            Some(seed),
            method,
            (count_at(4)?, count_at(5)?),
            (count_at(7)?, count_at(6)?),
            number_at(11)?,
            number_at(12)?,
        ));
    }
    Ok(records)
}

/// How `method` is named in the tables and figures of `sweep`: its name, with its execution horizon where
/// a delay sweep ran it at one fixed s other than the protocol's max(d, 1) (e.g. "sync (s = 4)").
pub fn method_label(records: &[PointRecord], method: Method, sweep: Sweep) -> String {
    let runs: Vec<&PointRecord> = records
        .iter()
        .filter(|r| r.method == method && r.sweep == sweep)
        .collect();
    let fixed = runs.first().map(|r| r.execution_horizon);
    let off_protocol = runs.iter().any(|r| r.execution_horizon != r.delay.max(1));
    match fixed {
        Some(s)
            if sweep == Sweep::Delay
                && off_protocol
                && runs.iter().all(|r| r.execution_horizon == s) =>
        {
            format!("{} (s = {s})", method.name())
        }
        _ => method.name().to_string(),
    }
}

/// A terminal table of solve rates (with Wilson intervals) per task and method, columns by d or s.
pub fn table(records: &[PointRecord], sweep: Sweep) -> String {
    let points: Vec<&PointRecord> = records
        .iter()
        .filter(|r| r.sweep == sweep && r.policy_seed.is_none())
        .collect();
    let mut columns: Vec<usize> = points
        .iter()
        .map(|r| {
            if sweep == Sweep::Delay {
                r.delay
            } else {
                r.execution_horizon
            }
        })
        .collect();
    columns.sort_unstable();
    columns.dedup();
    if points.is_empty() {
        return String::new();
    }
    let heading = if sweep == Sweep::Delay {
        "d (s = max(d, 1))"
    } else {
        "s (d = 1)"
    };
    let mut out = format!("{:<10} {:<17}", "task", heading);
    for c in &columns {
        let _ = write!(out, " {:>17}", c);
    }
    out.push('\n');
    let mut rows: Vec<(&str, Method)> =
        points.iter().map(|r| (r.task.as_str(), r.method)).collect();
    rows.dedup();
    let mut seen = std::collections::HashSet::new();
    for (task, method) in rows.into_iter().filter(|row| seen.insert(*row)) {
        let _ = write!(
            out,
            "{task:<10} {:<17}",
            method_label(records, method, sweep)
        );
        for c in &columns {
            let cell = points.iter().find(|r| {
                r.task == task
                    && r.method == method
                    && (if sweep == Sweep::Delay {
                        r.delay
                    } else {
                        r.execution_horizon
                    }) == *c
            });
            match cell {
                Some(r) => {
                    let (low, high) = r.interval();
                    let _ = write!(out, " {:>5.3} [{low:.2},{high:.2}]", r.solve_rate);
                }
                None => out.push_str(&format!(" {:>17}", "-")),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_intervals_match_published_values() {
        // 81 of 100: the textbook interval is [0.7222, 0.8749].
        let (low, high) = wilson_interval(81, 100);
        assert!(
            (low - 0.7222).abs() < 1e-3 && (high - 0.8749).abs() < 1e-3,
            "{low} {high}"
        );
        assert_eq!(wilson_interval(0, 10).0, 0.0);
        assert!((wilson_interval(10, 10).1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pooled_seeds_carry_an_interval_with_the_seed_to_seed_variance() {
        let seeds: Vec<PointRecord> = [900, 800, 700]
            .into_iter()
            .enumerate()
            .map(|(seed, wins)| {
                PointRecord::new(
                    Sweep::Delay,
                    "lander",
                    Some(seed as u64),
                    Method::Naive,
                    (4, 4),
                    (wins, 1000),
                    0.0,
                    1.0,
                )
            })
            .collect();
        let pooled = &pool(&seeds, false)[0];
        assert!((pooled.solve_rate - 0.8).abs() < 1e-12);
        // Wilson over 3 000 "independent" rollouts is +-0.014; the three seeds disagree by far more.
        assert!(pooled.wilson_high - pooled.wilson_low < 0.03);
        let (low, high) = pooled.seed_interval.unwrap();
        let half = 4.303 * 0.1 / 3f64.sqrt();
        assert!(
            (low - (0.8 - half)).abs() < 1e-9 && high == 1.0,
            "{low} {high}"
        );
        assert_eq!(pooled.interval(), (low, 1.0));
        assert!(seeds[0].seed_interval.is_none() && seed_interval(&[0.5]).is_none());
        let csv = to_csv(std::slice::from_ref(pooled));
        assert!(
            csv.lines().nth(1).unwrap().ends_with(",0.5516,1.0000"),
            "{csv}"
        );
    }

    #[test]
    fn pooling_adds_the_counts_over_tasks_or_seeds() {
        let a = PointRecord::new(
            Sweep::Delay,
            "reach",
            Some(0),
            Method::Rtc,
            (2, 2),
            (90, 100),
            0.1,
            1.0,
        );
        let b = PointRecord::new(
            Sweep::Delay,
            "catch",
            Some(0),
            Method::Rtc,
            (2, 2),
            (70, 100),
            0.3,
            1.0,
        );
        let c = PointRecord::new(
            Sweep::Delay,
            "catch",
            Some(1),
            Method::Rtc,
            (2, 2),
            (50, 100),
            0.3,
            1.0,
        );
        assert_eq!(
            pool(&[a.clone(), b.clone(), c], false).len(),
            2,
            "reach, and catch over two seeds"
        );
        let average = pool(&[a, b], true);
        assert_eq!(average.len(), 1);
        assert_eq!((average[0].successes, average[0].rollouts), (160, 200));
        assert!(
            (average[0].solve_rate - 0.8).abs() < 1e-12
                && (average[0].seam_jump - 0.2).abs() < 1e-12
        );
        assert!(
            to_csv(&average)
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("delay,average,,rtc,2,2,200,160,0.8000")
        );
    }
}
