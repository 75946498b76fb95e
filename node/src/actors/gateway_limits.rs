//! The gateway's quota, enforcement and burst operations (US-09.1.2 - US-09.1.4).

use tracing::info;

use crate::actors::gateway::{Handler, propose_for, read_barrier, require_access};
use crate::actors::{NodeContext, now_ms};
use crate::gateway::model::page_size;
use crate::gateway::model::{
    BurstInput, BurstListView, BurstView, DecisionView, DimensionUsageView, EnforceInput,
    QuotaInput, QuotaView, UsageView, ViolationCountView, ViolationView, ViolationsView,
};
use crate::gateway::operations::{
    ApproveBurst, EndBurst, EnforceQuota, GetBursts, GetQuota, GetUsage, ListViolations,
    RequestBurst, SetQuota,
};
use crate::gateway::{Consistency, ErrorCode, GatewayError, Principal, RequestContext};
use crate::state::command;
use crate::state::{CommandOutcome, CommandV1};
use hodei_domain::DomainError;
use hodei_domain::admission::{AdmissionInput, JobRequest, admit};
use hodei_domain::burst::{BurstRequest, BurstStatus, EndReason};
use hodei_domain::quota::Quota;
use hodei_domain::resources::{Dimension, Resources};
use hodei_domain::tenant::{Tenant, TenantId, TenantStatus};

impl Handler for GetQuota {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QuotaView, GatewayError> {
        let GetQuota {
            tenant,
            consistency,
        } = self;
        let tenant = readable_tenant(&node, &context, &tenant, consistency).await?;
        Ok(QuotaView::new(&tenant.id, &tenant.quota, Vec::new()))
    }
}

impl Handler for SetQuota {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QuotaView, GatewayError> {
        let SetQuota { tenant, input } = self;
        set_quota(&node, &context, &tenant, input).await
    }
}

impl Handler for GetUsage {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<UsageView, GatewayError> {
        let GetUsage {
            tenant,
            consistency,
        } = self;
        let tenant = readable_tenant(&node, &context, &tenant, consistency).await?;
        Ok(usage_view(&node, &tenant))
    }
}

impl Handler for EnforceQuota {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<DecisionView, GatewayError> {
        let EnforceQuota { input } = self;
        enforce(&node, &context, input).await
    }
}

impl Handler for ListViolations {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<ViolationsView, GatewayError> {
        let ListViolations { tenant, limit } = self;
        violations(&node, &context, tenant, limit)
    }
}

impl Handler for RequestBurst {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<BurstView, GatewayError> {
        let RequestBurst { tenant, input } = self;
        request_burst(&node, &context, &tenant, input).await
    }
}

impl Handler for GetBursts {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<BurstListView, GatewayError> {
        let GetBursts {
            tenant,
            consistency,
        } = self;
        let tenant = readable_tenant(&node, &context, &tenant, consistency).await?;
        let history: Vec<BurstView> = node.read(|state| {
            state
                .burst_sessions(&tenant.id)
                .iter()
                .rev()
                .map(BurstView::from)
                .collect()
        });
        let current = history
            .iter()
            .find(|session| session.status == "active" || session.status == "awaiting_approval")
            .cloned();
        Ok(BurstListView {
            tenant: tenant.id.to_string(),
            current,
            history,
        })
    }
}

impl Handler for EndBurst {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<BurstView, GatewayError> {
        let EndBurst { tenant } = self;
        end_burst(&node, &context, &tenant).await
    }
}

impl Handler for ApproveBurst {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<BurstView, GatewayError> {
        let ApproveBurst { tenant, session } = self;
        approve_burst(&node, &context, &tenant, session).await
    }
}

fn parse_tenant(raw: &str) -> Result<TenantId, GatewayError> {
    TenantId::parse(raw).map_err(GatewayError::from)
}

/// The tenant, after the principal check and the read barrier.
async fn readable_tenant(
    node: &NodeContext,
    context: &RequestContext,
    raw: &str,
    consistency: Consistency,
) -> Result<Tenant, GatewayError> {
    let id = parse_tenant(raw)?;
    require_access(context, &id)?;
    read_barrier(node, consistency).await?;
    node.read(|state| state.tenant(&id).cloned())
        .ok_or_else(|| DomainError::not_found("tenant", id.to_string()).into())
}

