//! `/api/v1/health` and `/api/v1/cluster/status`.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::model::{ClusterStatusView, HealthView};
use crate::api::rest::{RestState, json_reply};
use crate::api::{ApiError, TraceId};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(cluster_status))
}

/// Liveness and readiness of this node: `status` is `ok` while it serves; `ready` says
/// whether a leader is known, so writes can succeed.
#[utoipa::path(get, path = "/api/v1/health", tag = "cluster", responses((status = 200, body = HealthView)))]
async fn health(
    State(state): State<RestState>,
    Extension(trace_id): Extension<TraceId>,
) -> Result<Response, ApiError> {
    let status = state.gateway.cluster_status().await?;
    let body = HealthView {
        status: "ok".to_string(),
        ready: status.leader_id.is_some(),
        node_id: status.node_id,
        role: status.role.to_string(),
        leader_id: status.leader_id,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(json_reply(StatusCode::OK, &trace_id, &body))
}

/// This node's view of the cluster: role, term, leader, applied index and members.
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatusView)))]
async fn cluster_status(
    State(state): State<RestState>,
    Extension(trace_id): Extension<TraceId>,
) -> Result<Response, ApiError> {
    let status = state.gateway.cluster_status().await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &ClusterStatusView::from(&status),
    ))
}
