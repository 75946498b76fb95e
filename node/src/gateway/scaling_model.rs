//! The inputs and views of autoscaling (US-09.4): policies, triggers, cooldown, history
//! and evaluations, as REST, gRPC and the CLI see them. The domain keeps a policy's kind
//! as an enum; here it is a flat object with a `type` and the fields of that type.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::GatewayError;
use hodei_domain::autoscale::{
    AdjustmentType, Blocked, Cooldown, Decision, Operator, PolicyKind, PoolScaling, Proposal,
    ScalingMetric, ScalingPolicy, ScalingRecord, ScalingTrigger, Schedule, Step, TriggerAction,
    TriggerKind,
};

/// One step of a `step_scaling` policy: when the metric is in [lower, upper), adjust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepView {
    #[serde(default)]
    pub lower: Option<f64>,
    #[serde(default)]
    pub upper: Option<f64>,
    pub adjustment: i64,
}

/// A scaling policy. `type` is `target_tracking` (metric, target), `step_scaling`
/// (metric, adjustment_type, steps), `scheduled` (cron, timezone, duration_s, min, max,
/// desired) or `sla_headroom` (headroom, default 0.8). Metrics: utilization,
/// pending_jobs_per_worker, pending_cpu, wait_p95_ms, sla_at_risk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The policy's id within the pool (set by the path on PUT; drawn when absent on POST).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub policy_type: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub target: Option<f64>,
    #[serde(default)]
    pub adjustment_type: Option<String>,
    #[serde(default)]
    pub steps: Option<Vec<StepView>>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub duration_s: Option<u64>,
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default)]
    pub desired: Option<u32>,
    #[serde(default)]
    pub headroom: Option<f64>,
}

/// A scaling policy as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    pub id: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub enabled: bool,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustment_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headroom: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyListView {
    pub items: Vec<PolicyView>,
}

fn required<T>(value: Option<T>, field: &str, kind: &str) -> Result<T, GatewayError> {
    value.ok_or_else(|| GatewayError::invalid(field, format!("required for a {kind} policy")))
}

fn schedule_of(
    cron: Option<String>,
    timezone: Option<String>,
    kind: &str,
) -> Result<Schedule, GatewayError> {
    Ok(Schedule {
        cron: cron
            .ok_or_else(|| GatewayError::invalid("cron", format!("required for a {kind}")))?,
        timezone: timezone.unwrap_or_else(|| "UTC".to_string()),
    })
}

/// An id a caller chose: what a path segment can hold.
pub fn validate_rule_id(field: &str, id: &str) -> Result<(), GatewayError> {
    let fine = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_'));
    if fine {
        Ok(())
    } else {
        Err(GatewayError::invalid(
            field,
            format!("1 to 64 letters, digits, '-' or '_', got {id:?}"),
        ))
    }
}

impl PolicyInput {
    /// The domain's policy, with `id` and the creation time; each missing or wrong field
    /// named.
    pub fn into_policy(
        self,
        id: String,
        created_at_ms: u64,
    ) -> Result<ScalingPolicy, GatewayError> {
        validate_rule_id("id", &id)?;
        let metric = |raw: Option<String>, kind: &str| -> Result<ScalingMetric, GatewayError> {
            let raw = required(raw, "metric", kind)?;
            Ok(ScalingMetric::parse("metric", &raw)?)
        };
        let kind = match self.policy_type.as_str() {
            "target_tracking" => PolicyKind::TargetTracking {
                metric: metric(self.metric, "target_tracking")?,
                target: required(self.target, "target", "target_tracking")?,
            },
            "step_scaling" => PolicyKind::StepScaling {
                metric: metric(self.metric, "step_scaling")?,
                adjustment_type: match self.adjustment_type {
                    Some(raw) => AdjustmentType::parse("adjustment_type", &raw)?,
                    None => AdjustmentType::default(),
                },
                steps: required(self.steps, "steps", "step_scaling")?
                    .into_iter()
                    .map(|step| Step {
                        lower: step.lower,
                        upper: step.upper,
                        adjustment: step.adjustment,
                    })
                    .collect(),
            },
            "scheduled" => PolicyKind::Scheduled {
                schedule: schedule_of(self.cron, self.timezone, "scheduled policy")?,
                duration_s: required(self.duration_s, "duration_s", "scheduled")?,
                min: required(self.min, "min", "scheduled")?,
                max: required(self.max, "max", "scheduled")?,
                desired: required(self.desired, "desired", "scheduled")?,
            },
            "sla_headroom" => PolicyKind::SlaHeadroom {
                headroom: self.headroom.unwrap_or(0.8),
            },
            other => {
                return Err(GatewayError::invalid(
                    "type",
                    format!(
                        "must be target_tracking, step_scaling, scheduled or sla_headroom, got {other:?}"
                    ),
                ));
            }
        };
        kind.validate("policy")?;
        Ok(ScalingPolicy {
            id,
            kind,
            enabled: self.enabled.unwrap_or(true),
            created_at_ms,
        })
    }
}