fn usage_view(node: &NodeContext, tenant: &Tenant) -> UsageView {
    let now = crate::actors::now_ms();
    let (usage, active, budget) = node.read(|state| {
        (
            state.usage(&tenant.id),
            state.active_burst(&tenant.id).cloned(),
            budget_view(state, &tenant.id, now),
        )
    });
    let quota = &tenant.quota;
    let ceiling_percent = active.as_ref().map(|session| session.ceiling_percentage);
    let ceiling = ceiling_percent.map(|percent| quota.resources().scaled_percent(percent));
    let mut dimensions: Vec<DimensionUsageView> = usage
        .running
        .dimensions()
        .into_iter()
        .zip(quota.resources().dimensions())
        .enumerate()
        .map(|(position, ((dimension, used), (_, limit)))| {
            let burst_ceiling = ceiling.map(|ceiling| ceiling.dimensions()[position].1);
            DimensionUsageView {
                dimension: dimension.as_str().to_string(),
                used,
                quota: limit,
                burst_ceiling,
                available: burst_ceiling.unwrap_or(limit).saturating_sub(used),
            }
        })
        .collect();
    let jobs_ceiling =
        ceiling_percent.map(|percent| quota.max_concurrent_jobs.saturating_mul(percent) / 100);
    dimensions.push(DimensionUsageView {
        dimension: Dimension::ConcurrentJobs.as_str().to_string(),
        used: usage.running_jobs,
        quota: quota.max_concurrent_jobs,
        burst_ceiling: jobs_ceiling,
        available: jobs_ceiling
            .unwrap_or(quota.max_concurrent_jobs)
            .saturating_sub(usage.running_jobs),
    });
    UsageView {
        tenant: tenant.id.to_string(),
        dimensions,
        pending_jobs: usage.pending_jobs,
        max_pending_jobs: quota.max_pending_jobs,
        burst: active.as_ref().map(BurstView::from),
        budget,
    }
}

/// The tenant's daily budget today, if it has one and costs are tracked by tenant.
pub fn budget_view(
    state: &crate::state::HodeiState,
    tenant: &hodei_domain::tenant::TenantId,
    now_ms: u64,
) -> Option<crate::gateway::model::BudgetView> {
    let settings = state.cost_settings();
    if !settings.enabled || !settings.track_by_tenant {
        return None;
    }
    let budget_nanos = state.budget_nanos(tenant)?;
    let spent_nanos = state.spent_today(tenant, now_ms);
    let alert = state.budget_alert(tenant, now_ms);
    Some(crate::gateway::model::BudgetView {
        daily_budget_nanos: budget_nanos,
        spent_today_nanos: spent_nanos,
        used_ratio: spent_nanos as f64 / budget_nanos.max(1) as f64,
        level_percent: hodei_domain::cost::budget_level(spent_nanos, budget_nanos),
        warned_percent: alert.map(|found| found.level_percent),
        warned_at_ms: alert.map(|found| found.at_ms),
        action: settings.budget_action.as_str().to_string(),
        exhausted: state.budget_exhausted(tenant, now_ms),
    })
}

fn quota_from_input(defaults: &Quota, input: QuotaInput) -> Result<Quota, GatewayError> {
    let daily_cost_budget_micros = match input.daily_cost_budget_usd {
        None => None,
        Some(usd) if usd.is_finite() && (0.0..=1e9).contains(&usd) => {
            Some((usd * 1_000_000.0).round() as u64)
        }
        Some(usd) => {
            return Err(GatewayError::invalid(
                "daily_cost_budget_usd",
                format!("must be between 0 and 1000000000, got {usd}"),
            ));
        }
    };
    let quota = Quota {
        cpu_m: input.cpu_m.unwrap_or(defaults.cpu_m),
        memory_mb: input.memory_mb.unwrap_or(defaults.memory_mb),
        gpu: input.gpu.unwrap_or(defaults.gpu),
        max_concurrent_jobs: input
            .max_concurrent_jobs
            .unwrap_or(defaults.max_concurrent_jobs),
        max_pending_jobs: input.max_pending_jobs.unwrap_or(defaults.max_pending_jobs),
        pool_limits: input
            .pool_limits
            .unwrap_or_default()
            .into_iter()
            .map(|(pool, limit)| (pool, Resources::from(limit)))
            .collect(),
        daily_cost_budget_micros,
    };
    quota.validate()?;
    Ok(quota)
}

