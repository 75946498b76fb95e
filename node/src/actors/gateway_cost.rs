//! The gateway's cost operations (US-09.5.2, US-09.5.3): reports (ad hoc and stored),
//! the breakdown and the recommendations. Reports read the replicated ledger; stored
//! definitions go through Raft (`PutCostReport`, `DeleteCostReport`).

use std::collections::BTreeMap;

use crate::actors::gateway::{Handler, propose_for, read_barrier};
use crate::actors::gateway_jobs::unexpected;
use crate::actors::{NodeContext, now_ms};
use crate::gateway::cost_model::{
    CostBreakdownView, CostReportDefinitionListView, CostReportDefinitionView, CostReportItem,
    CostReportView, PoolBreakdownView, PoolCostItem, RecommendationView, RecommendationsView,
    TenantShareView,
};
use crate::gateway::cost_operations::{
    CreateCostReport, DeleteCostReport, GetCostBreakdown, GetCostRecommendations, GetCostReport,
    ListCostReports, RunCostReport,
};
use crate::gateway::{Consistency, GatewayError, Principal, RequestContext};
use crate::state::command;
use crate::state::cost_book::ReportDefinition;
use crate::state::cost_report::{CostGroup, CostQuery, RowKind};
use crate::state::{CommandOutcome, CommandV1, HodeiState};
use hodei_domain::cost::{DAY_MS, HOUR_MS};
use hodei_domain::optimize::{
    OptimizationInput, PlacementWindow, PoolWindow, ScalingWindow, TenantWindow, recommend,
};
use hodei_domain::pool::PoolType;
use hodei_domain::tenant::TenantId;

/// The most periods a report spans (a 90-day hourly report; longer ones by day).
const MAX_PERIODS: u64 = 24 * 92;

/// The most history jobs a report by job reads.
const MAX_JOBS_BY_JOB: usize = 200_000;

/// Cost routes answer this while cost tracking is off.
fn tracking_off() -> GatewayError {
    GatewayError::new(
        crate::gateway::error::ErrorCode::Conflict,
        "cost tracking is off (cost_tracking.enabled: false): nothing is recorded, so there is nothing to report",
    )
}

fn refused(detail: String) -> GatewayError {
    GatewayError::new(crate::gateway::error::ErrorCode::Conflict, detail)
}

fn own_tenant(context: &RequestContext) -> Option<TenantId> {
    match &context.principal {
        Principal::Tenant(tenant) => Some(tenant.clone()),
        Principal::Admin => None,
    }
}

/// `tenant`, `pool`, `queue`, `job` or `label:<key>`.
pub fn parse_group(raw: &str) -> Result<CostGroup, GatewayError> {
    match raw {
        "tenant" => Ok(CostGroup::Tenant),
        "pool" => Ok(CostGroup::Pool),
        "queue" => Ok(CostGroup::Queue),
        "job" => Ok(CostGroup::Job),
        other => match other.strip_prefix("label:") {
            Some(key) if !key.is_empty() && key.len() <= 63 => {
                Ok(CostGroup::Label(key.to_string()))
            }
            _ => Err(GatewayError::invalid(
                "group_by",
                format!("must be tenant, pool, queue, job or label:<key>, got {other:?}"),
            )),
        },
    }
}

/// `hour` or `day`, in ms.
pub fn parse_step(raw: &str) -> Result<u64, GatewayError> {
    match raw {
        "hour" => Ok(HOUR_MS),
        "day" => Ok(DAY_MS),
        other => Err(GatewayError::invalid(
            "step",
            format!("must be hour or day, got {other:?}"),
        )),
    }
}

/// A window such as `7d`, `24h`, `90m` or `3600s`, in seconds (at least a minute, at
/// most 400 days).
pub fn parse_window(field: &str, raw: &str) -> Result<u64, GatewayError> {
    let rule = || {
        GatewayError::invalid(
            field,
            format!(
                "must be a number and a unit (s, m, h or d) from 1m to 400d, e.g. 7d; got {raw:?}"
            ),
        )
    };
    // The unit is the last character (of any width: a caller's text is not ASCII).
    let (split, _) = raw.char_indices().last().ok_or_else(rule)?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().map_err(|_| rule())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(rule()),
    };
    let seconds = number.checked_mul(scale).ok_or_else(rule)?;
    if !(60..=400 * 86_400).contains(&seconds) {
        return Err(rule());
    }
    Ok(seconds)
}

