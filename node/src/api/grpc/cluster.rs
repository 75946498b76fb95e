//! `hodei.v1.ClusterService`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::cluster_service_server::ClusterService;

use crate::actors::gateway::GatewayHandle;
use crate::api::TraceId;
use crate::api::grpc::reply;

pub struct ClusterGrpc {
    gateway: GatewayHandle,
}

impl ClusterGrpc {
    pub fn new(gateway: GatewayHandle) -> Self {
        Self { gateway }
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterGrpc {
    async fn get_status(
        &self,
        request: tonic::Request<pb::GetClusterStatusRequest>,
    ) -> Result<tonic::Response<pb::ClusterStatus>, tonic::Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|value| value.to_str().ok());
        let trace_id = TraceId::from_header_or_new(traceparent);
        let result = self.gateway.cluster_status().await;
        reply(result, &trace_id, |status| pb::ClusterStatus {
            cluster_id: status.cluster_id.unwrap_or_default(),
            node_id: status.node_id,
            role: status.role.to_string(),
            term: status.term,
            leader_id: status.leader_id,
            last_log_index: status.last_log_index,
            last_applied_index: status.last_applied_index,
            members: status
                .members
                .into_iter()
                .map(|member| pb::ClusterMember {
                    node_id: member.node_id,
                    addr: member.addr,
                    role: if member.voter { "voter" } else { "learner" }.to_string(),
                    matched_index: member.matched_index,
                })
                .collect(),
        })
    }
}