async fn set_quota(
    node: &NodeContext,
    context: &RequestContext,
    raw: &str,
    input: QuotaInput,
) -> Result<QuotaView, GatewayError> {
    let id = parse_tenant(raw)?;
    let quota = quota_from_input(&node.limits.default_quota, input)?;
    match propose_for(
        node,
        context,
        CommandV1::SetQuota(command::SetQuota {
            id,
            quota,
            at_ms: now_ms(),
        }),
    )
    .await?
    {
        CommandOutcome::QuotaSet { tenant, warnings } => {
            info!(tenant = %tenant.id, principal = %context.principal, warnings = warnings.len(), "quota set");
            Ok(QuotaView::new(&tenant.id, &tenant.quota, warnings))
        }
        other => Err(GatewayError::internal(format!(
            "unexpected outcome {other:?}"
        ))),
    }
}

async fn enforce(
    node: &NodeContext,
    context: &RequestContext,
    input: EnforceInput,
) -> Result<DecisionView, GatewayError> {
    let raw = match (&input.tenant, &context.principal) {
        (Some(raw), _) => raw.clone(),
        (None, Principal::Tenant(own)) => own.to_string(),
        (None, Principal::Admin) => hodei_domain::tenant::DEFAULT_TENANT_ID.to_string(),
    };
    let tenant = readable_tenant(node, context, &raw, Consistency::Linearizable).await?;
    let requested = Resources::new(input.cpu_m, input.memory_mb, input.gpu);
    if requested == Resources::ZERO {
        return Err(GatewayError::new(
            ErrorCode::Unprocessable,
            "the job requests no resources: give cpu_m, memory_mb or gpu",
        ));
    }
    let largest_worker =
        match &input.pool {
            Some(pool) => {
                Some(*node.limits.worker_shapes.get(pool).ok_or_else(|| {
                    GatewayError::from(DomainError::not_found("pool", pool.clone()))
                })?)
            }
            None => node
                .limits
                .worker_shapes
                .values()
                .copied()
                .reduce(|largest, shape| Resources {
                    cpu_m: largest.cpu_m.max(shape.cpu_m),
                    memory_mb: largest.memory_mb.max(shape.memory_mb),
                    gpu: largest.gpu.max(shape.gpu),
                }),
        };
    let (usage, active) = node.read(|state| {
        (
            state.usage(&tenant.id),
            state.active_burst(&tenant.id).cloned(),
        )
    });
    let request = JobRequest {
        resources: requested,
        pool: input.pool.clone(),
    };
    let policy = &node.limits.burst;
    let decision = admit(&AdmissionInput {
        quota: &tenant.quota,
        usage: &usage,
        tenant_active: tenant.status == TenantStatus::Active,
        active_burst_percent: active.map(|session| session.ceiling_percentage),
        max_burst_percent: policy.enabled.then_some(policy.max_overage_percentage),
        largest_worker,
        request: &request,
    });
    // A what-if: nothing is counted (violations are the refusals and queueing decisions
    // of real submits and dispatches, recorded by apply).
    Ok(DecisionView::new(&tenant.id, &decision))
}

fn violations(
    node: &NodeContext,
    context: &RequestContext,
    tenant: Option<String>,
    limit: Option<u32>,
) -> Result<ViolationsView, GatewayError> {
    let tenant = match (&context.principal, tenant) {
        (Principal::Admin, tenant) => tenant.filter(|tenant| !tenant.is_empty()),
        (Principal::Tenant(own), None) => Some(own.to_string()),
        (Principal::Tenant(own), Some(asked)) => {
            let asked = parse_tenant(&asked)?;
            require_access(context, &asked)?;
            Some(own.to_string())
        }
    };
    if let Some(tenant) = &tenant {
        parse_tenant(tenant)?;
    }
    let limit = page_size(limit)?;
    let (recent, counts) = node.read(|state| {
        (
            state.recent_violations(tenant.as_deref(), limit),
            state.violation_counts(tenant.as_deref()),
        )
    });
    let items = recent
        .into_iter()
        .map(|violation| ViolationView {
            at_ms: violation.at_ms,
            tenant: violation.tenant,
            verdict: violation.verdict,
            source: violation.source,
            reasons: violation.reasons,
            message: violation.message,
        })
        .collect();
    let counts = counts
        .into_iter()
        .map(|(tenant, reason, count)| ViolationCountView {
            tenant,
            reason,
            count,
        })
        .collect();
    Ok(ViolationsView { items, counts })
}

