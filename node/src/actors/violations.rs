//! Recent admission decisions that refused or queued, and counts by tenant and reason.
//! Node-local and in memory: they describe what this node decided (chatter stays out of
//! the Raft log); metrics export the counts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

const KEPT: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub at_ms: u64,
    pub tenant: String,
    /// `queue`, `deny` or `refused` (a burst request).
    pub verdict: String,
    /// What decided: `enforce` (a dry run), `burst`, and later `submit` and `dispatch`.
    pub source: String,
    /// The reason codes (`quota`, `backlog_full`, `cooldown` ...).
    pub reasons: Vec<String>,
    pub message: String,
}

#[derive(Debug, Default)]
struct Inner {
    recent: VecDeque<Violation>,
    counts: BTreeMap<(String, String), u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ViolationLog {
    inner: Arc<Mutex<Inner>>,
}

impl ViolationLog {
    pub fn record(&self, violation: Violation) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for reason in &violation.reasons {
            *inner
                .counts
                .entry((violation.tenant.clone(), reason.clone()))
                .or_default() += 1;
        }
        if inner.recent.len() == KEPT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(violation);
    }

    /// The most recent first, at most `limit`, of `tenant` if given.
    pub fn recent(&self, tenant: Option<&str>, limit: usize) -> Vec<Violation> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .recent
            .iter()
            .rev()
            .filter(|violation| tenant.is_none_or(|tenant| violation.tenant == tenant))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Counts by (tenant, reason), of `tenant` if given.
    pub fn counts(&self, tenant: Option<&str>) -> Vec<(String, String, u64)> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .counts
            .iter()
            .filter(|((counted, _), _)| tenant.is_none_or(|tenant| counted == tenant))
            .map(|((tenant, reason), count)| (tenant.clone(), reason.clone(), *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(tenant: &str, reason: &str) -> Violation {
        Violation {
            at_ms: 1,
            tenant: tenant.to_string(),
            verdict: "queue".to_string(),
            source: "enforce".to_string(),
            reasons: vec![reason.to_string()],
            message: String::new(),
        }
    }

    #[test]
    fn keeps_the_latest_and_counts_everything() {
        let log = ViolationLog::default();
        for _ in 0..KEPT + 5 {
            log.record(violation("a", "quota"));
        }
        log.record(violation("b", "backlog_full"));
        assert_eq!(log.recent(None, usize::MAX).len(), KEPT);
        assert_eq!(log.recent(Some("b"), 10)[0].reasons, ["backlog_full"]);
        assert_eq!(
            log.counts(Some("a")),
            vec![("a".to_string(), "quota".to_string(), (KEPT + 5) as u64)]
        );
    }
}
