//! Autoscaling (`DOMAIN.md`, Autoscaling): a pool's policies, triggers and cooldown, and
//! the one pure decision the leader's scaling loop asks for every evaluation.
//!
//! How proposals combine: every enabled policy and every trigger that fired proposes a
//! desired size (a policy with nothing to say proposes nothing). The pool scales up to the
//! largest proposal, and down only to what every proposal allows, which is again the
//! largest: so the decision is the largest proposal, clamped to the bounds (the pool's,
//! narrowed by an active scheduled window). Before it applies:
//! - a target within the tolerance band (default 10%) proposes no change;
//! - a scale-down goes no lower than the largest recommendation of the stabilisation
//!   window (default 300 s), so one quiet evaluation does not undo a scale-up;
//! - a scale-up adds at most `max_added_per_minute` workers in any minute;
//! - a scale-up within `scale_up_s` of the last one, or a scale-down within
//!   `scale_down_s` of the last change either way, is blocked by the cooldown, unless
//!   forced (a manual trigger) or needed to bring the size back within its bounds.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A target within this fraction of its value proposes no change.
pub const DEFAULT_TOLERANCE: f64 = 0.10;
/// Scale-downs look back this far for the largest recommendation.
pub const DEFAULT_STABILIZATION_MS: u64 = 300_000;
/// The most policies and triggers a pool holds.
pub const MAX_RULES: usize = 32;

/// What a policy or trigger measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingMetric {
    /// CPU held by running jobs over the live workers' CPU (0 to 1).
    Utilization,
    /// Jobs waiting for the pool per live worker.
    PendingJobsPerWorker,
    /// Millicores waiting for the pool per live worker.
    PendingCpu,
    /// The 95th percentile of the pool's last waits (pending to assigned), ms.
    WaitP95Ms,
    /// Jobs waiting for the pool whose SLA is at risk or critical.
    SlaAtRisk,
}

impl ScalingMetric {
    pub const ALL: [ScalingMetric; 5] = [
        ScalingMetric::Utilization,
        ScalingMetric::PendingJobsPerWorker,
        ScalingMetric::PendingCpu,
        ScalingMetric::WaitP95Ms,
        ScalingMetric::SlaAtRisk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScalingMetric::Utilization => "utilization",
            ScalingMetric::PendingJobsPerWorker => "pending_jobs_per_worker",
            ScalingMetric::PendingCpu => "pending_cpu",
            ScalingMetric::WaitP95Ms => "wait_p95_ms",
            ScalingMetric::SlaAtRisk => "sla_at_risk",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|metric| metric.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "must be one of {}, got {raw:?}",
                        Self::ALL.map(ScalingMetric::as_str).join(", ")
                    ),
                )
            })
    }
}

/// A waiting job with an SLA start target, as the `sla_headroom` policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaWaiting {
    /// Jobs of the pool that go before it, itself included.
    pub ahead: u64,
    /// Time left until its start target, ms (0: already due).
    pub remaining_ms: u64,
}

/// What the scaling loop observed of a pool at one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Live workers (registered and not stopping).
    pub workers: u32,
    pub utilization: f64,
    pub pending_jobs: u64,
    pub pending_cpu_m: u64,
    pub wait_p95_ms: Option<u64>,
    pub sla_at_risk: u64,
    /// The waiting jobs with an SLA start target.
    pub sla_waiting: Vec<SlaWaiting>,
    /// Jobs the pool started per live worker per second over the last minute.
    pub dispatch_per_worker_per_s: f64,
    /// How many of the waiting jobs one worker runs at once (at least 1).
    pub jobs_per_worker: u32,
}

impl Observed {
    /// The metric's value; `None` when nothing measures it yet (no waits sampled).
    pub fn value(&self, metric: ScalingMetric) -> Option<f64> {
        let per_worker = |amount: u64| amount as f64 / f64::from(self.workers.max(1));
        match metric {
            ScalingMetric::Utilization => Some(self.utilization),
            ScalingMetric::PendingJobsPerWorker => Some(per_worker(self.pending_jobs)),
            ScalingMetric::PendingCpu => Some(per_worker(self.pending_cpu_m)),
            ScalingMetric::WaitP95Ms => self.wait_p95_ms.map(|wait| wait as f64),
            ScalingMetric::SlaAtRisk => Some(self.sla_at_risk as f64),
        }
    }
}