/// Checks what the settings allow the report; the group.
fn allowed(
    state_settings: hodei_domain::cost::CostSettings,
    group: &CostGroup,
    own: Option<&TenantId>,
) -> Result<(), GatewayError> {
    if !state_settings.enabled {
        return Err(tracking_off());
    }
    if !state_settings.track_by_tenant && (*group == CostGroup::Tenant || own.is_some()) {
        return Err(refused(
            "costs are not tracked by tenant (cost_tracking.track_by_tenant: false): no report by tenant or of one tenant".to_string(),
        ));
    }
    if !state_settings.track_by_job && *group == CostGroup::Job {
        return Err(refused(
            "costs are not tracked by job (cost_tracking.track_by_job: false): no report by job"
                .to_string(),
        ));
    }
    Ok(())
}

/// Builds a report (what `GET /cost-reports` and a stored definition run).
pub(crate) async fn report(
    node: &NodeContext,
    context: &RequestContext,
    request: GetCostReport,
) -> Result<CostReportView, GatewayError> {
    let now = now_ms();
    let to_ms = request.to_ms.unwrap_or(now);
    let from_ms = request
        .from_ms
        .unwrap_or(to_ms.saturating_sub(24 * HOUR_MS));
    if from_ms >= to_ms {
        return Err(GatewayError::invalid(
            "from",
            format!("must be before to ({to_ms}), got {from_ms}"),
        ));
    }
    let group_by = request.group_by.unwrap_or_else(|| "tenant".to_string());
    let group = parse_group(&group_by)?;
    let step = request.step.unwrap_or_else(|| "hour".to_string());
    let step_ms = parse_step(&step)?;
    // Whole periods: the window widens to the periods it touches.
    let from_ms = from_ms / step_ms * step_ms;
    let Some(to_ms) = to_ms.div_ceil(step_ms).checked_mul(step_ms) else {
        return Err(GatewayError::invalid(
            "to",
            format!("must be a time in ms since the epoch, got {to_ms}"),
        ));
    };
    if (to_ms - from_ms) / step_ms > MAX_PERIODS {
        return Err(GatewayError::invalid(
            "from",
            format!(
                "a report spans at most {MAX_PERIODS} periods: use a shorter window or step=day"
            ),
        ));
    }
    let own = own_tenant(context);
    allowed(node.read(HodeiState::cost_settings), &group, own.as_ref())?;
    read_barrier(node, request.consistency).await?;
    // A report by job reads the jobs of the history that ended in the window first,
    // outside the state's lock.
    let archived = if group == CostGroup::Job {
        let reader = node.read(HodeiState::history_reader);
        // Jobs that ended from the window's start on, as the ones in memory: a run that
        // ended after the window may have covered part of it.
        match reader.ended_between(from_ms, now.max(to_ms), MAX_JOBS_BY_JOB, own.as_ref()) {
            Ok(jobs) => jobs,
            Err(limit) => {
                return Err(GatewayError::invalid(
                    "from",
                    format!(
                        "more than {limit} jobs of the history ended in the window: a report by job needs a shorter window"
                    ),
                ));
            }
        }
    } else {
        Vec::new()
    };
    let query = CostQuery {
        from_ms,
        to_ms,
        step_ms,
        group,
        tenant: own,
        now_ms: now,
    };
    let built = node.read(|state| state.cost_report(&query, &archived));
    let items: Vec<CostReportItem> = built
        .rows
        .into_iter()
        .map(|row| CostReportItem {
            period_start_ms: row.period_start_ms,
            group: row.group,
            kind: match row.kind {
                RowKind::Usage => "usage",
                RowKind::Idle => "idle",
            }
            .to_string(),
            pool: row.pool,
            billed_nanos: row.line.billed_nanos,
            burst_premium_nanos: row
                .line
                .billed_nanos
                .saturating_sub(row.line.without_premium_nanos),
            running_nanos: row.running_nanos,
            list_nanos: row.line.list_nanos,
            runs: row.line.runs,
        })
        .collect();
    let pools: Vec<PoolCostItem> = built
        .pools
        .into_iter()
        .map(|((period_start_ms, pool), costs)| PoolCostItem {
            period_start_ms,
            pool,
            cost_nanos: costs.cost_nanos,
            running_nanos: costs.running_nanos,
            attributed_nanos: costs.attributed_nanos,
            idle_nanos: i64::try_from(costs.idle_nanos()).unwrap_or(i64::MAX),
        })
        .collect();
    let sum = |values: &mut dyn Iterator<Item = u64>| values.fold(0u64, u64::saturating_add);
    Ok(CostReportView {
        from_ms,
        to_ms,
        group_by,
        step,
        total_billed_nanos: sum(&mut items.iter().map(|item| item.billed_nanos)),
        total_burst_premium_nanos: sum(&mut items.iter().map(|item| item.burst_premium_nanos)),
        total_running_nanos: sum(&mut items.iter().map(|item| item.running_nanos)),
        total_runs: sum(&mut items.iter().map(|item| item.runs)),
        total_pool_cost_nanos: sum(&mut pools.iter().map(|pool| pool.cost_nanos)),
        total_idle_nanos: pools
            .iter()
            .map(|pool| pool.idle_nanos)
            .fold(0i64, i64::saturating_add),
        items,
        pools,
    })
}

