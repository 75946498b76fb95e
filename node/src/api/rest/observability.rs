//! `/api/v1/observability`: this node's monitoring settings, the shipped dashboards and
//! the alert rules in effect (US-09.6.4).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::jobs::ask;
use crate::api::rest::{Authorized, Context, RestState, json_reply};
use crate::gateway::GatewayError;
use crate::gateway::model::ProblemView;
use crate::gateway::observability_model::{
    AlertRuleListView, DashboardListView, GetDashboard, GetHistoricalMetrics,
    GetObservabilityConfig, GetObservabilityHealth, HistoricalMetricsView, ListAlertRules,
    ListDashboards, ObservabilityConfigView, ObservabilityHealthView,
};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(config))
        .routes(routes!(list_dashboards))
        .routes(routes!(get_dashboard))
        .routes(routes!(alerts))
        .routes(routes!(health))
        .routes(routes!(historical))
        .routes(routes!(audit))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoricalParams {
    /// hodei_jobs | hodei_workers_live | hodei_pool_utilization_ratio |
    /// hodei_tenant_running_cpu_m | hodei_cost_nanodollars | hodei_tenant_budget_used_ratio
    metric: String,
    /// Label filter: `name=value` pairs separated by commas (e.g. `queue=batch,state=pending`).
    labels: Option<String>,
    /// Start, ms since the epoch (default: an hour before `to`); aligned down to the step.
    from: Option<u64>,
    /// End, ms since the epoch (default: now); aligned up to the step.
    to: Option<u64>,
    /// Seconds per point, a multiple of 10 (default 10). A step that is a multiple of an
    /// hour reads the 1-hour averages (kept `cost_tracking.retention_days`, at least a
    /// week), of a minute the 1-minute ones (kept a week), any other the 10 s points (kept
    /// a day).
    step: Option<u64>,
}

/// A metric's history as this node sampled it from the replicated state every 10 s:
/// points aligned to the step, each the average of the samples in its step (admin).
#[utoipa::path(get, path = "/api/v1/metrics/historical", tag = "observability", params(HistoricalParams),
    responses((status = 200, body = HistoricalMetricsView), (status = 403, body = ProblemView), (status = 422, body = ProblemView)))]
async fn historical(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetHistoricalMetrics>,
    params: crate::api::rest::QueryResult<HistoricalParams>,
) -> Result<Response, GatewayError> {
    let params = crate::api::rest::query(params)?;
    let request = GetHistoricalMetrics {
        metric: params.metric,
        labels: params.labels,
        from_ms: params.from,
        to_ms: params.to,
        step_s: params.step,
    };
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// What this node has switched on and where: metrics, dashboards, alert rules (admin).
#[utoipa::path(get, path = "/api/v1/observability/config", tag = "observability",
    responses((status = 200, body = ObservabilityConfigView), (status = 403, body = ProblemView)))]
async fn config(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetObservabilityConfig>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, GetObservabilityConfig).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// The Grafana dashboards Hodei ships (admin).
#[utoipa::path(get, path = "/api/v1/observability/dashboards", tag = "observability",
    responses((status = 200, body = DashboardListView), (status = 403, body = ProblemView), (status = 409, description = "observability.grafana.enabled is false", body = ProblemView)))]
async fn list_dashboards(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListDashboards>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, ListDashboards).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// One dashboard's Grafana JSON, ready to import (admin).
#[utoipa::path(get, path = "/api/v1/observability/dashboards/{uid}", tag = "observability", params(("uid" = String, Path, description = "Dashboard uid")),
    responses((status = 200, description = "The dashboard in Grafana's model"), (status = 403, body = ProblemView), (status = 404, body = ProblemView), (status = 409, description = "observability.grafana.enabled is false", body = ProblemView)))]
async fn get_dashboard(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetDashboard>,
    Path(uid): Path<String>,
) -> Result<Response, GatewayError> {
    // The body is the dashboard alone, importable as it is: its trace id travels only in
    // the `x-trace-id` header every answer carries.
    let reply = ask(&state, context, GetDashboard { uid }).await?;
    Ok(axum::response::IntoResponse::into_response((
        StatusCode::OK,
        axum::Json(reply),
    )))
}

/// The Prometheus alert rules in effect: each with its group, severity, expression,
/// duration, summary and runbook; with `observability.prometheus_url` the alerts pending
/// and firing there, with `observability.alertmanager_url` the alerts Alertmanager holds
/// and its silences, and whether each answered (admin).
#[utoipa::path(get, path = "/api/v1/observability/alerts", tag = "observability",
    responses((status = 200, body = AlertRuleListView), (status = 403, body = ProblemView), (status = 409, description = "observability.alerting.enabled is false", body = ProblemView)))]
async fn alerts(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListAlertRules>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, ListAlertRules).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HealthParams {
    /// Only this node's metrics endpoint, without asking the other members or Prometheus.
    local: Option<bool>,
}

/// Whether metrics flow: this node's metrics endpoint and its scrapes, every member's
/// (asked over gRPC; an unreachable one is reported so), and with
/// `observability.prometheus_url` how Prometheus scrapes each target (admin).
#[utoipa::path(get, path = "/api/v1/observability/health", tag = "observability", params(HealthParams),
    responses((status = 200, body = ObservabilityHealthView), (status = 403, body = ProblemView), (status = 422, body = ProblemView)))]
async fn health(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetObservabilityHealth>,
    params: crate::api::rest::QueryResult<HealthParams>,
) -> Result<Response, GatewayError> {
    let params = crate::api::rest::query(params)?;
    let trace_id = context.trace_id.clone();
    let request = GetObservabilityHealth {
        local_only: params.local.unwrap_or(false),
    };
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// From this time (ms since the epoch; default: the oldest kept).
    from: Option<u64>,
    /// Until this time, excluded (default: now).
    to: Option<u64>,
    /// Only this principal's requests (`admin` or `tenant:<id>`).
    principal: Option<String>,
    /// At most this many records, 1-1000 (default 100), oldest first.
    limit: Option<u32>,
    /// Only this node's records, without asking the other members.
    local: Option<bool>,
}

/// The audit log (admin): every state-changing request each member served, with its
/// principal, action, resource, result and trace id, oldest first; kept
/// `server.audit_retention_days` on each node.
#[utoipa::path(get, path = "/api/v1/audit", tag = "observability", params(AuditParams),
    responses((status = 200, body = crate::gateway::observability_model::AuditView), (status = 403, body = ProblemView), (status = 422, body = ProblemView)))]
async fn audit(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<crate::gateway::observability_model::ListAudit>,
    params: crate::api::rest::QueryResult<AuditParams>,
) -> Result<Response, GatewayError> {
    let params = crate::api::rest::query(params)?;
    let trace_id = context.trace_id.clone();
    let request = crate::gateway::observability_model::ListAudit {
        from_ms: params.from,
        to_ms: params.to,
        principal: params.principal,
        limit: params.limit,
        local_only: params.local.unwrap_or(false),
    };
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}
