//! Every key of the replicated state: the prefix of each kind of entity, and how an
//! entity's key is made from its id. Nothing else writes a key.

pub const TENANT_PREFIX: &str = "tenant/";
pub const BURST_PREFIX: &str = "burst/";
pub const JOB_PREFIX: &str = "job/";
pub const JOB_LOG_PREFIX: &str = "joblog/";
pub const QUEUE_PREFIX: &str = "queue/";
pub const POOL_PREFIX: &str = "pool/";
pub const WORKER_PREFIX: &str = "worker/";
/// A pool's autoscaling rules, cooldown and history (`apply/scaling.rs`).
pub const SCALING_PREFIX: &str = "scaling/";
/// A pool's price history and tier percentages (`apply/pools.rs`).
pub const PRICES_PREFIX: &str = "prices/";
/// The cost ledger, by hour, tenant, pool and queue (`cost_ledger.rs`).
pub const COST_PREFIX: &str = "cost/";
/// Beside the cost ledger: settings, label lines, pool costs, usage, report definitions,
/// budget warnings, totals (`cost_book.rs`).
pub const COST_BOOK_PREFIX: &str = "costbook/";
/// Access tokens, join tokens and whether the first start's admin token was issued
/// (`access_book.rs`).
pub const ACCESS_PREFIX: &str = "access/";
/// Recent quota violations, by sequence number (`state/violations.rs`).
pub const VIOLATION_PREFIX: &str = "violation/";
/// Violation counts, by tenant and reason.
pub const VIOLATION_COUNT_PREFIX: &str = "violationcount/";

/// Where a job's per-stream output (`stdout`, `stderr`) and its report sequence (`seq`)
/// are kept among the job logs, beside its interleaved tail: `<job id>#<what>` (a job id
/// never holds `#`).
pub fn stream_key(job: &str, what: &str) -> String {
    format!("{job}#{what}")
}

/// The key of the entity `id` of the kind `prefix`.
pub fn key(prefix: &str, id: &str) -> Vec<u8> {
    format!("{prefix}{id}").into_bytes()
}
