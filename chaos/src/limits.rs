//! The nemesis's checks of quotas and burst sessions, from outside the cluster (the nodes
//! check the same at every committed index themselves, in debug builds: `invariant
//! broken` lines in their logs, gathered by `audit_breaches`).
//!
//! - Quota: at no instant did more of a tenant's jobs run, by the journal, than its
//!   ceiling (its `max_concurrent_jobs` at the largest burst ceiling it may be granted).
//!   A run in the journal lies inside the span in which the cluster counted the job as
//!   running (it starts after the assignment commits and its marks stop before its end
//!   is reported, or before its worker's lease ends), so the journal never counts more
//!   than the cluster did.
//! - Burst sessions: each expires once. A read that began after another read completed
//!   never sees a session the other saw ended as open again, nor its end changed; at the
//!   end every acknowledged session is in the tenant's history, ended by expiry no
//!   earlier than its end time, and there are no more sessions than requests that may
//!   have made one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::checker::Run;

/// A session as one read (or the request's answer) saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSeen {
    pub id: String,
    pub status: String,
    pub ends_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub end_reason: Option<String>,
}

impl SessionSeen {
    pub fn from_view(view: &serde_json::Value) -> Option<Self> {
        Some(Self {
            id: view["id"].as_str()?.to_string(),
            status: view["status"].as_str()?.to_string(),
            ends_at_ms: view["ends_at_ms"].as_u64(),
            ended_at_ms: view["ended_at_ms"].as_u64(),
            end_reason: view["end_reason"].as_str().map(str::to_string),
        })
    }
}

/// A read of a tenant's sessions that was answered.
#[derive(Debug, Clone, Serialize)]
pub struct BurstRead {
    pub tenant: String,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    pub sessions: Vec<SessionSeen>,
}

