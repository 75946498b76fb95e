//! Historical metrics (US-09.5.4): every node samples, every 10 s, gauges derived from the
//! replicated state (so any node, a new leader included, answers the same history) into a
//! local sled keyspace, at three resolutions: 10 s points kept a day, 1-minute averages
//! kept a week, 1-hour averages kept `cost_tracking.retention_days`. Not replicated: each
//! node keeps its own samples of the same state.
//!
//! A point's key is `<resolution digit><time, 20 digits>\0<series>`, its value the f64's
//! bytes; a series is `metric{label=value,...}` with its labels in order (label values are
//! ids: slugs, with none of `{},=`). Time first: a window is one range scan, and retention
//! one range delete per resolution.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use hodei_cluster::{Keyspace, WriteBatch};
use tracing::warn;

use crate::actors::{NodeContext, now_ms};
use crate::state::HodeiState;

/// How often a node samples.
pub const SAMPLE_INTERVAL_MS: u64 = 10_000;
const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// The metrics kept, each with what it is.
pub const METRICS: [(&str, &str); 6] = [
    ("hodei_jobs", "jobs pending or running, by queue and state"),
    ("hodei_workers_live", "live workers, by pool"),
    (
        "hodei_pool_utilization_ratio",
        "CPU held over the live workers' capacity, by pool",
    ),
    (
        "hodei_tenant_running_cpu_m",
        "CPU millicores a tenant's running jobs hold, by tenant",
    ),
    (
        "hodei_cost_nanodollars",
        "what runs billed so far, by tenant (running ones up to now)",
    ),
    (
        "hodei_tenant_budget_used_ratio",
        "a tenant's spending today over its daily budget, by tenant",
    ),
];

/// One sampled value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    fn series(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        format!("{}{{{}}}", self.metric, labels.join(","))
    }
}

/// What the state says now, as samples.
pub fn sample(state: &HodeiState, now: u64) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut jobs: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for ((queue, _, job_state), count) in state.job_tally() {
        if matches!(
            job_state,
            hodei_domain::job::JobState::Pending | hodei_domain::job::JobState::Running
        ) {
            *jobs.entry((queue.clone(), job_state.as_str())).or_default() += count;
        }
    }
    for ((queue, job_state), count) in jobs {
        samples.push(Sample {
            metric: "hodei_jobs",
            labels: vec![("queue", queue), ("state", job_state.to_string())],
            value: count as f64,
        });
    }
    let mut pools: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for pool in state.pools() {
        pools.entry(pool.id.clone()).or_default();
    }
    for worker in state.workers().filter(|worker| worker.is_live()) {
        let entry = pools.entry(worker.pool.clone()).or_default();
        entry.0 += 1;
        entry.1 += worker.used.cpu_m;
        entry.2 += worker.capacity.cpu_m;
    }
    for (pool, (live, used, capacity)) in pools {
        samples.push(Sample {
            metric: "hodei_workers_live",
            labels: vec![("pool", pool.clone())],
            value: live as f64,
        });
        samples.push(Sample {
            metric: "hodei_pool_utilization_ratio",
            labels: vec![("pool", pool)],
            value: if capacity == 0 {
                0.0
            } else {
                used as f64 / capacity as f64
            },
        });
    }
    for tenant in state.tenant_ids() {
        samples.push(Sample {
            metric: "hodei_tenant_running_cpu_m",
            labels: vec![("tenant", tenant.to_string())],
            value: state.usage(&tenant).running.cpu_m as f64,
        });
        if let Some(budget) = crate::actors::gateway_limits::budget_view(state, &tenant, now) {
            samples.push(Sample {
                metric: "hodei_tenant_budget_used_ratio",
                labels: vec![("tenant", tenant.to_string())],
                value: budget.used_ratio,
            });
        }
    }
    let billed = state.billed_counters(now);
    let mut by_tenant: BTreeMap<String, u64> = BTreeMap::new();
    for ((tenant, _), nanos) in billed {
        *by_tenant.entry(tenant).or_default() += nanos;
    }
    for (tenant, nanos) in by_tenant {
        samples.push(Sample {
            metric: "hodei_cost_nanodollars",
            labels: vec![("tenant", tenant)],
            value: nanos as f64,
        });
    }
    samples
}

/// The three resolutions: (digit, step, how long kept).
fn resolutions(retention: Duration) -> [(u8, u64, u64); 3] {
    [
        (b'0', SAMPLE_INTERVAL_MS, DAY_MS),
        (b'1', MINUTE_MS, 7 * DAY_MS),
        (
            b'2',
            HOUR_MS,
            // Hours are kept at least as long as minutes.
            u64::try_from(retention.as_millis())
                .unwrap_or(u64::MAX)
                .max(7 * DAY_MS),
        ),
    ]
}

/// The most stale points one sweep deletes (the next sweep goes on).
const MAX_SWEEP: usize = 100_000;
/// The most stored points one query reads.
pub const MAX_SCANNED: usize = 2_000_000;

