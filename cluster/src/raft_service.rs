//! The server side of node-to-node traffic: hands Raft RPCs to the local Raft, and
//! carries out what followers ask of the leader (forwarded writes, read index, admin).
//! Every message from a node of another cluster is refused.

use hodei_proto::v1::raft_service_server::RaftService;
use hodei_proto::v1::{ForwardRequest, RaftPayload};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::network::{AdminRequest, NODE_ID_METADATA, SECRET_METADATA};
use crate::raft_node::RaftNode;
use crate::raft_types::{NodeId, ProposedCommand, TypeConfig};

#[derive(Clone)]
pub struct RaftGrpcService {
    node: RaftNode,
}

/// Compares two secrets in time that depends only on their lengths.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |difference, (left, right)| difference | (left ^ right))
        == 0
}

impl RaftGrpcService {
    pub fn new(node: RaftNode) -> Self {
        Self { node }
    }

    /// Refuses a call without the cluster's secret (when it has one).
    fn authenticate<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let Some(expected) = self.node.secret() else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get(SECRET_METADATA)
            .map(|value| value.as_bytes())
            .unwrap_or_default();
        if same_secret(presented, expected.as_bytes()) {
            Ok(())
        } else {
            Err(tonic::Status::unauthenticated(
                "the peer port admits only members presenting the cluster secret",
            ))
        }
    }

    /// The node id the caller claims (authenticated by the secret).
    fn caller<T>(request: &tonic::Request<T>) -> Result<NodeId, tonic::Status> {
        request
            .metadata()
            .get(NODE_ID_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| {
                tonic::Status::permission_denied(format!(
                    "a peer call must name its node in `{NODE_ID_METADATA}`"
                ))
            })
    }

    /// Admits a call from a member: the cluster secret, this cluster's id (adopted by a
    /// node that has none yet), and a caller in this node's membership (or a node that
    /// knows none yet). Returns the caller's node id.
    fn admit<T>(
        &self,
        request: &tonic::Request<T>,
        cluster_id: &str,
    ) -> Result<NodeId, tonic::Status> {
        self.authenticate(request)?;
        if cluster_id.is_empty() {
            return Err(tonic::Status::failed_precondition(
                "a peer call must carry its cluster id",
            ));
        }
        self.node
            .identity()
            .adopt(cluster_id)
            .map_err(|error| tonic::Status::failed_precondition(error.to_string()))?;
        let caller = Self::caller(request)?;
        if !self.node.admits_member(caller) {
            return Err(tonic::Status::permission_denied(format!(
                "node {caller} is not a member of this cluster"
            )));
        }
        Ok(caller)
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

/// A Raft message must come from the node whose vote it carries.
fn check_sender(caller: NodeId, voted_for: Option<NodeId>) -> Result<(), tonic::Status> {
    match voted_for {
        Some(sender) if sender != caller => Err(tonic::Status::permission_denied(format!(
            "node {caller} sent a message of node {sender}"
        ))),
        _ => Ok(()),
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let cluster_id = request.get_ref().cluster_id.clone();
        let caller = self.admit(&request, &cluster_id)?;
        let payload = request.into_inner();
        let rpc: AppendEntriesRequest<TypeConfig> =
            crate::codec::decode(&payload.json).map_err(|error| {
                tonic::Status::invalid_argument(format!("undecodable entries: {error}"))
            })?;
        check_sender(caller, rpc.vote.leader_id().voted_for())?;
        encode(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let cluster_id = request.get_ref().cluster_id.clone();
        // A node outside the membership (removed, or never added) must not raise the
        // term of the members or depose their leader: its votes are refused here,
        // before Raft sees them (openraft 0.9 has no pre-vote).
        let caller = self.admit(&request, &cluster_id)?;
        let rpc: VoteRequest<NodeId> = decode(request.get_ref())?;
        check_sender(caller, rpc.vote.leader_id().voted_for())?;
        encode(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let cluster_id = request.get_ref().cluster_id.clone();
        let caller = self.admit(&request, &cluster_id)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = crate::codec::decode(&request.get_ref().json)
            .map_err(|error| {
                tonic::Status::invalid_argument(format!("undecodable snapshot chunk: {error}"))
            })?;
        check_sender(caller, rpc.vote.leader_id().voted_for())?;
        encode(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn forward(&self, request: tonic::Request<ForwardRequest>) -> Reply {
        let cluster_id = request.get_ref().cluster_id.clone();
        self.admit(&request, &cluster_id)?;
        let forwarded = request.into_inner();
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
        let cluster_id = request.get_ref().cluster_id.clone();
        self.admit(&request, &cluster_id)?;
        encode(&self.node.read_index_here().await)
    }

    async fn admin(&self, request: tonic::Request<RaftPayload>) -> Reply {
        let cluster_id = request.get_ref().cluster_id.clone();
        self.admit(&request, &cluster_id)?;
        let admin: AdminRequest = decode(request.get_ref())?;
        encode(&self.node.admin_here(admin).await)
    }

    async fn hello(&self, request: tonic::Request<RaftPayload>) -> Reply {
        // Any cluster id (or none): a leader vets a node before it joins. The secret is
        // still required.
        self.authenticate(&request)?;
        encode(&Ok::<_, crate::ClusterError>(self.node.info().await))
    }
}