/// A burst request: acknowledged (with the session it made), refused, or unknown.
#[derive(Debug, Clone, Serialize)]
pub struct BurstRequest {
    pub tenant: String,
    pub acknowledged: Option<SessionSeen>,
    pub unknown: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum LimitViolation {
    QuotaExceeded {
        tenant: String,
        running: usize,
        ceiling: u64,
        at_ns: u128,
    },
    BurstReopened {
        tenant: String,
        session: String,
        earlier: String,
        later: String,
    },
    BurstSessionLost {
        tenant: String,
        session: String,
    },
    BurstNotExpired {
        tenant: String,
        session: String,
        status: String,
        end_reason: Option<String>,
    },
    BurstEndedEarly {
        tenant: String,
        session: String,
        ends_at_ms: u64,
        ended_at_ms: u64,
    },
    PhantomBurstSessions {
        tenant: String,
        sessions: usize,
        requests_that_may_have_made_one: usize,
    },
    /// A node logged `invariant broken` (its own check at a committed index).
    NodeAudit {
        log: String,
        broken: String,
        detail: String,
    },
}

/// The most of each tenant's runs the journal shows at one instant above `ceilings`.
pub fn check_quota(
    runs: &[Run],
    tenant_of: &BTreeMap<String, String>,
    ceilings: &BTreeMap<String, u64>,
) -> Vec<LimitViolation> {
    let mut edges: BTreeMap<&str, Vec<(u128, i64)>> = BTreeMap::new();
    for run in runs {
        let Some(tenant) = tenant_of.get(&run.job) else {
            continue;
        };
        if !ceilings.contains_key(tenant) {
            continue;
        }
        let spans = edges.entry(tenant).or_default();
        spans.push((run.first_ns, 1));
        // Inclusive end: a run ending at the instant another begins counts with it.
        spans.push((run.last_ns + 1, -1));
    }
    let mut violations = Vec::new();
    for (tenant, mut spans) in edges {
        spans.sort();
        let ceiling = ceilings[tenant];
        let mut running = 0i64;
        let mut worst: Option<(usize, u128)> = None;
        for (at, delta) in spans {
            running += delta;
            if running as u64 > ceiling && worst.is_none_or(|(most, _)| running as usize > most) {
                worst = Some((running as usize, at));
            }
        }
        if let Some((running, at_ns)) = worst {
            violations.push(LimitViolation::QuotaExceeded {
                tenant: tenant.to_string(),
                running,
                ceiling,
                at_ns,
            });
        }
    }
    violations
}

/// How long after its end time a session may still be open at the final read (its
/// expiry is decided by the leader's clock once a second, then committed).
const EXPIRY_GRACE_MS: u64 = 5_000;

/// Burst sessions against the reads, the requests and each tenant's final sessions, read
/// at `finals_read_at_ms` (wall clock).
pub fn check_bursts(
    reads: &[BurstRead],
    requests: &[BurstRequest],
    finals: &BTreeMap<String, Vec<SessionSeen>>,
    finals_read_at_ms: u64,
) -> Vec<LimitViolation> {
    let mut violations = Vec::new();
    // Once seen ended, ended the same way by every read that began later.
    let mut ended_seen: BTreeMap<(&str, &str), (u64, &SessionSeen)> = BTreeMap::new();
    for read in reads {
        for session in read
            .sessions
            .iter()
            .filter(|session| session.status == "ended")
        {
            let slot = ended_seen
                .entry((&read.tenant, &session.id))
                .or_insert((read.completed_ms, session));
            slot.0 = slot.0.min(read.completed_ms);
        }
    }
    let mut reopened: BTreeSet<(&str, &str)> = BTreeSet::new();
    for read in reads {
        for session in &read.sessions {
            let key = (read.tenant.as_str(), session.id.as_str());
            let Some((completed, ended)) = ended_seen.get(&key) else {
                continue;
            };
            let changed = session.status != "ended"
                || session.ended_at_ms != ended.ended_at_ms
                || session.end_reason != ended.end_reason;
            if *completed < read.invoked_ms && changed && reopened.insert(key) {
                violations.push(LimitViolation::BurstReopened {
                    tenant: read.tenant.clone(),
                    session: session.id.clone(),
                    earlier: format!("{:?}", ended),
                    later: format!("{session:?}"),
                });
            }
        }
    }
    // At the end: every acknowledged session there, expired once at or after its end.
    let empty = Vec::new();
    for request in requests {
        let Some(made) = &request.acknowledged else {
            continue;
        };
        let sessions = finals.get(&request.tenant).unwrap_or(&empty);
        let Some(found) = sessions.iter().find(|session| session.id == made.id) else {
            violations.push(LimitViolation::BurstSessionLost {
                tenant: request.tenant.clone(),
                session: made.id.clone(),
            });
            continue;
        };
        let due = found
            .ends_at_ms
            .is_none_or(|end| end.saturating_add(EXPIRY_GRACE_MS) < finals_read_at_ms);
        let expired = found.status == "ended" && found.end_reason.as_deref() == Some("expired");
        if !expired && (found.status == "ended" || due) {
            violations.push(LimitViolation::BurstNotExpired {
                tenant: request.tenant.clone(),
                session: made.id.clone(),
                status: found.status.clone(),
                end_reason: found.end_reason.clone(),
            });
        } else if let (Some(ends_at_ms), Some(ended_at_ms)) = (found.ends_at_ms, found.ended_at_ms)
            && ended_at_ms < ends_at_ms
        {
            violations.push(LimitViolation::BurstEndedEarly {
                tenant: request.tenant.clone(),
                session: made.id.clone(),
                ends_at_ms,
                ended_at_ms,
            });
        }
    }
    for (tenant, sessions) in finals {
        let may_have_made = requests
            .iter()
            .filter(|request| &request.tenant == tenant)
            .filter(|request| request.acknowledged.is_some() || request.unknown)
            .count();
        if sessions.len() > may_have_made {
            violations.push(LimitViolation::PhantomBurstSessions {
                tenant: tenant.clone(),
                sessions: sessions.len(),
                requests_that_may_have_made_one: may_have_made,
            });
        }
    }
    violations
}

/// Every `invariant broken` line in the node logs (`node-*.log`) under `root`.
pub fn audit_breaches(root: &Path) -> Vec<LimitViolation> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            if path.is_dir() {
                folders.push(path);
            } else if name.starts_with("node-") && name.ends_with(".log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                found.extend(breaches_in(&path.display().to_string(), &text));
            }
        }
    }
    found
}

