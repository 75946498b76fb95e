//! The indexes and tallies apply keeps beside the stored entities (pending queues, tenant
//! usage, the idempotency index, per-state job counts, the dispatch log). Everything derived
//! from a job moves in one place, [`HodeiState::on_job_stored`], from where the job's
//! previous version counted to where the new one counts: apply calls it for every stored
//! job and the rebuild on load for every loaded one, so the two cannot disagree.

use std::collections::BTreeMap;

use hodei_cluster::WriteBatch;

use crate::state::hodei_state::{DomainEvent, HodeiState, PendingShape, put_encoded};
use crate::state::jobs::DISPATCH_LOG_MS;
use crate::state::jobs::{count_one, release_usage};
use crate::state::keys::{JOB_PREFIX, QUEUE_PREFIX, WORKER_PREFIX, key};
use hodei_domain::job::{Job, JobState, Priority};
use hodei_domain::queue::Queue;
use hodei_domain::resources::Resources;
use hodei_domain::sla::{SlaLevel, SlaStatus};
use hodei_domain::tenant::TenantId;
use hodei_domain::worker::Worker;

impl HodeiState {
    /// Stores the job's new version and keeps the per-(queue, tenant, state) tally.
    pub(in crate::state) fn store_job(&mut self, job: Job, writes: &mut WriteBatch) {
        put_encoded(writes, key(JOB_PREFIX, &job.id), &job);
        let stored = self.jobs.get(&job.id);
        let was_final = stored.is_some_and(|previous| previous.state.is_final());
        let previous = stored.map(|previous| IndexedAs::of(previous));
        if job.state.is_final() && !was_final {
            self.record_run_cost(&job, writes);
            let started_at = job
                .transitions
                .iter()
                .rev()
                .find(|step| step.state == JobState::Running)
                .map(|step| step.at_ms);
            let ended_at = job
                .transitions
                .last()
                .map(|step| step.at_ms)
                .unwrap_or_default();
            self.job_ended(&crate::state::hodei_state::JobEnd {
                queue: job.spec.queue.clone(),
                tenant: job.spec.tenant.clone(),
                state: job.state,
                wait_ms: started_at.map(|at| at.saturating_sub(job.submitted_at_ms)),
                run_ms: started_at.map(|at| ended_at.saturating_sub(at)),
            });
        }
        let queued = job.state == JobState::Pending
            && previous
                .as_ref()
                .is_none_or(|previous| previous.pending.is_none());
        let assigned = job.state == JobState::Assigned
            && previous
                .as_ref()
                .is_none_or(|previous| previous.by_tenant.2 != JobState::Assigned);
        if assigned {
            self.record_last_wait(&job);
        }
        self.on_job_stored(previous, &job);
        if queued {
            self.emit(DomainEvent::JobsQueued(job.spec.queue.clone()));
        }
        self.jobs.insert(job.id.clone(), Box::new(job));
    }

