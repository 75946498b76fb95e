//! What the fair-share report reads, kept by apply: the resources each tenant held over
//! time, per (queue, pool, tenant), and when each tenant last had a job waiting in a
//! queue. A report over a window reads a few sums per second of the window, never the
//! jobs, so it costs the same with ten jobs or a million and holds the state lock for
//! microseconds.
//!
//! Held resources are a step function of time: a run adds its resources when it is
//! assigned and takes them away when it ends. Its integral up to `t` is
//! `t * R(t) - A(t)`, where `R(t)` is the sum of the changes made at or before `t` and
//! `A(t)` the sum of each change times its time. Changes are summed per second, so the
//! integral between two times is exact to the second at which the window starts.

use std::collections::BTreeMap;

use hodei_domain::job::{Job, JobState};
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantId;

const BUCKET_MS: u64 = 1_000;

/// Per resource dimension (cpu_m, memory_mb, gpu): the sum of the changes and the sum of
/// each change times its time in ms.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sums {
    rate: [i128; 3],
    timed: [i128; 3],
}

impl Sums {
    fn add(&mut self, resources: Resources, sign: i128, at_ms: u64) {
        let amounts = [resources.cpu_m, resources.memory_mb, resources.gpu];
        for (dimension, amount) in amounts.into_iter().enumerate() {
            let change = sign * i128::from(amount);
            self.rate[dimension] += change;
            self.timed[dimension] += change * i128::from(at_ms);
        }
    }

    fn minus(mut self, other: &Sums) -> Sums {
        for dimension in 0..3 {
            self.rate[dimension] -= other.rate[dimension];
            self.timed[dimension] -= other.timed[dimension];
        }
        self
    }

    /// The integral up to `at_ms` of the changes summed here (all made at or before it).
    fn integral_at(&self, at_ms: u64) -> [i128; 3] {
        let mut integral = [0; 3];
        for (dimension, value) in integral.iter_mut().enumerate() {
            *value = i128::from(at_ms) * self.rate[dimension] - self.timed[dimension];
        }
        integral
    }
}

/// The held resources of one (queue, pool, tenant) over time.
#[derive(Debug, Default)]
struct Series {
    /// Every change ever made.
    total: Sums,
    /// The changes of the last seconds (up to the horizon), by second.
    recent: BTreeMap<u64, Sums>,
    /// The newest change's time: buckets older than it by more than the horizon go.
    newest_ms: u64,
    /// Runs holding resources now.
    held_runs: u64,
}

impl Series {
    fn change(&mut self, resources: Resources, sign: i128, at_ms: u64, horizon_ms: u64) {
        self.total.add(resources, sign, at_ms);
        self.newest_ms = self.newest_ms.max(at_ms);
        let cutoff = self.newest_ms.saturating_sub(horizon_ms) / BUCKET_MS;
        let bucket = at_ms / BUCKET_MS;
        if bucket >= cutoff {
            self.recent
                .entry(bucket)
                .or_default()
                .add(resources, sign, at_ms);
        }
        while let Some(entry) = self.recent.first_entry() {
            if *entry.key() >= cutoff {
                break;
            }
            entry.remove();
        }
    }

    /// The changes made at or after the start of second `second`.
    fn since_second(&self, second: u64) -> Sums {
        self.recent
            .range(second..)
            .fold(Sums::default(), |mut sum, (_, bucket)| {
                for dimension in 0..3 {
                    sum.rate[dimension] += bucket.rate[dimension];
                    sum.timed[dimension] += bucket.timed[dimension];
                }
                sum
            })
    }

    /// Resource time held over [from, to] per dimension (unit x ms), `from` taken at the
    /// start of its second.
    fn held_within(&self, from_ms: u64, to_ms: u64) -> [u128; 3] {
        let from_second = from_ms / BUCKET_MS;
        let until_from = self.total.minus(&self.since_second(from_second));
        let until_to = self.total.minus(&self.since_second(to_ms / BUCKET_MS + 1));
        let start = until_from.integral_at(from_second * BUCKET_MS);
        let end = until_to.integral_at(to_ms);
        let mut held = [0; 3];
        for dimension in 0..3 {
            held[dimension] = u128::try_from(end[dimension] - start[dimension]).unwrap_or(0);
        }
        held
    }
}

/// The key of a series: (queue of the jobs, pool they ran in, tenant).
type SeriesKey = (String, String, TenantId);

/// Held resource time and backlog times, per queue, pool and tenant (derived from the
/// jobs; rebuilt with the other indexes).
#[derive(Debug)]
pub struct ShareLedger {
    series: BTreeMap<SeriesKey, Series>,
    /// (queue, tenant) -> the last time one of its jobs in the queue left pending.
    left_pending: BTreeMap<(String, TenantId), u64>,
    /// How far back a window may reach (`retention.finished_in_memory_s`, the longest
    /// fair-share window, and a minute of margin).
    horizon_ms: u64,
}

