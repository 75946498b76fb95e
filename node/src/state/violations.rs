//! Quota violations, replicated: the submits refused by a tenant's limits, the jobs
//! accepted that must wait for its quota, and the assignments the state machine refused
//! for it. Recorded by apply, so every node counts the same, cluster-wide, and a what-if
//! (`/quotas/enforce`) counts nothing. The most recent are kept (a bounded log), the
//! counts by tenant and reason for ever.

use std::collections::{BTreeMap, VecDeque};

use hodei_cluster::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::keys::{VIOLATION_COUNT_PREFIX, VIOLATION_PREFIX, key};

/// How many recent violations are kept.
pub const KEPT_VIOLATIONS: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Its place in the log (increasing).
    pub seq: u64,
    pub at_ms: u64,
    pub tenant: String,
    /// `deny` (refused at submit) or `queue` (accepted, waits for the quota; or an
    /// assignment refused for it).
    pub verdict: String,
    /// `submit` or `dispatch`.
    pub source: String,
    /// The reason codes (`quota`, `needs_burst`, `exceeds_ceiling`, `backlog_full` ...).
    pub reasons: Vec<String>,
    pub message: String,
}

/// The log as the state holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationLog {
    pub recent: VecDeque<Violation>,
    /// (tenant, reason) -> how many decisions gave that reason.
    pub counts: BTreeMap<(String, String), u64>,
    pub next_seq: u64,
}

fn count_key(tenant: &str, reason: &str) -> Vec<u8> {
    key(VIOLATION_COUNT_PREFIX, &format!("{tenant}/{reason}"))
}

fn record_key(seq: u64) -> Vec<u8> {
    key(VIOLATION_PREFIX, &format!("{seq:020}"))
}

impl HodeiState {
    /// Records a violation, numbered here (the caller's command is one that succeeds: a
    /// refused command changes nothing).
    pub(in crate::state) fn record_violation(
        &mut self,
        mut violation: Violation,
        writes: &mut WriteBatch,
    ) {
        let log = &mut self.violations;
        log.next_seq = log.next_seq.saturating_add(1);
        violation.seq = log.next_seq;
        for reason in &violation.reasons {
            let count = log
                .counts
                .entry((violation.tenant.clone(), reason.clone()))
                .or_default();
            *count = count.saturating_add(1);
            put_encoded(writes, count_key(&violation.tenant, reason), &*count);
        }
        put_encoded(writes, record_key(violation.seq), &violation);
        log.recent.push_back(violation);
        while log.recent.len() > KEPT_VIOLATIONS {
            if let Some(oldest) = log.recent.pop_front() {
                writes.delete(record_key(oldest.seq));
            }
        }
    }

    /// The most recent first, at most `limit`, of `tenant` if given.
    pub fn recent_violations(&self, tenant: Option<&str>, limit: usize) -> Vec<Violation> {
        self.violations
            .recent
            .iter()
            .rev()
            .filter(|violation| tenant.is_none_or(|tenant| violation.tenant == tenant))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Counts by (tenant, reason), of `tenant` if given.
    pub fn violation_counts(&self, tenant: Option<&str>) -> Vec<(String, String, u64)> {
        self.violations
            .counts
            .iter()
            .filter(|((counted, _), _)| tenant.is_none_or(|tenant| counted == tenant))
            .map(|((tenant, reason), count)| (tenant.clone(), reason.clone(), *count))
            .collect()
    }

    /// Writes the whole log (a restored snapshot).
    pub(in crate::state) fn put_violation_log(
        &mut self,
        log: ViolationLog,
        writes: &mut WriteBatch,
    ) {
        for ((tenant, reason), count) in &log.counts {
            put_encoded(writes, count_key(tenant, reason), count);
        }
        for violation in &log.recent {
            put_encoded(writes, record_key(violation.seq), violation);
        }
        self.violations = log;
    }

    /// Reads the log from storage (at start).
    pub(in crate::state) fn load_violation_log(
        &mut self,
        keyspace: &dyn hodei_cluster::Keyspace,
    ) -> Result<(), String> {
        let stored = keyspace
            .scan_prefix(VIOLATION_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (_, value) in stored {
            let violation: Violation = hodei_cluster::codec::decode(&value)
                .map_err(|error| format!("corrupt violation record: {error}"))?;
            self.violations.next_seq = self.violations.next_seq.max(violation.seq);
            self.violations.recent.push_back(violation);
        }
        let counts = keyspace
            .scan_prefix(VIOLATION_COUNT_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (stored_key, value) in counts {
            let name =
                String::from_utf8_lossy(&stored_key[VIOLATION_COUNT_PREFIX.len()..]).into_owned();
            let Some((tenant, reason)) = name.rsplit_once('/') else {
                return Err(format!("corrupt violation count key {name}"));
            };
            let count: u64 = hodei_cluster::codec::decode(&value)
                .map_err(|error| format!("corrupt violation count {name}: {error}"))?;
            self.violations
                .counts
                .insert((tenant.to_string(), reason.to_string()), count);
        }
        Ok(())
    }
}
