//! The autoscaling messages of `hodei.v1.ResourcePoolService`, to and from the gateway's
//! views (the same as REST's).

use hodei_proto::v1 as pb;

use crate::gateway::scaling_model::{
    EvaluationView, PolicyInput, PolicyView, ProposalView, ScalingHistoryView, ScalingRecordView,
    StepView,
};

pub fn policy_input(policy: pb::ScalingPolicy, enabled: Option<bool>) -> PolicyInput {
    PolicyInput {
        id: None,
        policy_type: policy.r#type,
        enabled,
        metric: policy.metric,
        target: policy.target,
        adjustment_type: policy.adjustment_type,
        steps: (!policy.steps.is_empty()).then(|| {
            policy
                .steps
                .into_iter()
                .map(|step| StepView {
                    lower: step.lower,
                    upper: step.upper,
                    adjustment: step.adjustment,
                })
                .collect()
        }),
        cron: policy.cron,
        timezone: policy.timezone,
        duration_s: policy.duration_s,
        min: policy.min,
        max: policy.max,
        desired: policy.desired,
        headroom: policy.headroom,
    }
}

pub fn policy_message(view: PolicyView) -> pb::ScalingPolicy {
    pb::ScalingPolicy {
        id: view.id,
        r#type: view.policy_type,
        enabled: view.enabled,
        created_at_ms: view.created_at_ms,
        metric: view.metric,
        target: view.target,
        adjustment_type: view.adjustment_type,
        steps: view
            .steps
            .unwrap_or_default()
            .into_iter()
            .map(|step| pb::ScalingStep {
                lower: step.lower,
                upper: step.upper,
                adjustment: step.adjustment,
            })
            .collect(),
        cron: view.cron,
        timezone: view.timezone,
        duration_s: view.duration_s,
        min: view.min,
        max: view.max,
        desired: view.desired,
        headroom: view.headroom,
    }
}

fn proposal_message(view: ProposalView) -> pb::ScalingProposal {
    pb::ScalingProposal {
        source: view.source,
        desired: view.desired,
        reason: view.reason,
    }
}

fn record_message(view: ScalingRecordView) -> pb::ScalingRecord {
    pb::ScalingRecord {
        seq: view.seq,
        at_ms: view.at_ms,
        source: view.source,
        forced: view.forced,
        from: view.from,
        to: view.to,
        recommended: view.recommended,
        outcome: view.outcome,
        reason: view.reason,
        error: view.error,
        reached_at_ms: view.reached_at_ms,
        settled_at_ms: view.settled_at_ms,
        metrics: view.metrics.into_iter().collect(),
        proposals: view.proposals.into_iter().map(proposal_message).collect(),
    }
}

pub fn history_message(view: ScalingHistoryView) -> pb::ScalingHistory {
    pb::ScalingHistory {
        pool_id: view.pool,
        records: view.items.into_iter().map(record_message).collect(),
        next_cursor: view.next_cursor.unwrap_or_default(),
    }
}

pub fn evaluation_message(view: EvaluationView) -> pb::ScalingEvaluation {
    pb::ScalingEvaluation {
        pool_id: view.pool,
        dry_run: view.dry_run,
        from: view.from,
        desired: view.desired,
        recommended: view.recommended,
        min: view.min,
        max: view.max,
        blocked_by: view.blocked_by,
        reason: view.reason,
        proposals: view.proposals.into_iter().map(proposal_message).collect(),
        metrics: view.metrics.into_iter().collect(),
        recorded: view.recorded.map(record_message),
    }
}

pub fn pricing_message(view: crate::gateway::pricing_model::PricingView) -> pb::PoolPricing {
    let tiers = view.tier_percent;
    pb::PoolPricing {
        pool: view.pool,
        cpu_core_hour_usd: view.cpu_core_hour_usd,
        memory_gb_hour_usd: view.memory_gb_hour_usd,
        gpu_hour_usd: view.gpu_hour_usd,
        burst_premium_percent: view.burst_premium_percent,
        tier_percent: Some(pb::TierPercent {
            free: tiers.free,
            standard: tiers.standard,
            premium: tiers.premium,
            enterprise: tiers.enterprise,
        }),
        history: view
            .history
            .into_iter()
            .map(|period| pb::PricePeriod {
                from_ms: period.from_ms,
                cpu_core_hour_usd: period.cpu_core_hour_usd,
                memory_gb_hour_usd: period.memory_gb_hour_usd,
                gpu_hour_usd: period.gpu_hour_usd,
                burst_premium_percent: period.burst_premium_percent,
            })
            .collect(),
    }
}
