//! `/api/v1/tenants`: tenant management (US-09.1.1).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, RestState, json_reply, page_limit, query,
};
use crate::gateway::model::{
    CreateTenantInput, PageInput, ProblemView, TenantPageView, TenantView, UpdateTenantInput,
};
use crate::gateway::operations::{
    CreateTenant, DeleteTenant, GetTenant, ListTenants, UpdateTenant,
};
use crate::gateway::{Consistency, GatewayError};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1–1000 (default 100).
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// `cancel`: cancel the tenant's pending and running jobs first.
    cascade: Option<String>,
}

/// Create a tenant.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenantInput,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 409, description = "The id is taken", body = ProblemView),
        (status = 422, description = "A field breaks a rule", body = ProblemView),
    ))]
async fn create_tenant(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<CreateTenant>,
    ApiJson(input): ApiJson<CreateTenantInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let tenant = state.gateway.call(context, CreateTenant { input }).await?;
    Ok(json_reply(
        StatusCode::CREATED,
        &trace_id,
        &TenantView::from(&tenant),
    ))
}

/// List tenants in id order, a page at a time. A tenant principal sees only itself.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(ListParams),
    responses((status = 200, description = "One page", body = TenantPageView), (status = 422, body = ProblemView)))]
async fn list_tenants(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListTenants>,
    params: QueryResult<ListParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let limit = page_limit(params.limit.as_deref())?;
    let consistency = Consistency::parse(params.consistency.as_deref())?;
    let page = PageInput {
        limit,
        cursor: params.cursor,
    };
    let trace_id = context.trace_id.clone();
    let page = state
        .gateway
        .call(context, ListTenants { page, consistency })
        .await?;
    let body = TenantPageView {
        items: page.items.iter().map(TenantView::from).collect(),
        next_cursor: page.next_cursor,
    };
    Ok(json_reply(StatusCode::OK, &trace_id, &body))
}

/// Get one tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "Tenant id"), ReadParams),
    responses((status = 200, body = TenantView), (status = 404, body = ProblemView), (status = 403, body = ProblemView)))]
async fn get_tenant(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetTenant>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let consistency = Consistency::parse(params.consistency.as_deref())?;
    let trace_id = context.trace_id.clone();
    let tenant = state
        .gateway
        .call(context, GetTenant { id, consistency })
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &TenantView::from(&tenant),
    ))
}

/// Change some fields of a tenant (admin).
#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "Tenant id")),
    request_body = UpdateTenantInput,
    responses((status = 200, body = TenantView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn update_tenant(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<UpdateTenant>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateTenantInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let tenant = state
        .gateway
        .call(context, UpdateTenant { id, input })
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &TenantView::from(&tenant),
    ))
}

/// Delete a tenant (admin). Refused while it has pending or running jobs unless `?cascade=cancel`.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path, description = "Tenant id"), DeleteParams),
    responses((status = 200, description = "Deleted"), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
async fn delete_tenant(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<DeleteTenant>,
    Path(id): Path<String>,
    params: QueryResult<DeleteParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let cascade = match params.cascade.as_deref() {
        None => false,
        Some("cancel") => true,
        Some(other) => {
            return Err(GatewayError::invalid(
                "cascade",
                format!("the only value is `cancel`, got `{other}`"),
            ));
        }
    };
    let trace_id = context.trace_id.clone();
    let id = state
        .gateway
        .call(context, DeleteTenant { id, cascade })
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &serde_json::json!({ "id": id.to_string(), "deleted": true }),
    ))
}