fn key(resolution: u8, series: &str, at_ms: u64) -> Vec<u8> {
    let mut key = time_key(resolution, at_ms);
    key.push(0);
    key.extend_from_slice(series.as_bytes());
    key
}

/// Where the points of `resolution` at `at_ms` begin.
fn time_key(resolution: u8, at_ms: u64) -> Vec<u8> {
    let mut key = vec![resolution];
    key.extend_from_slice(format!("{at_ms:020}").as_bytes());
    key
}

/// A series' running sum for the minute or hour going on.
#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    start_ms: u64,
    sum: f64,
    count: u64,
}

/// The sampler's memory: each series' current minute and hour.
#[derive(Default)]
struct Accumulators {
    buckets: BTreeMap<(u8, String), Bucket>,
}

impl Accumulators {
    /// Writes and forgets the buckets of series no longer sampled (a deleted pool, queue or
    /// tenant): untouched for two steps.
    fn evict(&mut self, at_ms: u64, writes: &mut WriteBatch) {
        self.buckets.retain(|(resolution, series), bucket| {
            let step = if *resolution == b'1' {
                MINUTE_MS
            } else {
                HOUR_MS
            };
            if bucket.start_ms.saturating_add(2 * step) > at_ms {
                return true;
            }
            if bucket.count > 0 {
                let average = bucket.sum / bucket.count as f64;
                writes.put(
                    key(*resolution, series, bucket.start_ms),
                    average.to_be_bytes().to_vec(),
                );
            }
            false
        });
    }

    /// Adds a sample; when its bucket rolled over, the finished bucket's average goes to
    /// `writes`.
    fn add(
        &mut self,
        resolution: u8,
        step: u64,
        series: &str,
        at_ms: u64,
        value: f64,
        writes: &mut WriteBatch,
    ) {
        let start_ms = at_ms / step * step;
        let bucket = self
            .buckets
            .entry((resolution, series.to_string()))
            .or_insert(Bucket {
                start_ms,
                sum: 0.0,
                count: 0,
            });
        if bucket.start_ms != start_ms {
            if bucket.count > 0 {
                let average = bucket.sum / bucket.count as f64;
                writes.put(
                    key(resolution, series, bucket.start_ms),
                    average.to_be_bytes().to_vec(),
                );
            }
            *bucket = Bucket {
                start_ms,
                sum: 0.0,
                count: 0,
            };
        }
        bucket.sum += value;
        bucket.count += 1;
    }
}

/// Samples every [`SAMPLE_INTERVAL_MS`] into `store`, and drops what is past its
/// resolution's retention once a minute. The sampling, writing and sweeping run on a
/// blocking thread (sled's I/O and the state's lock).
pub async fn run(
    node: NodeContext,
    store: Arc<dyn Keyspace>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(SAMPLE_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let accumulators = Arc::new(std::sync::Mutex::new(Accumulators::default()));
    let resolutions = resolutions(node.limits.retention.cost_ledger);
    let last_sweep = Arc::new(std::sync::atomic::AtomicU64::new(0));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
        let (node, store, accumulators, last_sweep) = (
            node.clone(),
            store.clone(),
            accumulators.clone(),
            last_sweep.clone(),
        );
        let done = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            // Aligned to the 10 s grid: points of every node fall on the same instants.
            let at = now / SAMPLE_INTERVAL_MS * SAMPLE_INTERVAL_MS;
            let samples = node.read(|state| sample(state, now));
            let mut writes = WriteBatch::new();
            let mut accumulators = accumulators
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for found in &samples {
                let series = found.series();
                writes.put(key(b'0', &series, at), found.value.to_be_bytes().to_vec());
                for (resolution, step, _) in &resolutions[1..] {
                    accumulators.add(*resolution, *step, &series, at, found.value, &mut writes);
                }
            }
            accumulators.evict(at, &mut writes);
            let previous = last_sweep.load(std::sync::atomic::Ordering::Relaxed);
            if now.saturating_sub(previous) >= MINUTE_MS {
                last_sweep.store(now, std::sync::atomic::Ordering::Relaxed);
                for (resolution, _, keep) in resolutions {
                    let stale = store.range(
                        Bound::Included(time_key(resolution, 0)),
                        Bound::Excluded(time_key(resolution, now.saturating_sub(keep))),
                        MAX_SWEEP,
                    );
                    for (old, _) in stale.unwrap_or_default() {
                        writes.delete(old);
                    }
                }
            }
            store.write(writes)
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "historical metrics could not be written"),
            Err(error) => warn!(%error, "the historical metrics sampler failed"),
        }
    }
}

/// One series' points.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    pub labels: BTreeMap<String, String>,
    /// (aligned time, average of the points in [time, time + step)).
    pub points: Vec<(u64, f64)>,
}

/// The stored step a query of `step_ms` reads: the coarsest that divides it.
pub fn resolution_of(step_ms: u64) -> (u8, u64) {
    if step_ms.is_multiple_of(HOUR_MS) {
        (b'2', HOUR_MS)
    } else if step_ms.is_multiple_of(MINUTE_MS) {
        (b'1', MINUTE_MS)
    } else {
        (b'0', SAMPLE_INTERVAL_MS)
    }
}

