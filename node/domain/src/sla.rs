//! Service levels of jobs (`../shared/docs/DOMAIN.md`, SLA): a time-to-start target per
//! level (or an explicit `start_by`), an optional `finish_by`, and the status of a job
//! against them. Pure: time is a parameter.

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::dispatch::Urgency;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaLevel {
    Critical,
    High,
    Medium,
    Low,
    BestEffort,
}

impl SlaLevel {
    pub const ALL: [SlaLevel; 5] = [
        SlaLevel::Critical,
        SlaLevel::High,
        SlaLevel::Medium,
        SlaLevel::Low,
        SlaLevel::BestEffort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaLevel::Critical => "critical",
            SlaLevel::High => "high",
            SlaLevel::Medium => "medium",
            SlaLevel::Low => "low",
            SlaLevel::BestEffort => "best_effort",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!("must be one of critical, high, medium, low, best_effort, got `{raw}`"),
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    OnTrack,
    /// 70% of the window to the start target is spent, or the predicted start is late.
    AtRisk,
    /// 90% of the window is spent.
    Critical,
    Violated,
    Met,
}

impl SlaStatus {
    pub const ALL: [SlaStatus; 5] = [
        SlaStatus::OnTrack,
        SlaStatus::AtRisk,
        SlaStatus::Critical,
        SlaStatus::Violated,
        SlaStatus::Met,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaStatus::OnTrack => "on_track",
            SlaStatus::AtRisk => "at_risk",
            SlaStatus::Critical => "critical",
            SlaStatus::Violated => "violated",
            SlaStatus::Met => "met",
        }
    }

    /// Met and violated are verdicts; the others may still change.
    pub fn is_verdict(self) -> bool {
        matches!(self, SlaStatus::Met | SlaStatus::Violated)
    }

    /// How the dispatcher ranks a pending job of this status within its tenant.
    pub fn urgency(self) -> Urgency {
        match self {
            SlaStatus::Critical | SlaStatus::Violated => Urgency::Critical,
            SlaStatus::AtRisk => Urgency::AtRisk,
            SlaStatus::OnTrack | SlaStatus::Met => Urgency::OnTrack,
        }
    }
}

/// The time-to-start target of each level, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaTargets {
    pub critical_ms: u64,
    pub high_ms: u64,
    pub medium_ms: u64,
    pub low_ms: u64,
    pub best_effort_ms: u64,
}

impl Default for SlaTargets {
    /// DOMAIN.md: 5 min, 15 min, 1 h, 4 h, 24 h.
    fn default() -> Self {
        Self {
            critical_ms: 5 * 60_000,
            high_ms: 15 * 60_000,
            medium_ms: 60 * 60_000,
            low_ms: 4 * 60 * 60_000,
            best_effort_ms: 24 * 60 * 60_000,
        }
    }
}

impl SlaTargets {
    pub fn of(&self, level: SlaLevel) -> u64 {
        match level {
            SlaLevel::Critical => self.critical_ms,
            SlaLevel::High => self.high_ms,
            SlaLevel::Medium => self.medium_ms,
            SlaLevel::Low => self.low_ms,
            SlaLevel::BestEffort => self.best_effort_ms,
        }
    }
}

/// How far after its submission a job's SLA times may lie: a year and a day (times are
/// milliseconds since the epoch, so anything later is a mistake, and near `u64::MAX`
/// they would overflow the arithmetic that follows).
pub const MAX_SLA_HORIZON_MS: u64 = 366 * 86_400_000;

/// What a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaSpec {
    pub level: SlaLevel,
    /// Start by this time (ms since the epoch) instead of the level's target.
    #[serde(default)]
    pub start_by_ms: Option<u64>,
    #[serde(default)]
    pub finish_by_ms: Option<u64>,
}

impl SlaSpec {
    /// When the job must start, given when it was submitted.
    pub fn start_target_ms(&self, submitted_at_ms: u64, targets: &SlaTargets) -> u64 {
        self.start_by_ms
            .unwrap_or_else(|| submitted_at_ms.saturating_add(targets.of(self.level)))
    }

    pub fn validate(&self, submitted_at_ms: u64) -> Result<(), DomainError> {
        let horizon = submitted_at_ms.saturating_add(MAX_SLA_HORIZON_MS);
        for (field, at) in [
            ("sla.start_by_ms", self.start_by_ms),
            ("sla.finish_by_ms", self.finish_by_ms),
        ] {
            if let Some(at) = at
                && at > horizon
            {
                return Err(DomainError::invalid(
                    field,
                    format!(
                        "must be within {} days of the submission ({submitted_at_ms} ms), at most {horizon}, got {at}",
                        MAX_SLA_HORIZON_MS / 86_400_000
                    ),
                ));
            }
        }
        if let Some(start_by) = self.start_by_ms
            && start_by <= submitted_at_ms
        {
            return Err(DomainError::invalid(
                "sla.start_by_ms",
                format!("must be after the submission time ({submitted_at_ms}), got {start_by}"),
            ));
        }
        if let Some(finish_by) = self.finish_by_ms {
            let earliest = self.start_by_ms.unwrap_or(submitted_at_ms);
            if finish_by <= earliest {
                return Err(DomainError::invalid(
                    "sla.finish_by_ms",
                    format!("must be after the start target ({earliest}), got {finish_by}"),
                ));
            }
        }
        Ok(())
    }
}

