//! What a run actually used (issue 19): CPU time and peak memory as its worker measured
//! them, against what the job requested; and, per tenant and day, how far below their
//! requests its runs stayed (what request right-sizing reads).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

/// What one run used, as its worker measured it (`wait4`'s rusage of the job's process
/// and the descendants it waited for; a simulated worker reports a fraction of the
/// request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunUsage {
    /// User plus system CPU time.
    pub cpu_ms: u64,
    /// The largest resident set size.
    pub peak_rss_mb: u64,
}

/// Used against requested over a run, in percent (100: all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Efficiency {
    /// CPU time over (requested cores x run time).
    pub cpu_percent: u32,
    /// Peak memory over requested memory.
    pub memory_percent: u32,
}

/// A ratio in whole percent (to the nearest), capped at [`MAX_PERCENT`]; `None` when
/// nothing was asked.
fn percent(used: u128, requested: u128) -> Option<u32> {
    if requested == 0 {
        return None;
    }
    let value = (used.saturating_mul(100) + requested / 2) / requested;
    Some(u32::try_from(value.min(u128::from(MAX_PERCENT))).unwrap_or(MAX_PERCENT))
}

/// Ratios above this count as this (a job may use more CPU than it asked for).
pub const MAX_PERCENT: u32 = 1_000;

impl RunUsage {
    /// How much of its request a run of `run_ms` used (`None` for an empty run or request).
    pub fn efficiency(&self, requested: Resources, run_ms: u64) -> Option<Efficiency> {
        let cpu_capacity_ms =
            u128::from(requested.cpu_m).saturating_mul(u128::from(run_ms)) / 1_000;
        Some(Efficiency {
            cpu_percent: percent(u128::from(self.cpu_ms), cpu_capacity_ms)?,
            memory_percent: percent(
                u128::from(self.peak_rss_mb),
                u128::from(requested.memory_mb),
            )?,
        })
    }

    /// What a simulated run of `run_ms` at `used_percent` of its request reports.
    pub fn simulated(requested: Resources, run_ms: u64, used_percent: u32) -> Self {
        let share = |amount: u128| {
            u64::try_from(amount.saturating_mul(u128::from(used_percent)) / 100).unwrap_or(u64::MAX)
        };
        Self {
            cpu_ms: share(u128::from(requested.cpu_m).saturating_mul(u128::from(run_ms)) / 1_000),
            peak_rss_mb: share(u128::from(requested.memory_mb)),
        }
    }
}

/// The runs of one tenant on one day that reported their usage: how many, what they
/// requested, and how their usage spread (counts per whole percent of the request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageStats {
    pub runs: u64,
    /// Σ requested millicores x run ms (the CPU time they asked for, in m·ms).
    pub requested_cpu_m_ms: u128,
    /// Σ CPU time used, ms.
    pub used_cpu_ms: u128,
    /// Σ requested millicores, over runs (their mean request is this / runs).
    pub requested_cpu_m: u128,
    /// Σ requested MiB.
    pub requested_memory_mb: u128,
    /// Runs per CPU percent of request (sparse).
    pub cpu_percent_counts: BTreeMap<u32, u64>,
    /// Runs per memory percent of request (sparse).
    pub memory_percent_counts: BTreeMap<u32, u64>,
}

impl UsageStats {
    /// Counts a run that used `usage` of `requested` over `run_ms`.
    pub fn record(&mut self, requested: Resources, run_ms: u64, usage: RunUsage) {
        let Some(efficiency) = usage.efficiency(requested, run_ms) else {
            return;
        };
        self.runs = self.runs.saturating_add(1);
        self.requested_cpu_m_ms = self
            .requested_cpu_m_ms
            .saturating_add(u128::from(requested.cpu_m).saturating_mul(u128::from(run_ms)));
        self.used_cpu_ms = self.used_cpu_ms.saturating_add(u128::from(usage.cpu_ms));
        self.requested_cpu_m = self
            .requested_cpu_m
            .saturating_add(u128::from(requested.cpu_m));
        self.requested_memory_mb = self
            .requested_memory_mb
            .saturating_add(u128::from(requested.memory_mb));
        *self
            .cpu_percent_counts
            .entry(efficiency.cpu_percent)
            .or_default() += 1;
        *self
            .memory_percent_counts
            .entry(efficiency.memory_percent)
            .or_default() += 1;
    }

