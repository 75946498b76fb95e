//! Latency statistics for the measurement commands.

use std::time::Duration;

/// Percentiles of a set of samples, by the nearest-rank method.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

/// The nearest-rank `percentile` (0-100) of sorted samples.
pub fn percentile(sorted: &[Duration], percentile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    Summary {
        count: samples.len(),
        p50: percentile(&samples, 50.0),
        p95: percentile(&samples, 95.0),
        p99: percentile(&samples, 99.0),
        max: samples.last().copied().unwrap_or(Duration::ZERO),
        mean: if samples.is_empty() {
            Duration::ZERO
        } else {
            total / samples.len() as u32
        },
    }
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred() {
        let summary = summarize(ms((1..=100).rev()));
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p95, Duration::from_millis(95));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
        assert_eq!(summary.mean, Duration::from_micros(50_500));
    }

    #[test]
    fn percentiles_of_few_samples_are_real_samples() {
        let summary = summarize(ms([10, 30]));
        assert_eq!(summary.p50, Duration::from_millis(10));
        assert_eq!(summary.p99, Duration::from_millis(30));
        assert_eq!(summarize(Vec::new()).count, 0);
    }
}
