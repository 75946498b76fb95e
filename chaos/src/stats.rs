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

/// The cumulative buckets (upper bound in seconds, count) of a Prometheus histogram in a
/// text exposition, summed over the series whose labels contain every `label="value"`
/// given.
pub fn histogram_buckets(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((series, value)) = rest.split_once("} ") else {
            continue;
        };
        if !labels
            .iter()
            .all(|(key, wanted)| series.contains(&format!("{key}=\"{wanted}\"")))
        {
            continue;
        }
        let Some(bound) = series
            .split(',')
            .find_map(|pair| pair.strip_prefix("le=\""))
            .map(|raw| raw.trim_end_matches('"'))
        else {
            continue;
        };
        let bound = if bound == "+Inf" {
            f64::INFINITY
        } else {
            match bound.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            }
        };
        let Ok(count) = value.split_whitespace().next().unwrap_or("").parse::<f64>() else {
            continue;
        };
        match buckets.iter_mut().find(|(known, _)| *known == bound) {
            Some((_, total)) => *total += count,
            None => buckets.push((bound, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// `after - before`, bucket by bucket: the observations made between two scrapes.
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(known, _)| known == bound)
                .map(|(_, count)| *count)
                .unwrap_or(0.0);
            (*bound, (count - earlier).max(0.0))
        })
        .collect()
}

/// The `q` quantile (0-1) of cumulative buckets, interpolated linearly inside the bucket it
/// falls in, as Prometheus' `histogram_quantile` does; `None` without observations. A
/// quantile in the `+Inf` bucket is the highest finite bound.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (bound, count) in buckets {
        if *count >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let fraction = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (bound - lower) * fraction);
        }
        lower = *bound;
        below = *count;
    }
    Some(lower)
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

    #[test]
    fn histogram_quantiles_interpolate_inside_their_bucket() {
        // 100 observations spread evenly over 0-100 ms, in buckets of 10 ms.
        let buckets: Vec<(f64, f64)> = (1..=10)
            .map(|step| (f64::from(step) * 0.01, f64::from(step) * 10.0))
            .chain([(f64::INFINITY, 100.0)])
            .collect();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(histogram_quantile(0.5, &buckets).unwrap(), 0.05));
        assert!(close(histogram_quantile(0.95, &buckets).unwrap(), 0.095));
        assert!(close(histogram_quantile(0.99, &buckets).unwrap(), 0.099));
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        // Past the last finite bound: the bound itself.
        let tail = [(0.1, 50.0), (f64::INFINITY, 100.0)];
        assert_eq!(histogram_quantile(0.99, &tail), Some(0.1));
    }

    #[test]
    fn histogram_buckets_are_summed_over_nodes_and_differenced_between_scrapes() {
        let node = |low: u64, high: u64| {
            format!(
                "# TYPE x histogram\n\
                 x_bucket{{queue=\"a\",le=\"0.01\"}} {low}\n\
                 x_bucket{{queue=\"a\",le=\"+Inf\"}} {high}\n\
                 x_bucket{{queue=\"b\",le=\"0.01\"}} 1000\n\
                 x_bucket{{queue=\"b\",le=\"+Inf\"}} 1000\n\
                 x_sum{{queue=\"a\"}} 3\n"
            )
        };
        let before = histogram_buckets(
            &format!("{}{}", node(1, 2), node(0, 0)),
            "x",
            &[("queue", "a")],
        );
        assert_eq!(before, vec![(0.01, 1.0), (f64::INFINITY, 2.0)]);
        let after = histogram_buckets(
            &format!("{}{}", node(5, 8), node(2, 2)),
            "x",
            &[("queue", "a")],
        );
        assert_eq!(after, vec![(0.01, 7.0), (f64::INFINITY, 10.0)]);
        assert_eq!(
            bucket_delta(&before, &after),
            vec![(0.01, 6.0), (f64::INFINITY, 8.0)]
        );
    }
}
