//! Burst capacity: time-boxed permission for a tenant to run above its quota, up to a
//! ceiling, under governance. Every refusal names the rule that refused it.
//!
//! Rules, in the order they are checked:
//! 1. `disabled`: bursting is switched off (`burst_capacity.enabled`).
//! 2. `ceiling`: the ceiling is a percentage above 100 and at most `max_overage_percentage`.
//! 3. `duration`: the duration is positive and at most `burst_duration_minutes`.
//! 4. `one_session`: a tenant has at most one open (active or awaiting approval) session.
//! 5. `cooldown`: a new session waits `cooldown` after the tenant's last session ended.
//! 6. `sessions_per_day`: at most N sessions requested in any 24 hours (rolling window).
//! 7. `global_pool`: the sum of every active session's overage (quota x (ceiling - 100)%)
//!    stays within `global_pool_percentage` of the total pool capacity, per resource.
//!
//! A request whose ceiling is above `auto_approve_up_to_percentage` waits for an admin's
//! approval; the global pool is checked again when it is approved, and the session runs
//! from the approval for its full duration.

use serde::{Deserialize, Serialize};

use crate::quota::Quota;
use crate::resources::Resources;
use crate::tenant::TenantId;

pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurstPolicy {
    pub enabled: bool,
    pub max_overage_percentage: u64,
    pub max_duration_ms: u64,
    pub cooldown_ms: u64,
    pub max_sessions_per_day: u64,
    pub global_pool_percentage: u64,
    pub auto_approve_up_to_percentage: u64,
    /// Total capacity of the pools, the base of the global burst pool.
    pub capacity: Resources,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurstStatus {
    AwaitingApproval,
    Active,
    Ended,
}

impl BurstStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BurstStatus::AwaitingApproval => "awaiting_approval",
            BurstStatus::Active => "active",
            BurstStatus::Ended => "ended",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Reached its end time; decided by the leader.
    Expired,
    /// Ended early on request.
    EndedEarly,
    /// Withdrawn before it was approved.
    Withdrawn,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::EndedEarly => "ended_early",
            EndReason::Withdrawn => "withdrawn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurstSession {
    pub id: String,
    pub tenant: TenantId,
    pub ceiling_percentage: u64,
    pub duration_ms: u64,
    pub reason: String,
    pub requested_by: String,
    pub requested_at_ms: u64,
    pub status: BurstStatus,
    pub approved_by: Option<String>,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    pub end_reason: Option<EndReason>,
    pub ended_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurstRule {
    Disabled,
    Ceiling,
    Duration,
    OneSession,
    Cooldown,
    SessionsPerDay,
    GlobalPool,
}

impl BurstRule {
    pub const ALL: [BurstRule; 7] = [
        BurstRule::Disabled,
        BurstRule::Ceiling,
        BurstRule::Duration,
        BurstRule::OneSession,
        BurstRule::Cooldown,
        BurstRule::SessionsPerDay,
        BurstRule::GlobalPool,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BurstRule::Disabled => "disabled",
            BurstRule::Ceiling => "ceiling",
            BurstRule::Duration => "duration",
            BurstRule::OneSession => "one_session",
            BurstRule::Cooldown => "cooldown",
            BurstRule::SessionsPerDay => "sessions_per_day",
            BurstRule::GlobalPool => "global_pool",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("burst refused by rule `{}`: {message}", rule.as_str())]
pub struct BurstRefusal {
    pub rule: BurstRule,
    pub message: String,
}

fn refuse(rule: BurstRule, message: String) -> BurstRefusal {
    BurstRefusal { rule, message }
}

/// What a tenant asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurstRequest {
    pub ceiling_percentage: u64,
    pub duration_ms: u64,
    pub reason: String,
}

/// The overage a session adds above quota.
impl BurstPolicy {
    /// The configured defaults (150% ceiling, 60 min, 30 min cooldown, 3 a day, 20% pool,
    /// auto-approve up to 130%) over `capacity`: for tests of the rules.
    #[cfg(any(test, feature = "testing"))]
    pub fn defaults_for_tests(capacity: Resources) -> Self {
        const MINUTE: u64 = 60_000;
        Self {
            enabled: true,
            max_overage_percentage: 150,
            max_duration_ms: 60 * MINUTE,
            cooldown_ms: 30 * MINUTE,
            max_sessions_per_day: 3,
            global_pool_percentage: 20,
            auto_approve_up_to_percentage: 130,
            capacity,
        }
    }
}

pub fn overage(quota: &Quota, ceiling_percentage: u64) -> Resources {
    quota
        .resources()
        .scaled_percent(ceiling_percentage.saturating_sub(100))
}

impl BurstSession {
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            BurstStatus::AwaitingApproval | BurstStatus::Active
        )
    }

    /// Whether an active session has reached its end time at `now_ms`.
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.status == BurstStatus::Active && self.ends_at_ms.is_some_and(|end| now_ms >= end)
    }
}

