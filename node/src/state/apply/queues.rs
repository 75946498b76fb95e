//! Apply for queues: create, update, delete, and the defaults every cluster has.

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{DomainEvent, HodeiState};
use crate::state::keys::{QUEUE_PREFIX, key};
use hodei_domain::DomainError;
use hodei_domain::queue::{DEFAULT_QUEUE_ID, validate_pool_list};

impl HodeiState {
    pub(in crate::state) fn apply_ensure_queues_and_pools(
        &mut self,
        command::EnsureQueuesAndPools { pools, queues }: command::EnsureQueuesAndPools,
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

    pub(in crate::state) fn check_pools_exist(&self, pools: &[String]) -> Result<(), DomainError> {
        validate_pool_list(pools)?;
        match pools.iter().find(|pool| !self.pools.contains_key(*pool)) {
            Some(missing) => Err(DomainError::not_found("pool", missing.clone())),
            None => Ok(()),
        }
    }

    pub(in crate::state) fn apply_create_queue(
        &mut self,
        command::CreateQueue { queue }: command::CreateQueue,
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

    pub(in crate::state) fn apply_update_queue(
        &mut self,
        command::UpdateQueue {
            id,
            pools,
            policy,
            at_ms,
        }: command::UpdateQueue,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
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

    pub(in crate::state) fn apply_delete_queue(
        &mut self,
        command::DeleteQueue { id }: command::DeleteQueue,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let id = id.as_str();
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
}
