//! The gateway's autoscaling operations (US-09.4): a pool's policies, triggers, cooldown,
//! switch and history, a trigger fired by hand, and an evaluation on demand. Changes go
//! through Raft (`SetScaling`, `ScalePool`); reads come from the replicated state.

use tracing::info;

use crate::actors::autoscaler::{self, PoolMemory};
use crate::actors::gateway::{Handler, propose_for, read_barrier};
use crate::actors::gateway_jobs::unexpected;
use crate::actors::{NodeContext, now_ms};
use crate::gateway::pricing_model::PricingView;
use crate::gateway::scaling_model::{
    CooldownView, EvaluationView, PolicyListView, PolicyView, ScalingHistoryView,
    ScalingRecordView, ScalingView, TriggerListView, TriggerView, validate_rule_id,
};
use crate::gateway::scaling_operations::{
    DeleteScalingPolicy, DeleteScalingTrigger, EvaluateScaling, FireScalingTrigger, GetPoolPricing,
    GetScaling, GetScalingCooldown, GetScalingHistory, GetScalingPolicy, GetScalingTrigger,
    ListScalingPolicies, ListScalingTriggers, PutScalingPolicy, PutScalingTrigger, SetPoolPricing,
    SetScalingCooldown, SetScalingSwitch,
};
use crate::gateway::{GatewayError, RequestContext};
use crate::state::command::{self, ScalingChange};
use crate::state::{CommandOutcome, CommandV1, HodeiState};
use hodei_domain::DomainError;
use hodei_domain::autoscale::{PoolScaling, Proposal, TriggerKind, require_dynamic};
use hodei_domain::pool::Pool;

/// The most history entries a page holds.
const MAX_PAGE: usize = 500;

/// The pool (dynamic) and its autoscaling (empty when it has none yet).
fn pool_scaling(state: &HodeiState, pool: &str) -> Result<(Pool, PoolScaling), GatewayError> {
    let found = state
        .pool(pool)
        .ok_or_else(|| GatewayError::from(DomainError::not_found("pool", pool)))?;
    require_dynamic(found)?;
    let scaling = state
        .scaling(pool)
        .cloned()
        .unwrap_or_else(|| PoolScaling::new(pool));
    Ok((found.clone(), scaling))
}

async fn change(
    node: &NodeContext,
    context: &RequestContext,
    pool: String,
    change: ScalingChange,
) -> Result<PoolScaling, GatewayError> {
    match propose_for(
        node,
        context,
        CommandV1::SetScaling(command::SetScaling { pool, change }),
    )
    .await?
    {
        CommandOutcome::Scaling(scaling) => Ok(*scaling),
        other => Err(unexpected(other)),
    }
}

fn scaling_view(
    node: &NodeContext,
    state: &HodeiState,
    pool: &Pool,
    scaling: &PoolScaling,
) -> ScalingView {
    let settings = &node.limits.autoscaling;
    ScalingView {
        pool: pool.id.clone(),
        enabled: scaling.enabled,
        active: settings.enabled
            && !settings.pools_off.contains(&pool.id)
            && autoscaler::scales(pool, scaling),
        min: pool.min_size,
        max: pool.max_size,
        desired: pool.desired_size,
        current: state.live_workers_of(&pool.id) as u64,
        policies: scaling.policies.iter().map(PolicyView::from).collect(),
        triggers: scaling.triggers.iter().map(TriggerView::from).collect(),
        cooldown: CooldownView::of(scaling, now_ms()),
        last: scaling.history.last().map(ScalingRecordView::from),
    }
}

/// A rule's id: the path's, else the body's (they must agree when both are given), else
/// a fresh one `<prefix>-<8 hex>`.
fn rule_id(path: Option<String>, body: Option<&str>, prefix: &str) -> Result<String, GatewayError> {
    if let (Some(path), Some(body)) = (&path, body)
        && path != body
    {
        return Err(GatewayError::invalid(
            "id",
            format!("the body's id {body:?} is not the path's {path:?}"),
        ));
    }
    let id = path
        .or_else(|| body.map(str::to_string))
        .unwrap_or_else(|| {
            let drawn = uuid::Uuid::now_v7().simple().to_string();
            format!("{prefix}-{}", &drawn[drawn.len() - 8..])
        });
    validate_rule_id("id", &id)?;
    Ok(id)
}