/// Everything a status depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaClock {
    pub submitted_at_ms: u64,
    pub start_target_ms: u64,
    pub finish_by_ms: Option<u64>,
    /// The start of its (last) run, if it started.
    pub started_at_ms: Option<u64>,
    /// When it ended, if it did.
    pub finished_at_ms: Option<u64>,
    pub now_ms: u64,
    /// When it is predicted to start, while pending and when a prediction exists.
    pub predicted_start_ms: Option<u64>,
}

/// The job's status against its targets now.
pub fn evaluate(clock: &SlaClock) -> SlaStatus {
    if let Some(started) = clock.started_at_ms {
        if started > clock.start_target_ms {
            return SlaStatus::Violated;
        }
        let late_finish = match (clock.finish_by_ms, clock.finished_at_ms) {
            (Some(finish_by), Some(finished)) => finished > finish_by,
            (Some(finish_by), None) => clock.now_ms > finish_by,
            (None, _) => false,
        };
        return if late_finish {
            SlaStatus::Violated
        } else {
            SlaStatus::Met
        };
    }
    let reference = clock.finished_at_ms.unwrap_or(clock.now_ms);
    if reference > clock.start_target_ms {
        return SlaStatus::Violated;
    }
    let window = clock
        .start_target_ms
        .saturating_sub(clock.submitted_at_ms)
        .max(1);
    let spent = reference.saturating_sub(clock.submitted_at_ms);
    if spent.saturating_mul(10) >= window.saturating_mul(9) {
        return SlaStatus::Critical;
    }
    let predicted_late = clock
        .predicted_start_ms
        .is_some_and(|predicted| predicted > clock.start_target_ms);
    if spent.saturating_mul(10) >= window.saturating_mul(7) || predicted_late {
        return SlaStatus::AtRisk;
    }
    SlaStatus::OnTrack
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn clock(now_ms: u64) -> SlaClock {
        SlaClock {
            submitted_at_ms: 1_000,
            start_target_ms: 11_000,
            finish_by_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            now_ms,
            predicted_start_ms: None,
        }
    }

    #[test]
    fn a_pending_job_moves_through_the_thresholds() {
        assert_eq!(evaluate(&clock(7_999)), SlaStatus::OnTrack);
        assert_eq!(
            evaluate(&clock(8_000)),
            SlaStatus::AtRisk,
            "70% of 10 s spent"
        );
        assert_eq!(evaluate(&clock(10_000)), SlaStatus::Critical, "90% spent");
        assert_eq!(evaluate(&clock(11_001)), SlaStatus::Violated);
        let predicted_late = SlaClock {
            predicted_start_ms: Some(12_000),
            ..clock(2_000)
        };
        assert_eq!(evaluate(&predicted_late), SlaStatus::AtRisk);
    }

    #[test]
    fn a_started_job_is_met_or_violated_and_finish_by_counts() {
        let started = SlaClock {
            started_at_ms: Some(9_000),
            ..clock(20_000)
        };
        assert_eq!(evaluate(&started), SlaStatus::Met);
        let late = SlaClock {
            started_at_ms: Some(11_500),
            ..clock(20_000)
        };
        assert_eq!(evaluate(&late), SlaStatus::Violated);
        let overran = SlaClock {
            finish_by_ms: Some(15_000),
            finished_at_ms: Some(16_000),
            ..started
        };
        assert_eq!(evaluate(&overran), SlaStatus::Violated);
    }

    #[test]
    fn sla_times_beyond_a_year_are_refused_not_overflowed() {
        for (start_by_ms, finish_by_ms, field) in [
            (Some(u64::MAX), None, "sla.start_by_ms"),
            (Some(u64::MAX - 1), Some(u64::MAX), "sla.start_by_ms"),
            (None, Some(u64::MAX), "sla.finish_by_ms"),
            (
                Some(1_000 + MAX_SLA_HORIZON_MS + 1),
                None,
                "sla.start_by_ms",
            ),
        ] {
            let spec = SlaSpec {
                level: SlaLevel::High,
                start_by_ms,
                finish_by_ms,
            };
            match spec.validate(1_000) {
                Err(DomainError::Invalid { field: found, .. }) => assert_eq!(found, field),
                other => panic!("{start_by_ms:?} {finish_by_ms:?}: {other:?}"),
            }
        }
        let within = SlaSpec {
            level: SlaLevel::High,
            start_by_ms: Some(1_000 + MAX_SLA_HORIZON_MS),
            finish_by_ms: None,
        };
        within.validate(1_000).unwrap();
    }

    #[test]
    fn targets_by_level_and_explicit_start_by() {
        let targets = SlaTargets::default();
        let spec = SlaSpec {
            level: SlaLevel::High,
            start_by_ms: None,
            finish_by_ms: None,
        };
        assert_eq!(spec.start_target_ms(0, &targets), 15 * 60_000);
        let explicit = SlaSpec {
            start_by_ms: Some(5),
            ..spec
        };
        assert_eq!(explicit.start_target_ms(0, &targets), 5);
        assert!(explicit.validate(10).is_err());
        assert_eq!(
            SlaLevel::parse("sla.level", "best_effort"),
            Ok(SlaLevel::BestEffort)
        );
    }

    proptest! {
        /// While pending, time only makes the status worse, never better.
        #[test]
        fn pending_status_only_worsens(first in 1_000u64..20_000, later in 0u64..20_000) {
            let earlier = evaluate(&clock(first));
            let after = evaluate(&clock(first + later));
            prop_assert!(after >= earlier);
        }
    }
}