impl Handler for GetCostReport {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<CostReportView, GatewayError> {
        report(&node, &context, self).await
    }
}

fn definition_view(found: &ReportDefinition) -> CostReportDefinitionView {
    CostReportDefinitionView {
        id: found.id.clone(),
        name: found.name.clone(),
        group_by: found.group_by.clone(),
        step: found.step.clone(),
        window_s: found.window_s,
        format: found.format.clone(),
        tenant: found.tenant.as_ref().map(ToString::to_string),
        created_at_ms: found.created_at_ms,
    }
}

/// The definition `id` as the principal may see it (another tenant's is not found).
fn visible_definition(
    state: &HodeiState,
    context: &RequestContext,
    id: &str,
) -> Result<ReportDefinition, GatewayError> {
    let own = own_tenant(context);
    state
        .report_definition(id)
        .filter(|found| own.is_none() || found.tenant == own)
        .cloned()
        .ok_or_else(|| GatewayError::from(hodei_domain::DomainError::not_found("cost report", id)))
}

impl Handler for RunCostReport {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<(CostReportDefinitionView, CostReportView), GatewayError> {
        read_barrier(&node, self.consistency).await?;
        let definition = node.read(|state| visible_definition(state, &context, &self.id))?;
        let now = now_ms();
        let request = GetCostReport {
            from_ms: Some(now.saturating_sub(definition.window_s.saturating_mul(1_000))),
            to_ms: Some(now),
            group_by: Some(definition.group_by.clone()),
            step: Some(definition.step.clone()),
            // Read above.
            consistency: Consistency::Stale,
        };
        let built = report(&node, &context, request).await?;
        Ok((definition_view(&definition), built))
    }
}

impl Handler for CreateCostReport {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<CostReportDefinitionView, GatewayError> {
        let input = self.input;
        let name = input.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(GatewayError::invalid("name", "must be 1 to 200 characters"));
        }
        let group_by = input.group_by.unwrap_or_else(|| "tenant".to_string());
        let group = parse_group(&group_by)?;
        let step = input.step.unwrap_or_else(|| "hour".to_string());
        let step_ms = parse_step(&step)?;
        let window_s = parse_window("window", input.window.as_deref().unwrap_or("24h"))?;
        if window_s.saturating_mul(1_000) / step_ms > MAX_PERIODS {
            return Err(GatewayError::invalid(
                "window",
                format!(
                    "a report spans at most {MAX_PERIODS} periods: use a shorter window or step day"
                ),
            ));
        }
        let format = input.format.unwrap_or_else(|| "json".to_string());
        if !matches!(format.as_str(), "json" | "csv" | "focus") {
            return Err(GatewayError::invalid(
                "format",
                format!("must be json, csv or focus, got {format:?}"),
            ));
        }
        let own = own_tenant(&context);
        allowed(node.read(HodeiState::cost_settings), &group, own.as_ref())?;
        let definition = ReportDefinition {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            group_by,
            step,
            window_s,
            format,
            tenant: own,
            created_at_ms: now_ms(),
        };
        let command = CommandV1::PutCostReport(command::PutCostReport { definition });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::CostReport(stored) => Ok(definition_view(stored.as_ref())),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for ListCostReports {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<CostReportDefinitionListView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        let own = own_tenant(&context);
        let items = node.read(|state| {
            state
                .report_definitions()
                .filter(|found| own.is_none() || found.tenant == own)
                .map(definition_view)
                .collect()
        });
        Ok(CostReportDefinitionListView { items })
    }
}

