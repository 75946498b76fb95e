//! Workers: a registered agent (or virtual worker), its capacity and the jobs it holds
//! (`../shared/docs/DOMAIN.md`, Pools and workers).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::labels::Labels;
use crate::resources::Resources;
use crate::tenant::is_slug;

pub const MAX_WORKER_ID: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Idle,
    Busy,
    /// Missed its heartbeats; holds no job until it registers again.
    Lost,
    /// Stopped by its pool (scale-down or drain); holds no job.
    Terminated,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Idle => "idle",
            WorkerState::Busy => "busy",
            WorkerState::Lost => "lost",
            WorkerState::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    pub pool: String,
    pub capacity: Resources,
    pub labels: Labels,
    pub state: WorkerState,
    /// Virtual worker of a simulated pool.
    pub simulated: bool,
    /// Resources of the jobs it holds (assigned or running).
    pub used: Resources,
    /// The jobs it holds.
    pub jobs: BTreeSet<String>,
    pub registered_at_ms: u64,
    pub state_changed_at_ms: u64,
}

impl Worker {
    pub fn free(&self) -> Resources {
        self.capacity.saturating_sub(self.used)
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state, WorkerState::Idle | WorkerState::Busy)
    }

    /// Takes a job: its resources count against this worker until it is released. The
    /// caller checks the room first (apply refuses an assignment that does not fit); no
    /// assertion here, since apply must not panic.
    pub fn hold(&mut self, job: &str, resources: Resources, at_ms: u64) {
        if self.jobs.insert(job.to_string()) {
            self.used = self.used.saturating_add(resources);
        }
        self.refresh_state(at_ms);
    }

    pub fn release(&mut self, job: &str, resources: Resources, at_ms: u64) {
        if self.jobs.remove(job) {
            self.used = self.used.saturating_sub(resources);
        }
        self.refresh_state(at_ms);
    }

    fn refresh_state(&mut self, at_ms: u64) {
        if !self.is_live() {
            return;
        }
        let next = if self.jobs.is_empty() {
            WorkerState::Idle
        } else {
            WorkerState::Busy
        };
        if next != self.state {
            self.state = next;
            self.state_changed_at_ms = at_ms;
        }
    }
}

/// Worker ids: 1-128 characters of `[A-Za-z0-9._-]`.
pub fn validate_worker_id(id: &str) -> Result<(), DomainError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_WORKER_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "worker_id",
            format!("1-{MAX_WORKER_ID} characters of [A-Za-z0-9._-]"),
        ))
    }
}

pub fn validate_pool_id(field: &str, id: &str) -> Result<(), DomainError> {
    if is_slug(id) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "pool ids match [a-z0-9][a-z0-9-]{0,62}",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holding_and_releasing_moves_between_idle_and_busy() {
        let mut worker = Worker {
            id: "w".into(),
            pool: "p".into(),
            capacity: Resources::new(1_000, 1_024, 0),
            labels: Labels::new(),
            state: WorkerState::Idle,
            simulated: false,
            used: Resources::ZERO,
            jobs: BTreeSet::new(),
            registered_at_ms: 0,
            state_changed_at_ms: 0,
        };
        worker.hold("a", Resources::new(600, 100, 0), 1);
        worker.hold("a", Resources::new(600, 100, 0), 2);
        assert_eq!(
            worker.used,
            Resources::new(600, 100, 0),
            "holding twice counts once"
        );
        assert_eq!(worker.state, WorkerState::Busy);
        assert_eq!(worker.free(), Resources::new(400, 924, 0));
        worker.release("a", Resources::new(600, 100, 0), 3);
        assert_eq!(
            (worker.used, worker.state),
            (Resources::ZERO, WorkerState::Idle)
        );
        assert!(validate_worker_id("host-1.pool_a").is_ok());
        assert!(validate_worker_id("bad id").is_err());
    }
}
