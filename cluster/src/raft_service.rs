//! The server side of node-to-node traffic: hands Raft RPCs to the local Raft, and
//! carries out what followers ask of the leader (forwarded writes, read index, admin).
//! Every message from a node of another cluster is refused.

use hodei_proto::v1::raft_service_server::RaftService;
use hodei_proto::v1::{ForwardRequest, RaftPayload};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::network::AdminRequest;
use crate::raft_node::RaftNode;
use crate::raft_types::{NodeId, ProposedCommand, TypeConfig};

#[derive(Clone)]
pub struct RaftGrpcService {
    node: RaftNode,
}

impl RaftGrpcService {
    pub fn new(node: RaftNode) -> Self {
        Self { node }
    }

    fn admit(&self, cluster_id: &str) -> Result<(), tonic::Status> {
        self.node
            .identity()
            .adopt(cluster_id)
            .map_err(|error| tonic::Status::failed_precondition(error.to_string()))
    }
}

fn decode<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, tonic::Status> {
    serde_json::from_slice(&payload.json)
        .map_err(|error| tonic::Status::invalid_argument(format!("undecodable payload: {error}")))
}

fn encode<T: Serialize>(value: &T) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
    serde_json::to_vec(value)
        .map(|json| {
            tonic::Response::new(RaftPayload {
                json,
                cluster_id: String::new(),
            })
        })
        .map_err(|error| tonic::Status::internal(format!("unencodable reply: {error}")))
}

type Reply = Result<tonic::Response<RaftPayload>, tonic::Status>;

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let payload = request.into_inner();
        self.admit(&payload.cluster_id)?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            crate::codec::decode(&payload.json).map_err(|error| {
                tonic::Status::invalid_argument(format!("undecodable entries: {error}"))
            })?;
        encode(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let payload = request.into_inner();
        self.admit(&payload.cluster_id)?;
        let rpc: VoteRequest<NodeId> = decode(&payload)?;
        encode(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let payload = request.into_inner();
        self.admit(&payload.cluster_id)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(&payload)?;
        encode(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn forward(&self, request: tonic::Request<ForwardRequest>) -> Reply {
        let forwarded = request.into_inner();
        self.admit(&forwarded.cluster_id)?;
        let command = ProposedCommand {
            request_id: Some(forwarded.request_id).filter(|id| !id.is_empty()),
            command: forwarded.command,
        };
        let outcome = self.node.propose_here(command).await;
        crate::codec::encode(&outcome)
            .map(|json| {
                tonic::Response::new(RaftPayload {
                    json,
                    cluster_id: String::new(),
                })
            })
            .map_err(|error| tonic::Status::internal(format!("unencodable reply: {error}")))
    }

    async fn read_index(&self, request: tonic::Request<RaftPayload>) -> Reply {
        self.admit(&request.get_ref().cluster_id)?;
        encode(&self.node.read_index_here().await)
    }

    async fn admin(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let payload = request.into_inner();
        self.admit(&payload.cluster_id)?;
        let admin: AdminRequest = decode(&payload)?;
        encode(&self.node.admin_here(admin).await)
    }

    async fn hello(&self, _request: tonic::Request<RaftPayload>) -> Reply {
        encode(&Ok::<_, crate::ClusterError>(self.node.info().await))
    }
}
