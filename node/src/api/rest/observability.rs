//! `/api/v1/observability`: this node's monitoring settings, the shipped dashboards and
//! the alert rules in effect (US-09.6.4).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::jobs::ask;
use crate::api::rest::{Context, RestState, json_reply};
use crate::gateway::GatewayError;
use crate::gateway::model::ProblemView;
use crate::gateway::observability_model::{
    AlertRuleListView, DashboardListView, GetDashboard, GetObservabilityConfig, ListAlertRules,
    ListDashboards, ObservabilityConfigView,
};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(config))
        .routes(routes!(list_dashboards))
        .routes(routes!(get_dashboard))
        .routes(routes!(alerts))
}

/// What this node has switched on and where: metrics, dashboards, alert rules (admin).
#[utoipa::path(get, path = "/api/v1/observability/config", tag = "observability",
    responses((status = 200, body = ObservabilityConfigView), (status = 403, body = ProblemView)))]
async fn config(
    State(state): State<RestState>,
    Context(context): Context,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, GetObservabilityConfig).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// The Grafana dashboards Hodei ships (admin).
#[utoipa::path(get, path = "/api/v1/observability/dashboards", tag = "observability",
    responses((status = 200, body = DashboardListView), (status = 403, body = ProblemView)))]
async fn list_dashboards(
    State(state): State<RestState>,
    Context(context): Context,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, ListDashboards).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// One dashboard's Grafana JSON, ready to import (admin).
#[utoipa::path(get, path = "/api/v1/observability/dashboards/{uid}", tag = "observability", params(("uid" = String, Path, description = "Dashboard uid")),
    responses((status = 200, description = "The dashboard in Grafana's model"), (status = 404, body = ProblemView)))]
async fn get_dashboard(
    State(state): State<RestState>,
    Context(context): Context,
    Path(uid): Path<String>,
) -> Result<Response, GatewayError> {
    let reply = ask(&state, context, GetDashboard { uid }).await?;
    Ok(axum::response::IntoResponse::into_response((
        StatusCode::OK,
        axum::Json(reply),
    )))
}

/// The Prometheus alert rules in effect: each with its group, severity, expression,
/// duration, summary and runbook (admin).
#[utoipa::path(get, path = "/api/v1/observability/alerts", tag = "observability",
    responses((status = 200, body = AlertRuleListView), (status = 403, body = ProblemView)))]
async fn alerts(
    State(state): State<RestState>,
    Context(context): Context,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, ListAlertRules).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}