impl From<&ScalingPolicy> for PolicyView {
    fn from(policy: &ScalingPolicy) -> Self {
        let mut view = PolicyView {
            id: policy.id.clone(),
            policy_type: policy.kind.type_name().to_string(),
            enabled: policy.enabled,
            created_at_ms: policy.created_at_ms,
            metric: None,
            target: None,
            adjustment_type: None,
            steps: None,
            cron: None,
            timezone: None,
            duration_s: None,
            min: None,
            max: None,
            desired: None,
            headroom: None,
        };
        match &policy.kind {
            PolicyKind::TargetTracking { metric, target } => {
                view.metric = Some(metric.as_str().to_string());
                view.target = Some(*target);
            }
            PolicyKind::StepScaling {
                metric,
                adjustment_type,
                steps,
            } => {
                view.metric = Some(metric.as_str().to_string());
                view.adjustment_type = Some(adjustment_type.as_str().to_string());
                view.steps = Some(
                    steps
                        .iter()
                        .map(|step| StepView {
                            lower: step.lower,
                            upper: step.upper,
                            adjustment: step.adjustment,
                        })
                        .collect(),
                );
            }
            PolicyKind::Scheduled {
                schedule,
                duration_s,
                min,
                max,
                desired,
            } => {
                view.cron = Some(schedule.cron.clone());
                view.timezone = Some(schedule.timezone.clone());
                view.duration_s = Some(*duration_s);
                view.min = Some(*min);
                view.max = Some(*max);
                view.desired = Some(*desired);
            }
            PolicyKind::SlaHeadroom { headroom } => view.headroom = Some(*headroom),
        }
        view
    }
}

/// A scaling trigger. `type` is `threshold` (metric, operator gt|ge|lt|le, value,
/// for_evaluations, default 1), `schedule` (cron, timezone) or `manual`. When it fires it
/// asks for `desired` workers, or for `adjustment` more (or fewer); a manual trigger may
/// say neither and be given a size when fired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub trigger_type: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub for_evaluations: Option<u32>,
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub adjustment: Option<i64>,
    #[serde(default)]
    pub desired: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TriggerView {
    pub id: String,
    #[serde(rename = "type")]
    pub trigger_type: String,
    pub enabled: bool,
    pub created_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_evaluations: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustment: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TriggerListView {
    pub items: Vec<TriggerView>,
}

impl TriggerInput {
    pub fn into_trigger(
        self,
        id: String,
        created_at_ms: u64,
    ) -> Result<ScalingTrigger, GatewayError> {
        validate_rule_id("id", &id)?;
        let kind = match self.trigger_type.as_str() {
            "threshold" => TriggerKind::Threshold {
                metric: ScalingMetric::parse(
                    "metric",
                    &self.metric.ok_or_else(|| {
                        GatewayError::invalid("metric", "required for a threshold trigger")
                    })?,
                )?,
                operator: Operator::parse(
                    "operator",
                    &self.operator.ok_or_else(|| {
                        GatewayError::invalid("operator", "required for a threshold trigger")
                    })?,
                )?,
                value: self.value.ok_or_else(|| {
                    GatewayError::invalid("value", "required for a threshold trigger")
                })?,
                for_evaluations: self.for_evaluations.unwrap_or(1),
            },
            "schedule" => TriggerKind::Schedule {
                schedule: schedule_of(self.cron, self.timezone, "schedule trigger")?,
            },
            "manual" => TriggerKind::Manual,
            other => {
                return Err(GatewayError::invalid(
                    "type",
                    format!("must be threshold, schedule or manual, got {other:?}"),
                ));
            }
        };
        kind.validate("trigger")?;
        let most = i64::from(hodei_domain::pool::MAX_POOL_SIZE);
        if let Some(change) = self.adjustment
            && change.abs() > most
        {
            return Err(GatewayError::invalid(
                "adjustment",
                format!("must be between -{most} and {most}, got {change}"),
            ));
        }
        let action = match (self.adjustment, self.desired) {
            (Some(_), Some(_)) => {
                return Err(GatewayError::invalid(
                    "desired",
                    "give desired or adjustment, not both",
                ));
            }
            (Some(change), None) => TriggerAction::Adjust(change),
            (None, Some(size)) => TriggerAction::Desired(size),
            (None, None) if matches!(kind, TriggerKind::Manual) => TriggerAction::Adjust(0),
            (None, None) => {
                return Err(GatewayError::invalid(
                    "desired",
                    "a threshold or schedule trigger needs desired or adjustment",
                ));
            }
        };
        Ok(ScalingTrigger {
            id,
            kind,
            action,
            enabled: self.enabled.unwrap_or(true),
            created_at_ms,
            last_fired_ms: None,
        })
    }
}

impl From<&ScalingTrigger> for TriggerView {
    fn from(trigger: &ScalingTrigger) -> Self {
        let mut view = TriggerView {
            id: trigger.id.clone(),
            trigger_type: trigger.kind.type_name().to_string(),
            enabled: trigger.enabled,
            created_at_ms: trigger.created_at_ms,
            metric: None,
            operator: None,
            value: None,
            for_evaluations: None,
            cron: None,
            timezone: None,
            adjustment: None,
            desired: None,
            last_fired_ms: trigger.last_fired_ms,
        };
        match &trigger.kind {
            TriggerKind::Threshold {
                metric,
                operator,
                value,
                for_evaluations,
            } => {
                view.metric = Some(metric.as_str().to_string());
                view.operator = Some(operator.as_str().to_string());
                view.value = Some(*value);
                view.for_evaluations = Some(*for_evaluations);
            }
            TriggerKind::Schedule { schedule } => {
                view.cron = Some(schedule.cron.clone());
                view.timezone = Some(schedule.timezone.clone());
            }
            TriggerKind::Manual => {}
        }
        match trigger.action {
            TriggerAction::Adjust(change) => view.adjustment = Some(change),
            TriggerAction::Desired(size) => view.desired = Some(size),
        }
        view
    }
}

/// Fire a trigger: `desired` overrides its action; `force` skips the cooldowns and the
/// per-minute cap (recorded as forced).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FireInput {
    #[serde(default)]
    pub desired: Option<u32>,
    #[serde(default)]
    pub force: Option<bool>,
}