    /// Moves what a job counts in from its previous version to `job`: the tallies (per
    /// queue, tenant and state; per queue, priority and state; per tenant, SLA level and
    /// status), its queue's pending list and its tenant's pending count, the resources its
    /// run holds in its tenant's usage, and its idempotency key (with its first version).
    /// The one place where both apply and the rebuild on load index a stored job.
    fn on_job_stored(&mut self, previous: Option<IndexedAs>, job: &Job) {
        let first_version = previous.is_none();
        let changed_at = job.transitions.last().map(|step| step.at_ms).unwrap_or(0);
        match &previous {
            None => self.shares.replay(job),
            Some(previous) => self.move_shares(previous, job, changed_at),
        }
        if let Some(previous) = previous {
            uncount(&mut self.job_tally, &previous.by_tenant);
            uncount(&mut self.priority_tally, &previous.by_priority);
            if let Some(sla) = &previous.by_sla {
                uncount(&mut self.sla_tally, sla);
            }
            if let Some(pool) = &previous.by_pool {
                uncount(&mut self.pool_tally, pool);
            }
            if let Some(ended) = previous.ended_at {
                self.finished.remove(&(ended, job.id.clone()));
            }
            if let Some((queue, tenant)) = &previous.pending {
                if let Some(ids) = self.pending.get_mut(queue) {
                    ids.remove(&job.id);
                }
                self.usage_add_pending(tenant, -1);
            }
            if let Some(shape) = &previous.pending_shape
                && let Some(count) = self.pending_shapes.get_mut(shape)
            {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.pending_shapes.remove(shape);
                }
            }
            if let Some((tenant, resources, pool)) = &previous.held
                && let Some(usage) = self.usage.get_mut(tenant)
            {
                release_usage(usage, *resources, pool);
            }
        }
        let current = IndexedAs::of(job);
        count_one(self.job_tally.entry(current.by_tenant).or_default());
        count_one(self.priority_tally.entry(current.by_priority).or_default());
        if let Some(sla) = current.by_sla {
            count_one(self.sla_tally.entry(sla).or_default());
        }
        if let Some(pool) = current.by_pool {
            count_one(self.pool_tally.entry(pool).or_default());
        }
        if let Some(ended) = current.ended_at {
            self.finished.insert((ended, job.id.clone()));
        }
        if let Some((queue, tenant)) = current.pending {
            self.pending
                .entry(queue)
                .or_default()
                .insert(job.id.clone());
            self.usage_add_pending(&tenant, 1);
        }
        if let Some(shape) = current.pending_shape {
            count_one(self.pending_shapes.entry(shape).or_default());
        }
        if let Some((tenant, resources, pool)) = current.held {
            self.usage_hold(&tenant, resources, &pool);
        }
        // A job's idempotency key never changes: it is indexed with its first version.
        if first_version && let Some(idempotency_key) = &job.spec.idempotency_key {
            self.idempotency.insert(
                (job.spec.tenant.clone(), idempotency_key.clone()),
                job.id.clone(),
            );
        }
    }

    /// Tells the share ledger what the job's new version changed: a run began or ended,
    /// or the job left its queue's pending list.
    fn move_shares(&mut self, previous: &IndexedAs, job: &Job, changed_at: u64) {
        let current = (
            job.state == JobState::Pending,
            matches!(job.state, JobState::Assigned | JobState::Running),
        );
        let series = |(tenant, _, pool): &(TenantId, Resources, String)| {
            (job.spec.queue.clone(), pool.clone(), tenant.clone())
        };
        let now_held = current.1.then(|| {
            (
                job.spec.tenant.clone(),
                job.spec.resources,
                job.pool.clone().unwrap_or_default(),
            )
        });
        if previous.held != now_held {
            if let Some(held) = &previous.held {
                self.shares.release(series(held), held.1, changed_at);
                // Back to pending: the run moves to the queue's pool-less series, as a
                // replay of the job would count it.
                let run_start = job
                    .transitions
                    .iter()
                    .rev()
                    .skip(1)
                    .find(|step| step.state == JobState::Assigned)
                    .map(|step| step.at_ms);
                if job.state == JobState::Pending
                    && let Some(start) = run_start
                {
                    self.shares
                        .requeued(series(held), held.1, start, changed_at);
                }
            }
            if let Some(held) = &now_held {
                self.shares.hold(series(held), held.1, changed_at);
            }
        }
        if let Some((queue, tenant)) = &previous.pending
            && !current.0
        {
            self.shares.left_pending(queue, tenant, changed_at);
        }
    }

    pub(in crate::state) fn put_worker(&self, worker: &Worker, writes: &mut WriteBatch) {
        put_encoded(writes, key(WORKER_PREFIX, &worker.id), worker);
    }

    pub(in crate::state) fn put_queue(&mut self, queue: Queue, writes: &mut WriteBatch) {
        put_encoded(writes, key(QUEUE_PREFIX, &queue.id), &queue);
        self.queues.insert(queue.id.clone(), queue);
    }

    fn usage_add_pending(&mut self, tenant: &TenantId, delta: i64) {
        let usage = self.usage.entry(tenant.clone()).or_default();
        usage.pending_jobs = usage.pending_jobs.saturating_add_signed(delta);
    }

    fn usage_hold(&mut self, tenant: &TenantId, resources: Resources, pool: &str) {
        let usage = self.usage.entry(tenant.clone()).or_default();
        usage.running = usage.running.saturating_add(resources);
        usage.running_jobs = usage.running_jobs.saturating_add(1);
        let in_pool = usage.running_by_pool.entry(pool.to_string()).or_default();
        *in_pool = in_pool.saturating_add(resources);
    }

    /// Rebuilds what is derived from the jobs: pending lists, the idempotency index and
    /// every tenant's usage.
    pub(in crate::state) fn rebuild_job_indices(&mut self) {
        self.pending.clear();
        self.pending_shapes.clear();
        self.idempotency.clear();
        self.usage.clear();
        self.job_tally.clear();
        self.priority_tally.clear();
        self.sla_tally.clear();
        self.pool_tally.clear();
        self.finished.clear();
        self.shares.clear();
        self.dispatch_log.clear();
        // The archived jobs count where they counted when they left memory.
        let archived = &self.archived_tally;
        self.job_tally = archived.by_tenant.clone();
        self.priority_tally = archived.by_priority.clone();
        self.sla_tally = archived.by_sla.clone();
        self.pool_tally = archived.by_pool.clone();
        let mut assignments: Vec<(u64, String)> = self
            .jobs
            .values()
            .flat_map(|job| {
                job.transitions
                    .iter()
                    .filter(|step| step.state == JobState::Assigned)
                    .map(move |step| (step.at_ms, job.spec.queue.clone()))
            })
            .collect();
        assignments.sort();
        for (at_ms, queue) in assignments {
            self.log_dispatch(&queue, at_ms, 1);
        }
        self.pool_waits.clear();
        let mut waits: Vec<(u64, u64, String)> = self
            .jobs
            .values()
            .flat_map(|job| waits_of(job).into_iter())
            .collect();
        waits.sort();
        for (at_ms, wait_ms, pool) in waits {
            self.push_wait(pool, at_ms, wait_ms);
        }
        let jobs: Vec<Job> = self.jobs.values().map(|job| job.as_ref().clone()).collect();
        for job in jobs {
            self.on_job_stored(None, &job);
        }
    }

    /// Samples the wait that ended with the job's last assignment, in its pool.
    fn record_last_wait(&mut self, job: &Job) {
        if let Some((at_ms, wait_ms, pool)) = waits_of(job).pop() {
            self.push_wait(pool, at_ms, wait_ms);
        }
    }

    fn push_wait(&mut self, pool: String, at_ms: u64, wait_ms: u64) {
        let samples = self.pool_waits.entry(pool).or_default();
        samples.push_back((at_ms, wait_ms));
        while samples.len() > WAIT_SAMPLES {
            samples.pop_front();
        }
    }

    pub(in crate::state) fn log_dispatch(&mut self, queue: &str, at_ms: u64, count: u64) {
        if count == 0 {
            return;
        }
        let log = self.dispatch_log.entry(queue.to_string()).or_default();
        log.push_back((at_ms, count));
        while log
            .front()
            .is_some_and(|(oldest, _)| at_ms.saturating_sub(*oldest) > DISPATCH_LOG_MS)
        {
            log.pop_front();
        }
    }
}