/// How a step's adjustment counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentType {
    /// Add (or remove) this many workers.
    #[default]
    ChangeInCapacity,
    /// Add (or remove) this percentage of the current size (at least one worker).
    PercentChange,
    /// Set the size to this.
    ExactCapacity,
}

impl AdjustmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentType::ChangeInCapacity => "change_in_capacity",
            AdjustmentType::PercentChange => "percent_change",
            AdjustmentType::ExactCapacity => "exact_capacity",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        [
            AdjustmentType::ChangeInCapacity,
            AdjustmentType::PercentChange,
            AdjustmentType::ExactCapacity,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == raw)
        .ok_or_else(|| {
            DomainError::invalid(
                field,
                format!(
                    "must be change_in_capacity, percent_change or exact_capacity, got {raw:?}"
                ),
            )
        })
    }
}

/// One step: when the metric is in [lower, upper), adjust by `adjustment`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i64,
}

impl Step {
    fn contains(&self, value: f64) -> bool {
        self.lower.is_none_or(|lower| value >= lower)
            && self.upper.is_none_or(|upper| value < upper)
    }
}

/// A recurring window in a time zone: it opens at each time the cron expression names and
/// stays open `duration_s`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
    pub cron: String,
    /// An IANA time zone (`Europe/Madrid`); `UTC` by default.
    pub timezone: String,
}

impl Schedule {
    pub fn validate(&self, field: &str) -> Result<(), DomainError> {
        self.parsed(field).map(|_| ())
    }

    fn parsed(&self, field: &str) -> Result<(croner::Cron, chrono_tz::Tz), DomainError> {
        let cron = croner::Cron::from_str(&self.cron).map_err(|error| {
            DomainError::invalid(
                format!("{field}.cron"),
                format!("not a cron expression ({error}): {:?}", self.cron),
            )
        })?;
        let zone = chrono_tz::Tz::from_str(&self.timezone).map_err(|_| {
            DomainError::invalid(
                format!("{field}.timezone"),
                format!("not an IANA time zone: {:?}", self.timezone),
            )
        })?;
        Ok((cron, zone))
    }

    /// The first time the schedule names at or after `from_ms`, a whole second (none
    /// within its search).
    pub fn next_at_or_after(&self, from_ms: u64) -> Option<u64> {
        use chrono::TimeZone;
        let (cron, zone) = self.parsed("schedule").ok()?;
        // The search keeps the start's sub-second part: start on a whole second.
        let from_s = from_ms.div_ceil(1_000);
        let from = zone
            .timestamp_opt(i64::try_from(from_s).ok()?, 0)
            .single()?;
        let next = cron.find_next_occurrence(&from, true).ok()?;
        u64::try_from(next.timestamp())
            .ok()
            .map(|seconds| seconds * 1_000)
    }

    /// The latest time the schedule names within (after_ms, now_ms], if any: a trigger
    /// fires once for it, however many occurrences it missed (a leader change, a pause).
    pub fn latest_within(&self, after_ms: u64, now_ms: u64) -> Option<u64> {
        let mut latest = None;
        let mut from = after_ms.saturating_add(1);
        // Bounded: a schedule of every second over a long gap is not walked whole.
        for _ in 0..10_000 {
            match self.next_at_or_after(from) {
                Some(at) if at <= now_ms => {
                    latest = Some(at);
                    from = at + 1;
                }
                _ => return latest,
            }
        }
        // Too many missed to walk: the search from a second before now finds the last.
        self.next_at_or_after(now_ms.saturating_sub(999))
            .filter(|at| *at <= now_ms)
            .or(latest)
    }

    /// Whether a window of `duration_ms` opened by the schedule is open at `now_ms`.
    pub fn open_at(&self, now_ms: u64, duration_ms: u64) -> bool {
        self.next_at_or_after(now_ms.saturating_sub(duration_ms))
            .is_some_and(|opened| opened <= now_ms)
    }
}