async fn request_burst(
    node: &NodeContext,
    context: &RequestContext,
    raw: &str,
    input: BurstInput,
) -> Result<BurstView, GatewayError> {
    let tenant = parse_tenant(raw)?;
    require_access(context, &tenant)?;
    let duration_ms = match (input.duration_seconds, input.duration_minutes) {
        (Some(seconds), None) => seconds.saturating_mul(1000),
        (None, Some(minutes)) => minutes.saturating_mul(60_000),
        (None, None) => node.limits.burst.max_duration_ms,
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid(
                "duration_seconds",
                "give duration_seconds or duration_minutes, not both",
            ));
        }
    };
    if input.reason.len() > 500 {
        return Err(GatewayError::invalid("reason", "at most 500 bytes"));
    }
    let command = CommandV1::RequestBurst(command::RequestBurst {
        tenant: tenant.clone(),
        session_id: uuid::Uuid::now_v7().to_string(),
        request: BurstRequest {
            ceiling_percentage: input.ceiling_percentage,
            duration_ms,
            reason: input.reason,
        },
        requested_by: context.principal.to_string(),
        policy: node.limits.burst.clone(),
        at_ms: now_ms(),
    });
    match propose_for(node, context, command).await {
        Ok(CommandOutcome::Burst(session)) => {
            info!(tenant = %session.tenant, session = %session.id, ceiling = session.ceiling_percentage, status = ?session.status, principal = %context.principal, "burst requested");
            Ok(BurstView::from(&session))
        }
        Ok(other) => Err(GatewayError::internal(format!(
            "unexpected outcome {other:?}"
        ))),
        Err(error) => {
            info!(tenant = %tenant, rule = ?error.rule, principal = %context.principal, "burst refused");
            if let Some(rule) = &error.rule {
                node.metrics.burst_refused(tenant.as_str(), rule);
            }
            Err(error)
        }
    }
}

async fn end_burst(
    node: &NodeContext,
    context: &RequestContext,
    raw: &str,
) -> Result<BurstView, GatewayError> {
    let tenant = readable_tenant(node, context, raw, Consistency::Linearizable).await?;
    let open = node.read(|state| {
        state
            .burst_sessions(&tenant.id)
            .iter()
            .find(|session| session.is_open())
            .map(|session| session.id.clone())
    });
    let Some(session_id) = open else {
        return Err(GatewayError::new(
            ErrorCode::NotFound,
            format!("tenant `{}` has no open burst session", tenant.id),
        ));
    };
    let command = CommandV1::EndBurst(command::EndBurst {
        tenant: tenant.id.clone(),
        session_id,
        reason: EndReason::EndedEarly,
        ended_by: context.principal.to_string(),
        at_ms: now_ms(),
    });
    match propose_for(node, context, command).await? {
        CommandOutcome::Burst(session) | CommandOutcome::BurstAlreadyEnded(session) => {
            info!(tenant = %session.tenant, session = %session.id, principal = %context.principal, "burst ended early");
            Ok(BurstView::from(&session))
        }
        other => Err(GatewayError::internal(format!(
            "unexpected outcome {other:?}"
        ))),
    }
}

async fn approve_burst(
    node: &NodeContext,
    context: &RequestContext,
    raw: &str,
    session_id: String,
) -> Result<BurstView, GatewayError> {
    let tenant = parse_tenant(raw)?;
    let command = CommandV1::ApproveBurst(command::ApproveBurst {
        tenant,
        session_id,
        approved_by: context.principal.to_string(),
        policy: node.limits.burst.clone(),
        at_ms: now_ms(),
    });
    match propose_for(node, context, command).await? {
        CommandOutcome::Burst(session) => {
            debug_assert_eq!(session.status, BurstStatus::Active);
            info!(tenant = %session.tenant, session = %session.id, principal = %context.principal, "burst approved");
            Ok(BurstView::from(&session))
        }
        other => Err(GatewayError::internal(format!(
            "unexpected outcome {other:?}"
        ))),
    }
}