    pub fn merge(&mut self, other: &UsageStats) {
        self.runs = self.runs.saturating_add(other.runs);
        self.requested_cpu_m_ms = self
            .requested_cpu_m_ms
            .saturating_add(other.requested_cpu_m_ms);
        self.used_cpu_ms = self.used_cpu_ms.saturating_add(other.used_cpu_ms);
        self.requested_cpu_m = self.requested_cpu_m.saturating_add(other.requested_cpu_m);
        self.requested_memory_mb = self
            .requested_memory_mb
            .saturating_add(other.requested_memory_mb);
        for (percent, count) in &other.cpu_percent_counts {
            *self.cpu_percent_counts.entry(*percent).or_default() += count;
        }
        for (percent, count) in &other.memory_percent_counts {
            *self.memory_percent_counts.entry(*percent).or_default() += count;
        }
    }

    /// The 95th percentile of the runs' CPU use, in percent of their request.
    pub fn cpu_p95_percent(&self) -> Option<u32> {
        quantile(&self.cpu_percent_counts, 95)
    }

    pub fn memory_p95_percent(&self) -> Option<u32> {
        quantile(&self.memory_percent_counts, 95)
    }

    /// The runs' mean CPU request, millicores.
    pub fn mean_cpu_m(&self) -> u64 {
        u64::try_from(self.requested_cpu_m / u128::from(self.runs.max(1))).unwrap_or(u64::MAX)
    }

    pub fn mean_memory_mb(&self) -> u64 {
        u64::try_from(self.requested_memory_mb / u128::from(self.runs.max(1))).unwrap_or(u64::MAX)
    }
}

/// The smallest value with at least `percentile` % of the counts at or below it.
fn quantile(counts: &BTreeMap<u32, u64>, percentile: u64) -> Option<u32> {
    let total: u64 = counts.values().sum();
    if total == 0 {
        return None;
    }
    let needed = (u128::from(total) * u128::from(percentile)).div_ceil(100);
    let mut seen: u128 = 0;
    for (value, count) in counts {
        seen += u128::from(*count);
        if seen >= needed {
            return Some(*value);
        }
    }
    counts.keys().next_back().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(cpu_m: u64, memory_mb: u64) -> Resources {
        Resources {
            cpu_m,
            memory_mb,
            gpu: 0,
        }
    }

    #[test]
    fn efficiency_is_used_over_requested() {
        let usage = RunUsage {
            cpu_ms: 2_000,
            peak_rss_mb: 256,
        };
        // 4 cores for 10 s asked for 40 s of CPU; 2 s used is 5 %.
        let efficiency = usage.efficiency(resources(4_000, 1_024), 10_000).unwrap();
        assert_eq!(efficiency.cpu_percent, 5);
        assert_eq!(efficiency.memory_percent, 25);
        assert_eq!(usage.efficiency(resources(0, 1_024), 10_000), None);
        assert_eq!(usage.efficiency(resources(4_000, 1_024), 0), None);
    }

    #[test]
    fn a_simulated_run_reports_its_fraction() {
        let usage = RunUsage::simulated(resources(4_000, 1_000), 10_000, 5);
        assert_eq!(usage.cpu_ms, 2_000);
        assert_eq!(usage.peak_rss_mb, 50);
        let efficiency = usage.efficiency(resources(4_000, 1_000), 10_000).unwrap();
        assert_eq!((efficiency.cpu_percent, efficiency.memory_percent), (5, 5));
    }

    #[test]
    fn the_p95_is_the_value_95_percent_of_runs_stay_under() {
        let mut stats = UsageStats::default();
        for index in 0..100u64 {
            // 95 runs at 5 %, 5 at 80 %.
            let used = if index < 95 { 200 } else { 3_200 };
            stats.record(
                resources(4_000, 1_000),
                1_000,
                RunUsage {
                    cpu_ms: used,
                    peak_rss_mb: 100,
                },
            );
        }
        assert_eq!(stats.cpu_p95_percent(), Some(5));
        assert_eq!(stats.memory_p95_percent(), Some(10));
        assert_eq!(stats.mean_cpu_m(), 4_000);
        let mut twice = stats.clone();
        twice.merge(&stats);
        assert_eq!(twice.runs, 200);
        assert_eq!(twice.cpu_p95_percent(), Some(5));
    }
}