/// A pool's cooldowns (PUT changes the fields given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CooldownInput {
    #[serde(default)]
    pub scale_up_s: Option<u64>,
    #[serde(default)]
    pub scale_down_s: Option<u64>,
    #[serde(default)]
    pub max_added_per_minute: Option<u32>,
    #[serde(default)]
    pub scale_down_stabilization_s: Option<u64>,
}

impl CooldownInput {
    pub fn over(self, current: Cooldown) -> Cooldown {
        Cooldown {
            scale_up_s: self.scale_up_s.unwrap_or(current.scale_up_s),
            scale_down_s: self.scale_down_s.unwrap_or(current.scale_down_s),
            max_added_per_minute: self
                .max_added_per_minute
                .unwrap_or(current.max_added_per_minute),
            scale_down_stabilization_s: self
                .scale_down_stabilization_s
                .unwrap_or(current.scale_down_stabilization_s),
        }
    }
}

/// A pool's cooldowns and what is left of them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CooldownView {
    pub scale_up_s: u64,
    pub scale_down_s: u64,
    pub max_added_per_minute: u32,
    /// A scale-down goes no lower than the largest recommendation of this window.
    pub scale_down_stabilization_s: u64,
    /// Seconds until a scale-up may happen (0: now).
    pub scale_up_remaining_s: u64,
    /// Seconds until a scale-down may happen (0: now).
    pub scale_down_remaining_s: u64,
    pub last_scale_up_ms: Option<u64>,
    pub last_scale_down_ms: Option<u64>,
}