/// The points of `metric`'s series whose labels include `labels`, over [from_ms, to_ms),
/// averaged per `step_ms` (aligned: each time a multiple of the step), read from the
/// coarsest stored resolution whose step divides `step_ms`. `Err` when the window holds
/// more than [`MAX_SCANNED`] stored points (of every metric).
pub fn query(
    store: &dyn Keyspace,
    metric: &str,
    labels: &BTreeMap<String, String>,
    from_ms: u64,
    to_ms: u64,
    step_ms: u64,
) -> Result<Vec<SeriesPoints>, usize> {
    let (resolution, _) = resolution_of(step_ms);
    let stored = store
        .range(
            Bound::Included(time_key(resolution, from_ms)),
            Bound::Excluded(time_key(resolution, to_ms)),
            MAX_SCANNED + 1,
        )
        .unwrap_or_default();
    if stored.len() > MAX_SCANNED {
        return Err(MAX_SCANNED);
    }
    let wanted = format!("{metric}{{");
    let mut series: BTreeMap<String, BTreeMap<u64, (f64, u64)>> = BTreeMap::new();
    for (stored_key, value) in stored {
        // <resolution><20 digits>\0<series>
        let Some(name) = stored_key
            .get(22..)
            .and_then(|name| std::str::from_utf8(name).ok())
        else {
            continue;
        };
        if !name.starts_with(&wanted) {
            continue;
        }
        let Some(at) = stored_key
            .get(1..21)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|text| text.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(value.as_slice()) else {
            continue;
        };
        let bucket = series
            .entry(name.to_string())
            .or_default()
            .entry(at / step_ms * step_ms)
            .or_default();
        bucket.0 += f64::from_be_bytes(bytes);
        bucket.1 += 1;
    }
    Ok(series
        .into_iter()
        .filter_map(|(name, points)| {
            let inner = name
                .strip_prefix(metric)?
                .strip_prefix('{')?
                .strip_suffix('}')?;
            let found: BTreeMap<String, String> = inner
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            labels
                .iter()
                .all(|(name, value)| found.get(name) == Some(value))
                .then(|| SeriesPoints {
                    labels: found,
                    points: points
                        .into_iter()
                        .map(|(at, (sum, count))| (at, sum / count as f64))
                        .collect(),
                })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_averaged_per_aligned_step_and_filtered_by_label() {
        let storage = hodei_cluster::SledStorage::temporary().unwrap();
        let store = hodei_cluster::Storage::keyspace(&storage, "metrics_history").unwrap();
        let mut writes = WriteBatch::new();
        for (index, at) in (0..12u64).map(|index| (index, 1_000_000 + index * SAMPLE_INTERVAL_MS)) {
            for (queue, value) in [("a", index as f64), ("b", 100.0)] {
                let found = Sample {
                    metric: "hodei_jobs",
                    labels: vec![
                        ("queue", queue.to_string()),
                        ("state", "pending".to_string()),
                    ],
                    value,
                };
                writes.put(
                    key(b'0', &found.series(), at),
                    found.value.to_be_bytes().to_vec(),
                );
            }
        }
        store.write(writes).unwrap();
        let only_a = BTreeMap::from([("queue".to_string(), "a".to_string())]);
        let found = query(
            store.as_ref(),
            "hodei_jobs",
            &only_a,
            0,
            u64::MAX / 2,
            30_000,
        )
        .unwrap();
        assert_eq!(found.len(), 1);
        let points = &found[0].points;
        assert!(points.iter().all(|(at, _)| at % 30_000 == 0), "{points:?}");
        // 1,000,000 is in the 30 s bucket starting at 990,000: samples 0 (at 1,000,000) and
        // 1 (at 1,010,000); the next bucket, 1,020,000, holds samples 2, 3 and 4.
        assert_eq!(points[0], (990_000, 0.5));
        assert_eq!(points[1], (1_020_000, 3.0));
        let all = query(
            store.as_ref(),
            "hodei_jobs",
            &BTreeMap::new(),
            0,
            u64::MAX,
            10_000,
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert!(
            query(store.as_ref(), "hodei_jobs", &only_a, 0, 1_000_000, 10_000)
                .unwrap()
                .is_empty()
        );
        // Another metric whose name starts the same is not mixed in.
        assert!(
            query(
                store.as_ref(),
                "hodei_job",
                &BTreeMap::new(),
                0,
                u64::MAX / 2,
                10_000
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn a_rolled_over_minute_writes_its_average() {
        let mut accumulators = Accumulators::default();
        let mut writes = WriteBatch::new();
        for (at, value) in [(0, 1.0), (10_000, 3.0), (60_000, 7.0)] {
            accumulators.add(b'1', MINUTE_MS, "m{}", at, value, &mut writes);
        }
        assert_eq!(writes.len(), 1, "the first minute, once the second began");
    }
}
