//! `/api/v1/pools/{id}/scaling`: a pool's autoscaling (US-09.4) - its switch, policies,
//! triggers (fired by hand when manual), cooldown, history, and an evaluation on demand.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::jobs::ask;
use crate::api::rest::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, RestState, consistency, json_reply,
    query,
};
use crate::gateway::model::ProblemView;
use crate::gateway::pricing_model::{PricingInput, PricingView};
use crate::gateway::scaling_model::{
    CooldownInput, CooldownView, EvaluationView, FireInput, PolicyInput, PolicyListView,
    PolicyView, ScalingHistoryView, ScalingSwitchInput, ScalingView, TriggerInput, TriggerListView,
    TriggerView,
};
use crate::gateway::scaling_operations::{
    DeleteScalingPolicy, DeleteScalingTrigger, EvaluateScaling, FireScalingTrigger, GetPoolPricing,
    GetScaling, GetScalingCooldown, GetScalingHistory, GetScalingPolicy, GetScalingTrigger,
    ListScalingPolicies, ListScalingTriggers, PutScalingPolicy, PutScalingTrigger, SetPoolPricing,
    SetScalingCooldown, SetScalingSwitch,
};
use crate::gateway::{Consistency, GatewayError};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(get_scaling, put_scaling))
        .routes(routes!(list_policies, create_policy))
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(list_triggers, create_trigger))
        .routes(routes!(get_trigger, put_trigger, delete_trigger))
        .routes(routes!(fire_trigger))
        .routes(routes!(get_cooldown, put_cooldown))
        .routes(routes!(scaling_history))
        .routes(routes!(evaluate))
        .routes(routes!(get_pricing, put_pricing))
}

fn no_content() -> Response {
    axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT)
}

