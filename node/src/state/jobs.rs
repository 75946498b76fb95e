//! The replicated side of jobs, queues, pools and workers. Apply re-checks every part of
//! a plan against the current state (job still pending, worker still live with the room,
//! tenant still under quota), so a stale plan can never oversubscribe a worker or a quota.
//! Tenant usage (pending count, running resources) is derived from the jobs and kept in
//! step by the helpers here; it is rebuilt from the jobs on load and restore.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use hodei_cluster::WriteBatch;
use serde::{Deserialize, Serialize};

use super::hodei_state::{DomainEvent, HodeiState, put_encoded};
use crate::state::command::{CommandOutcome, CommandResult, StartReport};
use hodei_domain::DomainError;
use hodei_domain::admission::{AdmissionInput, JobRequest, ReasonCode, Verdict, admit};
use hodei_domain::cost::run_cost_nanos;
use hodei_domain::dispatch::Assignment;
use hodei_domain::job::{Job, JobSpec, JobState, Priority};
use hodei_domain::pool::Pool;
use hodei_domain::queue::{DEFAULT_QUEUE_ID, Queue, QueuePolicy, validate_pool_list};
use hodei_domain::quota::Usage;
use hodei_domain::resources::Resources;
use hodei_domain::tenant::{TenantId, TenantStatus};
use hodei_domain::worker::{Worker, WorkerState, validate_worker_id};

pub(super) const JOB_PREFIX: &str = "job/";
pub(super) const JOB_LOG_PREFIX: &str = "joblog/";
pub(super) const QUEUE_PREFIX: &str = "queue/";
pub(super) const POOL_PREFIX: &str = "pool/";
pub(crate) const WORKER_PREFIX: &str = "worker/";

/// How far back the dispatch log of each queue reaches.
const DISPATCH_LOG_MS: u64 = 10 * 60_000;

pub use hodei_domain::run::{OUTPUT_TAIL_BYTES, RunOutcome, RunReport, WorkerRegistration};

pub(super) fn key(prefix: &str, id: &str) -> Vec<u8> {
    format!("{prefix}{id}").into_bytes()
}

/// Adds one to a tally; saturating, since nothing in apply may overflow.
fn count_one(count: &mut u64) {
    *count = count.saturating_add(1);
}

/// Takes a run's resources back from its tenant's usage.
fn release_usage(usage: &mut Usage, resources: Resources, pool: &str) {
    usage.running = usage.running.saturating_sub(resources);
    usage.running_jobs = usage.running_jobs.saturating_sub(1);
    if let Some(in_pool) = usage.running_by_pool.get_mut(pool) {
        *in_pool = in_pool.saturating_sub(resources);
        if *in_pool == Resources::ZERO {
            usage.running_by_pool.remove(pool);
        }
    }
}

/// What ending a set of runs takes back from their workers and tenants, computed against
/// the current state before any of it is applied, so that a check failing on the third
/// run leaves the first two untouched. Each entry is the next version of that worker or
/// tenant usage, with every run of the set released from it.
#[derive(Debug, Default)]
pub(super) struct Release {
    workers: BTreeMap<String, Worker>,
    usage: BTreeMap<TenantId, Usage>,
}

/// A cancellation checked against the current state, not yet applied.
#[derive(Debug)]
pub(super) struct PlannedCancel {
    /// The job as it will be stored: cancelled.
    job: Job,
    /// It was pending: it leaves its queue (no worker held it).
    was_pending: bool,
    /// The worker that held it, which must stop it.
    worker: Option<String>,
}

/// What apply says of one accepted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedJob {
    /// The earlier job whose idempotency key this one repeats (nothing new was created);
    /// `None` when the job was stored exactly as submitted. The proposer has that job, so
    /// it is not sent back: every node computes the answer, and a batch's would otherwise
    /// carry all its jobs again.
    pub earlier: Option<Box<Job>>,
    /// The id of the job stored. A proposer whose command was answered from the recent
    /// request ids (a retry after a lost reply) sent a job with another id: it reads the
    /// stored one by this id.
    pub id: String,
}

