//! Quotas (US-09.1.2), enforcement (US-09.1.3) and burst capacity (US-09.1.4).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::actors::gateway::Handler;
use crate::api::rest::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, RestState, consistency, json_reply,
    page_limit, query,
};
use crate::gateway::model::{
    BurstInput, BurstListView, BurstView, DecisionView, EnforceInput, ProblemView, QuotaInput,
    QuotaView, UsageView, ViolationsView,
};
use crate::gateway::operations::{
    ApproveBurst, EndBurst, EnforceQuota, GetBursts, GetQuota, GetUsage, ListViolations,
    RequestBurst, SetQuota,
};
use crate::gateway::{GatewayError, RequestContext};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(get_quota, set_quota))
        .routes(routes!(get_usage))
        .routes(routes!(enforce))
        .routes(routes!(violations))
        .routes(routes!(request_burst, get_burst, end_burst))
        .routes(routes!(approve_burst))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ViolationParams {
    /// Only this tenant's (a tenant principal always sees only its own).
    tenant: Option<String>,
    /// At most this many, 1–1000 (default 100).
    limit: Option<String>,
}

async fn ask<O>(
    state: &RestState,
    context: RequestContext,
    operation: O,
    status: StatusCode,
) -> Result<Response, GatewayError>
where
    O: Handler,
    O::Reply: serde::Serialize,
{
    let trace_id = context.trace_id.clone();
    let view = state.gateway.call(context, operation).await?;
    Ok(json_reply(status, &trace_id, &view))
}

/// A tenant's quota (admin, or the tenant itself).
#[utoipa::path(get, path = "/api/v1/tenants/{id}/quotas", tag = "quotas", params(("id" = String, Path, description = "Tenant id"), ReadParams),
    responses((status = 200, body = QuotaView), (status = 404, body = ProblemView)))]
async fn get_quota(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetQuota>,
    Path(tenant): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let consistency = consistency(params)?;
    ask(
        &state,
        context,
        GetQuota {
            tenant,
            consistency,
        },
        StatusCode::OK,
    )
    .await
}

/// Replace a tenant's quota (admin). Fields left out take the configured default. A quota
/// below what already runs is accepted; `warnings` says where running jobs exceed it.
#[utoipa::path(put, path = "/api/v1/tenants/{id}/quotas", tag = "quotas", params(("id" = String, Path, description = "Tenant id")), request_body = QuotaInput,
    responses((status = 200, body = QuotaView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn set_quota(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SetQuota>,
    Path(tenant): Path<String>,
    ApiJson(input): ApiJson<QuotaInput>,
) -> Result<Response, GatewayError> {
    ask(&state, context, SetQuota { tenant, input }, StatusCode::OK).await
}

/// Running usage against quota and burst ceiling, per dimension, and the pending backlog.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/usage", tag = "quotas", params(("id" = String, Path, description = "Tenant id"), ReadParams),
    responses((status = 200, body = UsageView), (status = 404, body = ProblemView)))]
async fn get_usage(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetUsage>,
    Path(tenant): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let consistency = consistency(params)?;
    ask(
        &state,
        context,
        GetUsage {
            tenant,
            consistency,
        },
        StatusCode::OK,
    )
    .await
}

/// Would this job be admitted now? `allow | allow_burst | queue | deny`, with every reason
/// and its numbers. A what-if: changes nothing and counts nothing.
#[utoipa::path(post, path = "/api/v1/quotas/enforce", tag = "quotas", request_body = EnforceInput,
    responses((status = 200, body = DecisionView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn enforce(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<EnforceQuota>,
    ApiJson(input): ApiJson<EnforceInput>,
) -> Result<Response, GatewayError> {
    ask(&state, context, EnforceQuota { input }, StatusCode::OK).await
}

/// Quota violations, most recent first (the last 1,000), and counts by tenant and reason:
/// submits refused by a tenant's limits, jobs accepted to wait for the quota, assignments
/// refused for it. Recorded in the replicated state: the same on every node.
#[utoipa::path(get, path = "/api/v1/quotas/violations", tag = "quotas", params(ViolationParams),
    responses((status = 200, body = ViolationsView), (status = 422, body = ProblemView)))]
async fn violations(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListViolations>,
    params: QueryResult<ViolationParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let limit = page_limit(params.limit.as_deref())?;
    ask(
        &state,
        context,
        ListViolations {
            tenant: params.tenant,
            limit,
        },
        StatusCode::OK,
    )
    .await
}

/// Request a burst session for the tenant (admin, or the tenant itself). Refusals are 409
/// and name the governance rule in `rule`.
#[utoipa::path(post, path = "/api/v1/tenants/{id}/burst", tag = "burst", params(("id" = String, Path, description = "Tenant id")), request_body = BurstInput,
    responses((status = 201, body = BurstView), (status = 409, description = "Refused by a governance rule", body = ProblemView), (status = 422, body = ProblemView)))]
async fn request_burst(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<RequestBurst>,
    Path(tenant): Path<String>,
    ApiJson(input): ApiJson<BurstInput>,
) -> Result<Response, GatewayError> {
    ask(
        &state,
        context,
        RequestBurst { tenant, input },
        StatusCode::CREATED,
    )
    .await
}

/// The tenant's open burst session, if any, and its history.
#[utoipa::path(get, path = "/api/v1/tenants/{id}/burst", tag = "burst", params(("id" = String, Path, description = "Tenant id"), ReadParams),
    responses((status = 200, body = BurstListView), (status = 404, body = ProblemView)))]
async fn get_burst(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetBursts>,
    Path(tenant): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let consistency = consistency(params)?;
    ask(
        &state,
        context,
        GetBursts {
            tenant,
            consistency,
        },
        StatusCode::OK,
    )
    .await
}

/// End the tenant's open session early (or withdraw it before approval).
#[utoipa::path(delete, path = "/api/v1/tenants/{id}/burst", tag = "burst", params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = BurstView), (status = 404, description = "No open session", body = ProblemView)))]
async fn end_burst(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<EndBurst>,
    Path(tenant): Path<String>,
) -> Result<Response, GatewayError> {
    ask(&state, context, EndBurst { tenant }, StatusCode::OK).await
}

/// Approve a session awaiting approval (admin); it runs from now for its duration.
#[utoipa::path(post, path = "/api/v1/tenants/{id}/burst/{session}/approve", tag = "burst",
    params(("id" = String, Path, description = "Tenant id"), ("session" = String, Path, description = "Session id")),
    responses((status = 200, body = BurstView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
async fn approve_burst(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ApproveBurst>,
    Path((tenant, session)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    ask(
        &state,
        context,
        ApproveBurst { tenant, session },
        StatusCode::OK,
    )
    .await
}
