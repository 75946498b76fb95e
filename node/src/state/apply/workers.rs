//! Apply for workers: registration (and what a re-registering worker no longer runs) and
//! the loss of a worker.

use std::collections::BTreeSet;

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{DomainEvent, HodeiState};
use crate::state::jobs::Release;
use hodei_domain::DomainError;
use hodei_domain::job::{Job, JobState};
use hodei_domain::resources::Resources;
use hodei_domain::worker::{Worker, WorkerState, validate_worker_id};

/// The longest provisioning a worker's pool pays for before it registered.
pub const MAX_PROVISIONING_MS: u64 = 10 * 60 * 1_000;

impl HodeiState {
    /// Registers a worker from an agent, binding its id to that agent: while the worker is
    /// live, another agent under its id is refused (a second registration is never a
    /// takeover, whichever node leads); once it is lost or stopped, another agent may take
    /// its id.
    pub(in crate::state) fn apply_register_agent_worker(
        &mut self,
        command::RegisterAgentWorker { register, agent }: command::RegisterAgentWorker,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = register.registration.id.clone();
        let live = self.workers.get(&id).is_some_and(Worker::is_live);
        if live && self.worker_agent(&id).is_some_and(|bound| bound != agent) {
            return Err(DomainError::Conflict(format!(
                "worker `{id}` is live under another agent: a second agent under its id is refused, never a takeover (stop the other agent, or wait until it misses its heartbeats)"
            )));
        }
        let registered_at_ms = register.at_ms;
        let outcome = self.apply_register_worker(register, writes)?;
        self.put_access_entry(
            crate::state::access_book::AccessEntry::WorkerAgent {
                worker: id.clone(),
                agent,
            },
            writes,
        );
        self.put_access_entry(
            crate::state::access_book::AccessEntry::WorkerSession {
                worker: id,
                registered_at_ms,
            },
            writes,
        );
        Ok(outcome)
    }

    /// A loss the leader decided for the registration of `session_ms`: refused, changing
    /// nothing, if the worker registered again since.
    pub(in crate::state) fn apply_worker_lost_since(
        &mut self,
        command::WorkerLostSince { lost, session_ms }: command::WorkerLostSince,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if let Some(current) = self.worker_session(&lost.worker)
            && current != session_ms
        {
            return Err(DomainError::Conflict(format!(
                "worker `{}` registered again after it was judged silent: not lost",
                lost.worker
            )));
        }
        self.apply_worker_lost(lost, writes)
    }

    /// Runs a live worker no longer lists: each still its attempt on that worker is lost
    /// (re-queued, or failed once its retries are spent); refused, changing nothing, if
    /// the worker registered again since the leader judged it.
    pub(in crate::state) fn apply_runs_vanished(
        &mut self,
        command::RunsVanished {
            worker,
            session_ms,
            runs,
            at_ms,
        }: command::RunsVanished,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(held_by) = self.workers.get(&worker).filter(|found| found.is_live()) else {
            return Err(DomainError::Conflict(format!(
                "worker `{worker}` is not live: its runs went with it"
            )));
        };
        if self.worker_session(&worker) != Some(session_ms) {
            return Err(DomainError::Conflict(format!(
                "worker `{worker}` registered again after its runs were judged vanished"
            )));
        }
        let mut release = Release::default();
        let mut lost = Vec::new();
        for (job_id, attempt) in &runs {
            let Some(job) = self.job(job_id).filter(|job| {
                job.attempt == *attempt
                    && job.worker.as_deref() == Some(worker.as_str())
                    && held_by.jobs.contains(job_id)
                    && matches!(job.state, JobState::Assigned | JobState::Running)
            }) else {
                continue;
            };
            lost.push(self.plan_lost_run(
                &mut release,
                job,
                "its worker no longer ran it",
                at_ms,
            )?);
        }
        // Everything is checked: from here on nothing refuses.
        let requeued = self.commit_lost_runs(release, lost, writes);
        Ok(CommandOutcome::WorkerLost { requeued })
    }