/// What a policy proposes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Keep the metric at `target`: desired = ceil(current x actual / target).
    TargetTracking { metric: ScalingMetric, target: f64 },
    /// The first step whose [lower, upper) holds the metric adjusts the size.
    StepScaling {
        metric: ScalingMetric,
        adjustment_type: AdjustmentType,
        steps: Vec<Step>,
    },
    /// While a scheduled window is open: this desired size, and the pool's bounds
    /// narrowed to [min, max].
    Scheduled {
        schedule: Schedule,
        duration_s: u64,
        min: u32,
        max: u32,
        desired: u32,
    },
    /// Enough workers that every waiting job with an SLA start target is predicted to
    /// start within `headroom` of its time left (its jobs ahead / (the per-worker dispatch
    /// rate x workers)).
    SlaHeadroom { headroom: f64 },
}

impl PolicyKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            PolicyKind::TargetTracking { .. } => "target_tracking",
            PolicyKind::StepScaling { .. } => "step_scaling",
            PolicyKind::Scheduled { .. } => "scheduled",
            PolicyKind::SlaHeadroom { .. } => "sla_headroom",
        }
    }

    pub fn validate(&self, field: &str) -> Result<(), DomainError> {
        match self {
            PolicyKind::TargetTracking { metric, target } => {
                if !(target.is_finite() && *target > 0.0) {
                    return Err(DomainError::invalid(
                        format!("{field}.target"),
                        format!("must be a number above 0, got {target}"),
                    ));
                }
                if *metric == ScalingMetric::Utilization && *target > 1.0 {
                    return Err(DomainError::invalid(
                        format!("{field}.target"),
                        format!("a utilization target is between 0 and 1, got {target}"),
                    ));
                }
                Ok(())
            }
            PolicyKind::StepScaling {
                steps,
                adjustment_type,
                ..
            } => {
                if steps.is_empty() || steps.len() > 16 {
                    return Err(DomainError::invalid(
                        format!("{field}.steps"),
                        format!("must hold 1 to 16 steps, got {}", steps.len()),
                    ));
                }
                for (index, step) in steps.iter().enumerate() {
                    let most = match adjustment_type {
                        AdjustmentType::PercentChange => 10_000,
                        _ => i64::from(crate::pool::MAX_POOL_SIZE),
                    };
                    if step.adjustment.abs() > most
                        || (*adjustment_type == AdjustmentType::ExactCapacity
                            && step.adjustment < 0)
                    {
                        return Err(DomainError::invalid(
                            format!("{field}.steps[{index}].adjustment"),
                            format!(
                                "must be between {} and {most} for {}, got {}",
                                if *adjustment_type == AdjustmentType::ExactCapacity {
                                    0
                                } else {
                                    -most
                                },
                                adjustment_type.as_str(),
                                step.adjustment
                            ),
                        ));
                    }
                    let bounds = [step.lower, step.upper];
                    if bounds.iter().flatten().any(|bound| !bound.is_finite()) {
                        return Err(DomainError::invalid(
                            format!("{field}.steps[{index}]"),
                            "bounds must be finite numbers",
                        ));
                    }
                    if let (Some(lower), Some(upper)) = (step.lower, step.upper)
                        && lower >= upper
                    {
                        return Err(DomainError::invalid(
                            format!("{field}.steps[{index}]"),
                            format!("lower ({lower}) must be below upper ({upper})"),
                        ));
                    }
                }
                Ok(())
            }
            PolicyKind::Scheduled {
                schedule,
                duration_s,
                min,
                max,
                desired,
            } => {
                schedule.validate(field)?;
                if *duration_s == 0 || *duration_s > 31 * 86_400 {
                    return Err(DomainError::invalid(
                        format!("{field}.duration_s"),
                        format!("must be between 1 and 2678400 (31 days), got {duration_s}"),
                    ));
                }
                if !(min <= desired && desired <= max) {
                    return Err(DomainError::invalid(
                        format!("{field}.desired"),
                        format!("must be within [min, max] = [{min}, {max}], got {desired}"),
                    ));
                }
                Ok(())
            }
            PolicyKind::SlaHeadroom { headroom } => {
                if !(headroom.is_finite() && *headroom > 0.0 && *headroom <= 1.0) {
                    return Err(DomainError::invalid(
                        format!("{field}.headroom"),
                        format!("must be above 0 and at most 1, got {headroom}"),
                    ));
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingPolicy {
    pub id: String,
    pub kind: PolicyKind,
    pub enabled: bool,
    pub created_at_ms: u64,
}

/// How a threshold compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Gt => "gt",
            Operator::Ge => "ge",
            Operator::Lt => "lt",
            Operator::Le => "le",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        match raw {
            "gt" | ">" => Ok(Operator::Gt),
            "ge" | ">=" => Ok(Operator::Ge),
            "lt" | "<" => Ok(Operator::Lt),
            "le" | "<=" => Ok(Operator::Le),
            other => Err(DomainError::invalid(
                field,
                format!("must be gt, ge, lt or le, got {other:?}"),
            )),
        }
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Operator::Gt => value > threshold,
            Operator::Ge => value >= threshold,
            Operator::Lt => value < threshold,
            Operator::Le => value <= threshold,
        }
    }
}

/// What a fired trigger asks for: a change by `adjustment` workers, or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAction {
    Adjust(i64),
    Desired(u32),
}