impl Handler for GetScaling {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<ScalingView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (pool, scaling) = pool_scaling(state, &self.pool)?;
            Ok(scaling_view(&node, state, &pool, &scaling))
        })
    }
}

impl Handler for SetScalingSwitch {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<ScalingView, GatewayError> {
        let scaling = change(
            &node,
            &context,
            self.pool.clone(),
            ScalingChange::Enabled(self.input.enabled),
        )
        .await?;
        info!(pool = %self.pool, enabled = scaling.enabled, principal = %context.principal, "pool autoscaling switched");
        node.read(|state| {
            let (pool, _) = pool_scaling(state, &self.pool)?;
            Ok(scaling_view(&node, state, &pool, &scaling))
        })
    }
}

impl Handler for ListScalingPolicies {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<PolicyListView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (_, scaling) = pool_scaling(state, &self.pool)?;
            Ok(PolicyListView {
                items: scaling.policies.iter().map(PolicyView::from).collect(),
            })
        })
    }
}

impl Handler for GetScalingPolicy {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<PolicyView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (_, scaling) = pool_scaling(state, &self.pool)?;
            scaling
                .policies
                .iter()
                .find(|policy| policy.id == self.id)
                .map(PolicyView::from)
                .ok_or_else(|| DomainError::not_found("scaling policy", self.id.clone()).into())
        })
    }
}

impl Handler for PutScalingPolicy {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<PolicyView, GatewayError> {
        let PutScalingPolicy {
            pool,
            id,
            create,
            input,
        } = self;
        let id = rule_id(id, input.id.as_deref(), "policy")?;
        let existing = node.read(|state| {
            pool_scaling(state, &pool).map(|(_, scaling)| {
                scaling
                    .policies
                    .iter()
                    .find(|policy| policy.id == id)
                    .cloned()
            })
        })?;
        if create && existing.is_some() {
            return Err(DomainError::already_exists("scaling policy", id).into());
        }
        let created_at_ms = existing.map_or_else(now_ms, |policy| policy.created_at_ms);
        let policy = input.into_policy(id.clone(), created_at_ms)?;
        let scaling = change(
            &node,
            &context,
            pool.clone(),
            ScalingChange::PutPolicy(policy),
        )
        .await?;
        info!(pool = %pool, policy = %id, principal = %context.principal, "scaling policy set");
        scaling
            .policies
            .iter()
            .find(|policy| policy.id == id)
            .map(PolicyView::from)
            .ok_or_else(|| DomainError::not_found("scaling policy", id).into())
    }
}

impl Handler for DeleteScalingPolicy {
    async fn handle(self, node: NodeContext, context: RequestContext) -> Result<(), GatewayError> {
        change(
            &node,
            &context,
            self.pool.clone(),
            ScalingChange::DeletePolicy(self.id.clone()),
        )
        .await?;
        info!(pool = %self.pool, policy = %self.id, principal = %context.principal, "scaling policy deleted");
        Ok(())
    }
}

impl Handler for ListScalingTriggers {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<TriggerListView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (_, scaling) = pool_scaling(state, &self.pool)?;
            Ok(TriggerListView {
                items: scaling.triggers.iter().map(TriggerView::from).collect(),
            })
        })
    }
}

impl Handler for GetScalingTrigger {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<TriggerView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (_, scaling) = pool_scaling(state, &self.pool)?;
            scaling
                .triggers
                .iter()
                .find(|trigger| trigger.id == self.id)
                .map(TriggerView::from)
                .ok_or_else(|| DomainError::not_found("scaling trigger", self.id.clone()).into())
        })
    }
}