    /// Registers a new worker, or a known one again after a restart or a reconnect: its
    /// running jobs that it no longer reports are lost (another attempt, or failed);
    /// assigned jobs it has not started stay assigned and are sent to it again.
    pub(in crate::state) fn apply_register_worker(
        &mut self,
        command::RegisterWorker {
            registration,
            at_ms,
            provisioned_at_ms,
        }: command::RegisterWorker,
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
        // A live worker with a new capacity: billed at the old one until now.
        let mut rebilled = None;
        let known = release
            .workers
            .remove(&registration.id)
            .or_else(|| self.workers.get(&registration.id).cloned());
        let worker = match known {
            Some(mut existing) => {
                if existing.is_live() && existing.capacity != registration.capacity {
                    rebilled = Some(existing.clone());
                }
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
        // A worker that goes live now is paid for from its provisioning start, when its
        // provider says (at most the provision timeout's worth before; never later).
        let provisioned_from = provisioned_at_ms
            .filter(|_| !self.workers.get(&worker.id).is_some_and(Worker::is_live))
            .map(|provisioned| provisioned.clamp(at_ms.saturating_sub(MAX_PROVISIONING_MS), at_ms))
            .filter(|provisioned| *provisioned < at_ms);
        release.workers.insert(worker.id.clone(), worker.clone());
        // Everything is checked: from here on nothing refuses.
        let requeued = self.commit_lost_runs(release, lost, writes);
        if let Some(previous) = rebilled {
            self.rebill_worker(&previous, at_ms, writes);
        }
        if let Some(provisioned) = provisioned_from {
            self.bill_from(&worker.id, provisioned, writes);
        }
        self.emit(DomainEvent::CapacityFreed { ended_in: None });
        Ok(CommandOutcome::WorkerRegistered {
            worker,
            keep,
            requeued,
        })
    }

    /// Every job of the worker goes back to pending (or fails once its retries are
    /// spent); the worker holds nothing until it registers again.
    pub(in crate::state) fn apply_worker_lost(
        &mut self,
        command::WorkerLost {
            worker: worker_id,
            reason,
            at_ms,
        }: command::WorkerLost,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let worker_id = worker_id.as_str();
        let reason = reason.as_str();
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

    pub(in crate::state) fn apply_worker_left(
        &mut self,
        command::WorkerLeft {
            worker: worker_id,
            reason,
            at_ms,
        }: command::WorkerLeft,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(worker) = self.workers.get(&worker_id) else {
            return Err(DomainError::not_found("worker", worker_id));
        };
        if !worker.is_live() {
            return Ok(CommandOutcome::WorkerLost { requeued: 0 });
        }
        let mut release = Release::default();
        let left = self.plan_worker_loss(
            &mut release,
            worker,
            WorkerState::Terminated,
            &reason,
            at_ms,
        )?;
        // Everything is checked: from here on nothing refuses.
        let requeued = self.commit_lost_runs(release, left, writes);
        Ok(CommandOutcome::WorkerLost { requeued })
    }

    /// Computes the loss of every run `worker` holds, and its next version in `next_state`
    /// (lost, or terminated by its pool), into `release`; changes nothing. Every job it
    /// holds must exist and name it as its worker: otherwise the state is inconsistent (a
    /// run could not be released from it) and the command is refused and logged.
    pub(in crate::state) fn plan_worker_loss(
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
    pub(in crate::state) fn plan_lost_run(
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
        // A run that fails with its worker is billed up to the loss, as a run that ends by
        // itself (its ledger lines are those of the same run).
        if lost.state.is_final()
            && let Some(started_at) = job.running_since_ms()
        {
            lost.cost_nanos = self.job_cost(job, started_at, at_ms);
        }
        // Planned from the job as it is: the re-queued copy no longer names its worker.
        self.plan_release(release, job, at_ms)?;
        Ok(lost)
    }

    /// Applies `release` and stores the runs lost with it (computed by
    /// [`Self::plan_lost_run`]); returns how many went back to pending.
    pub(in crate::state) fn commit_lost_runs(
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
