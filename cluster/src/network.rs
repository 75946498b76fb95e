//! The Raft transport over gRPC: a client per peer for openraft's `RaftNetwork`, and the
//! `RaftService` server that hands incoming RPCs to the local Raft. Payloads are openraft's
//! request and response types in JSON.

use std::time::Duration;

use hodei_proto::v1::RaftPayload;
use hodei_proto::v1::raft_service_client::RaftServiceClient;
use hodei_proto::v1::raft_service_server::RaftService;
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::raft_types::{NodeId, Raft, TypeConfig};

/// Creates one [`GrpcPeer`] per target node.
#[derive(Debug, Clone, Default)]
pub struct GrpcNetworkFactory {
    connect_timeout: Duration,
}

impl GrpcNetworkFactory {
    pub fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let endpoint = Endpoint::from_shared(format!("http://{}", node.addr)).map(|endpoint| {
            endpoint
                .connect_timeout(self.connect_timeout)
                .tcp_nodelay(true)
        });
        let client = endpoint.map(|endpoint| RaftServiceClient::new(endpoint.connect_lazy()));
        GrpcPeer {
            target,
            addr: node.addr.clone(),
            client: client.map_err(|error| error.to_string()),
        }
    }
}

/// The connection to one peer.
pub struct GrpcPeer {
    target: NodeId,
    addr: String,
    client: Result<RaftServiceClient<Channel>, String>,
}

type PeerError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(message: String) -> PeerError<E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(message)))
}

impl GrpcPeer {
    async fn call<Req, Resp, E>(
        &mut self,
        method: RaftMethod,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, PeerError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(error) => return Err(unreachable(format!("bad address {}: {error}", self.addr))),
        };
        let json = serde_json::to_vec(request)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let mut grpc_request = tonic::Request::new(RaftPayload { json });
        grpc_request.set_timeout(option.hard_ttl());
        let reply = match method {
            RaftMethod::AppendEntries => client.append_entries(grpc_request).await,
            RaftMethod::Vote => client.vote(grpc_request).await,
            RaftMethod::InstallSnapshot => client.install_snapshot(grpc_request).await,
        };
        let payload = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                return Err(unreachable(format!(
                    "node {} at {}: {}",
                    self.target,
                    self.addr,
                    status.message()
                )));
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let outcome: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&payload.json)
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        outcome.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

#[derive(Debug, Clone, Copy)]
enum RaftMethod {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for GrpcPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, PeerError> {
        self.call(RaftMethod::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, PeerError<InstallSnapshotError>> {
        self.call(RaftMethod::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, PeerError> {
        self.call(RaftMethod::Vote, &rpc, &option).await
    }
}

/// The server side of the transport: decodes, calls the local Raft, encodes its answer
/// (including Raft-level refusals, which the client turns back into openraft errors).
#[derive(Clone)]
pub struct RaftGrpcService {
    raft: Raft,
}

impl RaftGrpcService {
    pub fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

fn decode_request<T: DeserializeOwned>(
    request: tonic::Request<RaftPayload>,
) -> Result<T, tonic::Status> {
    serde_json::from_slice(&request.into_inner().json).map_err(|error| {
        tonic::Status::invalid_argument(format!("undecodable raft payload: {error}"))
    })
}

fn encode_reply<T: Serialize>(value: &T) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
    serde_json::to_vec(value)
        .map(|json| tonic::Response::new(RaftPayload { json }))
        .map_err(|error| tonic::Status::internal(format!("unencodable raft reply: {error}")))
}

#[tonic::async_trait]
impl RaftService for RaftGrpcService {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode_request(request)?;
        encode_reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = decode_request(request)?;
        encode_reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_request(request)?;
        encode_reply(&self.raft.install_snapshot(rpc).await)
    }
}