impl Default for ShareLedger {
    fn default() -> Self {
        Self {
            series: BTreeMap::new(),
            left_pending: BTreeMap::new(),
            horizon_ms: 360_000,
        }
    }
}

/// One tenant's lines in a window of one queue.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TenantHeld {
    /// Resource time held in the queue's pools or by the queue's jobs, per dimension
    /// (cpu_m x ms, memory_mb x ms, gpu x ms).
    pub held: [u128; 3],
    /// Runs of the tenant holding resources in the queue's pools now.
    pub running: u64,
    /// When a job of the tenant last left the queue's pending list.
    pub left_pending_ms: Option<u64>,
}

impl ShareLedger {
    pub fn set_horizon(&mut self, horizon_ms: u64) {
        self.horizon_ms = horizon_ms;
    }

    pub fn clear(&mut self) {
        self.series.clear();
        self.left_pending.clear();
    }

    /// A run of `tenant`'s job in `queue` began holding `resources` in `pool`.
    pub fn hold(&mut self, key: SeriesKey, resources: Resources, at_ms: u64) {
        let horizon = self.horizon_ms;
        let series = self.series.entry(key).or_default();
        series.held_runs += 1;
        series.change(resources, 1, at_ms, horizon);
    }

    /// That run ended (or went back to pending).
    pub fn release(&mut self, key: SeriesKey, resources: Resources, at_ms: u64) {
        let horizon = self.horizon_ms;
        let series = self.series.entry(key).or_default();
        series.held_runs = series.held_runs.saturating_sub(1);
        series.change(resources, -1, at_ms, horizon);
    }

    /// A job of `tenant` left `queue`'s pending list at `at_ms`.
    pub fn left_pending(&mut self, queue: &str, tenant: &TenantId, at_ms: u64) {
        let last = self
            .left_pending
            .entry((queue.to_string(), tenant.clone()))
            .or_default();
        *last = (*last).max(at_ms);
    }

    /// A run that ended back in pending (its worker was lost) moves from its pool to the
    /// pool-less series of its queue: a job keeps the pool of its last run only, so a
    /// replay could not tell which pool an earlier run held, and both ways of building
    /// the ledger must agree. Such a run still counts for its own queue, not for other
    /// queues over the same pool.
    pub fn requeued(&mut self, key: SeriesKey, resources: Resources, start_ms: u64, end_ms: u64) {
        let horizon = self.horizon_ms;
        let unknown = (key.0.clone(), String::new(), key.2.clone());
        if key == unknown {
            return;
        }
        let from = self.series.entry(key).or_default();
        from.change(resources, -1, start_ms, horizon);
        from.change(resources, 1, end_ms, horizon);
        let to = self.series.entry(unknown).or_default();
        to.change(resources, 1, start_ms, horizon);
        to.change(resources, -1, end_ms, horizon);
    }

    /// Adds everything a loaded job's transitions say: each run from its assignment to
    /// the step that ended it (in the job's pool, or pool-less when it ended back in
    /// pending: see [`ShareLedger::requeued`]), and each time it left pending.
    pub fn replay(&mut self, job: &Job) {
        let pool = job.pool.clone().unwrap_or_default();
        let key = (job.spec.queue.clone(), pool, job.spec.tenant.clone());
        let mut previous: Option<JobState> = None;
        let mut held_since: Option<u64> = None;
        for step in &job.transitions {
            let was_held = matches!(previous, Some(JobState::Assigned | JobState::Running));
            let is_held = matches!(step.state, JobState::Assigned | JobState::Running);
            if was_held && !is_held {
                self.release(key.clone(), job.spec.resources, step.at_ms);
                if step.state == JobState::Pending
                    && let Some(start) = held_since
                {
                    self.requeued(key.clone(), job.spec.resources, start, step.at_ms);
                }
                held_since = None;
            }
            if !was_held && is_held {
                self.hold(key.clone(), job.spec.resources, step.at_ms);
                held_since = Some(step.at_ms);
            }
            if previous == Some(JobState::Pending) && step.state != JobState::Pending {
                self.left_pending(&job.spec.queue, &job.spec.tenant, step.at_ms);
            }
            previous = Some(step.state);
        }
    }

