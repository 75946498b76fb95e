//! The audit log (issue 21): every state-changing request a node's gateway serves, with
//! who asked, what, on what, how it ended and its trace id, kept in the node's own
//! keyspace (not replicated: each node records what it served; the API asks every member)
//! for `audit.retention_days`, at most [`MAX_RECORDS`] records.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::gateway::observability_model::AuditRecord;
use hodei_cluster::{Keyspace, WriteBatch};

/// The most records a node keeps (the oldest go first).
pub const MAX_RECORDS: u64 = 1_000_000;
/// Records written between two purges.
const PURGE_EVERY: u64 = 1_000;
/// Records read at once by a purge.
const PURGE_PAGE: usize = 1_000;

/// A node's audit log.
#[derive(Debug)]
pub struct AuditLog {
    keyspace: Arc<dyn Keyspace>,
    node_id: u64,
    retention_ms: u64,
    /// Distinguishes records of one millisecond; counts writes for the purges.
    sequence: AtomicU64,
}

fn key(at_ms: u64, sequence: u64) -> Vec<u8> {
    let mut key = at_ms.to_be_bytes().to_vec();
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

impl AuditLog {
    pub fn new(keyspace: Arc<dyn Keyspace>, node_id: u64, retention_days: u64) -> Self {
        let sequence = keyspace
            .last()
            .ok()
            .flatten()
            .and_then(|(key, _)| key.get(8..16).map(|bytes| bytes.to_vec()))
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        Self {
            keyspace,
            node_id,
            retention_ms: retention_days.saturating_mul(86_400_000),
            sequence: AtomicU64::new(sequence.wrapping_add(1)),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Records one request (a failed write is logged, never the caller's error).
    pub fn record(&self, record: AuditRecord) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let Ok(value) = serde_json::to_vec(&record) else {
            return;
        };
        let mut batch = WriteBatch::new();
        batch.put(key(record.at_ms, sequence), value);
        if let Err(error) = self.keyspace.write(batch) {
            tracing::warn!(%error, "an audit record could not be written");
        }
        if sequence.is_multiple_of(PURGE_EVERY) {
            self.purge(record.at_ms);
        }
    }

    /// Deletes what is older than the retention, and the oldest beyond [`MAX_RECORDS`]
    /// (by sequence: records are written in time order).
    pub fn purge(&self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.retention_ms);
        let oldest_kept = self
            .sequence
            .load(Ordering::Relaxed)
            .saturating_sub(MAX_RECORDS);
        // A page at a time from the oldest, until the first record kept: a purge that
        // finds nothing to delete reads one record, not the log.
        while self.purge_page(horizon, oldest_kept) {}
    }

    /// Deletes the expired records among the oldest [`PURGE_PAGE`]; whether the whole
    /// page went (there may be more).
    fn purge_page(&self, horizon: u64, oldest_kept: u64) -> bool {
        let Ok(oldest) = self
            .keyspace
            .range(Bound::Unbounded, Bound::Unbounded, PURGE_PAGE)
        else {
            return false;
        };
        let whole_page = oldest.len() == PURGE_PAGE;
        let mut batch = WriteBatch::new();
        let mut kept_one = false;
        for (key, _) in oldest {
            let at_ms = key
                .get(..8)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map(u64::from_be_bytes);
            let sequence = key
                .get(8..16)
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map(u64::from_be_bytes);
            match (at_ms, sequence) {
                (Some(at_ms), Some(sequence)) if at_ms >= horizon && sequence >= oldest_kept => {
                    kept_one = true;
                    break;
                }
                _ => batch.delete(key),
            }
        }
        if batch.is_empty() {
            return false;
        }
        if let Err(error) = self.keyspace.write(batch) {
            tracing::warn!(%error, "old audit records could not be deleted");
            return false;
        }
        whole_page && !kept_one
    }

    /// Records with `from_ms <= at_ms < to_ms`, of `principal` when given, oldest first,
    /// at most `limit`.
    pub fn query(
        &self,
        from_ms: u64,
        to_ms: u64,
        principal: Option<&str>,
        limit: usize,
    ) -> Vec<AuditRecord> {
        let mut found = Vec::new();
        let mut start = Bound::Included(key(from_ms, 0));
        let end = Bound::Excluded(key(to_ms, 0));
        while let Ok(page) = self.keyspace.range(start.clone(), end.clone(), 1_000) {
            let last = page.last().map(|(key, _)| key.clone());
            for (_, value) in &page {
                if let Ok(record) = serde_json::from_slice::<AuditRecord>(value)
                    && principal.is_none_or(|principal| record.principal == principal)
                {
                    found.push(record);
                    if found.len() >= limit {
                        return found;
                    }
                }
            }
            match last {
                Some(last) if page.len() == 1_000 => start = Bound::Excluded(last),
                _ => break,
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hodei_cluster::{SledStorage, Storage};

    fn record(at_ms: u64, principal: &str) -> AuditRecord {
        AuditRecord {
            at_ms,
            node_id: 1,
            principal: principal.to_string(),
            action: "create_tenant".to_string(),
            resource: "POST /api/v1/tenants".to_string(),
            result: "ok".to_string(),
            trace_id: "t".to_string(),
            request_id: "r".to_string(),
        }
    }

    #[test]
    fn records_are_found_by_time_and_principal_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let storage = SledStorage::open(dir.path()).unwrap();
        let log = AuditLog::new(storage.keyspace("audit").unwrap(), 1, 1);
        log.record(record(1_000, "admin"));
        log.record(record(1_000, "tenant:acme"));
        log.record(record(5_000, "admin"));
        assert_eq!(log.query(0, u64::MAX, None, 10).len(), 3);
        assert_eq!(log.query(0, 2_000, None, 10).len(), 2);
        assert_eq!(log.query(0, u64::MAX, Some("tenant:acme"), 10).len(), 1);
        assert_eq!(log.query(0, u64::MAX, None, 1).len(), 1);
        // A day later the first two are past the retention of a day.
        log.purge(86_400_000 + 2_000);
        assert_eq!(
            log.query(0, u64::MAX, None, 10),
            vec![record(5_000, "admin")]
        );
        // Reopened, it goes on after its last record.
        drop(log);
        let again = AuditLog::new(storage.keyspace("audit").unwrap(), 1, 1);
        again.record(record(5_000, "admin"));
        assert_eq!(again.query(0, u64::MAX, None, 10).len(), 2);
    }
}
