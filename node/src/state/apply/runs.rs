//! Apply for runs: dispatch plans re-checked assignment by assignment, a run's start and
//! end (its cost, its SLA), and what ending a set of runs takes back.

use std::collections::BTreeSet;
use std::collections::btree_map::Entry;

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{DomainEvent, HodeiState};
use crate::state::jobs::{Release, release_usage};
use crate::state::keys::stream_key;
use crate::state::keys::{JOB_LOG_PREFIX, key};
use hodei_domain::DomainError;
use hodei_domain::admission::{AdmissionInput, JobRequest, Verdict, admit};
use hodei_domain::dispatch::Assignment;
use hodei_domain::job::{Job, JobState};
use hodei_domain::run::{OUTPUT_TAIL_BYTES, RunOutcome, RunReport};
use hodei_domain::tenant::TenantStatus;

impl HodeiState {
    /// Adds the end of `job`'s run (finished, cancelled, or lost with its worker) to
    /// `release`: its resources become free on its worker and in its tenant's usage. The
    /// usage is derived from the jobs, so it always holds the run; if it does not, the state
    /// is inconsistent and the run end is refused and logged, rather than released from a
    /// usage that never held it (a saturating release would hide the error).
    pub(in crate::state) fn plan_release(
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

    /// Applies a release computed by [`Self::plan_release`] to the workers (the usage
    /// follows the jobs as they are stored: `on_job_stored`).
    pub(in crate::state) fn commit_release(&mut self, release: Release, writes: &mut WriteBatch) {
        for (id, worker) in release.workers {
            if let Some(previous) = self.workers.get(&id).cloned() {
                self.bill_worker_interval(&previous, &worker, writes);
            }
            self.put_worker(&worker, writes);
            self.workers.insert(id, worker);
        }
    }

    /// Applies a dispatch plan. Each assignment is checked again; the ones that no longer
    /// hold are skipped (the dispatcher plans again from the new state).
    pub(in crate::state) fn apply_assign_jobs(
        &mut self,
        command::AssignJobs {
            assignments,
            at_ms,
            sla_changes,
        }: command::AssignJobs,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        // The SLA changes the dispatcher saw while planning are recorded first.
        self.apply_record_sla(sla_changes, writes)?;
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

    pub(in crate::state) fn assign_one(
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
                .active_burst_at(&job.spec.tenant, at_ms)
                .map(|session| session.ceiling_percentage),
            max_burst_percent: None,
            largest_worker: None,
            request: &request,
        });
        let burst = match decision.verdict {
            Verdict::Allow => false,
            Verdict::AllowBurst => true,
            Verdict::Queue | Verdict::Deny => {
                // A real queueing decision, counted (the plan goes on without it).
                let job = job.as_ref().clone();
                self.record_decision(&job, &decision, "dispatch", at_ms, writes);
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
        self.put_worker(&worker, writes);
        self.workers.insert(worker.id.clone(), worker);
        self.emit(DomainEvent::JobChanged(job.id.clone()));
        self.store_job(job, writes);
        Ok(())
    }

    /// The job's current run on `worker`, if `attempt` is the current one and it still
    /// runs there; reports about older runs are ignored.
    pub(in crate::state) fn current_run(
        &self,
        job: &str,
        attempt: u32,
        worker: &str,
    ) -> Option<Job> {
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
    pub(in crate::state) fn judge_sla(job: &mut Job, at_ms: u64) {
        if let Some(clock) = job.sla_clock(at_ms, None) {
            let status = hodei_domain::sla::evaluate(&clock);
            if status.is_verdict() {
                job.record_sla(status, at_ms);
            }
        }
    }

    pub(in crate::state) fn apply_record_sla(
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

    pub(in crate::state) fn apply_job_started(
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

    pub(in crate::state) fn apply_job_finished(
        &mut self,
        command::JobFinished { report }: command::JobFinished,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if report.outcome == RunOutcome::Cancelled {
            return Ok(self.record_cancelled_output(report, writes));
        }
        let Some(mut found) = self.current_run(&report.job, report.attempt, &report.worker) else {
            // Its job may have been cancelled while the run ended on its own: the output
            // is still the run's.
            return Ok(self.record_cancelled_output(report, writes));
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
            // Handled above: a cancelled run's report only brings its output.
            RunOutcome::Cancelled => {
                return Ok(CommandOutcome::RunReported { applied: false });
            }
            RunOutcome::TimedOut => (
                JobState::TimedOut,
                Some(format!(
                    "ran past its timeout of {} s and was killed",
                    found.spec.command.timeout_s.unwrap_or_default()
                )),
            ),
        };
        // The current run only: an assigned job whose start report was lost ran for none
        // of it that was reported.
        let started_at = found.running_since_ms().unwrap_or(report.at_ms);
        found.cost_nanos = self.job_cost(&found, started_at, report.at_ms);
        found.usage = report.usage;
        found.transition(next, report.at_ms, reason)?;
        found.exit_code = report.exit_code;
        Self::judge_sla(&mut found, report.at_ms);
        let tail = bounded_tail(report.output_tail);
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

    /// What a run of `job` from `started_at` to `ended_at` costs at its pool's prices.
    /// Each part of the run at the price then in force, times the tenant tier's percentage
    /// (the same prices and tier as the cost ledger's lines of the run).
    pub fn run_cost(&self, job: &Job, started_at: u64, ended_at: u64) -> u64 {
        self.prices_of(job.pool.as_deref().unwrap_or_default())
            .run_cost_nanos(
                job.spec.resources,
                started_at,
                ended_at,
                job.burst,
                self.tier_of(&job.spec.tenant),
            )
    }

    /// What the job records as its run's cost: none when cost tracking or its per-job
    /// part is off.
    pub(in crate::state) fn job_cost(
        &self,
        job: &Job,
        started_at: u64,
        ended_at: u64,
    ) -> Option<u64> {
        let settings = self.cost_settings();
        // A run that began while tracking was off is billed from when it came on.
        let started_at = started_at.max(self.billed_since_ms()).min(ended_at);
        (settings.enabled && settings.track_by_job)
            .then(|| self.run_cost(job, started_at, ended_at))
    }

    /// Output of a run while it runs (and its last flush, which may commit after its end):
    /// kept if it is of the job's current run on that worker and newer than what is kept.
    /// The interleaved tail of a finished job is the one its end report brought.
    pub(in crate::state) fn apply_run_output(
        &mut self,
        command::RunOutput {
            job,
            attempt,
            worker,
            seq,
            combined,
            stdout,
            stderr,
        }: command::RunOutput,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(found) = self.job(&job) else {
            return Ok(CommandOutcome::RunReported { applied: false });
        };
        let current = found.attempt == attempt && found.worker.as_deref() == Some(worker.as_str());
        // (attempt, seq) of what is kept: a new attempt's output replaces an earlier one's
        // whatever their sequence numbers (each run counts from zero).
        let kept = self
            .job_logs
            .get(&stream_key(&job, "seq"))
            .and_then(|raw| raw.split_once(':'))
            .and_then(|(kept_attempt, kept_seq)| {
                Some((
                    kept_attempt.parse::<u32>().ok()?,
                    kept_seq.parse::<u64>().ok()?,
                ))
            })
            .unwrap_or((0, 0));
        if !current || (attempt, seq) <= kept {
            return Ok(CommandOutcome::RunReported { applied: false });
        }
        let ended = found.state.is_final();
        let mut kept = vec![
            (stream_key(&job, "stdout"), bounded_tail(stdout)),
            (stream_key(&job, "stderr"), bounded_tail(stderr)),
            (stream_key(&job, "seq"), format!("{attempt}:{seq}")),
        ];
        if !ended {
            kept.push((job.clone(), bounded_tail(combined)));
        }
        for (id, text) in kept {
            writes.put(key(JOB_LOG_PREFIX, &id), text.clone().into_bytes());
            self.job_logs.insert(id, text);
        }
        Ok(CommandOutcome::RunReported { applied: true })
    }

    /// The end report of a run its job's cancel stopped: keeps the output it wrote, once,
    /// if the job is cancelled and the report is from the worker and attempt it ran as.
    fn record_cancelled_output(
        &mut self,
        report: RunReport,
        writes: &mut WriteBatch,
    ) -> CommandOutcome {
        let matches = self.job(&report.job).is_some_and(|job| {
            job.state == JobState::Cancelled
                && job.attempt == report.attempt
                && job.worker.as_deref() == Some(report.worker.as_str())
        });
        if !matches {
            return CommandOutcome::RunReported { applied: false };
        }
        let tail = bounded_tail(report.output_tail);
        writes.put(key(JOB_LOG_PREFIX, &report.job), tail.clone().into_bytes());
        self.job_logs.insert(report.job.clone(), tail);
        self.emit(DomainEvent::JobChanged(report.job));
        CommandOutcome::RunReported { applied: true }
    }

    pub(in crate::state) fn apply_run_reports(
        &mut self,
        command::RunReports { started, finished }: command::RunReports,
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
            if self.apply_job_finished(command::JobFinished { report }, writes)
                == Ok(CommandOutcome::RunReported { applied: true })
            {
                applied += 1;
            }
        }
        Ok(CommandOutcome::RunsReported { applied })
    }
}

/// The last `OUTPUT_TAIL_BYTES` of a run's output (cut on a character boundary).
fn bounded_tail(mut tail: String) -> String {
    if tail.len() > OUTPUT_TAIL_BYTES {
        let mut cut = tail.len().saturating_sub(OUTPUT_TAIL_BYTES);
        while !tail.is_char_boundary(cut) {
            cut = cut.saturating_add(1);
        }
        tail = tail.split_off(cut);
    }
    tail
}