fn breaches_in(log: &str, text: &str) -> Vec<LimitViolation> {
    text.lines()
        .filter(|line| line.contains("invariant broken"))
        .map(|line| {
            let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let field = |name: &str| {
                parsed["fields"][name]
                    .as_str()
                    .or(parsed[name].as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            LimitViolation::NodeAudit {
                log: log.to_string(),
                broken: field("rule"),
                detail: match field("detail") {
                    detail if detail.is_empty() => line.to_string(),
                    detail => detail,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A final read long after every session's end time.
    const LATER: u64 = 1_000_000;

    fn run(job: &str, first: u128, last: u128) -> Run {
        Run {
            job: job.into(),
            attempt: 1,
            worker: "w0".into(),
            run: 1,
            first_ns: first,
            last_ns: last,
            ended: true,
        }
    }

    fn session(
        id: &str,
        status: &str,
        ends: u64,
        ended: Option<u64>,
        reason: Option<&str>,
    ) -> SessionSeen {
        SessionSeen {
            id: id.into(),
            status: status.into(),
            ends_at_ms: Some(ends),
            ended_at_ms: ended,
            end_reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn more_runs_at_once_than_the_ceiling_is_caught_and_back_to_back_runs_are_not() {
        let tenant_of: BTreeMap<String, String> = ["a", "b", "c", "d"]
            .iter()
            .map(|job| (job.to_string(), "q".to_string()))
            .collect();
        let ceilings = BTreeMap::from([("q".to_string(), 2)]);
        let runs = [
            run("a", 0, 100),
            run("b", 50, 150),
            run("c", 101, 200),
            run("d", 151, 300),
        ];
        assert_eq!(check_quota(&runs, &tenant_of, &ceilings), Vec::new());
        let crowded = [run("a", 0, 100), run("b", 50, 150), run("c", 100, 200)];
        assert_eq!(
            check_quota(&crowded, &tenant_of, &ceilings),
            vec![LimitViolation::QuotaExceeded {
                tenant: "q".into(),
                running: 3,
                ceiling: 2,
                at_ns: 100
            }]
        );
    }

    #[test]
    fn a_session_seen_ended_and_later_open_or_ended_anew_is_caught() {
        let ended = session("s", "ended", 1_000, Some(1_010), Some("expired"));
        let read = |invoked: u64, seen: SessionSeen| BurstRead {
            tenant: "q".into(),
            invoked_ms: invoked,
            completed_ms: invoked + 5,
            sessions: vec![seen],
        };
        let request = BurstRequest {
            tenant: "q".into(),
            acknowledged: Some(session("s", "active", 1_000, None, None)),
            unknown: false,
        };
        let finals = BTreeMap::from([("q".to_string(), vec![ended.clone()])]);
        let fine = [
            read(500, session("s", "active", 1_000, None, None)),
            read(1_100, ended.clone()),
            read(1_200, ended.clone()),
        ];
        assert_eq!(
            check_bursts(&fine, std::slice::from_ref(&request), &finals, LATER),
            Vec::new()
        );
        let reopened = [
            read(1_100, ended.clone()),
            read(1_200, session("s", "active", 1_000, None, None)),
        ];
        assert!(matches!(
            check_bursts(&reopened, std::slice::from_ref(&request), &finals, LATER)[..],
            [LimitViolation::BurstReopened { .. }]
        ));
        let ended_twice = [
            read(1_100, ended.clone()),
            read(
                1_200,
                session("s", "ended", 1_000, Some(1_500), Some("expired")),
            ),
        ];
        assert_eq!(
            check_bursts(&ended_twice, std::slice::from_ref(&request), &finals, LATER).len(),
            1
        );
    }

    #[test]
    fn a_lost_unexpired_early_or_phantom_session_is_caught() {
        let request = |id: &str| BurstRequest {
            tenant: "q".into(),
            acknowledged: Some(session(id, "active", 1_000, None, None)),
            unknown: false,
        };
        let finals = BTreeMap::from([(
            "q".to_string(),
            vec![
                session("open", "active", 1_000, None, None),
                session("early", "ended", 1_000, Some(900), Some("expired")),
                session("ghost", "ended", 1_000, Some(1_000), Some("expired")),
            ],
        )]);
        // Read long after the end time, the open session should have expired; read
        // before it (made on a node whose clock ran ahead), it may be open.
        assert!(
            check_bursts(&[], &[request("open")], &finals, 1_000)
                .iter()
                .all(|violation| !matches!(violation, LimitViolation::BurstNotExpired { .. }))
        );
        let found = check_bursts(
            &[],
            &[request("lost"), request("open"), request("early")],
            &finals,
            LATER,
        );
        assert!(
            matches!(found[0], LimitViolation::BurstSessionLost { .. }),
            "{found:?}"
        );
        assert!(
            matches!(found[1], LimitViolation::BurstNotExpired { .. }),
            "{found:?}"
        );
        assert!(
            matches!(found[2], LimitViolation::BurstEndedEarly { .. }),
            "{found:?}"
        );
        // Three sessions, three acknowledged requests (one lost): none phantom. One
        // more session than requests is.
        assert_eq!(found.len(), 3, "{found:?}");
        let found = check_bursts(&[], &[request("open"), request("early")], &finals, LATER);
        assert!(found.iter().any(|violation| matches!(
            violation,
            LimitViolation::PhantomBurstSessions { sessions: 3, .. }
        )));
    }

    #[test]
    fn node_audit_lines_are_found_with_their_rule() {
        let text = "{\"level\":\"INFO\",\"fields\":{\"message\":\"applied\"}}\n\
                    {\"level\":\"ERROR\",\"fields\":{\"message\":\"invariant broken\",\"rule\":\"quota_ceiling\",\"detail\":\"tenant q runs 3 jobs\"}}\n";
        assert_eq!(
            breaches_in("n1/node-1.log", text),
            vec![LimitViolation::NodeAudit {
                log: "n1/node-1.log".into(),
                broken: "quota_ceiling".into(),
                detail: "tenant q runs 3 jobs".into()
            }]
        );
    }
}
