//! `hodei.v1.ClusterService`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::cluster_service_server::ClusterService;

use crate::actors::gateway::GatewayHandle;
use crate::gateway::model::ClusterStatusView;
use crate::gateway::operations::{ChangeCluster, ClusterOperation};

use crate::api::grpc::{GrpcGateway, reply, request_context};

pub struct ClusterGrpc {
    grpc: GrpcGateway,
    gateway: GatewayHandle,
    authenticator: crate::actors::authenticator::Authenticator,
}

impl ClusterGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway.clone(), authenticator.clone()),
            gateway,
            authenticator,
        }
    }

    async fn change<T>(
        &self,
        request: tonic::Request<T>,
        operation: impl FnOnce(T) -> ClusterOperation,
    ) -> StatusReply {
        let operation = |message: T| {
            Ok(ChangeCluster {
                operation: operation(message),
            })
        };
        self.grpc
            .call(request, operation, |status| status_message(&status))
            .await
    }
}

pub fn status_message(status: &ClusterStatusView) -> pb::ClusterStatus {
    pb::ClusterStatus {
        cluster_id: status.cluster_id.clone().unwrap_or_default(),
        node_id: status.node_id,
        role: status.role.clone(),
        term: status.term,
        leader_id: status.leader_id,
        last_log_index: status.last_log_index,
        last_applied_index: status.last_applied_index,
        snapshot_index: status.snapshot_index,
        initialized: status.initialized,
        addr: status.addr.clone(),
        state_digest: status.state_digest.clone(),
        digest_index: status.digest_index,
        quorum_ack_age_ms: status.quorum_ack_age_ms,
        members: status
            .members
            .iter()
            .map(|member| pb::ClusterMember {
                node_id: member.node_id,
                addr: member.addr.clone(),
                api_addr: member.api_addr.clone(),
                role: member.role.clone(),
                matched_index: member.matched_index,
                lag: member.lag,
            })
            .collect(),
    }
}

type StatusReply = Result<tonic::Response<pb::ClusterStatus>, tonic::Status>;

#[tonic::async_trait]
impl ClusterService for ClusterGrpc {
    async fn get_status(
        &self,
        request: tonic::Request<pb::GetClusterStatusRequest>,
    ) -> StatusReply {
        let context = request_context(&request, &self.authenticator)?;
        let result = self.gateway.cluster_status(&context).await;
        reply(result, &context.trace_id, |status| status_message(&status))
    }

    async fn get_digests(
        &self,
        request: tonic::Request<pb::GetDigestsRequest>,
    ) -> Result<tonic::Response<pb::ClusterDigests>, tonic::Status> {
        let context = request_context(&request, &self.authenticator)?;
        let result = self.gateway.cluster_digests(&context).await;
        reply(result, &context.trace_id, |view| pb::ClusterDigests {
            node_id: view.node_id,
            digests: view
                .digests
                .into_iter()
                .map(|digest| pb::StateDigestAt {
                    index: digest.index,
                    state_digest: digest.state_digest,
                })
                .collect(),
        })
    }

    async fn init(&self, request: tonic::Request<pb::InitClusterRequest>) -> StatusReply {
        self.change(request, |_| ClusterOperation::Init).await
    }

    async fn add_member(&self, request: tonic::Request<pb::AddMemberRequest>) -> StatusReply {
        self.change(request, |message| ClusterOperation::AddMember {
            node_id: message.node_id,
            addr: message.addr,
        })
        .await
    }

    async fn remove_member(&self, request: tonic::Request<pb::RemoveMemberRequest>) -> StatusReply {
        self.change(request, |message| ClusterOperation::RemoveMember {
            node_id: message.node_id,
        })
        .await
    }

    async fn transfer_leader(
        &self,
        request: tonic::Request<pb::TransferLeaderRequest>,
    ) -> StatusReply {
        self.change(request, |message| ClusterOperation::TransferLeader {
            node_id: message.node_id,
        })
        .await
    }
}
