//! The replicated side of pools (US-09.3.1 - US-09.3.4): create, change and delete them,
//! their static and dynamic settings, health (active <-> degraded), and stopping workers.
//! Decisions that need the clock or a provider (when to scale, when a drain is done) are
//! made by the leader's pool actor and arrive here as commands.

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{DomainEvent, HodeiState, put_encoded};
use crate::state::jobs::Release;
use crate::state::keys::{POOL_PREFIX, WORKER_PREFIX, key};
use hodei_domain::DomainError;
use hodei_domain::pool::{Pool, PoolState, PoolTransition, PoolType};
use hodei_domain::worker::WorkerState;

pub(in crate::state) fn system_transition(
    pool: &mut Pool,
    to: PoolState,
    reason: String,
    at_ms: u64,
) {
    pool.record(PoolTransition {
        from: pool.state,
        to,
        action: None,
        by: "hodei".to_string(),
        reason,
        at_ms,
    });
    pool.state = to;
}

impl HodeiState {
    pub(in crate::state) fn put_pool(&mut self, pool: Pool, writes: &mut WriteBatch) {
        put_encoded(writes, key(POOL_PREFIX, &pool.id), &pool);
        self.pools.insert(pool.id.clone(), pool);
    }

    /// Live workers of the pool.
    pub fn live_workers_of(&self, pool: &str) -> usize {
        self.workers
            .values()
            .filter(|worker| worker.pool == pool && worker.is_live())
            .count()
    }

    pub(in crate::state) fn apply_create_pool(
        &mut self,
        command::CreatePool { pool }: command::CreatePool,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        pool.validate()?;
        if self.pools.contains_key(&pool.id) {
            return Err(DomainError::already_exists("pool", pool.id));
        }
        self.put_pool(pool.clone(), writes);
        self.emit(DomainEvent::QueuesChanged);
        Ok(CommandOutcome::Pool(pool))
    }

    pub(in crate::state) fn apply_update_pool(
        &mut self,
        command::UpdatePool { id, patch }: command::UpdatePool,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
        let Some(current) = self.pools.get(id) else {
            return Err(DomainError::not_found("pool", id));
        };
        if current.state == PoolState::Decommissioned {
            return Err(DomainError::Conflict(format!(
                "pool `{id}` is decommissioned: it can only be deleted"
            )));
        }
        let mut updated = current.clone();
        if patch.static_settings.is_some() && updated.pool_type != PoolType::Static {
            return Err(DomainError::Conflict(format!(
                "pool `{id}` is dynamic: it has no static settings (use /dynamic)"
            )));
        }
        if (patch.dynamic_settings.is_some()
            || patch.desired_size.is_some()
            || patch.provider.is_some())
            && updated.pool_type != PoolType::Dynamic
        {
            return Err(DomainError::Conflict(format!(
                "pool `{id}` is static: it has no dynamic settings (use /static)"
            )));
        }
        let resized = patch.min_size.is_some() || patch.max_size.is_some();
        updated.min_size = patch.min_size.unwrap_or(updated.min_size);
        updated.max_size = patch.max_size.unwrap_or(updated.max_size);
        updated.worker_shape = patch.worker_shape.unwrap_or(updated.worker_shape);
        updated.labels = patch.labels.unwrap_or(updated.labels);
        updated.provider = patch.provider.unwrap_or(updated.provider);
        if let Some(settings) = patch.static_settings {
            updated.static_settings = settings;
        }
        if let Some(settings) = patch.dynamic_settings {
            updated.dynamic_settings = settings;
        }
        match patch.desired_size {
            Some(desired) => updated.desired_size = desired,
            // New bounds carry the desired size with them.
            None if resized => {
                updated.desired_size = updated
                    .desired_size
                    .clamp(updated.min_size, updated.max_size.max(updated.min_size))
            }
            None => {}
        }
        updated.validate()?;
        self.put_pool(updated.clone(), writes);
        self.emit(DomainEvent::QueuesChanged);
        self.emit(DomainEvent::CapacityFreed { ended_in: None });
        Ok(CommandOutcome::Pool(updated))
    }

