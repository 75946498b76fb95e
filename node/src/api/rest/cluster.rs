//! `/api/v1/health` and `/api/v1/cluster/*`: status, init, members, leadership.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::rest::{ApiJson, Authorized, Context, RestState, json_reply};
use crate::gateway::model::{
    AddMemberInput, ClusterDigestsView, ClusterStatusView, HealthView, ProblemView,
    TransferLeaderInput,
};
use crate::gateway::operations::{ChangeCluster, ClusterOperation};
use crate::gateway::{GatewayError, RequestContext, TraceId};

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
) -> Result<Response, GatewayError> {
    let body = state.gateway.health().await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &body))
}

/// This node's view of the cluster: role, term, leader, applied index, and each member's
/// matched index and lag (as the leader sees them).
#[utoipa::path(get, path = "/api/v1/cluster/status", tag = "cluster", responses((status = 200, body = ClusterStatusView)))]
async fn cluster_status(
    State(state): State<RestState>,
    Context(context): Context,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let status = state.gateway.cluster_status(&context).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &status))
}

/// The digest of this node's replicated state at each of its last applied indexes
/// (up to 4,096, oldest first): replicas agree at every index they share.
#[utoipa::path(get, path = "/api/v1/cluster/digests", tag = "cluster", responses((status = 200, body = ClusterDigestsView)))]
async fn cluster_digests(
    State(state): State<RestState>,
    Context(context): Context,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let body = state.gateway.cluster_digests(&context).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &body))
}

async fn change(
    state: &RestState,
    context: RequestContext,
    operation: ClusterOperation,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let status = state
        .gateway
        .call(context, ChangeCluster { operation })
        .await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &status))
}

/// Make this node (which belongs to no cluster) the first member of a new cluster.
#[utoipa::path(post, path = "/api/v1/cluster/init", tag = "cluster",
    responses((status = 200, body = ClusterStatusView), (status = 409, description = "Already in a cluster", body = ProblemView)))]
async fn init_cluster(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ChangeCluster>,
) -> Result<Response, GatewayError> {
    change(&state, context, ClusterOperation::Init).await
}

/// Add a node: it joins as a learner, catches up, then becomes a voter.
#[utoipa::path(post, path = "/api/v1/cluster/members", tag = "cluster", request_body = AddMemberInput,
    responses((status = 200, body = ClusterStatusView), (status = 409, body = ProblemView), (status = 422, body = ProblemView)))]
async fn add_member(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ChangeCluster>,
    ApiJson(input): ApiJson<AddMemberInput>,
) -> Result<Response, GatewayError> {
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
    _: Authorized<ChangeCluster>,
    Path(node_id): Path<String>,
) -> Result<Response, GatewayError> {
    let node_id = node_id.parse().map_err(|_| {
        GatewayError::invalid(
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
    _: Authorized<ChangeCluster>,
    ApiJson(input): ApiJson<TransferLeaderInput>,
) -> Result<Response, GatewayError> {
    change(
        &state,
        context,
        ClusterOperation::TransferLeader {
            node_id: input.node_id,
        },
    )
    .await
}
