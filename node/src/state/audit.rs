//! Invariants checked again after every applied command, on every replica, in debug
//! builds (a release build skips them): the chaos suite's witness at each committed
//! index, where a client sees only what its requests return. A broken invariant is
//! logged at error level as `invariant broken` with the rule, the index and what was
//! found; nothing is changed or refused (apply never panics), so a replica keeps
//! applying what the others apply.
//!
//! - `quota_ceiling`: after an assignment, the tenant's running resources and jobs,
//!   counted afresh from what the workers hold (not from the usage ledger apply keeps),
//!   are within its quota scaled by the ceiling of the burst session active at the
//!   assignment's time (one past its end time admits nothing, expired or not).
//! - `burst_ended_once`: a burst session that had ended is unchanged by any command (an
//!   expiry applied twice, or a session re-opened, would change it).

use hodei_domain::burst::{BurstSession, BurstStatus};
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantId;

use crate::state::command::CommandV1;
use crate::state::hodei_state::HodeiState;

/// What a command is about to touch, seen before it applies.
#[derive(Debug, Default)]
pub(in crate::state) struct Watch {
    /// Jobs the command assigns, and when.
    assigned: Vec<String>,
    assigned_at_ms: u64,
    /// Burst sessions the command names, as they were.
    sessions: Vec<(TenantId, String, Option<BurstSession>)>,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::state) struct Breach {
    pub rule: &'static str,
    pub detail: String,
}

impl Watch {
    pub(in crate::state) fn before(state: &HodeiState, command: &CommandV1) -> Self {
        if !cfg!(debug_assertions) {
            return Self::default();
        }
        let mut watch = Self::default();
        match command {
            CommandV1::AssignJobs(command) => {
                // Only jobs still pending can be assigned: the others are refused, and a
                // refused assignment proves nothing of the tenant's usage.
                watch.assigned = command
                    .assignments
                    .iter()
                    .filter(|assignment| {
                        state
                            .jobs
                            .get(&assignment.job)
                            .is_some_and(|job| job.state == hodei_domain::job::JobState::Pending)
                    })
                    .map(|assignment| assignment.job.clone())
                    .collect();
                watch.assigned_at_ms = command.at_ms;
            }
            CommandV1::RequestBurst(command) => {
                watch.watch_session(state, &command.tenant, &command.session_id)
            }
            CommandV1::ApproveBurst(command) => {
                watch.watch_session(state, &command.tenant, &command.session_id)
            }
            CommandV1::EndBurst(command) => {
                watch.watch_session(state, &command.tenant, &command.session_id)
            }
            _ => {}
        }
        watch
    }

    fn watch_session(&mut self, state: &HodeiState, tenant: &TenantId, session: &str) {
        self.sessions.push((
            tenant.clone(),
            session.to_string(),
            state.burst_session(tenant, session).cloned(),
        ));
    }

    /// Checks what the command touched; logs each breach (and returns them, for tests).
    pub(in crate::state) fn after(self, state: &HodeiState, index: u64) -> Vec<Breach> {
        if !cfg!(debug_assertions) {
            return Vec::new();
        }
        let mut breaches = Vec::new();
        // The jobs the command did assign: pending before, held by a worker now.
        let mut tenants: Vec<TenantId> = self
            .assigned
            .iter()
            .filter_map(|job| state.jobs.get(job))
            .filter(|job| job.state != hodei_domain::job::JobState::Pending && job.worker.is_some())
            .map(|job| job.spec.tenant.clone())
            .collect();
        tenants.sort();
        tenants.dedup();
        for tenant in &tenants {
            breaches.extend(quota_ceiling(state, tenant, self.assigned_at_ms));
        }
        for (tenant, id, before) in &self.sessions {
            let Some(before) = before
                .as_ref()
                .filter(|session| session.status == BurstStatus::Ended)
            else {
                continue;
            };
            let after = state.burst_session(tenant, id);
            if after != Some(before) {
                breaches.push(Breach {
                    rule: "burst_ended_once",
                    detail: format!(
                        "tenant {tenant}'s burst session {id} had ended ({:?} at {:?}) and is now {:?}",
                        before.end_reason,
                        before.ended_at_ms,
                        after.map(|session| (session.status, session.end_reason, session.ended_at_ms))
                    ),
                });
            }
        }
        for breach in &breaches {
            tracing::error!(
                target: "hodei::audit",
                index,
                rule = breach.rule,
                detail = %breach.detail,
                "invariant broken"
            );
        }
        breaches
    }
}