impl Handler for PutScalingTrigger {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<TriggerView, GatewayError> {
        let PutScalingTrigger {
            pool,
            id,
            create,
            input,
        } = self;
        let id = rule_id(id, input.id.as_deref(), "trigger")?;
        let existing = node.read(|state| {
            pool_scaling(state, &pool).map(|(_, scaling)| {
                scaling
                    .triggers
                    .iter()
                    .find(|trigger| trigger.id == id)
                    .cloned()
            })
        })?;
        if create && existing.is_some() {
            return Err(DomainError::already_exists("scaling trigger", id).into());
        }
        let created_at_ms = existing
            .as_ref()
            .map_or_else(now_ms, |trigger| trigger.created_at_ms);
        let mut trigger = input.into_trigger(id.clone(), created_at_ms)?;
        trigger.last_fired_ms = existing.and_then(|kept| kept.last_fired_ms);
        let scaling = change(
            &node,
            &context,
            pool.clone(),
            ScalingChange::PutTrigger(trigger),
        )
        .await?;
        info!(pool = %pool, trigger = %id, principal = %context.principal, "scaling trigger set");
        scaling
            .triggers
            .iter()
            .find(|trigger| trigger.id == id)
            .map(TriggerView::from)
            .ok_or_else(|| DomainError::not_found("scaling trigger", id).into())
    }
}

impl Handler for DeleteScalingTrigger {
    async fn handle(self, node: NodeContext, context: RequestContext) -> Result<(), GatewayError> {
        change(
            &node,
            &context,
            self.pool.clone(),
            ScalingChange::DeleteTrigger(self.id.clone()),
        )
        .await?;
        info!(pool = %self.pool, trigger = %self.id, principal = %context.principal, "scaling trigger deleted");
        Ok(())
    }
}

/// Evaluates the pool now (with `extra` as one more proposal), and unless `dry_run`,
/// records the decision when it changes the size or a proposal was held back.
async fn evaluate_now(
    node: &NodeContext,
    context: &RequestContext,
    pool_id: &str,
    extra: Option<(Proposal, bool)>,
    dry_run: bool,
    always_record: bool,
) -> Result<EvaluationView, GatewayError> {
    let targets = node.limits.sla_targets;
    let interval_ms = node.limits.autoscaling.evaluation_interval.as_millis() as u64;
    let (evaluation, worth) = node.read(|state| {
        let (pool, scaling) = pool_scaling(state, pool_id)?;
        let mut memory = PoolMemory::default();
        let evaluation = autoscaler::evaluate(
            state,
            &pool,
            &scaling,
            &mut memory,
            extra,
            &targets,
            interval_ms,
            now_ms(),
        );
        let worth = always_record || autoscaler::worth_recording(&scaling, &evaluation);
        Ok::<_, GatewayError>((evaluation, worth))
    })?;
    let metrics = evaluation.record.metrics.clone();
    let decision = evaluation.decision.clone();
    if dry_run || !worth {
        return Ok(EvaluationView::of(
            pool_id, dry_run, &decision, &metrics, None,
        ));
    }
    let record = evaluation.record.clone();
    let command = CommandV1::ScalePool(command::ScalePool {
        pool: pool_id.to_string(),
        record,
        fired_schedules: evaluation.fired_schedules.clone(),
    });
    let outcome_name = evaluation.record.outcome.as_str();
    let seq = match propose_for(node, context, command).await? {
        CommandOutcome::Scaled { seq, .. } => seq,
        other => return Err(unexpected(other)),
    };
    node.metrics.scaling_decision(pool_id, outcome_name);
    info!(pool = pool_id, from = decision.from, to = decision.desired, seq, principal = %context.principal, reason = %decision.reason, "scaling decision recorded");
    let recorded = node.read(|state| {
        state
            .scaling(pool_id)
            .and_then(|scaling| scaling.history.iter().find(|record| record.seq == seq))
            .map(ScalingRecordView::from)
    });
    Ok(EvaluationView::of(
        pool_id, false, &decision, &metrics, recorded,
    ))
}