    /// Each tenant's lines over [from, to] for the queue `queue` dispatching to `pools`:
    /// resource time of its jobs of the queue or in the pools, runs in the pools now, and
    /// the last time it left the queue's pending list.
    pub fn window(
        &self,
        queue: &str,
        pools: &[String],
        from_ms: u64,
        to_ms: u64,
    ) -> BTreeMap<TenantId, TenantHeld> {
        let mut tenants: BTreeMap<TenantId, TenantHeld> = BTreeMap::new();
        for ((of_queue, pool, tenant), series) in &self.series {
            let in_pools = pools.iter().any(|candidate| candidate == pool);
            if of_queue != queue && !in_pools {
                continue;
            }
            let held = series.held_within(from_ms, to_ms);
            let running = if in_pools { series.held_runs } else { 0 };
            // A series with nothing in the window (say, a run moved to the pool-less
            // series) makes no line: both ways of building the ledger then agree.
            if running == 0 && held == [0; 3] {
                continue;
            }
            let lines = tenants.entry(tenant.clone()).or_default();
            lines.running += running;
            for (total, part) in lines.held.iter_mut().zip(held) {
                *total += part;
            }
        }
        for ((of_queue, tenant), at_ms) in &self.left_pending {
            if of_queue == queue {
                tenants.entry(tenant.clone()).or_default().left_pending_ms = Some(*at_ms);
            }
        }
        tenants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(cpu_m: u64) -> Resources {
        Resources {
            cpu_m,
            ..Resources::ZERO
        }
    }

    fn key(tenant: &str) -> SeriesKey {
        (
            "q".to_string(),
            "p".to_string(),
            TenantId::parse(tenant).unwrap(),
        )
    }

    fn held_cpu(ledger: &ShareLedger, tenant: &str, from_ms: u64, to_ms: u64) -> u128 {
        ledger
            .window("q", &["p".to_string()], from_ms, to_ms)
            .get(&TenantId::parse(tenant).unwrap())
            .map(|lines| lines.held[0])
            .unwrap_or_default()
    }

    #[test]
    fn a_run_counts_only_its_part_inside_the_window() {
        let mut ledger = ShareLedger::default();
        ledger.hold(key("a"), cpu(1_000), 10_000);
        ledger.release(key("a"), cpu(1_000), 20_000);
        // Wholly inside, wholly outside, and cut by either edge.
        assert_eq!(held_cpu(&ledger, "a", 0, 30_000), 1_000 * 10_000);
        assert_eq!(held_cpu(&ledger, "a", 21_000, 30_000), 0);
        assert_eq!(held_cpu(&ledger, "a", 15_000, 30_000), 1_000 * 5_000);
        assert_eq!(held_cpu(&ledger, "a", 0, 12_000), 1_000 * 2_000);
        // A run still going counts up to the window's end.
        ledger.hold(key("a"), cpu(500), 25_000);
        assert_eq!(held_cpu(&ledger, "a", 22_000, 30_000), 500 * 5_000);
        // Seen from the queue alone (the pool not among its pools), over a window where
        // nothing was held: no line.
        assert!(ledger.window("q", &[], 0, 1).is_empty());
        assert_eq!(
            ledger.window("q", &[], 0, 30_000)[&TenantId::parse("a").unwrap()].running,
            0
        );
        assert_eq!(
            ledger.window("q", &["p".to_string()], 0, 1)[&TenantId::parse("a").unwrap()].running,
            1
        );
    }

    #[test]
    fn the_order_changes_arrive_in_does_not_matter() {
        // A rebuild replays jobs in id order, not in time order.
        let mut in_order = ShareLedger::default();
        let mut shuffled = ShareLedger::default();
        let runs = [
            (1_000, 9_000, 300),
            (2_500, 4_000, 700),
            (3_000, 12_000, 50),
        ];
        for (start, _, amount) in runs {
            in_order.hold(key("a"), cpu(amount), start);
        }
        for (_, end, amount) in runs {
            in_order.release(key("a"), cpu(amount), end);
        }
        for (start, end, amount) in runs.into_iter().rev() {
            shuffled.release(key("a"), cpu(amount), end);
            shuffled.hold(key("a"), cpu(amount), start);
        }
        for (from, to) in [(0, 20_000), (3_000, 10_000), (5_000, 5_500)] {
            let expected: u128 = runs
                .iter()
                .map(|(start, end, amount)| {
                    let overlap = (*end).min(to).saturating_sub((*start).max(from));
                    u128::from(*amount) * u128::from(overlap)
                })
                .sum();
            assert_eq!(held_cpu(&in_order, "a", from, to), expected);
            assert_eq!(held_cpu(&shuffled, "a", from, to), expected);
        }
    }

    #[test]
    fn old_seconds_are_dropped_but_their_runs_still_count() {
        let mut ledger = ShareLedger::default();
        ledger.set_horizon(10_000);
        ledger.hold(key("a"), cpu(100), 1_000);
        for second in 2..100 {
            ledger.hold(key("b"), cpu(1), second * 1_000);
        }
        ledger.hold(key("a"), cpu(0), 100_000);
        // Tenant a's run began long before the horizon and still counts in a recent window.
        assert_eq!(held_cpu(&ledger, "a", 95_000, 100_000), 100 * 5_000);
        assert!(ledger.series[&key("b")].recent.len() <= 12);
    }
}