    pub(in crate::state) fn apply_delete_pool(
        &mut self,
        command::DeletePool { id }: command::DeletePool,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
        let Some(pool) = self.pools.get(id) else {
            return Err(DomainError::not_found("pool", id));
        };
        if let Some(queue) = self
            .queues
            .values()
            .find(|queue| queue.pools.iter().any(|pool| pool == id))
        {
            return Err(DomainError::Conflict(format!(
                "pool `{id}` is used by queue `{}`: take it out of the queue first",
                queue.id
            )));
        }
        let live = self.live_workers_of(id);
        let held: usize = self
            .workers
            .values()
            .filter(|worker| worker.pool == id)
            .map(|worker| worker.jobs.len())
            .sum();
        // A live worker is billed until it stops: a pool goes once its workers have.
        if live > 0 || (pool.state != PoolState::Decommissioned && held > 0) {
            return Err(DomainError::Conflict(format!(
                "pool `{id}` is {} with {live} live worker(s) and {held} running job(s): drain it first",
                pool.state.as_str()
            )));
        }
        let workers: Vec<String> = self
            .workers
            .values()
            .filter(|worker| worker.pool == id)
            .map(|worker| worker.id.clone())
            .collect();
        self.drop_scaling(id, writes);
        self.drop_prices(id, writes);
        self.drop_join_tokens(id, writes);
        for worker in workers {
            self.workers.remove(&worker);
            writes.delete(key(WORKER_PREFIX, &worker));
            self.drop_worker_agent(&worker, writes);
        }
        self.pools.remove(id);
        writes.delete(key(POOL_PREFIX, id));
        self.emit(DomainEvent::QueuesChanged);
        Ok(CommandOutcome::PoolDeleted { id: id.to_string() })
    }

    /// A pool below its size is degraded, and active again once it has its workers back.
    /// The leader's count (`reported_healthy`) is only what prompted the command: the count
    /// that decides is the pool's live workers in the replicated state, so a count made from
    /// a stale view (a worker registered or lost since) cannot flip the pool the wrong way.
    pub(in crate::state) fn apply_pool_health(
        &mut self,
        command::PoolHealth {
            pool: id,
            healthy: reported_healthy,
            at_ms,
        }: command::PoolHealth,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
        let Some(pool) = self.pools.get(id) else {
            return Err(DomainError::not_found("pool", id));
        };
        let healthy = u32::try_from(self.live_workers_of(id)).unwrap_or(u32::MAX);
        if healthy != reported_healthy {
            tracing::debug!(
                pool = id,
                reported_healthy,
                healthy,
                "the leader's health count differs from the replicated live workers: the live workers decide"
            );
        }
        let size = match pool.pool_type {
            PoolType::Static => pool.static_settings.size,
            PoolType::Dynamic => pool.min_size,
        };
        let next = match pool.state {
            PoolState::Active if healthy < size => PoolState::Degraded,
            PoolState::Degraded if healthy >= size => PoolState::Active,
            _ => return Ok(CommandOutcome::Pool(pool.clone())),
        };
        let mut pool = pool.clone();
        system_transition(
            &mut pool,
            next,
            format!("{healthy} of {size} workers healthy"),
            at_ms,
        );
        self.put_pool(pool.clone(), writes);
        Ok(CommandOutcome::Pool(pool))
    }

    pub(in crate::state) fn apply_count_provisioning(
        &mut self,
        command::CountProvisioning {
            pool: id,
            succeeded,
            failed,
        }: command::CountProvisioning,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
        let Some(pool) = self.pools.get(id) else {
            return Err(DomainError::not_found("pool", id));
        };
        let mut pool = pool.clone();
        // Counters only: they saturate rather than overflow (apply must not panic).
        pool.provisioning.succeeded = pool.provisioning.succeeded.saturating_add(succeeded);
        pool.provisioning.failed = pool.provisioning.failed.saturating_add(failed);
        self.put_pool(pool.clone(), writes);
        Ok(CommandOutcome::Pool(pool))
    }

    /// Stops an idle worker (scale-down, or the end of a drain): it takes nothing more.
    pub(in crate::state) fn apply_stop_worker(
        &mut self,
        command::StopWorker {
            worker: worker_id,
            reason,
            at_ms,
        }: command::StopWorker,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let worker_id = worker_id.as_str();
        let reason = reason.as_str();
        let Some(worker) = self.workers.get_mut(worker_id) else {
            return Err(DomainError::not_found("worker", worker_id));
        };
        if !worker.jobs.is_empty() {
            return Err(DomainError::Conflict(format!(
                "worker `{worker_id}` runs {} job(s): only an idle worker is stopped",
                worker.jobs.len()
            )));
        }
        let previous = worker.clone();
        worker.state = WorkerState::Terminated;
        worker.state_changed_at_ms = at_ms;
        let worker = worker.clone();
        self.bill_worker_interval(&previous, &worker, writes);
        self.put_worker(&worker, writes);
        tracing::debug!(worker = %worker.id, reason, "worker stopped");
        self.emit(DomainEvent::WorkerStopped {
            worker: worker.id.clone(),
        });
        Ok(CommandOutcome::WorkerStopped { worker })
    }

