//! `/api/v1/pools`: pools, their static and dynamic settings, lifecycle actions, metrics
//! and workers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, RestState, consistency, json_reply,
};
use crate::gateway::GatewayError;
use crate::gateway::job_model::{
    CreatePoolInput, DynamicInput, DynamicSettingsView, PoolActionInput, PoolLifecycleView,
    PoolListView, PoolView, StaticInput, StaticSettingsView, UpdatePoolInput, WorkerListView,
};
use crate::gateway::model::ProblemView;
use crate::gateway::operations::{
    ChangePoolLifecycle, CreatePool, DeletePool, GetDynamicSettings, GetPool, GetPoolLifecycle,
    GetPoolMetrics, GetStaticSettings, ListPools, ListWorkers, SetDynamicSettings,
    SetStaticSettings, UpdatePool,
};

use crate::api::rest::jobs::ask;

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(create_pool, list_pools))
        .routes(routes!(get_pool, update_pool, delete_pool))
        .routes(routes!(pool_workers))
        .routes(routes!(pool_metrics))
        .routes(routes!(get_static, put_static))
        .routes(routes!(get_dynamic, put_dynamic))
        .routes(routes!(pool_lifecycle, pool_action))
}

/// List the pools with their state and workers by state.
#[utoipa::path(get, path = "/api/v1/pools", tag = "pools", params(ReadParams),
    responses((status = 200, body = PoolListView)))]
async fn list_pools(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListPools>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = ListPools {
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let pools = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &pools))
}

/// Get one pool.
#[utoipa::path(get, path = "/api/v1/pools/{id}", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = PoolView), (status = 404, body = ProblemView)))]
async fn get_pool(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetPool>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetPool {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let pool = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &pool))
}

/// The pool's lifecycle state, the actions allowed from it, and every transition with who
/// and why.
#[utoipa::path(get, path = "/api/v1/pools/{id}/lifecycle", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = PoolLifecycleView), (status = 404, body = ProblemView)))]
async fn pool_lifecycle(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetPoolLifecycle>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetPoolLifecycle {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let lifecycle = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &lifecycle))
}

/// Act on the pool's lifecycle (admin): activate, suspend, resume, drain, decommission.
/// An illegal move is a 409 naming the current state and the allowed actions.
#[utoipa::path(post, path = "/api/v1/pools/{id}/lifecycle", tag = "pools", params(("id" = String, Path, description = "Pool id")),
    request_body = PoolActionInput,
    responses((status = 200, body = PoolLifecycleView), (status = 404, body = ProblemView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn pool_action(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ChangePoolLifecycle>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PoolActionInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let lifecycle = ask(&state, context, ChangePoolLifecycle { id, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &lifecycle))
}

/// Create a pool (admin).
#[utoipa::path(post, path = "/api/v1/pools", tag = "pools", request_body = CreatePoolInput,
    responses((status = 201, body = PoolView), (status = 409, description = "The id is taken", body = ProblemView), (status = 422, body = ProblemView)))]
async fn create_pool(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<CreatePool>,
    ApiJson(input): ApiJson<CreatePoolInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let request = CreatePool {
        input: Box::new(input),
    };
    let pool = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &pool))
}

/// Change a pool's sizes, worker shape or labels (admin).
#[utoipa::path(patch, path = "/api/v1/pools/{id}", tag = "pools", params(("id" = String, Path, description = "Pool id")),
    request_body = UpdatePoolInput,
    responses((status = 200, body = PoolView), (status = 404, body = ProblemView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn update_pool(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<UpdatePool>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdatePoolInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let pool = ask(&state, context, UpdatePool { id, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &pool))
}

/// Delete a pool (admin): refused while it has live workers or running jobs, unless it
/// was drained, and while a queue uses it.
#[utoipa::path(delete, path = "/api/v1/pools/{id}", tag = "pools", params(("id" = String, Path, description = "Pool id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
async fn delete_pool(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<DeletePool>,
    Path(id): Path<String>,
) -> Result<Response, GatewayError> {
    let _ = ask(&state, context, DeletePool { id }).await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

/// The pool's registered workers, live and not.
#[utoipa::path(get, path = "/api/v1/pools/{id}/workers", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = WorkerListView), (status = 403, description = "Not an admin: workers carry every tenant's jobs", body = ProblemView), (status = 404, body = ProblemView)))]
async fn pool_workers(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListWorkers>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = ListWorkers {
        pool: Some(id),
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let workers = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &workers))
}

/// A static pool's size, expected workers and health-check interval.
#[utoipa::path(get, path = "/api/v1/pools/{id}/static", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = StaticSettingsView), (status = 404, body = ProblemView), (status = 409, description = "A dynamic pool", body = ProblemView)))]
async fn get_static(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetStaticSettings>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetStaticSettings {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let settings = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &settings))
}

/// Replace a static pool's settings (admin).
#[utoipa::path(put, path = "/api/v1/pools/{id}/static", tag = "pools", params(("id" = String, Path, description = "Pool id")),
    request_body = StaticInput,
    responses((status = 200, body = StaticSettingsView), (status = 404, body = ProblemView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_static(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SetStaticSettings>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<StaticInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let settings = ask(&state, context, SetStaticSettings { id, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &settings))
}

/// A dynamic pool's provider, sizes, worker shape and timings.
#[utoipa::path(get, path = "/api/v1/pools/{id}/dynamic", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = DynamicSettingsView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView)))]
async fn get_dynamic(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetDynamicSettings>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetDynamicSettings {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let settings = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &settings))
}

/// Change a dynamic pool's settings (admin); `desired` resizes it now.
#[utoipa::path(put, path = "/api/v1/pools/{id}/dynamic", tag = "pools", params(("id" = String, Path, description = "Pool id")),
    request_body = DynamicInput,
    responses((status = 200, body = DynamicSettingsView), (status = 404, body = ProblemView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_dynamic(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SetDynamicSettings>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<DynamicInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let settings = ask(&state, context, SetDynamicSettings { id, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &settings))
}

/// US-09.5.1: the pool's size, workers by state, utilization, jobs, allocation latency
/// (pending to assigned, p50/p95/p99 of the last 1,000 assignments) and provisioning.
#[utoipa::path(get, path = "/api/v1/pools/{id}/metrics", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = crate::gateway::report_model::PoolMetricsView), (status = 404, body = ProblemView)))]
async fn pool_metrics(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetPoolMetrics>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetPoolMetrics {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let metrics = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &metrics))
}