impl TriggerAction {
    pub fn applied_to(self, current: u32) -> u32 {
        match self {
            TriggerAction::Adjust(change) => {
                u32::try_from(i64::from(current).saturating_add(change).max(0)).unwrap_or(u32::MAX)
            }
            TriggerAction::Desired(size) => size,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Fires when `metric operator value` held for `for_evaluations` evaluations in a row.
    Threshold {
        metric: ScalingMetric,
        operator: Operator,
        value: f64,
        for_evaluations: u32,
    },
    /// Fires at each time the schedule names.
    Schedule { schedule: Schedule },
    /// Fires when someone asks (`POST .../triggers/{id}/fire`).
    Manual,
}

impl TriggerKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            TriggerKind::Threshold { .. } => "threshold",
            TriggerKind::Schedule { .. } => "schedule",
            TriggerKind::Manual => "manual",
        }
    }

    pub fn validate(&self, field: &str) -> Result<(), DomainError> {
        match self {
            TriggerKind::Threshold {
                value,
                for_evaluations,
                ..
            } => {
                if !value.is_finite() {
                    return Err(DomainError::invalid(
                        format!("{field}.value"),
                        "must be a finite number",
                    ));
                }
                if !(1..=360).contains(for_evaluations) {
                    return Err(DomainError::invalid(
                        format!("{field}.for_evaluations"),
                        format!("must be between 1 and 360, got {for_evaluations}"),
                    ));
                }
                Ok(())
            }
            TriggerKind::Schedule { schedule } => schedule.validate(field),
            TriggerKind::Manual => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingTrigger {
    pub id: String,
    pub kind: TriggerKind,
    pub action: TriggerAction,
    pub enabled: bool,
    pub created_at_ms: u64,
    /// When a schedule trigger last fired (so a new leader does not fire it again).
    pub last_fired_ms: Option<u64>,
}

/// A pool's cooldowns and growth cap (US-09.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cooldown {
    /// No scale-up within this long of the last one.
    pub scale_up_s: u64,
    /// No scale-down within this long of the last change either way.
    pub scale_down_s: u64,
    /// At most this many workers added in any minute.
    pub max_added_per_minute: u32,
    /// A scale-down goes no lower than the largest recommendation of this window.
    pub scale_down_stabilization_s: u64,
}

impl Default for Cooldown {
    fn default() -> Self {
        Self {
            scale_up_s: 60,
            scale_down_s: 120,
            max_added_per_minute: 10,
            scale_down_stabilization_s: DEFAULT_STABILIZATION_MS / 1_000,
        }
    }
}

impl Cooldown {
    pub fn validate(&self) -> Result<(), DomainError> {
        for (field, value) in [
            ("scale_up_s", self.scale_up_s),
            ("scale_down_s", self.scale_down_s),
            (
                "scale_down_stabilization_s",
                self.scale_down_stabilization_s,
            ),
        ] {
            if value > 86_400 {
                return Err(DomainError::invalid(
                    field,
                    format!("must be at most 86400 (a day), got {value}"),
                ));
            }
        }
        if !(1..=crate::pool::MAX_POOL_SIZE).contains(&self.max_added_per_minute) {
            return Err(DomainError::invalid(
                "max_added_per_minute",
                format!(
                    "must be between 1 and {}, got {}",
                    crate::pool::MAX_POOL_SIZE,
                    self.max_added_per_minute
                ),
            ));
        }
        Ok(())
    }
}

/// What the cooldowns remember: the last change each way and the recent additions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CooldownState {
    pub last_scale_up_ms: Option<u64>,
    pub last_scale_down_ms: Option<u64>,
    /// (at_ms, workers added) of the scale-ups of the last minute.
    pub added: Vec<(u64, u32)>,
}

