//! The replicated side of jobs, queues, pools and workers. Apply re-checks every part of
//! a plan against the current state (job still pending, worker still live with the room,
//! tenant still under quota), so a stale plan can never oversubscribe a worker or a quota.
//! Tenant usage (pending count, running resources) is derived from the jobs and kept in
//! step by the helpers here; it is rebuilt from the jobs on load and restore.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use hodei_domain::job::Job;
use hodei_domain::quota::Usage;
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantId;
use hodei_domain::worker::Worker;

/// How far back the dispatch log of each queue reaches.
pub(super) const DISPATCH_LOG_MS: u64 = 10 * 60_000;

/// Adds one to a tally; saturating, since nothing in apply may overflow.
pub(super) fn count_one(count: &mut u64) {
    *count = count.saturating_add(1);
}

/// Takes a run's resources back from its tenant's usage.
pub(super) fn release_usage(usage: &mut Usage, resources: Resources, pool: &str) {
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
    pub(super) workers: BTreeMap<String, Worker>,
    pub(super) usage: BTreeMap<TenantId, Usage>,
}

/// A cancellation checked against the current state, not yet applied.
#[derive(Debug)]
pub(super) struct PlannedCancel {
    /// The job as it will be stored: cancelled.
    pub(super) job: Job,
    /// The worker that held it, which must stop it.
    pub(super) worker: Option<String>,
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
    /// The earlier job whose key this one repeats is in the job history (not in memory,
    /// so apply cannot send it back): the proposer reads it by `id`.
    pub in_history: bool,
}

impl SubmittedJob {
    pub fn is_duplicate(&self) -> bool {
        self.earlier.is_some() || self.in_history
    }
}
