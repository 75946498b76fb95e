//! What the gateway and the controllers read from the replicated state: lookups, lists,
//! positions and the tallies apply keeps.

use std::collections::BTreeMap;

use crate::state::hodei_state::HodeiState;
use hodei_domain::burst::{BurstSession, BurstStatus, overage};
use hodei_domain::job::{Job, JobState, Priority};
use hodei_domain::pool::Pool;
use hodei_domain::queue::Queue;
use hodei_domain::quota::Usage;
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantId;
use hodei_domain::worker::Worker;

impl HodeiState {
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id).map(|job| &**job)
    }

    pub fn job_output(&self, id: &str) -> Option<&str> {
        self.job_logs.get(id).map(String::as_str)
    }

    /// Up to `limit` jobs after `after` (ids are time-ordered uuid v7) that pass `keep`.
    pub fn jobs_after(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&Job) -> bool,
    ) -> Vec<Job> {
        self.jobs_page(after, limit, false, keep)
    }

    /// Up to `limit` jobs that `keep` accepts, after the cursor `after`, in submit order or
    /// newest first (job ids are time-ordered).
    pub fn jobs_page(
        &self,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
        keep: impl Fn(&Job) -> bool,
    ) -> Vec<Job> {
        use std::ops::Bound::{Excluded, Unbounded};
        let range: Box<dyn Iterator<Item = (&String, &Box<Job>)>> = match (after, newest_first) {
            (Some(after), false) => {
                Box::new(self.jobs.range::<str, _>((Excluded(after), Unbounded)))
            }
            (Some(after), true) => Box::new(
                self.jobs
                    .range::<str, _>((Unbounded, Excluded(after)))
                    .rev(),
            ),
            (None, false) => Box::new(self.jobs.iter()),
            (None, true) => Box::new(self.jobs.iter().rev()),
        };
        range
            .map(|(_, job)| job.as_ref())
            .filter(|job| keep(job))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The ids of the queue's pending jobs, oldest first.
    /// Pending jobs by shape (queue, tenant, resources, pool selector), with their count.
    pub fn pending_shapes(
        &self,
    ) -> impl Iterator<Item = (&crate::state::hodei_state::PendingShape, u64)> {
        self.pending_shapes
            .iter()
            .map(|(shape, count)| (shape, *count))
    }

    pub fn pending_in(&self, queue: &str) -> impl Iterator<Item = &Job> {
        self.pending
            .get(queue)
            .into_iter()
            .flatten()
            .filter_map(|id| self.job(id))
    }

    /// Where the job stands in its queue's pending list (0 = next), while pending.
    pub fn queue_position(&self, job: &Job) -> Option<usize> {
        if job.state != JobState::Pending {
            return None;
        }
        self.pending.get(&job.spec.queue).map(|ids| {
            ids.range::<str, _>((
                std::ops::Bound::Unbounded,
                std::ops::Bound::Excluded(job.id.as_str()),
            ))
            .count()
        })
    }

    pub fn queue(&self, id: &str) -> Option<&Queue> {
        self.queues.get(id)
    }

    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    pub fn pool(&self, id: &str) -> Option<&Pool> {
        self.pools.get(id)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn worker(&self, id: &str) -> Option<&Worker> {
        self.workers.get(id)
    }

    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Jobs the worker holds, with their state and attempt.
    pub fn jobs_of_worker(&self, worker: &str) -> Vec<&Job> {
        self.workers
            .get(worker)
            .map(|found| found.jobs.iter().filter_map(|id| self.job(id)).collect())
            .unwrap_or_default()
    }

    /// How many jobs with an SLA are in each (tenant, level, last status).
    pub fn sla_tally(
        &self,
    ) -> &BTreeMap<
        (
            TenantId,
            hodei_domain::sla::SlaLevel,
            hodei_domain::sla::SlaStatus,
        ),
        u64,
    > {
        &self.sla_tally
    }

    /// How many jobs are in each (queue, tenant, state), finished ones included.
    pub fn job_tally(&self) -> &BTreeMap<(String, TenantId, JobState), u64> {
        &self.job_tally
    }

    /// How many jobs are in each (pool, state), of those that ran in a pool (archived
    /// ones included).
    pub fn pool_tally(&self) -> &BTreeMap<(String, JobState), u64> {
        &self.pool_tally
    }

    /// The pool's waits (pending to assigned, ms) of assignments at or after `since_ms`.
    pub fn pool_waits_since(&self, pool: &str, since_ms: u64) -> Vec<u64> {
        self.pool_waits
            .get(pool)
            .map(|samples| {
                samples
                    .iter()
                    .filter(|(at_ms, _)| *at_ms >= since_ms)
                    .map(|(_, wait)| *wait)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The pool's last waits from pending to assigned, in ms, oldest first.
    pub fn pool_waits(&self, pool: &str) -> Vec<u64> {
        self.pool_waits
            .get(pool)
            .map(|samples| samples.iter().map(|(_, wait)| *wait).collect())
            .unwrap_or_default()
    }

    /// The pool's price history and tier percentages (its one price when never changed).
    pub fn prices(&self, pool: &str) -> Option<hodei_domain::cost::PoolPrices> {
        self.pools
            .contains_key(pool)
            .then(|| self.prices_of(pool).into_owned())
    }

    /// The pool's autoscaling, if it has any rule, cooldown or history.
    pub fn scaling(&self, pool: &str) -> Option<&hodei_domain::autoscale::PoolScaling> {
        self.scaling.get(pool)
    }

    /// Each tenant's held resource time, runs and last backlog time in a window of the
    /// queue `queue` dispatching to `pools` (see [`crate::state::share_ledger`]).
    pub fn share_window(
        &self,
        queue: &str,
        pools: &[String],
        from_ms: u64,
        to_ms: u64,
    ) -> BTreeMap<TenantId, crate::state::share_ledger::TenantHeld> {
        self.shares.window(queue, pools, from_ms, to_ms)
    }

    /// How many jobs are in each (queue, priority, state).
    pub fn priority_tally(&self) -> &BTreeMap<(String, Priority, JobState), u64> {
        &self.priority_tally
    }

    /// Jobs assigned per second in the queue over the `window_ms` before `now_ms`.
    pub fn dispatch_rate(&self, queue: &str, now_ms: u64, window_ms: u64) -> f64 {
        let since = now_ms.saturating_sub(window_ms);
        let count = self
            .dispatch_log
            .get(queue)
            .into_iter()
            .flatten()
            .filter(|(at_ms, _)| *at_ms > since)
            .fold(0u64, |total, (_, count)| total.saturating_add(*count));
        count as f64 * 1_000.0 / window_ms.max(1) as f64
    }

    /// The tenant's running usage (zero while it runs nothing).
    pub fn usage(&self, tenant: &TenantId) -> Usage {
        self.usage.get(tenant).cloned().unwrap_or_default()
    }

    /// Every burst session of the tenant, oldest first.
    pub fn burst_sessions(&self, tenant: &TenantId) -> &[BurstSession] {
        self.bursts.get(tenant).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn burst_session(&self, tenant: &TenantId, session_id: &str) -> Option<&BurstSession> {
        self.burst_sessions(tenant)
            .iter()
            .find(|session| session.id == session_id)
    }

    /// The tenant's active session, if any.
    pub fn active_burst(&self, tenant: &TenantId) -> Option<&BurstSession> {
        self.burst_sessions(tenant)
            .iter()
            .find(|session| session.status == BurstStatus::Active)
    }

    /// The tenant's active session if it has not reached its end time by `at_ms`: a
    /// session's expiry commits a little after its end (or later, with no leader), and
    /// admits nothing in between.
    pub fn active_burst_at(&self, tenant: &TenantId, at_ms: u64) -> Option<&BurstSession> {
        self.active_burst(tenant)
            .filter(|session| session.ends_at_ms.is_none_or(|end| at_ms < end))
    }

    /// The summed overage of every active session except `excluded`'s.
    pub fn active_overage(&self, excluded: Option<&TenantId>) -> Resources {
        self.bursts
            .iter()
            .filter(|(tenant, _)| Some(*tenant) != excluded)
            .flat_map(|(tenant, sessions)| {
                sessions
                    .iter()
                    .filter(|session| session.status == BurstStatus::Active)
                    .map(move |session| (tenant, session.ceiling_percentage))
            })
            .filter_map(|(tenant, ceiling)| {
                self.tenants
                    .get(tenant)
                    .map(|found| overage(&found.quota, ceiling))
            })
            .fold(Resources::ZERO, Resources::saturating_add)
    }
}