impl CooldownState {
    /// Remembers a change from `from` to `to` at `at_ms`.
    pub fn record(&mut self, from: u32, to: u32, at_ms: u64) {
        self.added
            .retain(|(at, _)| at_ms.saturating_sub(*at) < 60_000 && *at <= at_ms);
        if to > from {
            self.last_scale_up_ms = Some(at_ms);
            self.added.push((at_ms, to - from));
        } else if to < from {
            self.last_scale_down_ms = Some(at_ms);
        }
    }

    fn added_within_minute(&self, now_ms: u64) -> u32 {
        self.added
            .iter()
            .filter(|(at, _)| now_ms.saturating_sub(*at) < 60_000)
            .map(|(_, count)| *count)
            .fold(0, u32::saturating_add)
    }
}

/// One proposal: from a policy or a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// `policy:<id>` or `trigger:<id>`.
    pub source: String,
    pub desired: u32,
    pub reason: String,
}

/// Why a decision did not change the size as proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocked {
    /// A scale-up within the scale-up cooldown, until this time.
    ScaleUpCooldown { until_ms: u64 },
    /// A scale-down within the scale-down cooldown, until this time.
    ScaleDownCooldown { until_ms: u64 },
    /// The workers added in the last minute reached the cap.
    AddedPerMinuteCap { cap: u32 },
}

impl Blocked {
    pub fn describe(&self, now_ms: u64) -> String {
        match self {
            Blocked::ScaleUpCooldown { until_ms } => format!(
                "scale-up cooldown: {} s left",
                until_ms.saturating_sub(now_ms).div_ceil(1_000)
            ),
            Blocked::ScaleDownCooldown { until_ms } => format!(
                "scale-down cooldown: {} s left",
                until_ms.saturating_sub(now_ms).div_ceil(1_000)
            ),
            Blocked::AddedPerMinuteCap { cap } => {
                format!("{cap} workers were added within the last minute (the cap)")
            }
        }
    }
}

/// Everything [`decide`] reads.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub min: u32,
    pub max: u32,
    /// The pool's desired size now.
    pub current: u32,
    pub observed: &'a Observed,
    pub policies: &'a [ScalingPolicy],
    /// What the triggers that fired this evaluation propose.
    pub fired: &'a [Proposal],
    pub cooldown: Cooldown,
    pub memory: &'a CooldownState,
    pub tolerance: f64,
    /// The recommendations of the last evaluations, (at_ms, desired), for the scale-down
    /// stabilisation window.
    pub recent: &'a [(u64, u32)],
    pub stabilization_ms: u64,
    /// Skip the cooldowns and the cap (a forced manual trigger).
    pub force: bool,
    pub now_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub from: u32,
    /// The size to set (equal to `from` when nothing changes).
    pub desired: u32,
    /// What the proposals asked for, clamped to the bounds, before the stabilisation
    /// window, the cap and the cooldowns.
    pub recommended: u32,
    pub min: u32,
    pub max: u32,
    pub proposals: Vec<Proposal>,
    pub blocked_by: Option<Blocked>,
    pub reason: String,
}

impl Decision {
    pub fn changes(&self) -> bool {
        self.desired != self.from
    }
}

fn ceil_size(value: f64) -> u32 {
    if !value.is_finite() || value <= 0.0 {
        return 0;
    }
    let rounded = value.ceil();
    if rounded >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        rounded as u32
    }
}