/// A pool's autoscaling: its switch, whether the leader scales it now, bounds and sizes, policies, triggers, cooldown and the last decision.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = ScalingView), (status = 404, body = ProblemView)))]
async fn get_scaling(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetScaling>,
    Path(pool): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        GetScaling {
            pool,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Turn a pool's autoscaling on or off (admin; replicated).
#[utoipa::path(put, path = "/api/v1/pools/{id}/scaling", tag = "autoscaling", params(("id" = String, Path, description = "Pool id")),
    request_body = ScalingSwitchInput,
    responses((status = 200, body = ScalingView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_scaling(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SetScalingSwitch>,
    Path(pool): Path<String>,
    ApiJson(input): ApiJson<ScalingSwitchInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, SetScalingSwitch { pool, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// The pool's scaling policies.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling/policies", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = PolicyListView), (status = 404, body = ProblemView)))]
async fn list_policies(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListScalingPolicies>,
    Path(pool): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        ListScalingPolicies {
            pool,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Add a scaling policy (admin): target_tracking, step_scaling, scheduled or sla_headroom. A taken id is a 409.
#[utoipa::path(post, path = "/api/v1/pools/{id}/scaling/policies", tag = "autoscaling", params(("id" = String, Path, description = "Pool id")),
    request_body = PolicyInput,
    responses((status = 201, body = PolicyView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn create_policy(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<PutScalingPolicy>,
    Path(pool): Path<String>,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        PutScalingPolicy {
            pool,
            id: None,
            create: true,
            input,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &reply))
}

/// One scaling policy.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling/policies/{policy_id}", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("policy_id" = String, Path, description = "Policy id"), ReadParams),
    responses((status = 200, body = PolicyView), (status = 404, body = ProblemView)))]
async fn get_policy(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetScalingPolicy>,
    Path((pool, id)): Path<(String, String)>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        GetScalingPolicy {
            pool,
            id,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Create or replace a scaling policy by id (admin).
#[utoipa::path(put, path = "/api/v1/pools/{id}/scaling/policies/{policy_id}", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("policy_id" = String, Path, description = "Policy id")),
    request_body = PolicyInput,
    responses((status = 200, body = PolicyView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_policy(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<PutScalingPolicy>,
    Path((pool, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        PutScalingPolicy {
            pool,
            id: Some(id),
            create: false,
            input,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Delete a scaling policy (admin).
#[utoipa::path(delete, path = "/api/v1/pools/{id}/scaling/policies/{policy_id}", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("policy_id" = String, Path, description = "Policy id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ProblemView)))]
async fn delete_policy(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<DeleteScalingPolicy>,
    Path((pool, id)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    ask(&state, context, DeleteScalingPolicy { pool, id }).await?;
    Ok(no_content())
}

/// The pool's scaling triggers.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling/triggers", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = TriggerListView), (status = 404, body = ProblemView)))]
async fn list_triggers(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListScalingTriggers>,
    Path(pool): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        ListScalingTriggers {
            pool,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Add a scaling trigger (admin): threshold, schedule or manual. A taken id is a 409.
#[utoipa::path(post, path = "/api/v1/pools/{id}/scaling/triggers", tag = "autoscaling", params(("id" = String, Path, description = "Pool id")),
    request_body = TriggerInput,
    responses((status = 201, body = TriggerView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn create_trigger(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<PutScalingTrigger>,
    Path(pool): Path<String>,
    ApiJson(input): ApiJson<TriggerInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        PutScalingTrigger {
            pool,
            id: None,
            create: true,
            input,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &reply))
}

/// One scaling trigger.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling/triggers/{trigger_id}", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("trigger_id" = String, Path, description = "Trigger id"), ReadParams),
    responses((status = 200, body = TriggerView), (status = 404, body = ProblemView)))]
async fn get_trigger(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetScalingTrigger>,
    Path((pool, id)): Path<(String, String)>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        GetScalingTrigger {
            pool,
            id,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Create or replace a scaling trigger by id (admin).
#[utoipa::path(put, path = "/api/v1/pools/{id}/scaling/triggers/{trigger_id}", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("trigger_id" = String, Path, description = "Trigger id")),
    request_body = TriggerInput,
    responses((status = 200, body = TriggerView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_trigger(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<PutScalingTrigger>,
    Path((pool, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<TriggerInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        PutScalingTrigger {
            pool,
            id: Some(id),
            create: false,
            input,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Delete a scaling trigger (admin).
#[utoipa::path(delete, path = "/api/v1/pools/{id}/scaling/triggers/{trigger_id}", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("trigger_id" = String, Path, description = "Trigger id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ProblemView)))]
async fn delete_trigger(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<DeleteScalingTrigger>,
    Path((pool, id)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    ask(&state, context, DeleteScalingTrigger { pool, id }).await?;
    Ok(no_content())
}

/// Fire a manual trigger now (admin): an evaluation with its proposal (or `desired`), recorded in the history. Within a cooldown it is recorded as blocked, unless `force`.
#[utoipa::path(post, path = "/api/v1/pools/{id}/scaling/triggers/{trigger_id}/fire", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ("trigger_id" = String, Path, description = "Trigger id")),
    request_body = FireInput,
    responses((status = 200, body = EvaluationView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn fire_trigger(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<FireScalingTrigger>,
    Path((pool, id)): Path<(String, String)>,
    ApiJson(input): ApiJson<FireInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, FireScalingTrigger { pool, id, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// The pool's cooldowns and what is left of them.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling/cooldown", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = CooldownView), (status = 404, body = ProblemView)))]
async fn get_cooldown(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetScalingCooldown>,
    Path(pool): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        GetScalingCooldown {
            pool,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Change the pool's cooldowns (admin): the fields given.
#[utoipa::path(put, path = "/api/v1/pools/{id}/scaling/cooldown", tag = "autoscaling", params(("id" = String, Path, description = "Pool id")),
    request_body = CooldownInput,
    responses((status = 200, body = CooldownView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_cooldown(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SetScalingCooldown>,
    Path(pool): Path<String>,
    ApiJson(input): ApiJson<CooldownInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, SetScalingCooldown { pool, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Entries at or after this time (ms since the epoch).
    from: Option<u64>,
    /// Entries at or before this time (ms since the epoch).
    to: Option<u64>,
    /// Page size, 1-500 (default 50).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// The pool's scaling history, newest first: every decision that changed its size or was
/// held back by a cooldown, with the metrics read, the proposals, the outcome and when the
/// pool reached the new size.
#[utoipa::path(get, path = "/api/v1/pools/{id}/scaling/history", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), HistoryParams),
    responses((status = 200, body = ScalingHistoryView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn scaling_history(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetScalingHistory>,
    Path(pool): Path<String>,
    params: QueryResult<HistoryParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = GetScalingHistory {
        pool,
        from_ms: params.from,
        to_ms: params.to,
        limit: params.limit,
        cursor: params.cursor,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvaluateParams {
    /// `true`: answer what it would do, change nothing (default `false`).
    dry_run: Option<bool>,
}

/// Evaluate the pool's policies and triggers now: what size it should have and why. Unless
/// a dry run (admin), a change (or a proposal held back) is recorded and applied.
#[utoipa::path(post, path = "/api/v1/pools/{id}/scaling/evaluate", tag = "autoscaling", params(("id" = String, Path, description = "Pool id"), EvaluateParams),
    responses((status = 200, body = EvaluationView), (status = 404, body = ProblemView), (status = 409, description = "A static pool", body = ProblemView), (status = 422, body = ProblemView)))]
async fn evaluate(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<EvaluateScaling>,
    Path(pool): Path<String>,
    params: QueryResult<EvaluateParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = EvaluateScaling {
        pool,
        dry_run: params.dry_run.unwrap_or(false),
    };
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// A pool's prices (USD per unit-hour), burst premium, tier percentages and every price
/// change; a job is billed at each price for the part of its run that price covered.
#[utoipa::path(get, path = "/api/v1/pools/{id}/pricing", tag = "pools", params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses((status = 200, body = PricingView), (status = 404, body = ProblemView)))]
async fn get_pricing(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetPoolPricing>,
    Path(pool): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(
        &state,
        context,
        GetPoolPricing {
            pool,
            consistency: consistency(params)?,
        },
    )
    .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}

/// Change a pool's prices (admin; the fields given, from now on: runs before keep the old
/// prices) and/or its tier percentages.
#[utoipa::path(put, path = "/api/v1/pools/{id}/pricing", tag = "pools", params(("id" = String, Path, description = "Pool id")),
    request_body = PricingInput,
    responses((status = 200, body = PricingView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn put_pricing(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SetPoolPricing>,
    Path(pool): Path<String>,
    ApiJson(input): ApiJson<PricingInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let reply = ask(&state, context, SetPoolPricing { pool, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &reply))
}