impl SubmittedJob {
    pub fn is_duplicate(&self) -> bool {
        self.earlier.is_some()
    }
}

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
        let range = match after {
            Some(after) => self
                .jobs
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.jobs.range::<str, _>(..),
        };
        range
            .map(|(_, job)| job.as_ref())
            .filter(|job| keep(job))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The ids of the queue's pending jobs, oldest first.
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

    /// Checks that the job could ever be placed: its queue exists, the pools it selects
    /// belong to the queue, and some pool's worker is large enough. Names the field and
    /// the limit; the gateway calls it for an early answer, apply calls it again.
    pub fn check_placement(&self, spec: &JobSpec) -> Result<Vec<String>, DomainError> {
        let Some(queue) = self.queues.get(&spec.queue) else {
            return Err(DomainError::not_found("queue", spec.queue.clone()));
        };
        for (index, pool) in spec.pool_selector.iter().enumerate() {
            if !self.pools.contains_key(pool) {
                return Err(DomainError::not_found("pool", pool.clone()));
            }
            if !queue.pools.contains(pool) {
                return Err(DomainError::invalid(
                    format!("pool_selector[{index}]"),
                    format!(
                        "pool `{pool}` is not one of queue `{}`'s pools ({})",
                        queue.id,
                        queue.pools.join(", ")
                    ),
                ));
            }
        }
        let candidates: Vec<String> = queue
            .pools
            .iter()
            .filter(|pool| spec.pool_selector.is_empty() || spec.pool_selector.contains(pool))
            .filter(|pool| self.pools.contains_key(*pool))
            .cloned()
            .collect();
        let largest = candidates
            .iter()
            .filter_map(|pool| self.pools.get(pool))
            .map(|pool| pool.worker_shape)
            .fold(Resources::ZERO, Resources::max_per_dimension);
        for ((dimension, requested), (_, limit)) in spec
            .resources
            .dimensions()
            .into_iter()
            .zip(largest.dimensions())
        {
            if requested > limit {
                let field = match dimension {
                    hodei_domain::resources::Dimension::Cpu => "resources.cpu_m",
                    hodei_domain::resources::Dimension::Memory => "resources.memory_mb",
                    _ => "resources.gpu",
                };
                return Err(DomainError::invalid(
                    field,
                    format!(
                        "must be at most {limit}{unit}, the largest worker in the pools of queue `{}`; got {requested}{unit}",
                        queue.id,
                        unit = dimension.unit()
                    ),
                ));
            }
        }
        Ok(candidates)
    }

    /// Checks the job against its tenant: exists, and the job is not larger than the
    /// tenant could ever run (quota, or the burst ceiling), and the backlog has room.
    pub fn check_tenant_admits(
        &self,
        spec: &JobSpec,
        max_burst_percent: Option<u64>,
    ) -> Result<(), DomainError> {
        let Some(tenant) = self.tenants.get(&spec.tenant) else {
            return Err(DomainError::not_found("tenant", spec.tenant.to_string()));
        };
        let usage = self.usage(&spec.tenant);
        let request = JobRequest {
            resources: spec.resources,
            pool: None,
        };
        let decision = admit(&AdmissionInput {
            quota: &tenant.quota,
            usage: &usage,
            tenant_active: true,
            active_burst_percent: None,
            max_burst_percent,
            largest_worker: None,
            request: &request,
        });
        if decision.verdict != Verdict::Deny {
            return Ok(());
        }
        if let Some(full) = decision
            .reasons
            .iter()
            .find(|reason| reason.code == ReasonCode::BacklogFull)
            && decision.reasons.len() == 1
        {
            return Err(DomainError::Exhausted(format!(
                "tenant `{}`: {}",
                spec.tenant, full.message
            )));
        }
        let Some(first) = decision
            .reasons
            .iter()
            .find(|reason| reason.code != ReasonCode::BacklogFull)
            .or(decision.reasons.first())
        else {
            // Admission gives every denial a reason; this check runs inside apply, so a
            // denial without one is refused and logged rather than a panic.
            tracing::error!(tenant = %spec.tenant, "admission denied a job without a reason");
            return Err(DomainError::invalid("tenant", "admission refused the job"));
        };
        let field = match first.dimension {
            Some(hodei_domain::resources::Dimension::Cpu) => "resources.cpu_m",
            Some(hodei_domain::resources::Dimension::Memory) => "resources.memory_mb",
            Some(hodei_domain::resources::Dimension::Gpu) => "resources.gpu",
            _ => "tenant",
        };
        Err(DomainError::invalid(field, first.message.clone()))
    }

    /// Stores the job's new version and keeps the per-(queue, tenant, state) tally.
    fn store_job(&mut self, job: Job, writes: &mut WriteBatch) {
        put_encoded(writes, key(JOB_PREFIX, &job.id), &job);
        let was_final = self
            .jobs
            .get(&job.id)
            .is_some_and(|previous| previous.state.is_final());
        if job.state.is_final() && !was_final {
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
            self.emit(DomainEvent::JobEnded {
                queue: job.spec.queue.clone(),
                tenant: job.spec.tenant.clone(),
                state: job.state,
                wait_ms: started_at.map(|at| at.saturating_sub(job.submitted_at_ms)),
                run_ms: started_at.map(|at| ended_at.saturating_sub(at)),
            });
        }
        let sla_key = |found: &Job| {
            found
                .spec
                .sla
                .zip(found.sla_status())
                .map(|(sla, status)| (found.spec.tenant.clone(), sla.level, status))
        };
        if let Some(previous) = self.job(&job.id).and_then(sla_key)
            && let Some(count) = self.sla_tally.get_mut(&previous)
        {
            *count = count.saturating_sub(1);
        }
        if let Some(current) = sla_key(&job) {
            count_one(self.sla_tally.entry(current).or_default());
        }
        if let Some(previous) = self.jobs.get(&job.id) {
            let tally_key = (
                previous.spec.queue.clone(),
                previous.spec.tenant.clone(),
                previous.state,
            );
            if let Some(count) = self.job_tally.get_mut(&tally_key) {
                *count = count.saturating_sub(1);
            }
            let priority_key = (
                previous.spec.queue.clone(),
                previous.spec.priority,
                previous.state,
            );
            if let Some(count) = self.priority_tally.get_mut(&priority_key) {
                *count = count.saturating_sub(1);
            }
        }
        count_one(
            self.priority_tally
                .entry((job.spec.queue.clone(), job.spec.priority, job.state))
                .or_default(),
        );
        count_one(
            self.job_tally
                .entry((job.spec.queue.clone(), job.spec.tenant.clone(), job.state))
                .or_default(),
        );
        self.jobs.insert(job.id.clone(), Box::new(job));
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

    /// How many jobs are in each (queue, priority, state).
    pub fn priority_tally(&self) -> &BTreeMap<(String, Priority, JobState), u64> {
        &self.priority_tally
    }

    pub(super) fn put_worker(&self, worker: &Worker, writes: &mut WriteBatch) {
        put_encoded(writes, key(WORKER_PREFIX, &worker.id), worker);
    }

    fn put_queue(&mut self, queue: Queue, writes: &mut WriteBatch) {
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
    pub(super) fn rebuild_job_indices(&mut self) {
        self.pending.clear();
        self.idempotency.clear();
        self.usage.clear();
        self.job_tally.clear();
        self.priority_tally.clear();
        self.sla_tally.clear();
        self.dispatch_log.clear();
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
        let jobs: Vec<Job> = self.jobs.values().map(|job| job.as_ref().clone()).collect();
        for job in jobs {
            if let Some(idempotency_key) = &job.spec.idempotency_key {
                self.idempotency.insert(
                    (job.spec.tenant.clone(), idempotency_key.clone()),
                    job.id.clone(),
                );
            }
            count_one(
                self.job_tally
                    .entry((job.spec.queue.clone(), job.spec.tenant.clone(), job.state))
                    .or_default(),
            );
            count_one(
                self.priority_tally
                    .entry((job.spec.queue.clone(), job.spec.priority, job.state))
                    .or_default(),
            );
            if let Some((sla, status)) = job.spec.sla.zip(job.sla_status()) {
                count_one(
                    self.sla_tally
                        .entry((job.spec.tenant.clone(), sla.level, status))
                        .or_default(),
                );
            }
            match job.state {
                JobState::Pending => {
                    self.pending
                        .entry(job.spec.queue.clone())
                        .or_default()
                        .insert(job.id.clone());
                    self.usage_add_pending(&job.spec.tenant, 1);
                }
                JobState::Assigned | JobState::Running => {
                    let pool = job.pool.clone().unwrap_or_default();
                    self.usage_hold(&job.spec.tenant, job.spec.resources, &pool);
                }
                _ => {}
            }
        }
    }

    /// Adds the end of `job`'s run (finished, cancelled, or lost with its worker) to
    /// `release`: its resources become free on its worker and in its tenant's usage. The
    /// usage is derived from the jobs, so it always holds the run; if it does not, the state
    /// is inconsistent and the run end is refused and logged, rather than released from a
    /// usage that never held it (a saturating release would hide the error).
    fn plan_release(
        &self,
        release: &mut Release,
        job: &Job,
        at_ms: u64,
    ) -> Result<(), DomainError> {
        let Some(worker_id) = &job.worker else {
            // No worker holds it (pending): there is nothing to take back.
            return Ok(());
        };
        let tenant = &job.spec.tenant;
        let usage = release
            .usage
            .entry(tenant.clone())
            .or_insert_with(|| self.usage(tenant));
        if usage.running_jobs == 0 || !job.spec.resources.fits_within(usage.running) {
            tracing::error!(
                job = %job.id,
                tenant = %tenant,
                running_jobs = usage.running_jobs,
                "the tenant's usage does not hold the run being ended: the command is refused"
            );
            return Err(DomainError::Conflict(format!(
                "job {} cannot end its run: the usage of tenant `{tenant}` does not hold it (an inconsistent state, logged)",
                job.id
            )));
        }
        release_usage(
            usage,
            job.spec.resources,
            job.pool.as_deref().unwrap_or_default(),
        );
        // A worker deleted with its pool is no longer there to release from.
        let worker = match release.workers.entry(worker_id.clone()) {
            Entry::Occupied(planned) => Some(planned.into_mut()),
            Entry::Vacant(slot) => self
                .workers
                .get(worker_id)
                .map(|current| slot.insert(current.clone())),
        };
        if let Some(worker) = worker {
            worker.release(&job.id, job.spec.resources, at_ms);
        }
        Ok(())
    }

    /// Applies a release computed by [`Self::plan_release`].
    pub(super) fn commit_release(&mut self, release: Release, writes: &mut WriteBatch) {
        self.usage.extend(release.usage);
        for (id, worker) in release.workers {
            self.put_worker(&worker, writes);
            self.workers.insert(id, worker);
        }
    }

    fn enqueue(&mut self, job: &Job) {
        self.pending
            .entry(job.spec.queue.clone())
            .or_default()
            .insert(job.id.clone());
        self.usage_add_pending(&job.spec.tenant, 1);
        self.emit(DomainEvent::JobsQueued(job.spec.queue.clone()));
    }

    fn dequeue(&mut self, job: &Job) {
        if let Some(ids) = self.pending.get_mut(&job.spec.queue) {
            ids.remove(&job.id);
        }
        self.usage_add_pending(&job.spec.tenant, -1);
    }

    pub(super) fn apply_pool_lifecycle(
        &mut self,
        pool_id: &str,
        action: hodei_domain::pool::PoolAction,
        by: &str,
        reason: &str,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(pool) = self.pools.get_mut(pool_id) else {
            return Err(DomainError::not_found("pool", pool_id));
        };
        pool.apply_action(action, by, reason, at_ms)?;
        let pool = pool.clone();
        self.put_pool(pool.clone(), writes);
        self.emit(DomainEvent::QueuesChanged);
        // Resuming may let jobs run again.
        self.emit(DomainEvent::CapacityFreed { ended_in: None });
        Ok(CommandOutcome::Pool(pool))
    }

    pub(super) fn apply_ensure_queues_and_pools(
        &mut self,
        pools: Vec<Pool>,
        queues: Vec<Queue>,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let mut created = 0;
        for pool in pools {
            if !self.pools.contains_key(&pool.id) {
                self.put_pool(pool, writes);
                created += 1;
            }
        }
        for queue in queues {
            if !self.queues.contains_key(&queue.id) {
                self.put_queue(queue, writes);
                created += 1;
            }
        }
        if created > 0 {
            self.emit(DomainEvent::QueuesChanged);
        }
        Ok(CommandOutcome::Ensured { created })
    }

    fn check_pools_exist(&self, pools: &[String]) -> Result<(), DomainError> {
        validate_pool_list(pools)?;
        match pools.iter().find(|pool| !self.pools.contains_key(*pool)) {
            Some(missing) => Err(DomainError::not_found("pool", missing.clone())),
            None => Ok(()),
        }
    }

    pub(super) fn apply_create_queue(
        &mut self,
        queue: Queue,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        queue.validate()?;
        if self.queues.contains_key(&queue.id) {
            return Err(DomainError::already_exists("queue", queue.id));
        }
        self.check_pools_exist(&queue.pools)?;
        self.put_queue(queue.clone(), writes);
        self.emit(DomainEvent::QueuesChanged);
        Ok(CommandOutcome::Queue(queue))
    }

    pub(super) fn apply_update_queue(
        &mut self,
        id: &str,
        pools: Option<Vec<String>>,
        policy: Option<QueuePolicy>,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(current) = self.queues.get(id) else {
            return Err(DomainError::not_found("queue", id));
        };
        let mut updated = current.clone();
        if let Some(pools) = pools {
            self.check_pools_exist(&pools)?;
            updated.pools = pools;
        }
        if let Some(policy) = policy {
            updated.policy = policy;
        }
        updated.updated_at_ms = at_ms;
        self.put_queue(updated.clone(), writes);
        self.emit(DomainEvent::QueuesChanged);
        Ok(CommandOutcome::Queue(updated))
    }

    pub(super) fn apply_delete_queue(
        &mut self,
        id: &str,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if !self.queues.contains_key(id) {
            return Err(DomainError::not_found("queue", id));
        }
        if id == DEFAULT_QUEUE_ID {
            return Err(DomainError::Conflict(
                "the default queue cannot be deleted: jobs that name no queue go to it".to_string(),
            ));
        }
        let live = self
            .jobs
            .values()
            .filter(|job| job.spec.queue == id && !job.state.is_final())
            .count();
        if live > 0 {
            return Err(DomainError::Conflict(format!(
                "queue `{id}` still has {live} pending or running job(s); cancel them or let them finish first"
            )));
        }
        self.queues.remove(id);
        self.pending.remove(id);
        writes.delete(key(QUEUE_PREFIX, id));
        self.emit(DomainEvent::QueuesChanged);
        Ok(CommandOutcome::QueueDeleted { id: id.to_string() })
    }

    pub(super) fn apply_submit_jobs(
        &mut self,
        jobs: Vec<Job>,
        max_burst_percent: Option<u64>,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let results = jobs
            .into_iter()
            .map(|job| self.submit_one(job, max_burst_percent, writes))
            .collect();
        Ok(CommandOutcome::JobsSubmitted(results))
    }

    fn submit_one(
        &mut self,
        job: Job,
        max_burst_percent: Option<u64>,
        writes: &mut WriteBatch,
    ) -> Result<SubmittedJob, DomainError> {
        if let Some(idempotency_key) = &job.spec.idempotency_key
            && let Some(first) = self
                .idempotency
                .get(&(job.spec.tenant.clone(), idempotency_key.clone()))
                .and_then(|id| self.job(id))
        {
            return Ok(SubmittedJob {
                earlier: Some(Box::new(first.clone())),
                id: first.id.clone(),
            });
        }
        job.spec.validate()?;
        // The gateway builds jobs with `Job::new`; a forwarded or raw command may carry
        // anything, and a job stored running with no worker holding it would never end.
        if job.state != JobState::Pending
            || job.attempt != 1
            || job.worker.is_some()
            || job.pool.is_some()
        {
            return Err(DomainError::invalid(
                "state",
                "a job is submitted pending, on its first attempt, held by no worker",
            ));
        }
        if self.jobs.contains_key(&job.id) {
            return Err(DomainError::already_exists("job", job.id));
        }
        self.check_placement(&job.spec)?;
        self.check_tenant_admits(&job.spec, max_burst_percent)?;
        if let Some(idempotency_key) = &job.spec.idempotency_key {
            self.idempotency.insert(
                (job.spec.tenant.clone(), idempotency_key.clone()),
                job.id.clone(),
            );
        }
        self.store_job(job.clone(), writes);
        self.enqueue(&job);
        self.emit(DomainEvent::JobChanged(job.id.clone()));
        Ok(SubmittedJob {
            earlier: None,
            id: job.id.clone(),
        })
    }

    /// Applies a dispatch plan. Each assignment is checked again; the ones that no longer
    /// hold are skipped (the dispatcher plans again from the new state).
    pub(super) fn apply_assign_jobs(
        &mut self,
        assignments: Vec<Assignment>,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let mut assigned = 0;
        let mut rejected = 0;
        let mut workers = BTreeSet::new();
        let queue_of_plan = assignments
            .first()
            .and_then(|assignment| self.job(&assignment.job))
            .map(|job| job.spec.queue.clone());
        for assignment in assignments {
            match self.assign_one(&assignment, at_ms, writes) {
                Ok(()) => {
                    assigned += 1;
                    workers.insert(assignment.worker);
                }
                Err(_) => rejected += 1,
            }
        }
        if !workers.is_empty() {
            self.emit(DomainEvent::JobsAssigned(workers));
        }
        if let Some(queue) = queue_of_plan {
            self.log_dispatch(&queue, at_ms, assigned as u64);
        }
        Ok(CommandOutcome::JobsAssigned { assigned, rejected })
    }

    fn assign_one(
        &mut self,
        assignment: &Assignment,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> Result<(), DomainError> {
        let job = self
            .jobs
            .get(&assignment.job)
            .filter(|job| job.state == JobState::Pending)
            .ok_or_else(|| DomainError::Conflict("job is not pending".to_string()))?;
        let worker = self
            .workers
            .get(&assignment.worker)
            .filter(|worker| worker.is_live())
            .ok_or_else(|| DomainError::Conflict("worker is not live".to_string()))?;
        let queue = self
            .queues
            .get(&job.spec.queue)
            .ok_or_else(|| DomainError::not_found("queue", job.spec.queue.clone()))?;
        let pool_accepts = self
            .pools
            .get(&worker.pool)
            .is_some_and(|pool| pool.accepts_work());
        let pool_allowed = pool_accepts
            && queue.pools.contains(&worker.pool)
            && (job.spec.pool_selector.is_empty() || job.spec.pool_selector.contains(&worker.pool));
        if !pool_allowed || !job.spec.resources.fits_within(worker.free()) {
            return Err(DomainError::Conflict(
                "the worker cannot take it".to_string(),
            ));
        }
        let tenant = self
            .tenants
            .get(&job.spec.tenant)
            .ok_or_else(|| DomainError::not_found("tenant", job.spec.tenant.to_string()))?;
        let usage = self.usage(&job.spec.tenant);
        let request = JobRequest {
            resources: job.spec.resources,
            pool: Some(worker.pool.clone()),
        };
        let decision = admit(&AdmissionInput {
            quota: &tenant.quota,
            usage: &usage,
            tenant_active: tenant.status == TenantStatus::Active,
            active_burst_percent: self
                .active_burst(&job.spec.tenant)
                .map(|session| session.ceiling_percentage),
            max_burst_percent: None,
            largest_worker: None,
            request: &request,
        });
        let burst = match decision.verdict {
            Verdict::Allow => false,
            Verdict::AllowBurst => true,
            Verdict::Queue | Verdict::Deny => {
                return Err(DomainError::Conflict(
                    "the tenant is at its quota".to_string(),
                ));
            }
        };
        let mut job = job.as_ref().clone();
        let mut worker = worker.clone();
        job.transition(JobState::Assigned, at_ms, None)?;
        job.worker = Some(worker.id.clone());
        job.pool = Some(worker.pool.clone());
        job.burst = burst;
        worker.hold(&job.id, job.spec.resources, at_ms);
        // Everything is checked: from here on nothing refuses.
        self.dequeue(&job);
        self.usage_hold(&job.spec.tenant, job.spec.resources, &worker.pool);
        self.put_worker(&worker, writes);
        self.workers.insert(worker.id.clone(), worker);
        self.emit(DomainEvent::JobChanged(job.id.clone()));
        self.store_job(job, writes);
        Ok(())
    }

    /// The job's current run on `worker`, if `attempt` is the current one and it still
    /// runs there; reports about older runs are ignored.
    fn current_run(&self, job: &str, attempt: u32, worker: &str) -> Option<Job> {
        self.jobs
            .get(job)
            .filter(|found| {
                found.attempt == attempt
                    && found.worker.as_deref() == Some(worker)
                    && matches!(found.state, JobState::Assigned | JobState::Running)
            })
            .map(|found| found.as_ref().clone())
    }

    /// Judges the job's SLA at `at_ms` (its start or its end) and records a verdict.
    fn judge_sla(job: &mut Job, at_ms: u64) {
        if let Some(clock) = job.sla_clock(at_ms, None) {
            let status = hodei_domain::sla::evaluate(&clock);
            if status.is_verdict() {
                job.record_sla(status, at_ms);
            }
        }
    }

    pub(super) fn apply_record_sla(
        &mut self,
        changes: Vec<crate::state::command::SlaUpdate>,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let mut changed = 0;
        for change in changes {
            let Some(job) = self.job(&change.job) else {
                continue;
            };
            if job.state.is_final() || job.sla_target_start_ms.is_none() {
                continue;
            }
            let mut job = job.clone();
            if job.record_sla(change.status, change.at_ms) {
                changed += 1;
                self.emit(DomainEvent::JobChanged(job.id.clone()));
                self.store_job(job, writes);
            }
        }
        Ok(CommandOutcome::SlaRecorded { changed })
    }

    fn log_dispatch(&mut self, queue: &str, at_ms: u64, count: u64) {
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

    pub(super) fn apply_job_started(
        &mut self,
        job: &str,
        attempt: u32,
        worker: &str,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(mut found) = self.current_run(job, attempt, worker) else {
            return Ok(CommandOutcome::RunReported { applied: false });
        };
        if found.state != JobState::Assigned {
            return Ok(CommandOutcome::RunReported { applied: false });
        }
        found.transition(JobState::Running, at_ms, None)?;
        Self::judge_sla(&mut found, at_ms);
        self.emit(DomainEvent::JobChanged(found.id.clone()));
        self.store_job(found, writes);
        Ok(CommandOutcome::RunReported { applied: true })
    }

    pub(super) fn apply_job_finished(
        &mut self,
        report: RunReport,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(mut found) = self.current_run(&report.job, report.attempt, &report.worker) else {
            return Ok(CommandOutcome::RunReported { applied: false });
        };
        if found.state == JobState::Assigned {
            // The start report was lost (a failover between the two): the run did start.
            found.transition(JobState::Running, report.at_ms, None)?;
            Self::judge_sla(&mut found, report.at_ms);
        }
        // The whole end is computed on the copy and its release planned before anything
        // changes: a step that refuses leaves the worker and the tenant's usage as they were.
        let (next, reason) = match report.outcome {
            RunOutcome::Succeeded => (JobState::Succeeded, None),
            RunOutcome::Failed => (
                JobState::Failed,
                Some(match report.exit_code {
                    Some(code) => format!("exited with code {code}"),
                    None => "killed by a signal or could not start".to_string(),
                }),
            ),
            RunOutcome::TimedOut => (
                JobState::TimedOut,
                Some(format!(
                    "ran past its timeout of {} s and was killed",
                    found.spec.command.timeout_s.unwrap_or_default()
                )),
            ),
        };
        let started_at = found.started_at_ms().unwrap_or(report.at_ms);
        let pricing = found
            .pool
            .as_deref()
            .and_then(|pool| self.pools.get(pool))
            .map(|pool| pool.pricing)
            .unwrap_or_default();
        found.cost_nanos = Some(run_cost_nanos(
            found.spec.resources,
            &pricing,
            report.at_ms.saturating_sub(started_at),
            found.burst,
        ));
        found.transition(next, report.at_ms, reason)?;
        found.exit_code = report.exit_code;
        Self::judge_sla(&mut found, report.at_ms);
        let mut tail = report.output_tail;
        if tail.len() > OUTPUT_TAIL_BYTES {
            let mut cut = tail.len().saturating_sub(OUTPUT_TAIL_BYTES);
            while !tail.is_char_boundary(cut) {
                cut = cut.saturating_add(1);
            }
            tail = tail.split_off(cut);
        }
        // A finished job keeps its worker and pool: the release is that of its run.
        let mut release = Release::default();
        self.plan_release(&mut release, &found, report.at_ms)?;
        let pool = self
            .workers
            .get(&report.worker)
            .map(|worker| worker.pool.clone());
        // Everything is checked: from here on nothing refuses.
        self.commit_release(release, writes);
        writes.put(key(JOB_LOG_PREFIX, &found.id), tail.clone().into_bytes());
        self.job_logs.insert(found.id.clone(), tail);
        self.emit(DomainEvent::JobChanged(found.id.clone()));
        self.emit(DomainEvent::CapacityFreed { ended_in: pool });
        self.store_job(found, writes);
        Ok(CommandOutcome::RunReported { applied: true })
    }

    pub(super) fn apply_run_reports(
        &mut self,
        started: Vec<StartReport>,
        finished: Vec<RunReport>,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let mut applied = 0;
        for start in started {
            let outcome = self.apply_job_started(
                &start.job,
                start.attempt,
                &start.worker,
                start.at_ms,
                writes,
            );
            if outcome == Ok(CommandOutcome::RunReported { applied: true }) {
                applied += 1;
            }
        }
        for report in finished {
            if self.apply_job_finished(report, writes)
                == Ok(CommandOutcome::RunReported { applied: true })
            {
                applied += 1;
            }
        }
        Ok(CommandOutcome::RunsReported { applied })
    }

    pub(super) fn apply_cancel_job(
        &mut self,
        id: &str,
        cancelled_by: &str,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let mut release = Release::default();
        let cancel = self.plan_cancel(&mut release, id, cancelled_by, at_ms)?;
        // Everything is checked: from here on nothing refuses.
        self.commit_release(release, writes);
        let job = self.commit_cancel(cancel, writes);
        Ok(CommandOutcome::Job(Box::new(job)))
    }

    /// Checks that the job can be cancelled now and computes the cancel, adding the release
    /// of its run (if a worker holds it) to `release`; changes nothing. Several cancels
    /// planned into one release are applied together or not at all (a tenant's deletion);
    /// each job is planned once.
    pub(super) fn plan_cancel(
        &self,
        release: &mut Release,
        id: &str,
        cancelled_by: &str,
        at_ms: u64,
    ) -> Result<PlannedCancel, DomainError> {
        let Some(found) = self.job(id) else {
            return Err(DomainError::not_found("job", id));
        };
        if found.state.is_final() {
            return Err(DomainError::Conflict(format!(
                "job {id} is already {}; only pending, assigned or running jobs can be cancelled",
                found.state.as_str()
            )));
        }
        let was_pending = found.state == JobState::Pending;
        let mut job = found.clone();
        let worker = job.worker.clone();
        job.transition(
            JobState::Cancelled,
            at_ms,
            Some(format!("cancelled by {cancelled_by}")),
        )?;
        if !was_pending {
            // Planned from the job as it is: the cancelled copy no longer names its worker.
            self.plan_release(release, found, at_ms)?;
        }
        Ok(PlannedCancel {
            job,
            was_pending,
            worker,
        })
    }

    /// Applies a cancel computed by [`Self::plan_cancel`] (after its release was committed);
    /// returns the job as stored.
    pub(super) fn commit_cancel(&mut self, cancel: PlannedCancel, writes: &mut WriteBatch) -> Job {
        let PlannedCancel {
            job,
            was_pending,
            worker,
        } = cancel;
        if was_pending {
            self.dequeue(&job);
        }
        self.emit(DomainEvent::JobChanged(job.id.clone()));
        if let Some(worker) = worker {
            self.emit(DomainEvent::JobCancelled {
                job: job.id.clone(),
                worker,
            });
            self.emit(DomainEvent::CapacityFreed { ended_in: None });
        }
        self.store_job(job.clone(), writes);
        job
    }

    /// Registers a new worker, or a known one again after a restart or a reconnect: its
    /// running jobs that it no longer reports are lost (another attempt, or failed);
    /// assigned jobs it has not started stay assigned and are sent to it again.
    pub(super) fn apply_register_worker(
        &mut self,
        registration: WorkerRegistration,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        validate_worker_id(&registration.id)?;
        let Some(pool) = self.pools.get(&registration.pool) else {
            return Err(DomainError::not_found("pool", registration.pool));
        };
        if pool.state == hodei_domain::pool::PoolState::Decommissioned {
            return Err(DomainError::Conflict(format!(
                "pool `{}` is decommissioned: it takes no worker",
                pool.id
            )));
        }
        if registration.capacity.cpu_m == 0 || registration.capacity.memory_mb == 0 {
            return Err(DomainError::invalid(
                "capacity",
                "a worker needs at least 1 cpu_m and 1 memory_mb",
            ));
        }
        let claimed: BTreeSet<String> = registration.running.iter().cloned().collect();
        // The runs it no longer reports are lost: computed, with the worker's next version,
        // before anything changes.
        let mut release = Release::default();
        let mut lost = Vec::new();
        let mut keep = Vec::new();
        if let Some(existing) = self.workers.get(&registration.id) {
            if existing.pool != registration.pool {
                return Err(DomainError::Conflict(format!(
                    "worker `{}` is registered in pool `{}`, not `{}`",
                    registration.id, existing.pool, registration.pool
                )));
            }
            for job in existing.jobs.iter().filter_map(|id| self.job(id)) {
                if claimed.contains(&job.id) {
                    keep.push(job.id.clone());
                } else if job.state == JobState::Running {
                    lost.push(self.plan_lost_run(
                        &mut release,
                        job,
                        "its worker restarted",
                        at_ms,
                    )?);
                }
            }
        }
        let known = release
            .workers
            .remove(&registration.id)
            .or_else(|| self.workers.get(&registration.id).cloned());
        let worker = match known {
            Some(mut existing) => {
                existing.capacity = registration.capacity;
                existing.labels = registration.labels;
                if !existing.is_live() {
                    existing.state = WorkerState::Idle;
                    existing.state_changed_at_ms = at_ms;
                    existing.registered_at_ms = at_ms;
                }
                existing
            }
            None => Worker {
                id: registration.id,
                pool: registration.pool,
                capacity: registration.capacity,
                labels: registration.labels,
                state: WorkerState::Idle,
                simulated: registration.simulated,
                used: Resources::ZERO,
                jobs: BTreeSet::new(),
                registered_at_ms: at_ms,
                state_changed_at_ms: at_ms,
            },
        };
        release.workers.insert(worker.id.clone(), worker.clone());
        // Everything is checked: from here on nothing refuses.
        let requeued = self.commit_lost_runs(release, lost, writes);
        self.emit(DomainEvent::CapacityFreed { ended_in: None });
        Ok(CommandOutcome::WorkerRegistered {
            worker,
            keep,
            requeued,
        })
    }

    /// Every job of the worker goes back to pending (or fails once its retries are
    /// spent); the worker holds nothing until it registers again.
    pub(super) fn apply_worker_lost(
        &mut self,
        worker_id: &str,
        reason: &str,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(worker) = self.workers.get(worker_id) else {
            return Err(DomainError::not_found("worker", worker_id));
        };
        if !worker.is_live() {
            return Ok(CommandOutcome::WorkerLost { requeued: 0 });
        }
        let mut release = Release::default();
        let lost = self.plan_worker_loss(&mut release, worker, WorkerState::Lost, reason, at_ms)?;
        // Everything is checked: from here on nothing refuses.
        let requeued = self.commit_lost_runs(release, lost, writes);
        Ok(CommandOutcome::WorkerLost { requeued })
    }

    /// Computes the loss of every run `worker` holds, and its next version in `next_state`
    /// (lost, or terminated by its pool), into `release`; changes nothing. Every job it
    /// holds must exist and name it as its worker: otherwise the state is inconsistent (a
    /// run could not be released from it) and the command is refused and logged.
    pub(super) fn plan_worker_loss(
        &self,
        release: &mut Release,
        worker: &Worker,
        next_state: WorkerState,
        reason: &str,
        at_ms: u64,
    ) -> Result<Vec<Job>, DomainError> {
        let mut lost = Vec::with_capacity(worker.jobs.len());
        for job_id in &worker.jobs {
            let held = self
                .job(job_id)
                .filter(|job| job.worker.as_deref() == Some(worker.id.as_str()));
            let Some(job) = held else {
                tracing::error!(
                    worker = %worker.id,
                    job = %job_id,
                    "a worker holds a job that does not exist or names another worker: the command is refused"
                );
                return Err(DomainError::Conflict(format!(
                    "worker `{}` holds job {job_id}, which does not name it as its worker (an inconsistent state, logged)",
                    worker.id
                )));
            };
            lost.push(self.plan_lost_run(release, job, reason, at_ms)?);
        }
        // Every job it held was released from its planned version above.
        let mut next = release
            .workers
            .remove(&worker.id)
            .unwrap_or_else(|| worker.clone());
        next.state = next_state;
        next.state_changed_at_ms = at_ms;
        release.workers.insert(next.id.clone(), next);
        Ok(lost)
    }

    /// Computes the loss of `job`'s run with its worker into `release`: back to pending for
    /// another attempt, or failed once its retries are spent. Returns the job as it will be
    /// stored; changes nothing. A job that is neither assigned nor running cannot be held by
    /// a worker: an inconsistent state, refused and logged.
    fn plan_lost_run(
        &self,
        release: &mut Release,
        job: &Job,
        reason: &str,
        at_ms: u64,
    ) -> Result<Job, DomainError> {
        let mut lost = job.clone();
        if let Err(error) = lost.worker_lost(at_ms) {
            tracing::error!(
                job = %job.id,
                state = job.state.as_str(),
                "a worker holds a job that is neither assigned nor running: the command is refused"
            );
            return Err(error);
        }
        if let Some(last) = lost.transitions.last_mut() {
            last.reason = Some(match last.state {
                JobState::Pending => format!("{reason}; re-queued as attempt {}", lost.attempt),
                _ => format!(
                    "{reason}; {} attempt(s) made, max_retries {}",
                    lost.attempt, lost.spec.max_retries
                ),
            });
        }
        // Planned from the job as it is: the re-queued copy no longer names its worker.
        self.plan_release(release, job, at_ms)?;
        Ok(lost)
    }

    /// Applies `release` and stores the runs lost with it (computed by
    /// [`Self::plan_lost_run`]); returns how many went back to pending.
    pub(super) fn commit_lost_runs(
        &mut self,
        release: Release,
        lost: Vec<Job>,
        writes: &mut WriteBatch,
    ) -> usize {
        self.commit_release(release, writes);
        let mut requeued = 0usize;
        for job in lost {
            if job.state == JobState::Pending {
                requeued = requeued.saturating_add(1);
                self.enqueue(&job);
            }
            self.emit(DomainEvent::JobChanged(job.id.clone()));
            self.store_job(job, writes);
        }
        if requeued > 0 {
            self.emit(DomainEvent::CapacityFreed { ended_in: None });
        }
        requeued
    }
}

#[cfg(test)]
mod tests {
    use hodei_cluster::{SledStorage, StateMachine, Storage};
    use proptest::prelude::*;
    use tokio::sync::broadcast;

    use super::*;
    use crate::state::{Command, CommandV1};
    use hodei_domain::job::CommandSpec;
    use hodei_domain::labels::Labels;
    use hodei_domain::pool::PoolProvider;
    use hodei_domain::quota::Quota;
    use hodei_domain::tenant::{NewTenant, Tier};

    fn apply(state: &mut HodeiState, command: CommandV1) -> CommandResult {
        let mut writes = WriteBatch::new();
        let response = StateMachine::apply(state, 1, &Command::V1(command).encode(), &mut writes);
        crate::state::decode_result(&response).unwrap()
    }

    /// A state with tenant `acme` (the given quota), pool `p` of 1000 m workers, queue `q`
    /// and `workers` registered workers `w0..`.
    fn setup(quota: Quota, workers: usize) -> HodeiState {
        let mut state = HodeiState::new(broadcast::channel(1024).0);
        let tenant = NewTenant {
            id: TenantId::parse("acme").unwrap(),
            display_name: None,
            tier: Tier::Standard,
            weight: None,
            labels: Labels::new(),
            quota,
        }
        .into_tenant(0)
        .unwrap();
        apply(&mut state, CommandV1::CreateTenant { tenant }).unwrap();
        let pool = Pool::new(
            "p",
            hodei_domain::pool::PoolType::Static,
            PoolProvider::Static,
            Resources::new(1_000, 1_000, 0),
            0,
            10,
            0,
        );
        let queue = Queue {
            id: "q".into(),
            pools: vec!["p".into()],
            policy: QueuePolicy::Fifo,
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        apply(
            &mut state,
            CommandV1::EnsureQueuesAndPools {
                pools: vec![pool],
                queues: vec![queue],
            },
        )
        .unwrap();
        for index in 0..workers {
            apply(
                &mut state,
                CommandV1::RegisterWorker {
                    registration: WorkerRegistration {
                        id: format!("w{index}"),
                        pool: "p".into(),
                        capacity: Resources::new(1_000, 1_000, 0),
                        labels: Labels::new(),
                        simulated: false,
                        running: Vec::new(),
                    },
                    at_ms: 1,
                },
            )
            .unwrap();
        }
        state
    }

    fn job(id: &str, cpu_m: u64, max_retries: u32) -> Job {
        Job::new(
            id.to_string(),
            JobSpec {
                tenant: TenantId::parse("acme").unwrap(),
                queue: "q".into(),
                priority: Priority::Normal,
                resources: Resources::new(cpu_m, 10, 0),
                command: CommandSpec {
                    argv: vec!["true".into()],
                    ..CommandSpec::default()
                },
                simulate: None,
                labels: Labels::new(),
                max_retries,
                idempotency_key: None,
                pool_selector: Vec::new(),
                sla: None,
            },
            2,
        )
    }

    fn submit(state: &mut HodeiState, jobs: Vec<Job>) -> Vec<Result<SubmittedJob, DomainError>> {
        match apply(
            state,
            CommandV1::SubmitJobs {
                jobs,
                max_burst_percent: None,
            },
        ) {
            Ok(CommandOutcome::JobsSubmitted(results)) => results,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn assign(state: &mut HodeiState, pairs: &[(&str, &str)]) -> (usize, usize) {
        let assignments = pairs
            .iter()
            .map(|(job, worker)| Assignment {
                job: job.to_string(),
                worker: worker.to_string(),
                burst: false,
            })
            .collect();
        match apply(
            state,
            CommandV1::AssignJobs {
                assignments,
                at_ms: 3,
                sla_changes: Vec::new(),
            },
        ) {
            Ok(CommandOutcome::JobsAssigned { assigned, rejected }) => (assigned, rejected),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn finish(state: &mut HodeiState, id: &str, worker: &str, attempt: u32) -> bool {
        let report = RunReport {
            job: id.into(),
            attempt,
            worker: worker.into(),
            outcome: RunOutcome::Succeeded,
            exit_code: Some(0),
            output_tail: "ok\n".into(),
            at_ms: 9,
        };
        matches!(
            apply(state, CommandV1::JobFinished { report }),
            Ok(CommandOutcome::RunReported { applied: true })
        )
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn a_stale_plan_cannot_oversubscribe_a_worker_or_assign_twice() {
        let mut state = setup(Quota::default(), 1);
        submit(&mut state, vec![job("a", 600, 0), job("b", 600, 0)]);
        // Two plans made from the same snapshot: each alone fits, together they do not.
        assert_eq!(assign(&mut state, &[("a", "w0")]), (1, 0));
        assert_eq!(
            assign(&mut state, &[("b", "w0")]),
            (0, 1),
            "no room left on w0"
        );
        assert_eq!(
            assign(&mut state, &[("a", "w0")]),
            (0, 1),
            "a is no longer pending"
        );
        assert_eq!(state.worker("w0").unwrap().used.cpu_m, 600);
        let usage = state.usage(&acme());
        assert_eq!(
            (usage.running_jobs, usage.pending_jobs, usage.running.cpu_m),
            (1, 1, 600)
        );
    }

    #[test]
    fn apply_holds_the_quota_whatever_the_plan_says() {
        let quota = Quota {
            max_concurrent_jobs: 1,
            ..Quota::default()
        };
        let mut state = setup(quota, 2);
        submit(&mut state, vec![job("a", 100, 0), job("b", 100, 0)]);
        assert_eq!(assign(&mut state, &[("a", "w0"), ("b", "w1")]), (1, 1));
    }

    #[test]
    fn a_run_goes_start_to_finish_and_frees_its_room() {
        let mut state = setup(Quota::default(), 1);
        submit(&mut state, vec![job("a", 600, 0)]);
        assign(&mut state, &[("a", "w0")]);
        let started = apply(
            &mut state,
            CommandV1::JobStarted {
                job: "a".into(),
                attempt: 1,
                worker: "w0".into(),
                at_ms: 4,
            },
        );
        assert_eq!(started, Ok(CommandOutcome::RunReported { applied: true }));
        assert!(
            !finish(&mut state, "a", "w0", 2),
            "a report of another attempt is ignored"
        );
        assert!(
            !finish(&mut state, "a", "w9", 1),
            "a report of another worker is ignored"
        );
        assert!(finish(&mut state, "a", "w0", 1));
        assert!(
            !finish(&mut state, "a", "w0", 1),
            "a repeated report changes nothing"
        );
        let done = state.job("a").unwrap();
        assert_eq!((done.state, done.exit_code), (JobState::Succeeded, Some(0)));
        assert_eq!(state.job_output("a"), Some("ok\n"));
        assert_eq!(state.worker("w0").unwrap().used, Resources::ZERO);
        assert_eq!(state.usage(&acme()).running_jobs, 0);
    }

    #[test]
    fn batched_run_reports_start_and_end_runs_and_bill_their_run_time() {
        let mut state = setup(Quota::default(), 1);
        submit(&mut state, vec![job("a", 500, 0), job("b", 500, 0)]);
        assert_eq!(assign(&mut state, &[("a", "w0"), ("b", "w0")]), (2, 0));
        let start = |job: &str| StartReport {
            job: job.into(),
            attempt: 1,
            worker: "w0".into(),
            at_ms: 1_000,
        };
        let end = |job: &str, at_ms: u64| RunReport {
            job: job.into(),
            attempt: 1,
            worker: "w0".into(),
            outcome: RunOutcome::Succeeded,
            exit_code: Some(0),
            output_tail: String::new(),
            at_ms,
        };
        // Both start; `a` ends an hour later in the same batch, and a report for a job
        // the worker does not run is ignored without spoiling the rest.
        let outcome = apply(
            &mut state,
            CommandV1::RunReports {
                started: vec![start("a"), start("b"), start("zz")],
                finished: vec![end("a", 3_601_000)],
            },
        );
        assert_eq!(outcome, Ok(CommandOutcome::RunsReported { applied: 3 }));
        assert_eq!(state.job("a").unwrap().state, JobState::Succeeded);
        assert_eq!(state.job("b").unwrap().state, JobState::Running);
        // Half a core and 10 MB for an hour at the default prices: 0.025 + 0.01 x 10/1024
        // USD.
        assert_eq!(state.job("a").unwrap().cost_nanos, Some(25_097_656));
        assert_eq!(state.job("b").unwrap().cost_nanos, None);
        assert_eq!(state.usage(&acme()).running_jobs, 1);
    }

    #[test]
    fn a_lost_worker_requeues_its_jobs_until_retries_are_spent() {
        let mut state = setup(Quota::default(), 1);
        submit(&mut state, vec![job("keep", 100, 1), job("drop", 100, 0)]);
        assign(&mut state, &[("keep", "w0"), ("drop", "w0")]);
        let lost = apply(
            &mut state,
            CommandV1::WorkerLost {
                worker: "w0".into(),
                reason: "missed heartbeats".into(),
                at_ms: 5,
            },
        );
        assert_eq!(lost, Ok(CommandOutcome::WorkerLost { requeued: 1 }));
        let kept = state.job("keep").unwrap();
        assert_eq!((kept.state, kept.attempt), (JobState::Pending, 2));
        assert_eq!(state.job("drop").unwrap().state, JobState::Failed);
        assert_eq!(state.worker("w0").unwrap().state, WorkerState::Lost);
        assert_eq!(
            assign(&mut state, &[("keep", "w0")]),
            (0, 1),
            "a lost worker takes nothing"
        );
        let usage = state.usage(&acme());
        assert_eq!((usage.running_jobs, usage.pending_jobs), (0, 1));
    }

    #[test]
    fn a_restarted_worker_loses_the_runs_it_no_longer_reports() {
        let mut state = setup(Quota::default(), 1);
        submit(&mut state, vec![job("ran", 100, 1), job("still", 100, 1)]);
        assign(&mut state, &[("ran", "w0"), ("still", "w0")]);
        for id in ["ran", "still"] {
            apply(
                &mut state,
                CommandV1::JobStarted {
                    job: id.into(),
                    attempt: 1,
                    worker: "w0".into(),
                    at_ms: 4,
                },
            )
            .unwrap();
        }
        let registered = apply(
            &mut state,
            CommandV1::RegisterWorker {
                registration: WorkerRegistration {
                    id: "w0".into(),
                    pool: "p".into(),
                    capacity: Resources::new(1_000, 1_000, 0),
                    labels: Labels::new(),
                    simulated: false,
                    running: vec!["still".into(), "unknown".into()],
                },
                at_ms: 6,
            },
        );
        let Ok(CommandOutcome::WorkerRegistered { keep, requeued, .. }) = registered else {
            panic!("unexpected {registered:?}");
        };
        assert_eq!((keep, requeued), (vec!["still".to_string()], 1));
        assert_eq!(state.job("ran").unwrap().state, JobState::Pending);
        assert_eq!(state.job("still").unwrap().state, JobState::Running);
    }

    #[test]
    fn submit_rules_idempotency_backlog_and_placement() {
        let quota = Quota {
            max_pending_jobs: 2,
            ..Quota::default()
        };
        let mut state = setup(quota, 0);
        let mut keyed = job("k1", 100, 0);
        keyed.spec.idempotency_key = Some("nightly".into());
        let mut repeat = job("k2", 100, 0);
        repeat.spec.idempotency_key = Some("nightly".into());
        let results = submit(
            &mut state,
            vec![keyed, repeat, job("x", 100, 0), job("y", 100, 0)],
        );
        assert!(matches!(&results[0], Ok(first) if !first.is_duplicate()));
        assert!(
            matches!(&results[1], Ok(again) if again.earlier.as_ref().is_some_and(|job| job.id == "k1"))
        );
        assert!(results[2].is_ok());
        assert!(
            matches!(results[3], Err(DomainError::Exhausted(_))),
            "backlog of 2 is full"
        );
        let too_big = submit(&mut state, vec![job("big", 5_000, 0)]);
        assert!(
            matches!(&too_big[0], Err(DomainError::Invalid { field, .. }) if field == "resources.cpu_m"),
            "{too_big:?}"
        );
        let mut lost_queue = job("nq", 100, 0);
        lost_queue.spec.queue = "nope".into();
        assert!(matches!(
            &submit(&mut state, vec![lost_queue])[0],
            Err(DomainError::NotFound { .. })
        ));
    }

    #[test]
    fn jobs_load_back_from_storage_with_their_derived_usage() {
        let storage = SledStorage::temporary().unwrap();
        let keyspace = storage.keyspace("state").unwrap();
        let mut state = setup(Quota::default(), 1);
        let mut commands = vec![CommandV1::SubmitJobs {
            jobs: vec![job("a", 300, 0), job("b", 300, 0)],
            max_burst_percent: None,
        }];
        commands.push(CommandV1::AssignJobs {
            assignments: vec![Assignment {
                job: "a".into(),
                worker: "w0".into(),
                burst: false,
            }],
            at_ms: 3,
            sla_changes: Vec::new(),
        });
        // Replay everything into a stored state.
        let mut stored = HodeiState::new(broadcast::channel(16).0);
        let mut writes = WriteBatch::new();
        let snapshot = state.snapshot().unwrap();
        stored.restore(&snapshot, &mut writes).unwrap();
        keyspace.write(writes).unwrap();
        for command in commands {
            let mut writes = WriteBatch::new();
            StateMachine::apply(
                &mut stored,
                2,
                &Command::V1(command.clone()).encode(),
                &mut writes,
            );
            keyspace.write(writes).unwrap();
            apply(&mut state, command).unwrap();
        }
        let loaded = HodeiState::load(keyspace.as_ref(), broadcast::channel(1).0).unwrap();
        assert_eq!(loaded.usage(&acme()), state.usage(&acme()));
        assert_eq!(loaded.job("a").unwrap().state, JobState::Assigned);
        assert_eq!(loaded.pending_in("q").count(), 1);
        assert_eq!(loaded.worker("w0").unwrap().used.cpu_m, 300);
    }

    #[test]
    fn deleting_a_tenant_with_live_jobs_needs_cascade_which_cancels_them() {
        let mut state = setup(Quota::default(), 1);
        submit(&mut state, vec![job("a", 300, 0), job("b", 300, 0)]);
        assign(&mut state, &[("a", "w0")]);
        let refused = apply(
            &mut state,
            CommandV1::DeleteTenant {
                id: acme(),
                cascade: false,
                at_ms: 5,
            },
        );
        assert!(matches!(refused, Err(DomainError::Conflict(_))));
        let deleted = apply(
            &mut state,
            CommandV1::DeleteTenant {
                id: acme(),
                cascade: true,
                at_ms: 5,
            },
        );
        assert!(matches!(deleted, Ok(CommandOutcome::TenantDeleted { .. })));
        for id in ["a", "b"] {
            assert_eq!(state.job(id).unwrap().state, JobState::Cancelled);
        }
        assert_eq!(state.worker("w0").unwrap().used, Resources::ZERO);
        assert_eq!(state.pending_in("q").count(), 0);
    }

    #[test]
    fn sla_is_judged_at_start_and_recorded_changes_stick() {
        use hodei_domain::sla::{SlaLevel, SlaSpec, SlaStatus};
        let mut state = setup(Quota::default(), 1);
        let with_sla = |id: &str, target: u64| {
            let mut found = job(id, 100, 0);
            found.spec.sla = Some(SlaSpec {
                level: SlaLevel::Critical,
                start_by_ms: Some(target),
                finish_by_ms: None,
            });
            found.sla_target_start_ms = Some(target);
            found
        };
        submit(
            &mut state,
            vec![with_sla("on-time", 10), with_sla("late", 3)],
        );
        let recorded = apply(
            &mut state,
            CommandV1::RecordSla {
                changes: vec![crate::state::command::SlaUpdate {
                    job: "late".into(),
                    status: SlaStatus::AtRisk,
                    at_ms: 2,
                }],
            },
        );
        assert_eq!(recorded, Ok(CommandOutcome::SlaRecorded { changed: 1 }));
        assign(&mut state, &[("on-time", "w0"), ("late", "w0")]);
        for id in ["on-time", "late"] {
            apply(
                &mut state,
                CommandV1::JobStarted {
                    job: id.into(),
                    attempt: 1,
                    worker: "w0".into(),
                    at_ms: 5,
                },
            )
            .unwrap();
        }
        assert_eq!(
            state.job("on-time").unwrap().sla_status(),
            Some(SlaStatus::Met)
        );
        let late: Vec<SlaStatus> = state
            .job("late")
            .unwrap()
            .sla_history
            .iter()
            .map(|change| change.status)
            .collect();
        assert_eq!(late, [SlaStatus::AtRisk, SlaStatus::Violated]);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Submit(u64),
        Assign(usize, usize),
        Finish(usize),
        Lose(usize),
        Register(usize),
        Cancel(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (100u64..700).prop_map(Step::Submit),
            (0usize..12, 0usize..3).prop_map(|(job, worker)| Step::Assign(job, worker)),
            (0usize..12).prop_map(Step::Finish),
            (0usize..3).prop_map(Step::Lose),
            (0usize..3).prop_map(Step::Register),
            (0usize..12).prop_map(Step::Cancel),
        ]
    }

    proptest! {
        /// Whatever plans, reports and failures arrive in whatever order, no worker holds
        /// more than its capacity, no tenant runs more than its quota, and the derived
        /// usage equals what a fresh rebuild from the jobs gives.
        #[test]
        fn no_interleaving_oversubscribes_or_corrupts_usage(steps in proptest::collection::vec(step(), 1..80)) {
            let quota = Quota { cpu_m: 1_500, max_concurrent_jobs: 3, ..Quota::default() };
            let mut state = setup(quota.clone(), 3);
            let mut submitted = 0usize;
            for step in steps {
                match step {
                    Step::Submit(cpu_m) => {
                        submit(&mut state, vec![job(&format!("j{submitted}"), cpu_m, 1)]);
                        submitted += 1;
                    }
                    Step::Assign(job_index, worker) => {
                        assign(&mut state, &[(&format!("j{job_index}"), &format!("w{worker}"))]);
                    }
                    Step::Finish(job_index) => {
                        let id = format!("j{job_index}");
                        if let Some(found) = state.job(&id).cloned()
                            && let Some(worker) = found.worker.clone()
                        {
                            finish(&mut state, &id, &worker, found.attempt);
                        }
                    }
                    Step::Lose(worker) => {
                        let _ = apply(&mut state, CommandV1::WorkerLost { worker: format!("w{worker}"), reason: "test".into(), at_ms: 7 });
                    }
                    Step::Register(worker) => {
                        let _ = apply(&mut state, CommandV1::RegisterWorker {
                            registration: WorkerRegistration {
                                id: format!("w{worker}"),
                                pool: "p".into(),
                                capacity: Resources::new(1_000, 1_000, 0),
                                labels: Labels::new(),
                                simulated: false,
                                running: Vec::new(),
                            },
                            at_ms: 8,
                        });
                    }
                    Step::Cancel(job_index) => {
                        let _ = apply(&mut state, CommandV1::CancelJob { id: format!("j{job_index}"), cancelled_by: "test".into(), at_ms: 9 });
                    }
                }
                for worker in state.workers() {
                    let held: Resources = worker.jobs.iter().filter_map(|id| state.job(id)).map(|job| job.spec.resources).fold(Resources::ZERO, Resources::saturating_add);
                    prop_assert_eq!(held, worker.used);
                    prop_assert!(worker.used.fits_within(worker.capacity));
                }
                let usage = state.usage(&acme());
                prop_assert!(usage.running_jobs <= quota.max_concurrent_jobs);
                prop_assert!(usage.running.cpu_m <= quota.cpu_m);
                let mut rebuilt = HodeiState::new(broadcast::channel(16).0);
                let mut writes = WriteBatch::new();
                rebuilt.restore(&state.snapshot().unwrap(), &mut writes).unwrap();
                prop_assert_eq!(rebuilt.usage(&acme()).running_jobs, usage.running_jobs);
                prop_assert_eq!(rebuilt.usage(&acme()).pending_jobs, usage.pending_jobs);
                prop_assert_eq!(rebuilt.usage(&acme()).running, usage.running);
                let nonzero = |hodei: &HodeiState| -> Vec<((String, TenantId, JobState), u64)> {
                    hodei.job_tally().iter().filter(|(_, count)| **count > 0).map(|(key, count)| (key.clone(), *count)).collect()
                };
                prop_assert_eq!(nonzero(&rebuilt), nonzero(&state));
                let by_priority = |hodei: &HodeiState| -> Vec<((String, Priority, JobState), u64)> {
                    hodei.priority_tally().iter().filter(|(_, count)| **count > 0).map(|(key, count)| (key.clone(), *count)).collect()
                };
                prop_assert_eq!(by_priority(&rebuilt), by_priority(&state));
            }
        }
    }
}
