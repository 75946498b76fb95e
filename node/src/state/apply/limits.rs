//! Apply for quotas and burst sessions: apply re-checks every rule against
//! the current state (the gateway's view may be stale), so no race can grant two sessions
//! or overdraw the global burst pool.

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{DomainEvent, HodeiState, put_encoded};
use crate::state::keys::BURST_PREFIX;
use hodei_domain::DomainError;
use hodei_domain::burst::{BurstSession, BurstStatus, EndReason, check_global_pool, check_request};
use hodei_domain::quota::exceeded_by_usage;

pub(in crate::state) fn burst_key(session: &BurstSession) -> Vec<u8> {
    format!("{BURST_PREFIX}{}/{}", session.tenant, session.id).into_bytes()
}

impl HodeiState {
    pub(in crate::state) fn put_session(&mut self, session: BurstSession, writes: &mut WriteBatch) {
        put_encoded(writes, burst_key(&session), &session);
        let tenant = session.tenant.clone();
        let sessions = self.bursts.entry(tenant.clone()).or_default();
        match sessions
            .iter_mut()
            .find(|existing| existing.id == session.id)
        {
            Some(existing) => *existing = session,
            None => sessions.push(session),
        }
        self.emit(DomainEvent::BurstChanged(tenant));
    }

    pub(in crate::state) fn apply_set_quota(
        &mut self,
        command::SetQuota { id, quota, at_ms }: command::SetQuota,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(current) = self.tenants.get(&id) else {
            return Err(DomainError::not_found("tenant", id.to_string()));
        };
        quota.validate()?;
        let warnings = exceeded_by_usage(&quota, &self.usage(&id));
        let mut updated = current.clone();
        updated.quota = quota;
        updated.updated_at_ms = updated.updated_at_ms.max(at_ms);
        self.put_tenant(updated.clone(), writes);
        self.emit(DomainEvent::TenantUpdated(id));
        Ok(CommandOutcome::QuotaSet {
            tenant: updated,
            warnings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::state) fn apply_request_burst(
        &mut self,
        command::RequestBurst {
            tenant,
            session_id,
            request,
            requested_by,
            policy,
            at_ms,
        }: command::RequestBurst,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let policy = &policy;
        let Some(found) = self.tenants.get(&tenant) else {
            return Err(DomainError::not_found("tenant", tenant.to_string()));
        };
        let sessions: Vec<&BurstSession> = self.burst_sessions(&tenant).iter().collect();
        let status = check_request(
            policy,
            &request,
            &found.quota,
            &sessions,
            self.active_overage(Some(&tenant)),
            at_ms,
        )
        .map_err(DomainError::BurstRefused)?;
        let (starts_at_ms, ends_at_ms) = match status {
            BurstStatus::Active => (Some(at_ms), Some(at_ms.saturating_add(request.duration_ms))),
            _ => (None, None),
        };
        let session = BurstSession {
            id: session_id,
            tenant,
            ceiling_percentage: request.ceiling_percentage,
            duration_ms: request.duration_ms,
            reason: request.reason,
            requested_by,
            requested_at_ms: at_ms,
            status,
            approved_by: None,
            starts_at_ms,
            ends_at_ms,
            ended_at_ms: None,
            end_reason: None,
            ended_by: None,
        };
        self.put_session(session.clone(), writes);
        Ok(CommandOutcome::Burst(session))
    }

    pub(in crate::state) fn apply_approve_burst(
        &mut self,
        command::ApproveBurst {
            tenant,
            session_id,
            approved_by,
            policy,
            at_ms,
        }: command::ApproveBurst,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let tenant = &tenant;
        let session_id = session_id.as_str();
        let policy = &policy;
        let Some(found) = self.tenants.get(tenant) else {
            return Err(DomainError::not_found("tenant", tenant.to_string()));
        };
        let Some(session) = self.burst_session(tenant, session_id).cloned() else {
            return Err(DomainError::not_found("burst session", session_id));
        };
        if session.status != BurstStatus::AwaitingApproval {
            return Err(DomainError::Conflict(format!(
                "session {session_id} is {}, not awaiting approval",
                session.status.as_str()
            )));
        }
        // Capacity may have been taken since the request: check the pool again.
        check_global_pool(
            policy,
            &found.quota,
            session.ceiling_percentage,
            self.active_overage(Some(tenant)),
        )
        .map_err(DomainError::BurstRefused)?;
        let approved = BurstSession {
            status: BurstStatus::Active,
            approved_by: Some(approved_by),
            starts_at_ms: Some(at_ms),
            ends_at_ms: Some(at_ms.saturating_add(session.duration_ms)),
            ..session
        };
        self.put_session(approved.clone(), writes);
        Ok(CommandOutcome::Burst(approved))
    }

    pub(in crate::state) fn apply_end_burst(
        &mut self,
        command::EndBurst {
            tenant,
            session_id,
            reason,
            ended_by,
            at_ms,
        }: command::EndBurst,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let tenant = &tenant;
        let session_id = session_id.as_str();
        let Some(session) = self.burst_session(tenant, session_id).cloned() else {
            return Err(DomainError::not_found("burst session", session_id));
        };
        if session.status == BurstStatus::Ended {
            // An expiry proposed twice (by an old and a new leader) ends it once.
            return Ok(CommandOutcome::BurstAlreadyEnded(session));
        }
        if reason == EndReason::Expired && !session.is_due(at_ms) {
            return Err(DomainError::Conflict(format!(
                "session {session_id} is not due yet"
            )));
        }
        let reason = match (reason, session.status) {
            (EndReason::EndedEarly, BurstStatus::AwaitingApproval) => EndReason::Withdrawn,
            (reason, _) => reason,
        };
        let ended = BurstSession {
            status: BurstStatus::Ended,
            ended_at_ms: Some(at_ms),
            end_reason: Some(reason),
            ended_by: Some(ended_by),
            ..session
        };
        self.put_session(ended.clone(), writes);
        Ok(CommandOutcome::Burst(ended))
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::broadcast;

    use super::*;
    use crate::state::command::{Command, CommandV1};
    use hodei_domain::burst::{BurstPolicy, BurstRequest, BurstRule};
    use hodei_domain::quota::{Quota, Usage};
    use hodei_domain::resources::Resources;
    use hodei_domain::tenant::{NewTenant, TenantId, Tier};

    const MINUTE: u64 = 60_000;

    fn policy() -> BurstPolicy {
        BurstPolicy::defaults_for_tests(Resources::new(10_000, 20_480, 0))
    }

    fn state_with(tenants: &[&str]) -> HodeiState {
        let mut state = HodeiState::new(broadcast::channel(64).0);
        for id in tenants {
            let tenant = NewTenant {
                id: TenantId::parse(id).unwrap(),
                display_name: None,
                tier: Tier::Standard,
                weight: None,
                labels: Default::default(),
                quota: Quota::default(),
            }
            .into_tenant(0)
            .unwrap();
            run(
                &mut state,
                CommandV1::CreateTenant(command::CreateTenant { tenant }),
            )
            .unwrap();
        }
        state
    }

    fn run(state: &mut HodeiState, command: CommandV1) -> CommandResult {
        let mut writes = WriteBatch::new();
        state.apply_command(Command::V1(command), &mut writes)
    }

    fn request(
        state: &mut HodeiState,
        tenant: &str,
        id: &str,
        ceiling: u64,
        at_ms: u64,
    ) -> CommandResult {
        run(
            state,
            CommandV1::RequestBurst(command::RequestBurst {
                tenant: TenantId::parse(tenant).unwrap(),
                session_id: id.to_string(),
                request: BurstRequest {
                    ceiling_percentage: ceiling,
                    duration_ms: 10 * MINUTE,
                    reason: "load test".to_string(),
                },
                requested_by: "admin".to_string(),
                policy: policy(),
                at_ms,
            }),
        )
    }

    fn end(
        state: &mut HodeiState,
        tenant: &str,
        id: &str,
        reason: EndReason,
        at_ms: u64,
    ) -> CommandResult {
        run(
            state,
            CommandV1::EndBurst(command::EndBurst {
                tenant: TenantId::parse(tenant).unwrap(),
                session_id: id.to_string(),
                reason,
                ended_by: "leader".to_string(),
                at_ms,
            }),
        )
    }

    fn refused_by(result: CommandResult) -> BurstRule {
        match result {
            Err(DomainError::BurstRefused(refusal)) => refusal.rule,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_second_concurrent_session_is_refused_even_if_both_passed_the_gateway() {
        let mut state = state_with(&["acme"]);
        assert!(request(&mut state, "acme", "s1", 120, 0).is_ok());
        assert_eq!(
            refused_by(request(&mut state, "acme", "s2", 120, 1)),
            BurstRule::OneSession
        );
    }

    #[test]
    fn expiry_ends_once_and_only_when_due() {
        let mut state = state_with(&["acme"]);
        request(&mut state, "acme", "s1", 120, 0).unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        assert!(state.active_burst(&tenant).is_some());
        assert!(matches!(
            end(
                &mut state,
                "acme",
                "s1",
                EndReason::Expired,
                10 * MINUTE - 1
            ),
            Err(DomainError::Conflict(_))
        ));
        let ended = end(
            &mut state,
            "acme",
            "s1",
            EndReason::Expired,
            10 * MINUTE + 5,
        )
        .unwrap();
        let CommandOutcome::Burst(ended) = ended else {
            panic!("{ended:?}")
        };
        assert_eq!(ended.ended_at_ms, Some(10 * MINUTE + 5));
        let again = end(
            &mut state,
            "acme",
            "s1",
            EndReason::Expired,
            10 * MINUTE + 900,
        )
        .unwrap();
        let CommandOutcome::BurstAlreadyEnded(unchanged) = again else {
            panic!("{again:?}")
        };
        assert_eq!(
            unchanged.ended_at_ms,
            Some(10 * MINUTE + 5),
            "the first end is the one recorded"
        );
        assert!(state.active_burst(&tenant).is_none());
        // Cooldown now applies.
        assert_eq!(
            refused_by(request(&mut state, "acme", "s2", 120, 11 * MINUTE)),
            BurstRule::Cooldown
        );
    }

    #[test]
    fn the_global_pool_is_checked_in_apply_across_tenants() {
        // Capacity 10,000 m: the pool is 2,000 m; a 130% session of the default quota adds 1,200 m.
        let mut state = state_with(&["a", "b"]);
        assert!(request(&mut state, "a", "sa", 130, 0).is_ok());
        assert_eq!(
            refused_by(request(&mut state, "b", "sb", 130, 0)),
            BurstRule::GlobalPool
        );
        end(&mut state, "a", "sa", EndReason::EndedEarly, 1).unwrap();
        assert!(request(&mut state, "b", "sb", 130, 2).is_ok());
    }

    #[test]
    fn approval_starts_the_clock_and_rechecks_the_pool() {
        let mut state = state_with(&["acme", "other"]);
        let awaiting = request(&mut state, "acme", "s1", 150, 0).unwrap();
        let CommandOutcome::Burst(awaiting) = awaiting else {
            panic!()
        };
        assert_eq!(awaiting.status, BurstStatus::AwaitingApproval);
        assert_eq!(awaiting.ends_at_ms, None);
        // Meanwhile another tenant takes most of the pool.
        request(&mut state, "other", "o1", 130, 1).unwrap();
        let approve = |state: &mut HodeiState, at_ms| {
            run(
                state,
                CommandV1::ApproveBurst(command::ApproveBurst {
                    tenant: TenantId::parse("acme").unwrap(),
                    session_id: "s1".to_string(),
                    approved_by: "admin".to_string(),
                    policy: policy(),
                    at_ms,
                }),
            )
        };
        assert_eq!(refused_by(approve(&mut state, 5)), BurstRule::GlobalPool);
        end(&mut state, "other", "o1", EndReason::EndedEarly, 6).unwrap();
        let CommandOutcome::Burst(active) = approve(&mut state, 7).unwrap() else {
            panic!()
        };
        assert_eq!(
            (active.starts_at_ms, active.ends_at_ms),
            (Some(7), Some(7 + 10 * MINUTE))
        );
        assert!(matches!(
            approve(&mut state, 8),
            Err(DomainError::Conflict(_))
        ));
    }

    #[test]
    fn a_quota_below_running_usage_is_accepted_with_warnings() {
        let mut state = state_with(&["acme"]);
        let tenant = TenantId::parse("acme").unwrap();
        // What the job commands maintain once jobs run: 3 jobs using 3,000 m.
        state.usage.insert(
            tenant.clone(),
            Usage {
                running: Resources::new(3_000, 2_048, 0),
                running_jobs: 3,
                pending_jobs: 0,
                running_by_pool: Default::default(),
            },
        );
        let lowered = Quota {
            cpu_m: 1_000,
            max_concurrent_jobs: 2,
            ..Quota::default()
        };
        let outcome = run(
            &mut state,
            CommandV1::SetQuota(command::SetQuota {
                id: tenant.clone(),
                quota: lowered.clone(),
                at_ms: 5,
            }),
        )
        .unwrap();
        let CommandOutcome::QuotaSet {
            tenant: updated,
            warnings,
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(updated.quota, lowered, "the quota is set all the same");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("3000 m of cpu"), "{warnings:?}");
        assert_eq!(state.tenant(&tenant).unwrap().quota, lowered);
    }

    #[test]
    fn ending_before_approval_is_a_withdrawal() {
        let mut state = state_with(&["acme"]);
        request(&mut state, "acme", "s1", 150, 0).unwrap();
        let CommandOutcome::Burst(ended) =
            end(&mut state, "acme", "s1", EndReason::EndedEarly, 3).unwrap()
        else {
            panic!()
        };
        assert_eq!(ended.end_reason, Some(EndReason::Withdrawn));
    }
}