impl Handler for FireScalingTrigger {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<EvaluationView, GatewayError> {
        let FireScalingTrigger { pool, id, input } = self;
        let (trigger, current) = node.read(|state| {
            let (found, scaling) = pool_scaling(state, &pool)?;
            let trigger = scaling
                .triggers
                .iter()
                .find(|trigger| trigger.id == id)
                .cloned()
                .ok_or_else(|| {
                    GatewayError::from(DomainError::not_found("scaling trigger", id.clone()))
                })?;
            Ok::<_, GatewayError>((trigger, found.desired_size))
        })?;
        if !matches!(trigger.kind, TriggerKind::Manual) {
            return Err(DomainError::Conflict(format!(
                "trigger `{id}` is a {} trigger: only manual triggers are fired by hand",
                trigger.kind.type_name()
            ))
            .into());
        }
        if !trigger.enabled {
            return Err(DomainError::Conflict(format!("trigger `{id}` is disabled")).into());
        }
        let desired = input
            .desired
            .unwrap_or_else(|| trigger.action.applied_to(current));
        let force = input.force.unwrap_or(false);
        let proposal = Proposal {
            source: format!("trigger:{id}"),
            desired,
            reason: format!(
                "fired by {}{}",
                context.principal,
                if force { " (forced)" } else { "" }
            ),
        };
        evaluate_now(&node, &context, &pool, Some((proposal, force)), false, true).await
    }
}

impl Handler for GetScalingCooldown {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<CooldownView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (_, scaling) = pool_scaling(state, &self.pool)?;
            Ok(CooldownView::of(&scaling, now_ms()))
        })
    }
}

impl Handler for SetScalingCooldown {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<CooldownView, GatewayError> {
        let current = node
            .read(|state| pool_scaling(state, &self.pool).map(|(_, scaling)| scaling.cooldown))?;
        let cooldown = self.input.over(current);
        let scaling = change(
            &node,
            &context,
            self.pool.clone(),
            ScalingChange::Cooldown(cooldown),
        )
        .await?;
        info!(pool = %self.pool, principal = %context.principal, "scaling cooldown set");
        Ok(CooldownView::of(&scaling, now_ms()))
    }
}

impl Handler for GetScalingHistory {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<ScalingHistoryView, GatewayError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(GatewayError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE}, got {limit}"),
            ));
        }
        let before_seq = match &self.cursor {
            None => u64::MAX,
            Some(raw) => raw.parse::<u64>().map_err(|_| {
                GatewayError::invalid("cursor", format!("not a cursor this list gave: {raw:?}"))
            })?,
        };
        if let (Some(from), Some(to)) = (self.from_ms, self.to_ms)
            && from > to
        {
            return Err(GatewayError::invalid(
                "from",
                format!("must not be after to ({to}), got {from}"),
            ));
        }
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            let (_, scaling) = pool_scaling(state, &self.pool)?;
            let mut matching = scaling.history.iter().rev().filter(|record| {
                record.seq < before_seq
                    && self.from_ms.is_none_or(|from| record.at_ms >= from)
                    && self.to_ms.is_none_or(|to| record.at_ms <= to)
            });
            let items: Vec<ScalingRecordView> = matching
                .by_ref()
                .take(limit)
                .map(ScalingRecordView::from)
                .collect();
            let next_cursor = match (matching.next(), items.last()) {
                (Some(_), Some(last)) => Some(last.seq.to_string()),
                _ => None,
            };
            Ok(ScalingHistoryView {
                pool: self.pool.clone(),
                items,
                next_cursor,
            })
        })
    }
}

impl Handler for EvaluateScaling {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<EvaluationView, GatewayError> {
        evaluate_now(&node, &context, &self.pool, None, self.dry_run, false).await
    }
}

impl Handler for GetPoolPricing {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<PricingView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        node.read(|state| {
            state
                .prices(&self.pool)
                .map(|prices| PricingView::from(&prices))
                .ok_or_else(|| DomainError::not_found("pool", self.pool.clone()).into())
        })
    }
}

impl Handler for SetPoolPricing {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<PricingView, GatewayError> {
        let changes = self.input.changes()?;
        let tiers = self.input.tier_percent.map(Into::into);
        let command = CommandV1::SetPoolPricing(command::SetPoolPricing {
            pool: self.pool.clone(),
            changes,
            tiers,
            at_ms: now_ms(),
        });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Prices(prices) => {
                info!(pool = %self.pool, principal = %context.principal, "pool prices changed");
                Ok(PricingView::from(prices.as_ref()))
            }
            other => Err(unexpected(other)),
        }
    }
}