/// How many recent waits each pool keeps (its allocation latency percentiles).
pub const WAIT_SAMPLES: usize = 1_000;

/// Every wait of the job that ended in an assignment: (assigned at, wait, pool). The pool
/// of an earlier run is not kept on the job; every wait counts in its current pool.
fn waits_of(job: &Job) -> Vec<(u64, u64, String)> {
    let Some(pool) = job.pool.clone() else {
        return Vec::new();
    };
    let mut waits = Vec::new();
    let mut pending_since = None;
    for step in &job.transitions {
        match step.state {
            JobState::Pending => pending_since = Some(step.at_ms),
            JobState::Assigned => {
                if let Some(since) = pending_since.take() {
                    waits.push((step.at_ms, step.at_ms.saturating_sub(since), pool.clone()));
                }
            }
            _ => {}
        }
    }
    waits
}

/// Where a job version counts in the indexes.
pub(super) struct IndexedAs {
    pub(super) by_tenant: (String, TenantId, JobState),
    pub(super) by_priority: (String, Priority, JobState),
    pub(super) by_sla: Option<(TenantId, SlaLevel, SlaStatus)>,
    /// The pool it ran in, with its state.
    pub(super) by_pool: Option<(String, JobState)>,
    /// Final: when it ended (in the set `ArchiveJobs` takes from).
    ended_at: Option<u64>,
    /// Pending: in its queue's list and its tenant's pending count.
    pending: Option<(String, TenantId)>,
    /// Pending: its count among the pending jobs of its shape.
    pending_shape: Option<PendingShape>,
    /// Assigned or running: its resources held in its tenant's usage, in its pool.
    held: Option<(TenantId, Resources, String)>,
}

impl IndexedAs {
    pub(super) fn of(job: &Job) -> Self {
        let tenant = &job.spec.tenant;
        Self {
            pending: (job.state == JobState::Pending)
                .then(|| (job.spec.queue.clone(), tenant.clone())),
            pending_shape: (job.state == JobState::Pending).then(|| PendingShape::of(job)),
            held: matches!(job.state, JobState::Assigned | JobState::Running).then(|| {
                let pool = job.pool.clone().unwrap_or_default();
                (tenant.clone(), job.spec.resources, pool)
            }),
            by_pool: job.pool.clone().map(|pool| (pool, job.state)),
            ended_at: job
                .state
                .is_final()
                .then(|| crate::state::history::ended_at(job)),
            by_tenant: (job.spec.queue.clone(), job.spec.tenant.clone(), job.state),
            by_priority: (job.spec.queue.clone(), job.spec.priority, job.state),
            by_sla: job
                .spec
                .sla
                .zip(job.sla_status())
                .map(|(sla, status)| (job.spec.tenant.clone(), sla.level, status)),
        }
    }
}

/// Takes one from a tally. An entry that reaches zero stays (the metrics report it as 0
/// rather than dropping the series); a rebuild makes none, so compare tallies without
/// their zero entries.
fn uncount<K: Ord>(tally: &mut BTreeMap<K, u64>, key: &K) {
    if let Some(count) = tally.get_mut(key) {
        *count = count.saturating_sub(1);
    }
}