    /// The drain timeout passed: the jobs still running in the pool go back to pending
    /// (or fail once their retries are spent) and its workers are stopped. Only while the
    /// pool still drains: the leader decided on its view, and a release committed after
    /// the pool left draining would stop the workers of a pool meant to run.
    pub(in crate::state) fn apply_release_pool(
        &mut self,
        command::ReleasePool {
            pool: pool_id,
            reason,
            at_ms,
        }: command::ReleasePool,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let pool_id = pool_id.as_str();
        let reason = reason.as_str();
        let Some(pool) = self.pools.get(pool_id) else {
            return Err(DomainError::not_found("pool", pool_id));
        };
        if pool.state != PoolState::Draining {
            return Err(DomainError::Conflict(format!(
                "pool `{pool_id}` is {}, not draining: only a draining pool's runs are released at its drain timeout",
                pool.state.as_str()
            )));
        }
        // Every worker's runs and its stop are computed first: one that cannot be emptied
        // refuses the release before any run is re-queued.
        let mut release = Release::default();
        let mut lost = Vec::new();
        let mut stopped = Vec::new();
        for worker in self
            .workers
            .values()
            .filter(|worker| worker.pool == pool_id && worker.is_live())
        {
            lost.extend(self.plan_worker_loss(
                &mut release,
                worker,
                WorkerState::Terminated,
                reason,
                at_ms,
            )?);
            stopped.push(worker.id.clone());
        }
        // Everything is checked: from here on nothing refuses.
        let requeued = self.commit_lost_runs(release, lost, writes);
        for worker in stopped {
            tracing::debug!(worker = %worker, reason, "worker stopped");
            self.emit(DomainEvent::WorkerStopped { worker });
        }
        Ok(CommandOutcome::WorkerLost { requeued })
    }
}

impl HodeiState {
    pub(in crate::state) fn apply_pool_lifecycle(
        &mut self,
        command::PoolLifecycle {
            pool: pool_id,
            action,
            by,
            reason,
            at_ms,
        }: command::PoolLifecycle,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let pool_id = pool_id.as_str();
        let by = by.as_str();
        let reason = reason.as_str();
        let Some(pool) = self.pools.get_mut(pool_id) else {
            return Err(DomainError::not_found("pool", pool_id));
        };
        pool.apply_action(action, by, reason, at_ms)?;
        let pool = pool.clone();
        if pool.state == PoolState::Decommissioned {
            // Its idle live workers stop now (billed until now); one still running a job
            // stops when the job ends or its worker is lost.
            let idle: Vec<hodei_domain::worker::Worker> = self
                .workers
                .values()
                .filter(|worker| {
                    worker.pool == pool.id && worker.is_live() && worker.jobs.is_empty()
                })
                .cloned()
                .collect();
            for previous in idle {
                let mut stopped = previous.clone();
                stopped.state = WorkerState::Terminated;
                stopped.state_changed_at_ms = at_ms;
                self.bill_worker_interval(&previous, &stopped, writes);
                self.put_worker(&stopped, writes);
                self.emit(DomainEvent::WorkerStopped {
                    worker: stopped.id.clone(),
                });
                self.workers.insert(stopped.id.clone(), stopped);
            }
            // Its stopped and lost workers will never come back: they leave `/workers`
            // (their jobs still name them).
            let gone: Vec<String> = self
                .workers
                .values()
                .filter(|worker| worker.pool == pool.id && !worker.is_live())
                .map(|worker| worker.id.clone())
                .collect();
            for worker in gone {
                self.workers.remove(&worker);
                writes.delete(key(WORKER_PREFIX, &worker));
                self.drop_worker_agent(&worker, writes);
            }
        }
        self.put_pool(pool.clone(), writes);
        self.emit(DomainEvent::QueuesChanged);
        // Resuming may let jobs run again.
        self.emit(DomainEvent::CapacityFreed { ended_in: None });
        Ok(CommandOutcome::Pool(pool))
    }
}
