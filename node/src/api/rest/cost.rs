//! `/api/v1/cost-reports` and `/api/v1/cost-optimization`: what the jobs and pools cost
//! (US-09.5.3) as JSON, CSV or FOCUS, stored report definitions, the breakdown and the
//! recommendations (US-09.5.2).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::jobs::ask;
use crate::api::rest::{ApiJson, Authorized, Context, QueryResult, RestState, json_reply, query};
use crate::gateway::cost_model::{
    CostBreakdownView, CostReportDefinitionInput, CostReportDefinitionListView,
    CostReportDefinitionView, CostReportView, RecommendationsView,
};
use crate::gateway::cost_operations::{
    CreateCostReport, DeleteCostReport, GetCostBreakdown, GetCostRecommendations, GetCostReport,
    ListCostReports, RunCostReport,
};
use crate::gateway::model::ProblemView;
use crate::gateway::{Consistency, GatewayError};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(cost_report, create_definition))
        .routes(routes!(list_definitions))
        .routes(routes!(run_definition, delete_definition))
        .routes(routes!(breakdown))
        .routes(routes!(recommendations))
}

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
    Focus,
}

fn format(raw: Option<&str>) -> Result<Option<Format>, GatewayError> {
    match raw {
        None => Ok(None),
        Some("json") => Ok(Some(Format::Json)),
        Some("csv") => Ok(Some(Format::Csv)),
        Some("focus") => Ok(Some(Format::Focus)),
        Some(other) => Err(GatewayError::invalid(
            "format",
            format!("must be json, csv or focus, got {other:?}"),
        )),
    }
}

fn written(
    trace_id: &crate::gateway::trace::TraceId,
    report: &CostReportView,
    format: Format,
) -> Response {
    let csv = |body: String| {
        axum::response::IntoResponse::into_response((
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            body,
        ))
    };
    match format {
        Format::Json => json_reply(StatusCode::OK, trace_id, report),
        Format::Csv => csv(report.to_csv()),
        Format::Focus => csv(report.to_focus_csv()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CostReportParams {
    /// Start of the window, ms since the epoch (default: 24 hours before `to`); widened to
    /// the start of its period.
    from: Option<u64>,
    /// End of the window, ms since the epoch (default: now); widened to its period's end.
    to: Option<u64>,
    /// tenant (default) | pool | queue | job | label:<key>
    group_by: Option<String>,
    /// hour (default) | day
    step: Option<String>,
    /// json (default) | csv | focus (the FinOps FOCUS columns, CSV)
    format: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// What the jobs and pools cost over a window, grouped by tenant, pool, queue, job or a
/// label's value, per hour or day: the cost ledger's lines (each run split over the
/// hours it covered, each part at the prices then in force) and the runs still going on
/// up to now; the burst premium as its own column; each pool's cost (provisioned workers
/// x list prices) with its idle part as `idle` lines. A tenant principal sees its own
/// lines only. `format=csv` answers CSV, `format=focus` the FinOps FOCUS columns. 409
/// while cost tracking is off.
#[utoipa::path(get, path = "/api/v1/cost-reports", tag = "cost", params(CostReportParams),
    responses((status = 200, body = CostReportView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn cost_report(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetCostReport>,
    params: QueryResult<CostReportParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let format = format(params.format.as_deref())?.unwrap_or(Format::Json);
    let request = GetCostReport {
        from_ms: params.from,
        to_ms: params.to,
        group_by: params.group_by,
        step: params.step,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let report = ask(&state, context, request).await?;
    Ok(written(&trace_id, &report, format))
}

/// Store a named report definition (its grouping, step, window and format); run it with
/// `GET /api/v1/cost-reports/{id}`. A tenant's definitions are its own.
#[utoipa::path(post, path = "/api/v1/cost-reports", tag = "cost",
    request_body = CostReportDefinitionInput,
    responses((status = 201, body = CostReportDefinitionView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn create_definition(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<CreateCostReport>,
    ApiJson(input): ApiJson<CostReportDefinitionInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, CreateCostReport { input }).await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &reply))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DefinitionParams {
    /// Overrides the definition's format: json | csv | focus.
    format: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// Run a stored report over its window, ending now, in its format (or `format`).
#[utoipa::path(get, path = "/api/v1/cost-reports/{id}", tag = "cost", params(("id" = String, Path, description = "Report definition id"), DefinitionParams),
    responses((status = 200, body = CostReportView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
async fn run_definition(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<RunCostReport>,
    Path(id): Path<String>,
    params: QueryResult<DefinitionParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let asked = format(params.format.as_deref())?;
    let request = RunCostReport {
        id,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let (definition, report) = ask(&state, context, request).await?;
    let stored = format(Some(definition.format.as_str()))?.unwrap_or(Format::Json);
    Ok(written(&trace_id, &report, asked.unwrap_or(stored)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// The stored report definitions (a tenant's own, or all for an admin).
#[utoipa::path(get, path = "/api/v1/cost-reports/definitions", tag = "cost", params(ListParams),
    responses((status = 200, body = CostReportDefinitionListView)))]
async fn list_definitions(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListCostReports>,
    params: QueryResult<ListParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = ListCostReports {
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Delete a stored report definition.
#[utoipa::path(delete, path = "/api/v1/cost-reports/{id}", tag = "cost", params(("id" = String, Path, description = "Report definition id")),
    responses((status = 204), (status = 404, body = ProblemView)))]
async fn delete_definition(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<DeleteCostReport>,
    Path(id): Path<String>,
) -> Result<Response, GatewayError> {
    ask(&state, context, DeleteCostReport { id }).await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BreakdownParams {
    /// Start of the window, ms since the epoch (default: 7 days before `to`).
    from: Option<u64>,
    /// End of the window, ms since the epoch (default: now).
    to: Option<u64>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// Each pool's cost over a window (admin): what its workers cost, what runs used, the
/// idle rest, its utilization, and what each tenant's runs billed in it.
#[utoipa::path(get, path = "/api/v1/cost-optimization/breakdown", tag = "cost", params(BreakdownParams),
    responses((status = 200, body = CostBreakdownView), (status = 403, body = ProblemView), (status = 409, body = ProblemView)))]
async fn breakdown(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetCostBreakdown>,
    params: QueryResult<BreakdownParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = GetCostBreakdown {
        from_ms: params.from,
        to_ms: params.to,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecommendationParams {
    /// How far back to look: e.g. `7d` (default), `24h`, `30m`.
    window: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// What could cost less (admin), from the window before now: oversized pools (under 40 %
/// used), idle capacity (over 50 %), unused quotas, requests far above what runs used
/// (p95), flapping autoscaling, cheaper pools of the same queue. Each with its evidence,
/// estimated monthly saving and confidence; largest saving first.
#[utoipa::path(get, path = "/api/v1/cost-optimization/recommendations", tag = "cost", params(RecommendationParams),
    responses((status = 200, body = RecommendationsView), (status = 403, body = ProblemView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn recommendations(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetCostRecommendations>,
    params: QueryResult<RecommendationParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = GetCostRecommendations {
        window: params.window,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}