impl Handler for DeleteCostReport {
    async fn handle(self, node: NodeContext, context: RequestContext) -> Result<(), GatewayError> {
        let command = CommandV1::DeleteCostReport(command::DeleteCostReport {
            id: self.id,
            tenant: own_tenant(&context),
        });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::CostReportDeleted { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// The window [now - window, now) of the breakdown and recommendations.
fn window_before_now(
    from_ms: Option<u64>,
    to_ms: Option<u64>,
    default_window_s: u64,
) -> Result<(u64, u64), GatewayError> {
    let now = now_ms();
    let to_ms = to_ms.unwrap_or(now);
    let from_ms = from_ms.unwrap_or(to_ms.saturating_sub(default_window_s * 1_000));
    if from_ms >= to_ms {
        return Err(GatewayError::invalid(
            "from",
            format!("must be before to ({to_ms}), got {from_ms}"),
        ));
    }
    Ok((from_ms, to_ms))
}

/// The pools' cost and billing over [from_ms, to_ms), hour by hour (what the breakdown
/// and the recommendations read).
fn pool_report(
    node: &NodeContext,
    from_ms: u64,
    to_ms: u64,
) -> crate::state::cost_report::CostReport {
    let to_ms = to_ms.div_ceil(HOUR_MS).saturating_mul(HOUR_MS);
    let query = CostQuery {
        from_ms: from_ms / HOUR_MS * HOUR_MS,
        to_ms,
        // One period: the whole window.
        step_ms: to_ms.max(1),
        group: CostGroup::Pool,
        tenant: None,
        now_ms: now_ms(),
    };
    node.read(|state| state.cost_report(&query, &[]))
}

impl Handler for GetCostBreakdown {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<CostBreakdownView, GatewayError> {
        if !node.read(HodeiState::cost_settings).enabled {
            return Err(tracking_off());
        }
        let (from_ms, to_ms) = window_before_now(self.from_ms, self.to_ms, 7 * 86_400)?;
        read_barrier(&node, self.consistency).await?;
        let built = pool_report(&node, from_ms, to_ms);
        let mut pools: BTreeMap<String, PoolBreakdownView> = BTreeMap::new();
        for ((_, pool), costs) in &built.pools {
            let entry = pools
                .entry(pool.clone())
                .or_insert_with(|| PoolBreakdownView {
                    pool: pool.clone(),
                    cost_nanos: 0,
                    attributed_nanos: 0,
                    idle_nanos: 0,
                    utilization_percent: 0,
                    billed_nanos: 0,
                    burst_premium_nanos: 0,
                    tenants: Vec::new(),
                });
            entry.cost_nanos = entry.cost_nanos.saturating_add(costs.cost_nanos);
            entry.attributed_nanos = entry
                .attributed_nanos
                .saturating_add(costs.attributed_nanos);
        }
        // Who used each pool: the ledger's lines (and running ones) by tenant and pool.
        let (start, end) = (
            from_ms / HOUR_MS * HOUR_MS,
            to_ms.div_ceil(HOUR_MS).saturating_mul(HOUR_MS),
        );
        let now = now_ms();
        let lines = node.read(|state| {
            let mut lines = state.cost_lines(start, end);
            lines.extend(
                state
                    .running_cost_lines(now)
                    .into_iter()
                    .filter(|((hour, ..), _)| *hour >= start && *hour < end),
            );
            lines
        });
        let mut shares: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
        for ((_, tenant, pool, _), line) in lines {
            let entry = shares.entry((pool, tenant.to_string())).or_default();
            entry.0 = entry.0.saturating_add(line.billed_nanos);
            entry.1 = entry.1.saturating_add(line.list_nanos);
            entry.2 = entry
                .2
                .saturating_add(line.billed_nanos.saturating_sub(line.without_premium_nanos));
        }
        for ((pool, tenant), (billed, list, premium)) in shares {
            let entry = pools
                .entry(pool.clone())
                .or_insert_with(|| PoolBreakdownView {
                    pool,
                    cost_nanos: 0,
                    attributed_nanos: 0,
                    idle_nanos: 0,
                    utilization_percent: 0,
                    billed_nanos: 0,
                    burst_premium_nanos: 0,
                    tenants: Vec::new(),
                });
            entry.billed_nanos = entry.billed_nanos.saturating_add(billed);
            entry.burst_premium_nanos = entry.burst_premium_nanos.saturating_add(premium);
            entry.tenants.push(TenantShareView {
                tenant,
                billed_nanos: billed,
                list_nanos: list,
            });
        }
        let mut pools: Vec<PoolBreakdownView> = pools.into_values().collect();
        for pool in &mut pools {
            pool.idle_nanos =
                i64::try_from(i128::from(pool.cost_nanos) - i128::from(pool.attributed_nanos))
                    .unwrap_or(i64::MAX);
            pool.utilization_percent = u64::try_from(
                u128::from(pool.attributed_nanos) * 100 / u128::from(pool.cost_nanos.max(1)),
            )
            .unwrap_or(u64::MAX);
            pool.tenants
                .sort_by_key(|share| std::cmp::Reverse(share.billed_nanos));
        }
        let sum = |pick: fn(&PoolBreakdownView) -> u64| {
            pools.iter().map(pick).fold(0u64, u64::saturating_add)
        };
        Ok(CostBreakdownView {
            from_ms,
            to_ms,
            total_cost_nanos: sum(|pool| pool.cost_nanos),
            total_attributed_nanos: sum(|pool| pool.attributed_nanos),
            total_idle_nanos: pools
                .iter()
                .map(|pool| pool.idle_nanos)
                .fold(0i64, i64::saturating_add),
            total_billed_nanos: sum(|pool| pool.billed_nanos),
            total_burst_premium_nanos: sum(|pool| pool.burst_premium_nanos),
            pools,
        })
    }
}

/// The list price of a core-hour plus a GiB-hour: how pools compare.
fn unit_price(pricing: hodei_domain::cost::Pricing) -> u64 {
    pricing
        .cpu_core_hour_micros
        .saturating_add(pricing.memory_gb_hour_micros)
}

impl Handler for GetCostRecommendations {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<RecommendationsView, GatewayError> {
        if !node.read(HodeiState::cost_settings).enabled {
            return Err(tracking_off());
        }
        let window_s = parse_window("window", self.window.as_deref().unwrap_or("7d"))?;
        let (from_ms, to_ms) = window_before_now(None, None, window_s)?;
        read_barrier(&node, self.consistency).await?;
        let built = pool_report(&node, from_ms, to_ms);
        let mut pool_sums: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for ((_, pool), costs) in &built.pools {
            let entry = pool_sums.entry(pool.clone()).or_default();
            entry.0 = entry.0.saturating_add(costs.cost_nanos);
            entry.1 = entry.1.saturating_add(costs.attributed_nanos);
        }
        let (start, end) = (
            from_ms / HOUR_MS * HOUR_MS,
            to_ms.div_ceil(HOUR_MS).saturating_mul(HOUR_MS),
        );
        let now = now_ms();
        let input = node.read(|state| {
            let mut lines = state.cost_lines(start, end);
            lines.extend(
                state
                    .running_cost_lines(now)
                    .into_iter()
                    .filter(|((hour, ..), _)| *hour >= start && *hour < end),
            );
            let live = |pool: &str| {
                state
                    .workers()
                    .filter(|worker| worker.pool == pool && worker.is_live())
                    .count()
            };
            let pools = pool_sums
                .iter()
                .filter_map(|(pool, (cost, attributed))| {
                    let found = state.pool(pool)?;
                    Some(PoolWindow {
                        pool: pool.clone(),
                        dynamic: found.pool_type == PoolType::Dynamic,
                        workers: u32::try_from(live(pool)).unwrap_or(u32::MAX),
                        min_size: found.min_size,
                        cost_nanos: *cost,
                        attributed_nanos: *attributed,
                        unit_price_micros: unit_price(found.pricing),
                    })
                })
                .collect();
            let mut billed: BTreeMap<TenantId, u64> = BTreeMap::new();
            let mut placed: BTreeMap<(TenantId, String, String), u64> = BTreeMap::new();
            for ((_, tenant, pool, queue), line) in &lines {
                let total = billed.entry(tenant.clone()).or_default();
                *total = total.saturating_add(line.billed_nanos);
                let total = placed
                    .entry((tenant.clone(), queue.clone(), pool.clone()))
                    .or_default();
                *total = total.saturating_add(line.list_nanos);
            }
            let usage = state.usage_stats(from_ms, to_ms);
            let label_billed = state.label_billed(start, end);
            let tenants = state
                .tenant_ids()
                .into_iter()
                .filter_map(|id| {
                    let tenant = state.tenant(&id)?;
                    let labels = usage
                        .range((id.clone(), String::new())..)
                        .take_while(|((of, _), _)| *of == id)
                        .filter(|((_, label), _)| !label.is_empty())
                        .map(|((_, label), stats)| {
                            let billed = label_billed
                                .get(&(id.clone(), label.clone()))
                                .copied()
                                .unwrap_or_default();
                            (label.clone(), billed, stats.clone())
                        })
                        .collect();
                    Some(TenantWindow {
                        tenant: id.to_string(),
                        quota_cpu_m: Some(tenant.quota.cpu_m),
                        billed_nanos: billed.get(&id).copied().unwrap_or_default(),
                        usage: usage
                            .get(&(id.clone(), String::new()))
                            .cloned()
                            .unwrap_or_default(),
                        labels,
                    })
                })
                .collect();
            let scaling = state
                .pools()
                .filter_map(|pool| {
                    let scaling = state.scaling(&pool.id)?;
                    let changes: Vec<i64> = scaling
                        .history
                        .iter()
                        .filter(|record| record.at_ms >= from_ms && record.from != record.to)
                        .map(|record| i64::from(record.to) - i64::from(record.from))
                        .collect();
                    let reversals = changes
                        .windows(2)
                        .filter(|pair| pair[0].signum() != pair[1].signum())
                        .count();
                    Some(ScalingWindow {
                        pool: pool.id.clone(),
                        changes: u32::try_from(changes.len()).unwrap_or(u32::MAX),
                        reversals: u32::try_from(reversals).unwrap_or(u32::MAX),
                        scale_down_stabilization_s: scaling.cooldown.scale_down_stabilization_s,
                    })
                })
                .collect();
            let placements = placed
                .into_iter()
                .filter_map(|((tenant, queue, pool), list_nanos)| {
                    let found = state.pool(&pool)?;
                    let alternatives = state
                        .queue(&queue)?
                        .pools
                        .iter()
                        .filter(|other| **other != pool)
                        .filter_map(|other| state.pool(other))
                        .filter(|other| other.accepts_work())
                        .map(|other| (other.id.clone(), unit_price(other.pricing)))
                        .collect();
                    Some(PlacementWindow {
                        tenant: tenant.to_string(),
                        queue,
                        pool,
                        list_nanos,
                        unit_price_micros: unit_price(found.pricing),
                        alternatives,
                    })
                })
                .collect();
            OptimizationInput {
                window_ms: to_ms - from_ms,
                pools,
                tenants,
                scaling,
                placements,
            }
        });
        let items: Vec<RecommendationView> = recommend(&input)
            .into_iter()
            .map(RecommendationView::from)
            .collect();
        Ok(RecommendationsView {
            from_ms,
            to_ms,
            total_monthly_saving_nanos: items
                .iter()
                .map(|item| item.estimated_monthly_saving_nanos)
                .fold(0, u64::saturating_add),
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_window;

    #[test]
    fn a_window_of_any_text_is_parsed_or_refused_never_a_panic() {
        assert_eq!(parse_window("window", "7d").unwrap(), 7 * 86_400);
        assert_eq!(parse_window("window", "90m").unwrap(), 90 * 60);
        // Found by schemathesis: a multi-byte last character once panicked the handler.
        for raw in [
            "",
            "d",
            "ÍõR𱕁¢",
            "7\u{93}",
            "1ü",
            "10000000000000000000000d",
        ] {
            let error = parse_window("window", raw).unwrap_err();
            assert_eq!(error.field.as_deref(), Some("window"), "{raw}");
        }
    }
}
