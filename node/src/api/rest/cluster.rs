//! `/api/v1/health` and `/api/v1/cluster/*`: status, init, members, leadership.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::actors::gateway::{ClusterOperation, GatewayMsg};
use crate::api::model::{
    AddMemberInput, ClusterDigestsView, ClusterStatusView, DigestView, HealthView, ProblemView,
    TransferLeaderInput,
};
use crate::api::rest::{ApiJson, Context, RestState, json_reply};
use crate::api::{ApiError, RequestContext, TraceId};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(cluster_status))
        .routes(routes!(cluster_digests))
        .routes(routes!(init_cluster))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(transfer_leader))
}

/// Liveness and readiness of this node: `status` is `ok` while it serves (200); `ready`
/// says whether a leader is known, so writes can succeed. A node whose Raft core stopped
/// answers 503 with a problem document whose detail starts `node failed:` or
/// `node removed:`.
#[utoipa::path(get, path = "/api/v1/health", tag = "cluster", responses((status = 200, body = HealthView), (status = 503, body = ProblemView)))]
async fn health(
    State(state): State<RestState>,
    Extension(trace_id): Extension<TraceId>,
) -> Result<Response, ApiError> {
    let status = state.gateway.cluster_status().await?;
    if let Some(stop) = &status.core_stop {
        return Err(crate::actors::gateway::core_stopped(stop));
    }
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

/// This node's view of the cluster: role, term, leader, applied index, and each member's
/// matched index and lag (as the leader sees them).
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

/// The digest of this node's replicated state at each of its last applied indexes
/// (up to 4,096, oldest first): replicas agree at every index they share.
#[utoipa::path(get, path = "/api/v1/cluster/digests", tag = "cluster", responses((status = 200, body = ClusterDigestsView)))]
async fn cluster_digests(
    State(state): State<RestState>,
    Extension(trace_id): Extension<TraceId>,
) -> Result<Response, ApiError> {
    let status = state.gateway.cluster_status().await?;
    let digests = state.gateway.cluster_digests().await?;
    let body = ClusterDigestsView {
        node_id: status.node_id,
        digests: digests
            .into_iter()
            .filter_map(|reading| {
                reading.index.map(|index| DigestView {
                    index,
                    state_digest: reading.digest.to_hex(),
                })
            })
            .collect(),
    };
    Ok(json_reply(StatusCode::OK, &trace_id, &body))
}

async fn change(
    state: &RestState,
    context: RequestContext,
    operation: ClusterOperation,
) -> Result<Response, ApiError> {
    let trace_id = context.trace_id.clone();
    let status = state
        .gateway
        .ask(|reply| GatewayMsg::ClusterAdmin {
            context,
            operation,
            reply,
        })
        .await?;
    Ok(json_reply(
        StatusCode::OK,
        &trace_id,
        &ClusterStatusView::from(&status),
    ))
}

/// Make this node (which belongs to no cluster) the first member of a new cluster.
#[utoipa::path(post, path = "/api/v1/cluster/init", tag = "cluster",
    responses((status = 200, body = ClusterStatusView), (status = 409, description = "Already in a cluster", body = ProblemView)))]
async fn init_cluster(
    State(state): State<RestState>,
    Context(context): Context,
) -> Result<Response, ApiError> {
    change(&state, context, ClusterOperation::Init).await
}

/// Add a node: it joins as a learner, catches up, then becomes a voter.
#[utoipa::path(post, path = "/api/v1/cluster/members", tag = "cluster", request_body = AddMemberInput,
    responses((status = 200, body = ClusterStatusView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn add_member(
    State(state): State<RestState>,
    Context(context): Context,
    ApiJson(input): ApiJson<AddMemberInput>,
) -> Result<Response, ApiError> {
    let operation = ClusterOperation::AddMember {
        node_id: input.node_id,
        addr: input.addr,
    };
    change(&state, context, operation).await
}

/// Remove a node from the cluster (refused for the last voter).
#[utoipa::path(delete, path = "/api/v1/cluster/members/{node_id}", tag = "cluster", params(("node_id" = u64, Path, description = "Node id")),
    responses((status = 200, body = ClusterStatusView), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
async fn remove_member(
    State(state): State<RestState>,
    Context(context): Context,
    Path(node_id): Path<String>,
) -> Result<Response, ApiError> {
    let node_id = node_id.parse().map_err(|_| {
        ApiError::invalid(
            "node_id",
            format!("must be a whole number, got `{node_id}`"),
        )
    })?;
    change(&state, context, ClusterOperation::RemoveMember { node_id }).await
}

/// Hand leadership to another voter.
#[utoipa::path(post, path = "/api/v1/cluster/transfer-leader", tag = "cluster", request_body = TransferLeaderInput,
    responses((status = 200, body = ClusterStatusView), (status = 404, body = ProblemView)))]
async fn transfer_leader(
    State(state): State<RestState>,
    Context(context): Context,
    ApiJson(input): ApiJson<TransferLeaderInput>,
) -> Result<Response, ApiError> {
    change(
        &state,
        context,
        ClusterOperation::TransferLeader {
            node_id: input.node_id,
        },
    )
    .await
}