/// The tenant's running resources and jobs, counted from what the workers hold, against
/// its quota scaled by the ceiling of its burst session active at `at_ms`.
fn quota_ceiling(state: &HodeiState, tenant: &TenantId, at_ms: u64) -> Option<Breach> {
    let quota = &state.tenants.get(tenant)?.quota;
    let mut running = Resources::ZERO;
    let mut jobs = 0u64;
    for worker in state.workers.values() {
        for id in &worker.jobs {
            if let Some(job) = state.jobs.get(id).filter(|job| &job.spec.tenant == tenant) {
                running = running.saturating_add(job.spec.resources);
                jobs += 1;
            }
        }
    }
    let percent = state
        .active_burst_at(tenant, at_ms)
        .map_or(100, |session| session.ceiling_percentage.max(100));
    let ceiling = quota.resources().scaled_percent(percent);
    let most_jobs = quota.max_concurrent_jobs.saturating_mul(percent) / 100;
    (!running.fits_within(ceiling) || jobs > most_jobs).then(|| Breach {
        rule: "quota_ceiling",
        detail: format!(
            "tenant {tenant} runs {jobs} jobs using {running:?}, above its ceiling of {most_jobs} jobs and {ceiling:?} ({percent}% of its quota)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use hodei_domain::job::JobState;
    use hodei_domain::quota::Quota;

    use super::*;
    use crate::state::command;
    use crate::state::jobs_tests::{assign, job, setup, submit};

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn an_assignment_above_the_tenants_ceiling_is_caught_and_one_within_it_is_not() {
        let quota = Quota {
            max_concurrent_jobs: 1,
            ..Quota::default()
        };
        let mut state = setup(quota, 2);
        submit(&mut state, vec![job("a", 100, 0), job("b", 100, 0)]);
        assert_eq!(assign(&mut state, &[("a", "w0")]), (1, 0));
        let assign_b = CommandV1::AssignJobs(command::AssignJobs {
            assignments: vec![hodei_domain::dispatch::Assignment {
                job: "b".into(),
                worker: "w1".into(),
                burst: false,
            }],
            at_ms: 5,
            sla_changes: Vec::new(),
        });
        let watch = Watch::before(&state, &assign_b);
        assert_eq!(
            watch.after(&state, 7),
            Vec::new(),
            "one job of one is within"
        );
        // An apply that broke the rule would leave this: b held by w1 beside a.
        let watch = Watch::before(&state, &assign_b);
        let mut b = state.jobs["b"].as_ref().clone();
        b.state = JobState::Assigned;
        b.worker = Some("w1".into());
        state.jobs.insert("b".into(), Box::new(b));
        let mut w1 = state.workers["w1"].clone();
        w1.hold("b", Resources::new(100, 0, 0), 5);
        state.workers.insert("w1".into(), w1);
        let breaches = watch.after(&state, 8);
        assert_eq!(breaches.len(), 1, "{breaches:?}");
        assert_eq!(breaches[0].rule, "quota_ceiling");
        assert!(breaches[0].detail.contains("runs 2 jobs"), "{breaches:?}");
        assert!(
            state.usage(&acme()).running_jobs <= 1,
            "the ledger never saw b"
        );
        // An assignment of a job that was no longer pending was refused: not judged.
        assert_eq!(
            Watch::before(&state, &assign_b).after(&state, 9),
            Vec::new()
        );
    }

    #[test]
    fn a_burst_session_past_its_end_time_admits_nothing_even_before_its_expiry_commits() {
        let quota = Quota {
            max_concurrent_jobs: 1,
            ..Quota::default()
        };
        let mut state = setup(quota, 2);
        let mut session = ended_session();
        session.status = BurstStatus::Active;
        session.ceiling_percentage = 200;
        (session.ended_at_ms, session.end_reason, session.ended_by) = (None, None, None);
        // Active until 2 ms, and its expiry not applied yet.
        session.ends_at_ms = Some(2);
        state.bursts.insert(acme(), vec![session]);
        submit(&mut state, vec![job("a", 100, 0), job("b", 100, 0)]);
        // `assign` assigns at 3 ms: past the end, the quota alone holds (one job).
        assert_eq!(assign(&mut state, &[("a", "w0"), ("b", "w1")]), (1, 1));
        let mut state_before_end = setup(
            Quota {
                max_concurrent_jobs: 1,
                ..Quota::default()
            },
            2,
        );
        let mut session = ended_session();
        session.status = BurstStatus::Active;
        session.ceiling_percentage = 200;
        (session.ended_at_ms, session.end_reason, session.ended_by) = (None, None, None);
        session.ends_at_ms = Some(4);
        state_before_end.bursts.insert(acme(), vec![session]);
        submit(
            &mut state_before_end,
            vec![job("a", 100, 0), job("b", 100, 0)],
        );
        assert_eq!(
            assign(&mut state_before_end, &[("a", "w0"), ("b", "w1")]),
            (2, 0),
            "before its end the session's ceiling (two jobs) holds"
        );
    }

    fn ended_session() -> BurstSession {
        BurstSession {
            id: "s1".into(),
            tenant: acme(),
            ceiling_percentage: 150,
            duration_ms: 1_000,
            reason: String::new(),
            requested_by: "admin".into(),
            requested_at_ms: 0,
            status: BurstStatus::Ended,
            approved_by: None,
            starts_at_ms: Some(0),
            ends_at_ms: Some(1_000),
            ended_at_ms: Some(1_000),
            end_reason: Some(hodei_domain::burst::EndReason::Expired),
            ended_by: Some("hodei".into()),
        }
    }

    #[test]
    fn an_ended_burst_session_that_changes_again_is_caught() {
        let mut state = setup(Quota::default(), 0);
        state.bursts.insert(acme(), vec![ended_session()]);
        let end = CommandV1::EndBurst(command::EndBurst {
            tenant: acme(),
            session_id: "s1".into(),
            reason: hodei_domain::burst::EndReason::Expired,
            ended_by: "hodei".into(),
            at_ms: 2_000,
        });
        let watch = Watch::before(&state, &end);
        crate::state::jobs_tests::apply(&mut state, end.clone()).unwrap();
        assert_eq!(
            watch.after(&state, 9),
            Vec::new(),
            "a second expiry changes nothing"
        );
        let watch = Watch::before(&state, &end);
        state.bursts.get_mut(&acme()).unwrap()[0].ended_at_ms = Some(2_000);
        let breaches = watch.after(&state, 10);
        assert_eq!(breaches.len(), 1, "{breaches:?}");
        assert_eq!(breaches[0].rule, "burst_ended_once");
    }
}