/// The rules a request must pass, as of `now_ms`. `tenant_sessions` are this tenant's
/// sessions; `active_overage` is the summed overage of every other active session.
pub fn check_request(
    policy: &BurstPolicy,
    request: &BurstRequest,
    quota: &Quota,
    tenant_sessions: &[&BurstSession],
    active_overage: Resources,
    now_ms: u64,
) -> Result<BurstStatus, BurstRefusal> {
    if !policy.enabled {
        return Err(refuse(
            BurstRule::Disabled,
            "burst capacity is disabled (burst_capacity.enabled)".to_string(),
        ));
    }
    if request.ceiling_percentage <= 100
        || request.ceiling_percentage > policy.max_overage_percentage
    {
        return Err(refuse(
            BurstRule::Ceiling,
            format!(
                "ceiling_percentage must be above 100 and at most {} (burst_capacity.max_overage_percentage), got {}",
                policy.max_overage_percentage, request.ceiling_percentage
            ),
        ));
    }
    if request.duration_ms == 0 || request.duration_ms > policy.max_duration_ms {
        return Err(refuse(
            BurstRule::Duration,
            format!(
                "the duration must be positive and at most {} s (burst_capacity.burst_duration_minutes), got {} s",
                policy.max_duration_ms / 1000,
                request.duration_ms as f64 / 1000.0
            ),
        ));
    }
    if let Some(open) = tenant_sessions.iter().find(|session| session.is_open()) {
        return Err(refuse(
            BurstRule::OneSession,
            format!(
                "session {} is still {}; end it first",
                open.id,
                open.status.as_str()
            ),
        ));
    }
    let last_end = tenant_sessions
        .iter()
        .filter_map(|session| session.ended_at_ms)
        .max();
    if let Some(last_end) = last_end {
        let free_at = last_end.saturating_add(policy.cooldown_ms);
        if now_ms < free_at {
            return Err(refuse(
                BurstRule::Cooldown,
                format!(
                    "the last session ended {} s ago; the cooldown is {} s ({} s left)",
                    now_ms.saturating_sub(last_end) / 1000,
                    policy.cooldown_ms / 1000,
                    (free_at - now_ms).div_ceil(1000)
                ),
            ));
        }
    }
    let today = tenant_sessions
        .iter()
        .filter(|session| session.requested_at_ms.saturating_add(DAY_MS) > now_ms)
        .count() as u64;
    if today >= policy.max_sessions_per_day {
        return Err(refuse(
            BurstRule::SessionsPerDay,
            format!(
                "{today} sessions were requested in the last 24 hours; at most {} are allowed",
                policy.max_sessions_per_day
            ),
        ));
    }
    check_global_pool(policy, quota, request.ceiling_percentage, active_overage)?;
    if request.ceiling_percentage > policy.auto_approve_up_to_percentage {
        Ok(BurstStatus::AwaitingApproval)
    } else {
        Ok(BurstStatus::Active)
    }
}

