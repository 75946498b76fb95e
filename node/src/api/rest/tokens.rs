//! `/api/v1/tenants/{id}/tokens` and `/api/v1/pools/{id}/join-tokens` (issue 21): issue,
//! list and revoke. A token's secret is in the answer that issued it, and nowhere else.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, RestState, consistency, json_reply,
};
use crate::gateway::GatewayError;
use crate::gateway::access_model::{IssuedTokenView, JoinTokenInput, TokenInput, TokenListView};
use crate::gateway::model::ProblemView;
use crate::gateway::operations::{
    IssueJoinToken, IssueTenantToken, ListJoinTokens, ListTenantTokens, RevokeAnyToken,
    RevokeJoinToken, RevokeTenantToken,
};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(issue_tenant_token, list_tenant_tokens))
        .routes(routes!(revoke_tenant_token))
        .routes(routes!(revoke_any_token))
        .routes(routes!(issue_join_token, list_join_tokens))
        .routes(routes!(revoke_join_token))
}

/// Issue a token for a tenant (an admin, or the tenant with `admin-of-tenant`). The
/// answer holds the token's secret, shown this once.
#[utoipa::path(post, path = "/api/v1/tenants/{id}/tokens", tag = "tokens", request_body = TokenInput,
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 201, description = "Issued", body = IssuedTokenView),
        (status = 404, description = "No such tenant", body = ProblemView),
        (status = 409, description = "The tenant holds 100 live tokens", body = ProblemView),
        (status = 422, description = "A field breaks a rule", body = ProblemView),
    ))]
async fn issue_tenant_token(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<IssueTenantToken>,
    Path(tenant): Path<String>,
    ApiJson(input): ApiJson<TokenInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let issued = state
        .gateway
        .call(context, IssueTenantToken { tenant, input })
        .await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &issued))
}

/// A tenant's tokens, without their secrets (at most 100: one page).
#[utoipa::path(get, path = "/api/v1/tenants/{id}/tokens", tag = "tokens",
    params(("id" = String, Path, description = "Tenant id"), ReadParams),
    responses(
        (status = 200, description = "The tenant's tokens", body = TokenListView),
        (status = 404, description = "No such tenant", body = ProblemView),
    ))]
async fn list_tenant_tokens(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListTenantTokens>,
    Path(tenant): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let consistency = consistency(params)?;
    let trace_id = context.trace_id.clone();
    let list = state
        .gateway
        .call(
            context,
            ListTenantTokens {
                tenant,
                consistency,
            },
        )
        .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &list))
}

/// Revoke a tenant's token: no request is authenticated with it after this answer.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}/tokens/{token_id}", tag = "tokens",
    params(("id" = String, Path, description = "Tenant id"), ("token_id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "Revoked"),
        (status = 404, description = "No such token of this tenant", body = ProblemView),
    ))]
async fn revoke_tenant_token(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<RevokeTenantToken>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let id = state
        .gateway
        .call(context, RevokeTenantToken { tenant, id })
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &serde_json::json!({ "id": id, "revoked": true }),
    ))
}

/// Issue a join token for a pool (admin): a worker presents it to register in that pool.
/// The answer holds the token's secret, shown this once.
#[utoipa::path(post, path = "/api/v1/pools/{id}/join-tokens", tag = "tokens", request_body = JoinTokenInput,
    params(("id" = String, Path, description = "Pool id")),
    responses(
        (status = 201, description = "Issued", body = IssuedTokenView),
        (status = 404, description = "No such pool", body = ProblemView),
        (status = 409, description = "The pool has 100 live join tokens", body = ProblemView),
        (status = 422, description = "A field breaks a rule", body = ProblemView),
    ))]
async fn issue_join_token(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<IssueJoinToken>,
    Path(pool): Path<String>,
    ApiJson(input): ApiJson<JoinTokenInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let issued = state
        .gateway
        .call(context, IssueJoinToken { pool, input })
        .await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &issued))
}

/// A pool's join tokens, without their secrets (admin; at most 100: one page).
#[utoipa::path(get, path = "/api/v1/pools/{id}/join-tokens", tag = "tokens",
    params(("id" = String, Path, description = "Pool id"), ReadParams),
    responses(
        (status = 200, description = "The pool's join tokens", body = TokenListView),
        (status = 404, description = "No such pool", body = ProblemView),
    ))]
async fn list_join_tokens(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListJoinTokens>,
    Path(pool): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let consistency = consistency(params)?;
    let trace_id = context.trace_id.clone();
    let list = state
        .gateway
        .call(context, ListJoinTokens { pool, consistency })
        .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &list))
}

/// Revoke a pool's join token (admin): no worker registers with it after this answer
/// (workers that joined with it stay).
#[utoipa::path(delete, path = "/api/v1/pools/{id}/join-tokens/{token_id}", tag = "tokens",
    params(("id" = String, Path, description = "Pool id"), ("token_id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "Revoked"),
        (status = 404, description = "No such join token of this pool", body = ProblemView),
    ))]
async fn revoke_join_token(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<RevokeJoinToken>,
    Path((pool, id)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let id = state
        .gateway
        .call(context, RevokeJoinToken { pool, id })
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &serde_json::json!({ "id": id, "revoked": true }),
    ))
}

/// Revoke any token by id (admin), the admin token of the cluster's first start too (its
/// id is the part after `hodei_a_`).
#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}", tag = "tokens",
    params(("token_id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "Revoked"),
        (status = 404, description = "No such token", body = ProblemView),
    ))]
async fn revoke_any_token(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<RevokeAnyToken>,
    Path(id): Path<String>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let id = state.gateway.call(context, RevokeAnyToken { id }).await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &serde_json::json!({ "id": id, "revoked": true }),
    ))
}