/// What one policy proposes now (none: it has nothing to say).
pub fn propose(
    policy: &ScalingPolicy,
    observed: &Observed,
    current: u32,
    tolerance: f64,
    now_ms: u64,
) -> Option<Proposal> {
    let source = format!("policy:{}", policy.id);
    let proposal = |desired: u32, reason: String| {
        Some(Proposal {
            source: source.clone(),
            desired,
            reason,
        })
    };
    match &policy.kind {
        PolicyKind::TargetTracking { metric, target } => {
            let actual = observed.value(*metric)?;
            let ratio = actual / target;
            if (ratio - 1.0).abs() <= tolerance {
                return proposal(
                    current,
                    format!(
                        "{} {actual:.3} is within {:.0}% of its target {target}",
                        metric.as_str(),
                        tolerance * 100.0
                    ),
                );
            }
            // With no worker the ratio says nothing of the size: one worker when work waits.
            let desired = if observed.workers == 0 {
                u32::from(actual > 0.0 || observed.pending_jobs > 0)
            } else {
                ceil_size(f64::from(observed.workers) * ratio)
            };
            proposal(
                desired,
                format!(
                    "{} {actual:.3} against target {target}: ceil({} x {actual:.3} / {target}) = {desired}",
                    metric.as_str(),
                    observed.workers
                ),
            )
        }
        PolicyKind::StepScaling {
            metric,
            adjustment_type,
            steps,
        } => {
            let value = observed.value(*metric)?;
            let step = steps.iter().find(|step| step.contains(value))?;
            let desired = match adjustment_type {
                AdjustmentType::ChangeInCapacity => {
                    TriggerAction::Adjust(step.adjustment).applied_to(current)
                }
                AdjustmentType::ExactCapacity => {
                    u32::try_from(step.adjustment.max(0)).unwrap_or(u32::MAX)
                }
                AdjustmentType::PercentChange => {
                    let change = (f64::from(current) * step.adjustment as f64 / 100.0)
                        .abs()
                        .ceil() as i64;
                    let change = change.max(1) * step.adjustment.signum();
                    TriggerAction::Adjust(change).applied_to(current)
                }
            };
            proposal(
                desired,
                format!(
                    "{} {value:.3} in step [{}, {}): {} {}",
                    metric.as_str(),
                    step.lower
                        .map_or("-inf".to_string(), |lower| lower.to_string()),
                    step.upper
                        .map_or("inf".to_string(), |upper| upper.to_string()),
                    adjustment_type.as_str(),
                    step.adjustment
                ),
            )
        }
        PolicyKind::Scheduled {
            schedule,
            duration_s,
            desired,
            ..
        } => schedule
            .open_at(now_ms, duration_s * 1_000)
            .then(|| Proposal {
                source: source.clone(),
                desired: *desired,
                reason: format!(
                    "scheduled window {:?} ({}) is open",
                    schedule.cron, schedule.timezone
                ),
            }),
        PolicyKind::SlaHeadroom { headroom } => {
            if observed.sla_waiting.is_empty() {
                return None;
            }
            let rate = observed.dispatch_per_worker_per_s;
            let desired = if rate > 0.0 {
                // Each job starts in time with N workers when ahead / (rate x N) <=
                // headroom x time left: N = ahead / (rate x headroom x time left).
                observed
                    .sla_waiting
                    .iter()
                    .map(|job| {
                        let seconds = (job.remaining_ms as f64 / 1_000.0 * headroom).max(1.0);
                        ceil_size(job.ahead as f64 / (rate * seconds))
                    })
                    .max()
                    .unwrap_or(0)
            } else {
                // No start observed yet: a slot for every waiting job with an SLA.
                ceil_size(
                    observed.sla_waiting.len() as f64 / f64::from(observed.jobs_per_worker.max(1)),
                )
            };
            proposal(
                desired,
                format!(
                    "{} jobs with an SLA waiting at {rate:.2} starts/s per worker: {desired} workers start each within {:.0}% of its time left",
                    observed.sla_waiting.len(),
                    headroom * 100.0
                ),
            )
        }
    }
}

/// The bounds now: the pool's, narrowed by every open scheduled window.
pub fn bounds(policies: &[ScalingPolicy], min: u32, max: u32, now_ms: u64) -> (u32, u32) {
    let mut bounds = (min, max);
    for policy in policies.iter().filter(|policy| policy.enabled) {
        if let PolicyKind::Scheduled {
            schedule,
            duration_s,
            min: window_min,
            max: window_max,
            ..
        } = &policy.kind
            && schedule.open_at(now_ms, duration_s * 1_000)
        {
            bounds.0 = bounds.0.max(*window_min).min(max);
            bounds.1 = bounds.1.min(*window_max).max(bounds.0);
        }
    }
    bounds
}