/// Whether one more session of `ceiling_percentage` fits the global burst pool.
pub fn check_global_pool(
    policy: &BurstPolicy,
    quota: &Quota,
    ceiling_percentage: u64,
    active_overage: Resources,
) -> Result<(), BurstRefusal> {
    let pool = policy
        .capacity
        .scaled_percent(policy.global_pool_percentage);
    let wanted = overage(quota, ceiling_percentage);
    let after = active_overage.saturating_add(wanted);
    for (((dimension, after), (_, pool)), (_, wanted)) in after
        .dimensions()
        .into_iter()
        .zip(pool.dimensions())
        .zip(wanted.dimensions())
    {
        if wanted > 0 && after > pool {
            return Err(refuse(
                BurstRule::GlobalPool,
                format!(
                    "the global burst pool is exhausted: {dimension} overage in use {}{unit} + {wanted}{unit} requested > {pool}{unit} ({}% of pool capacity)",
                    after - wanted,
                    policy.global_pool_percentage,
                    unit = dimension.unit()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    fn policy() -> BurstPolicy {
        BurstPolicy::defaults_for_tests(Resources::new(80_000, 163_840, 0))
    }

    fn request(ceiling_percentage: u64, duration_ms: u64) -> BurstRequest {
        BurstRequest {
            ceiling_percentage,
            duration_ms,
            reason: "quarter close".to_string(),
        }
    }

    fn session(
        status: BurstStatus,
        requested_at_ms: u64,
        ended_at_ms: Option<u64>,
    ) -> BurstSession {
        BurstSession {
            id: "s".to_string(),
            tenant: TenantId::parse("acme").unwrap(),
            ceiling_percentage: 120,
            duration_ms: MINUTE,
            reason: String::new(),
            requested_by: "admin".to_string(),
            requested_at_ms,
            status,
            approved_by: None,
            starts_at_ms: Some(requested_at_ms),
            ends_at_ms: Some(requested_at_ms + MINUTE),
            ended_at_ms,
            end_reason: ended_at_ms.map(|_| EndReason::Expired),
            ended_by: None,
        }
    }

    fn check(
        request: &BurstRequest,
        sessions: &[&BurstSession],
        active: Resources,
        now_ms: u64,
    ) -> Result<BurstStatus, BurstRefusal> {
        check_request(
            &policy(),
            request,
            &Quota::default(),
            sessions,
            active,
            now_ms,
        )
    }

    fn rule(result: Result<BurstStatus, BurstRefusal>) -> BurstRule {
        result.unwrap_err().rule
    }

    #[test]
    fn a_modest_request_is_active_at_once_and_a_large_one_awaits_approval() {
        assert_eq!(
            check(&request(120, MINUTE), &[], Resources::ZERO, 0),
            Ok(BurstStatus::Active)
        );
        assert_eq!(
            check(&request(150, MINUTE), &[], Resources::ZERO, 0),
            Ok(BurstStatus::AwaitingApproval)
        );
    }

    #[test]
    fn disabled_refuses() {
        let disabled = BurstPolicy {
            enabled: false,
            ..policy()
        };
        let refusal = check_request(
            &disabled,
            &request(120, MINUTE),
            &Quota::default(),
            &[],
            Resources::ZERO,
            0,
        );
        assert_eq!(rule(refusal), BurstRule::Disabled);
    }

    #[test]
    fn ceiling_and_duration_bounds() {
        assert_eq!(
            rule(check(&request(100, MINUTE), &[], Resources::ZERO, 0)),
            BurstRule::Ceiling
        );
        assert_eq!(
            rule(check(&request(151, MINUTE), &[], Resources::ZERO, 0)),
            BurstRule::Ceiling
        );
        assert_eq!(
            rule(check(&request(120, 0), &[], Resources::ZERO, 0)),
            BurstRule::Duration
        );
        assert_eq!(
            rule(check(&request(120, 61 * MINUTE), &[], Resources::ZERO, 0)),
            BurstRule::Duration
        );
    }

    #[test]
    fn one_open_session_per_tenant() {
        let active = session(BurstStatus::Active, 0, None);
        assert_eq!(
            rule(check(
                &request(120, MINUTE),
                &[&active],
                Resources::ZERO,
                10
            )),
            BurstRule::OneSession
        );
        let waiting = session(BurstStatus::AwaitingApproval, 0, None);
        assert_eq!(
            rule(check(
                &request(120, MINUTE),
                &[&waiting],
                Resources::ZERO,
                10
            )),
            BurstRule::OneSession
        );
    }

    #[test]
    fn cooldown_after_a_session_ends() {
        let ended = session(BurstStatus::Ended, 0, Some(MINUTE));
        let refusal = check(
            &request(120, MINUTE),
            &[&ended],
            Resources::ZERO,
            10 * MINUTE,
        )
        .unwrap_err();
        assert_eq!(refusal.rule, BurstRule::Cooldown);
        assert!(
            refusal.message.contains("1260 s left"),
            "{}",
            refusal.message
        );
        assert!(
            check(
                &request(120, MINUTE),
                &[&ended],
                Resources::ZERO,
                31 * MINUTE
            )
            .is_ok()
        );
    }

    #[test]
    fn at_most_n_sessions_per_day() {
        let day_start = 10 * DAY_MS;
        let sessions: Vec<BurstSession> = (0..3)
            .map(|hour| {
                session(
                    BurstStatus::Ended,
                    day_start + hour * 60 * MINUTE,
                    Some(day_start + hour * 60 * MINUTE + MINUTE),
                )
            })
            .collect();
        let refs: Vec<&BurstSession> = sessions.iter().collect();
        let now = day_start + 4 * 60 * MINUTE;
        assert_eq!(
            rule(check(&request(120, MINUTE), &refs, Resources::ZERO, now)),
            BurstRule::SessionsPerDay
        );
        // A day after the first one, the window has moved on.
        assert!(
            check(
                &request(120, MINUTE),
                &refs,
                Resources::ZERO,
                day_start + DAY_MS + 1
            )
            .is_ok()
        );
    }

    #[test]
    fn global_pool_is_shared_by_every_tenant() {
        // 20% of 80,000 m is 16,000 m; a 150% session of the default quota adds 2,000 m.
        assert!(check(&request(150, MINUTE), &[], Resources::new(14_000, 0, 0), 0).is_ok());
        let refusal =
            check(&request(150, MINUTE), &[], Resources::new(14_001, 0, 0), 0).unwrap_err();
        assert_eq!(refusal.rule, BurstRule::GlobalPool);
        assert!(refusal.message.contains("cpu"), "{}", refusal.message);
    }

    #[test]
    fn overage_is_the_part_above_quota() {
        assert_eq!(
            overage(&Quota::default(), 150),
            Resources::new(2_000, 4_096, 0)
        );
        assert_eq!(overage(&Quota::default(), 100), Resources::ZERO);
    }

    #[test]
    fn due_only_when_active_and_past_its_end() {
        let active = session(BurstStatus::Active, 0, None);
        assert!(!active.is_due(MINUTE - 1));
        assert!(active.is_due(MINUTE));
        assert!(!session(BurstStatus::Ended, 0, Some(5)).is_due(10 * MINUTE));
    }
}
