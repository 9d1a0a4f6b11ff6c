//! What else ran on a CPU during a stretch of time, from the kernel's per-CPU counters: interrupts by source
//! (`/proc/interrupts`: the local timer, rescheduling and function-call IPIs, devices) and the time the hypervisor
//! gave to other guests (steal, `/proc/stat`). Read before and after a loop benchmark for the controller's CPU, and
//! around each row of the latency study for the whole machine's steal.

use serde::Serialize;
use std::collections::BTreeMap;

/// The kernel's per-CPU counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuCounters {
    /// Interrupts per source, per CPU.
    interrupts: BTreeMap<String, Vec<u64>>,
    /// Steal time per CPU, in clock ticks (USER_HZ).
    steal: Vec<u64>,
}

/// What ran on one CPU between two readings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuActivity {
    /// The CPU.
    pub cpu: usize,
    /// Interrupts on it per source (most first; sources with none left out), with the kernel's name for each.
    pub interrupts: Vec<(String, u64)>,
    /// Interrupts per second, all sources.
    pub interrupts_per_second: f64,
    /// Time the hypervisor ran something else instead of this CPU, in milliseconds.
    pub steal_ms: f64,
}

impl CpuCounters {
    /// Reads the counters now (empty where the files are missing).
    pub fn read() -> Self {
        CpuCounters {
            interrupts: std::fs::read_to_string("/proc/interrupts")
                .map(|text| parse_interrupts(&text))
                .unwrap_or_default(),
            steal: std::fs::read_to_string("/proc/stat")
                .map(|text| parse_steal(&text))
                .unwrap_or_default(),
        }
    }

    /// What ran on `cpu` from `self` to `later`, `seconds` apart.
    pub fn activity_until(&self, later: &CpuCounters, cpu: usize, seconds: f64) -> CpuActivity {
        let at = |counts: &Vec<u64>| counts.get(cpu).copied().unwrap_or(0);
        let mut interrupts: Vec<(String, u64)> = later
            .interrupts
            .iter()
            .map(|(source, counts)| {
                let before = self.interrupts.get(source).map_or(0, at);
                (source.clone(), at(counts).saturating_sub(before))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        interrupts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let total: u64 = interrupts.iter().map(|(_, count)| count).sum();
        CpuActivity {
            cpu,
            interrupts,
            interrupts_per_second: total as f64 / seconds.max(1e-9),
            steal_ms: ticks_to_ms(at(&later.steal).saturating_sub(at(&self.steal))),
        }
    }

    /// The time the hypervisor took from all the machine's CPUs together from `self` to `later`, in milliseconds.
    pub fn steal_ms_until(&self, later: &CpuCounters) -> f64 {
        let before: u64 = self.steal.iter().sum();
        ticks_to_ms(later.steal.iter().sum::<u64>().saturating_sub(before))
    }
}

/// `/proc/stat`'s clock ticks in milliseconds (USER_HZ is 100 on Linux).
fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 10.0
}

/// `/proc/interrupts`: a header of CPU names, then a row per source: `NAME: count count ... description`.
fn parse_interrupts(text: &str) -> BTreeMap<String, Vec<u64>> {
    let mut lines = text.lines();
    let cpus = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    lines
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let counts: Vec<u64> = rest
                .split_whitespace()
                .take(cpus)
                .map_while(|field| field.parse().ok())
                .collect();
            let description = rest
                .split_whitespace()
                .skip(counts.len())
                .collect::<Vec<_>>()
                .join(" ");
            let name = match description.is_empty() {
                true => name.trim().to_string(),
                false => format!("{} ({description})", name.trim()),
            };
            Some((name, counts))
        })
        .collect()
}

/// The steal column (the eighth number) of each `cpuN` line of `/proc/stat`.
fn parse_steal(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|line| {
            line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
        })
        .map(|line| {
            line.split_whitespace()
                .nth(8)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters as the kernel would print them: CPU 1's local timer count and CPU 1's steal ticks.
    fn counters(timer_cpu1: u64, steal_cpu1: u64) -> CpuCounters {
        CpuCounters {
            interrupts: parse_interrupts(&format!(
                "           CPU0       CPU1\n LOC:        10 {timer_cpu1:>10}   Local timer interrupts\n \
                 RES:         1          2   Rescheduling interrupts\n ERR:          0\n"
            )),
            steal: parse_steal(&format!(
                "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 0 0 0 0 0 0 0 3 0 0\ncpu1 0 0 0 0 0 0 0 {steal_cpu1} 0 0\n"
            )),
        }
    }

    #[test]
    fn interrupts_and_steal_are_read_per_cpu_and_differenced() {
        let (before, after) = (counters(20, 5), counters(520, 9));
        let activity = before.activity_until(&after, 1, 2.0);
        assert_eq!(
            activity.interrupts,
            vec![("LOC (Local timer interrupts)".to_string(), 500)]
        );
        assert_eq!(activity.interrupts_per_second, 250.0);
        assert_eq!(activity.steal_ms, 40.0);
    }

    #[test]
    fn the_machines_steal_adds_every_cpus() {
        let (before, after) = (counters(0, 5), counters(0, 9));
        assert_eq!(
            before.steal_ms_until(&after),
            40.0,
            "CPU 0's 3 ticks did not change"
        );
        let more_on_cpu0 = CpuCounters {
            steal: vec![7, 9],
            ..after
        };
        assert_eq!(before.steal_ms_until(&more_on_cpu0), 80.0);
    }
}