/// The decision of one evaluation.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let now = input.now_ms;
    let (min, max) = bounds(input.policies, input.min, input.max.max(input.min), now);
    let mut proposals: Vec<Proposal> = input
        .policies
        .iter()
        .filter(|policy| policy.enabled)
        .filter_map(|policy| propose(policy, input.observed, input.current, input.tolerance, now))
        .collect();
    proposals.extend(input.fired.iter().cloned());
    let current = input.current;
    // A forced trigger says the size itself; otherwise the largest proposal wins.
    let deciding: &[Proposal] = if input.force && !input.fired.is_empty() {
        input.fired
    } else {
        &proposals
    };
    let wanted = deciding
        .iter()
        .map(|proposal| proposal.desired)
        .max()
        .unwrap_or(current);
    let recommended = wanted.clamp(min, max);
    let mut decision = Decision {
        from: current,
        desired: current,
        recommended,
        min,
        max,
        proposals,
        blocked_by: None,
        reason: String::new(),
    };
    // Out of bounds (a window opened or closed, the pool's bounds changed): back within
    // them at once, whatever the cooldowns.
    let outside = current < min || current > max;
    let mut target = recommended;
    let mut capped = false;
    if target < current && !input.force {
        let steadiest = input
            .recent
            .iter()
            .filter(|(at, _)| now.saturating_sub(*at) < input.stabilization_ms)
            .map(|(_, desired)| *desired)
            .max()
            .unwrap_or(0);
        target = target.max(steadiest.min(current)).clamp(min, max);
    }
    if target > current && !input.force {
        let cap = input.cooldown.max_added_per_minute;
        let room = cap.saturating_sub(input.memory.added_within_minute(now));
        if room == 0 {
            decision.blocked_by = Some(Blocked::AddedPerMinuteCap { cap });
        }
        capped = target > current.saturating_add(room);
        target = target.min(current.saturating_add(room));
    }
    if !input.force && !outside {
        if target > current
            && let Some(last) = input.memory.last_scale_up_ms
        {
            let until_ms = last.saturating_add(input.cooldown.scale_up_s * 1_000);
            if now < until_ms {
                decision.blocked_by = Some(Blocked::ScaleUpCooldown { until_ms });
                target = current;
            }
        }
        if target < current {
            let last_change = input
                .memory
                .last_scale_up_ms
                .max(input.memory.last_scale_down_ms);
            if let Some(last) = last_change {
                let until_ms = last.saturating_add(input.cooldown.scale_down_s * 1_000);
                if now < until_ms {
                    decision.blocked_by = Some(Blocked::ScaleDownCooldown { until_ms });
                    target = current;
                }
            }
        }
    }
    if outside {
        // The bounds hold over the cap: a pool below its minimum grows to it at once.
        target = target.clamp(min, max);
    }
    decision.desired = target;
    decision.reason = explain(&decision, now);
    if capped && decision.blocked_by.is_none() {
        decision.reason.push_str(&format!(
            " (capped at {} added per minute)",
            input.cooldown.max_added_per_minute
        ));
    }
    decision
}

fn explain(decision: &Decision, now_ms: u64) -> String {
    let leading = decision
        .proposals
        .iter()
        .max_by_key(|proposal| proposal.desired)
        .map(|proposal| format!("{}: {}", proposal.source, proposal.reason))
        .unwrap_or_else(|| "no policy or trigger proposes a size".to_string());
    match (decision.blocked_by, decision.changes()) {
        (Some(blocked), _) => format!(
            "{leading}; wanted {} but {}",
            decision.recommended,
            blocked.describe(now_ms)
        ),
        (None, true) => format!("{leading}; {} -> {}", decision.from, decision.desired),
        (None, false) => format!("{leading}; stays at {}", decision.from),
    }
}