impl CooldownView {
    pub fn of(scaling: &PoolScaling, now_ms: u64) -> Self {
        let memory = &scaling.memory;
        let cooldown = scaling.cooldown;
        let left = |last: Option<u64>, seconds: u64| {
            last.map_or(0, |at| {
                (at + seconds * 1_000)
                    .saturating_sub(now_ms)
                    .div_ceil(1_000)
            })
        };
        CooldownView {
            scale_up_s: cooldown.scale_up_s,
            scale_down_s: cooldown.scale_down_s,
            max_added_per_minute: cooldown.max_added_per_minute,
            scale_down_stabilization_s: cooldown.scale_down_stabilization_s,
            scale_up_remaining_s: left(memory.last_scale_up_ms, cooldown.scale_up_s),
            scale_down_remaining_s: left(
                memory.last_scale_up_ms.max(memory.last_scale_down_ms),
                cooldown.scale_down_s,
            ),
            last_scale_up_ms: memory.last_scale_up_ms,
            last_scale_down_ms: memory.last_scale_down_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProposalView {
    pub source: String,
    pub desired: u32,
    pub reason: String,
}

impl From<&Proposal> for ProposalView {
    fn from(proposal: &Proposal) -> Self {
        ProposalView {
            source: proposal.source.clone(),
            desired: proposal.desired,
            reason: proposal.reason.clone(),
        }
    }
}

/// One entry of a pool's scaling history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingRecordView {
    pub seq: u64,
    pub at_ms: u64,
    /// `evaluation`, `policy:<id>` or `trigger:<id>`.
    pub source: String,
    pub forced: bool,
    pub from: u32,
    pub to: u32,
    /// What the proposals asked for within the bounds.
    pub recommended: u32,
    /// succeeded | failed | partial | cancelled | blocked_by_cooldown | in_progress
    pub outcome: String,
    pub reason: String,
    pub error: Option<String>,
    /// When the pool reached `to`.
    pub reached_at_ms: Option<u64>,
    pub settled_at_ms: Option<u64>,
    pub metrics: std::collections::BTreeMap<String, f64>,
    pub proposals: Vec<ProposalView>,
}

impl From<&ScalingRecord> for ScalingRecordView {
    fn from(record: &ScalingRecord) -> Self {
        ScalingRecordView {
            seq: record.seq,
            at_ms: record.at_ms,
            source: record.source.clone(),
            forced: record.forced,
            from: record.from,
            to: record.to,
            recommended: record.recommended,
            outcome: record.outcome.as_str().to_string(),
            reason: record.reason.clone(),
            error: record.error.clone(),
            reached_at_ms: record.reached_at_ms,
            settled_at_ms: record.settled_at_ms,
            metrics: record.metrics.iter().cloned().collect(),
            proposals: record.proposals.iter().map(ProposalView::from).collect(),
        }
    }
}

/// A page of a pool's scaling history, newest first; `next_cursor` asks for the page
/// after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingHistoryView {
    pub pool: String,
    pub items: Vec<ScalingRecordView>,
    pub next_cursor: Option<String>,
}

/// What an evaluation decided (and, unless a dry run, did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvaluationView {
    pub pool: String,
    pub dry_run: bool,
    pub from: u32,
    pub desired: u32,
    pub recommended: u32,
    /// The bounds now (the pool's, narrowed by an open scheduled window).
    pub min: u32,
    pub max: u32,
    /// What held the change back: `scale_up_cooldown`, `scale_down_cooldown` or
    /// `added_per_minute_cap`.
    pub blocked_by: Option<String>,
    pub reason: String,
    pub proposals: Vec<ProposalView>,
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// The history entry it left, when not a dry run and worth recording.
    pub recorded: Option<ScalingRecordView>,
}

impl EvaluationView {
    pub fn of(
        pool: &str,
        dry_run: bool,
        decision: &Decision,
        metrics: &[(String, f64)],
        recorded: Option<ScalingRecordView>,
    ) -> Self {
        EvaluationView {
            pool: pool.to_string(),
            dry_run,
            from: decision.from,
            desired: decision.desired,
            recommended: decision.recommended,
            min: decision.min,
            max: decision.max,
            blocked_by: decision.blocked_by.map(|blocked| {
                match blocked {
                    Blocked::ScaleUpCooldown { .. } => "scale_up_cooldown",
                    Blocked::ScaleDownCooldown { .. } => "scale_down_cooldown",
                    Blocked::AddedPerMinuteCap { .. } => "added_per_minute_cap",
                }
                .to_string()
            }),
            reason: decision.reason.clone(),
            proposals: decision.proposals.iter().map(ProposalView::from).collect(),
            metrics: metrics.iter().cloned().collect(),
            recorded,
        }
    }
}

/// A pool's autoscaling at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingView {
    pub pool: String,
    /// The pool's replicated switch (`PUT .../scaling`).
    pub enabled: bool,
    /// Whether the leader's loop scales it: the pool's switch, the node's
    /// `resource_pools.auto_scaling_enabled` and the pool's config switch, and at least one
    /// policy or trigger.
    pub active: bool,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub current: u64,
    pub policies: Vec<PolicyView>,
    pub triggers: Vec<TriggerView>,
    pub cooldown: CooldownView,
    pub last: Option<ScalingRecordView>,
}

/// Turn a pool's autoscaling on or off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingSwitchInput {
    pub enabled: bool,
}
