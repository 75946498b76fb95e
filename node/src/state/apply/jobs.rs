//! Apply for job submission and cancellation: placement and quota checks, idempotency,
//! then the write.

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{DomainEvent, HodeiState};
use crate::state::jobs::{PlannedCancel, Release, SubmittedJob};
use crate::state::violations::Violation;
use hodei_domain::DomainError;
use hodei_domain::admission::{AdmissionInput, Decision, JobRequest, ReasonCode, Verdict, admit};
use hodei_domain::job::{Job, JobSpec, JobState};
use hodei_domain::resources::Resources;

impl HodeiState {
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
        self.tenant_admission(spec, max_burst_percent)
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// The admission of a new job by its tenant: `Ok` with the verdict as it stands now
    /// (allow, allow_burst, or queue: it waits for the quota), or the refusal with the
    /// decision's reasons (to count as a violation).
    fn tenant_admission(
        &self,
        spec: &JobSpec,
        max_burst_percent: Option<u64>,
    ) -> Result<Decision, (DomainError, Decision)> {
        let Some(tenant) = self.tenants.get(&spec.tenant) else {
            let refusal = DomainError::not_found("tenant", spec.tenant.to_string());
            return Err((
                refusal,
                Decision {
                    verdict: Verdict::Deny,
                    reasons: Vec::new(),
                },
            ));
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
            active_burst_percent: self
                .active_burst(&spec.tenant)
                .map(|session| session.ceiling_percentage),
            max_burst_percent,
            largest_worker: None,
            request: &request,
        });
        if decision.verdict != Verdict::Deny {
            return Ok(decision);
        }
        if let Some(full) = decision
            .reasons
            .iter()
            .find(|reason| reason.code == ReasonCode::BacklogFull)
            && decision.reasons.len() == 1
        {
            let refusal =
                DomainError::Exhausted(format!("tenant `{}`: {}", spec.tenant, full.message));
            return Err((refusal, decision));
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
            let refusal = DomainError::invalid("tenant", "admission refused the job");
            return Err((refusal, decision));
        };
        let field = match first.dimension {
            Some(hodei_domain::resources::Dimension::Cpu) => "resources.cpu_m",
            Some(hodei_domain::resources::Dimension::Memory) => "resources.memory_mb",
            Some(hodei_domain::resources::Dimension::Gpu) => "resources.gpu",
            _ => "tenant",
        };
        let refusal = DomainError::invalid(field, first.message.clone());
        Err((refusal, decision))
    }

    /// Counts a quota decision that refused or queued a job (`state/violations.rs`).
    pub(in crate::state) fn record_decision(
        &mut self,
        job: &Job,
        decision: &Decision,
        source: &str,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) {
        if decision.reasons.is_empty() {
            return;
        }
        let reasons = decision
            .reasons
            .iter()
            .map(|reason| reason.code.as_str().to_string())
            .collect();
        let message = decision
            .reasons
            .iter()
            .map(|reason| reason.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let violation = Violation {
            seq: 0,
            at_ms,
            tenant: job.spec.tenant.to_string(),
            verdict: decision.verdict.as_str().to_string(),
            source: source.to_string(),
            reasons,
            message,
        };
        self.record_violation(violation, writes);
    }

    pub(in crate::state) fn apply_submit_jobs(
        &mut self,
        command::SubmitJobs {
            jobs,
            max_burst_percent,
        }: command::SubmitJobs,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let results = jobs
            .into_iter()
            .map(|job| self.submit_one(job, max_burst_percent, writes))
            .collect();
        Ok(CommandOutcome::JobsSubmitted(results))
    }

    pub(in crate::state) fn submit_one(
        &mut self,
        job: Job,
        max_burst_percent: Option<u64>,
        writes: &mut WriteBatch,
    ) -> Result<SubmittedJob, DomainError> {
        if let Some(idempotency_key) = &job.spec.idempotency_key
            && let Some((holder, archived)) =
                self.idempotency_holder(&job.spec.tenant, idempotency_key)
        {
            if archived {
                return Ok(SubmittedJob {
                    earlier: None,
                    id: holder.to_string(),
                    in_history: true,
                });
            }
            if let Some(first) = self.job(holder) {
                return Ok(SubmittedJob {
                    earlier: Some(Box::new(first.clone())),
                    id: first.id.clone(),
                    in_history: false,
                });
            }
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
        let decision = match self.tenant_admission(&job.spec, max_burst_percent) {
            Ok(decision) => decision,
            Err((refusal, decision)) => {
                // The refusal of this job is counted; the batch it came in goes on.
                self.record_decision(&job, &decision, "submit", job.submitted_at_ms, writes);
                return Err(refusal);
            }
        };
        if decision.verdict == Verdict::Queue {
            self.record_decision(&job, &decision, "submit", job.submitted_at_ms, writes);
        }
        self.store_job(job.clone(), writes);
        self.emit(DomainEvent::JobChanged(job.id.clone()));
        Ok(SubmittedJob {
            earlier: None,
            id: job.id.clone(),
            in_history: false,
        })
    }

    pub(in crate::state) fn apply_cancel_job(
        &mut self,
        command::CancelJob {
            id,
            cancelled_by,
            at_ms,
        }: command::CancelJob,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
        let cancelled_by = cancelled_by.as_str();
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
    pub(in crate::state) fn plan_cancel(
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
        // The time it ran is billed, as for a run that ends by itself.
        if let Some(started_at) = found.running_since_ms() {
            job.cost_nanos = self.job_cost(found, started_at, at_ms);
        }
        if !was_pending {
            self.plan_release(release, found, at_ms)?;
        }
        Ok(PlannedCancel { job, worker })
    }

    /// Applies a cancel computed by [`Self::plan_cancel`] (after its release was committed);
    /// returns the job as stored.
    pub(in crate::state) fn commit_cancel(
        &mut self,
        cancel: PlannedCancel,
        writes: &mut WriteBatch,
    ) -> Job {
        let PlannedCancel { job, worker } = cancel;
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
}