/// Autoscaling acts on dynamic pools only: a static pool's size is the agents it runs.
pub fn require_dynamic(pool: &crate::pool::Pool) -> Result<(), DomainError> {
    if pool.pool_type != crate::pool::PoolType::Dynamic {
        return Err(DomainError::Conflict(format!(
            "pool `{}` is static: its size is the workers its operator runs, so it has no autoscaling (use a dynamic pool)",
            pool.id
        )));
    }
    Ok(())
}

/// How a recorded decision turned out (US-09.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalingOutcome {
    /// The size changed; the pool has not reached it yet.
    InProgress,
    /// The pool reached the new size.
    Succeeded,
    /// No worker of a scale-up registered in time.
    Failed,
    /// Some of a scale-up's workers registered, not all, in time.
    Partial,
    /// A later decision replaced it before the pool reached it.
    Cancelled,
    /// A cooldown or the per-minute cap held the proposal back; nothing changed.
    BlockedByCooldown,
    /// Evaluated on request (a manual trigger) and nothing was to change.
    NoChange,
}

impl ScalingOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingOutcome::InProgress => "in_progress",
            ScalingOutcome::Succeeded => "succeeded",
            ScalingOutcome::Failed => "failed",
            ScalingOutcome::Partial => "partial",
            ScalingOutcome::Cancelled => "cancelled",
            ScalingOutcome::BlockedByCooldown => "blocked_by_cooldown",
            ScalingOutcome::NoChange => "no_change",
        }
    }

    pub fn is_settled(self) -> bool {
        !matches!(self, ScalingOutcome::InProgress)
    }
}

/// One entry of a pool's scaling history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingRecord {
    /// Increasing per pool.
    pub seq: u64,
    pub at_ms: u64,
    /// `evaluation` (the policies), `trigger:<id>`, or `manual:<id>` for a fired trigger.
    pub source: String,
    pub forced: bool,
    /// The metric values the evaluation read, by name.
    pub metrics: Vec<(String, f64)>,
    pub from: u32,
    pub to: u32,
    pub recommended: u32,
    pub proposals: Vec<Proposal>,
    pub reason: String,
    pub outcome: ScalingOutcome,
    pub error: Option<String>,
    /// When the pool reached `to` (its last new worker registered).
    pub reached_at_ms: Option<u64>,
    pub settled_at_ms: Option<u64>,
}

/// How many records a pool's history keeps (the oldest go first); records older than
/// [`HISTORY_MAX_AGE_MS`] go too.
pub const HISTORY_KEPT: usize = 200;
pub const HISTORY_MAX_AGE_MS: u64 = 30 * 86_400_000;

/// Everything autoscaling keeps of one pool: its rules, cooldown, what the cooldowns
/// remember, and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolScaling {
    pub pool: String,
    /// The pool's own switch (`resource_pools.pools[].auto_scaling_enabled`).
    pub enabled: bool,
    pub policies: Vec<ScalingPolicy>,
    pub triggers: Vec<ScalingTrigger>,
    pub cooldown: Cooldown,
    pub memory: CooldownState,
    /// Oldest first.
    pub history: Vec<ScalingRecord>,
    pub next_seq: u64,
}

impl PoolScaling {
    pub fn new(pool: &str) -> Self {
        Self {
            pool: pool.to_string(),
            enabled: true,
            policies: Vec::new(),
            triggers: Vec::new(),
            cooldown: Cooldown::default(),
            memory: CooldownState::default(),
            history: Vec::new(),
            next_seq: 1,
        }
    }

    /// Appends a record (numbered here) and drops what is beyond the bounds.
    pub fn record(&mut self, mut record: ScalingRecord) -> u64 {
        record.seq = self.next_seq;
        self.next_seq += 1;
        let at_ms = record.at_ms;
        self.history.push(record);
        self.history
            .retain(|kept| at_ms.saturating_sub(kept.at_ms) <= HISTORY_MAX_AGE_MS);
        let excess = self.history.len().saturating_sub(HISTORY_KEPT);
        self.history.drain(..excess);
        self.next_seq - 1
    }

    /// The record still in progress, if any (at most one: a new decision settles it).
    pub fn in_progress(&self) -> Option<&ScalingRecord> {
        self.history
            .iter()
            .rev()
            .find(|record| record.outcome == ScalingOutcome::InProgress)
    }
}

#[cfg(test)]
#[path = "autoscale_tests.rs"]
mod tests;
