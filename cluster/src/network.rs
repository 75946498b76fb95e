//! The client side of node-to-node traffic: openraft's `RaftNetwork` over gRPC, and the
//! calls a node makes to the leader (forwarded writes, read index, admin operations).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hodei_proto::v1::raft_service_client::RaftServiceClient;
use hodei_proto::v1::{ForwardRequest, RaftPayload};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::error::ClusterError;
use crate::identity::ClusterIdentity;
use crate::raft_types::{CommandResponse, NodeId, ProposedCommand, TypeConfig};

/// The metadata key of the cluster secret a member presents on every peer call.
pub const SECRET_METADATA: &str = "x-hodei-cluster-secret";
/// The metadata key of the calling member's node id.
pub const NODE_ID_METADATA: &str = "x-hodei-node-id";

/// Who this node is to its peers: its id and the cluster's shared secret.
#[derive(Clone)]
pub struct PeerCredentials {
    pub node_id: NodeId,
    pub secret: Option<String>,
    /// With TLS: how this node proves itself to peers and checks them (mTLS).
    pub tls: Option<PeerTls>,
    /// The local address this node's connections to its peers leave from (`None`: the
    /// system's choice).
    pub source_addr: Option<std::net::IpAddr>,
}

/// TLS between members: the CA that signed every member's certificate, and this
/// member's certificate and key (PEM). A member checks each peer's certificate against
/// the CA and presents its own as a client certificate.
#[derive(Clone)]
pub struct PeerTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("PeerTls(<key redacted>)")
    }
}

impl PeerTls {
    /// The client side of a call to a peer.
    pub fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
    }

    /// The server side of the peer port: this member's certificate, and peers must
    /// present one the CA signed.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
    }
}

impl std::fmt::Debug for PeerCredentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerCredentials")
            .field("node_id", &self.node_id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("source_addr", &self.source_addr)
            .finish()
    }
}

impl PeerCredentials {
    /// Puts the credentials on an outgoing call.
    pub fn sign<T>(&self, request: &mut tonic::Request<T>) {
        let metadata = request.metadata_mut();
        if let Ok(value) = self.node_id.to_string().parse() {
            metadata.insert(NODE_ID_METADATA, value);
        }
        if let Some(secret) = &self.secret
            && let Ok(value) = secret.parse()
        {
            metadata.insert(SECRET_METADATA, value);
        }
    }
}

/// One lazily connected channel per peer address, shared by every caller.
#[derive(Debug, Clone)]
pub struct PeerClients {
    channels: Arc<Mutex<HashMap<String, RaftServiceClient<Channel>>>>,
    identity: Arc<ClusterIdentity>,
    credentials: PeerCredentials,
    connect_timeout: Duration,
}

/// Membership and leadership operations, carried out by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    AddMember {
        node_id: NodeId,
        addr: String,
    },
    RemoveMember {
        node_id: NodeId,
    },
    TransferLeader {
        node_id: NodeId,
    },
    /// Sent by the leader to the node it hands leadership to: start an election now.
    Elect,
}

/// Who a node is, as it answers `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: NodeId,
    /// Its peer address.
    pub addr: String,
    /// Its public gRPC address, for clients and workers.
    #[serde(default)]
    pub api_addr: String,
    pub cluster_id: Option<String>,
    pub initialized: bool,
}

fn endpoint(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&PeerTls>,
    source_addr: Option<std::net::IpAddr>,
) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = match addr.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{addr}"),
    };
    let endpoint = Endpoint::from_shared(url)
        .map(|endpoint| {
            endpoint
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .local_address(source_addr)
        })
        .map_err(|error| format!("bad address {addr}: {error}"))?;
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.client_config())
            .map_err(|error| format!("TLS for {addr}: {error}")),
        None => Ok(endpoint),
    }
}

impl PeerClients {
    pub fn new(
        identity: Arc<ClusterIdentity>,
        credentials: PeerCredentials,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            channels: Arc::new(Mutex::new(HashMap::new())),
            identity,
            credentials,
            connect_timeout,
        }
    }

    /// A request to a peer, with this node's credentials and a deadline.
    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        self.credentials.sign(&mut request);
        request
    }

    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, String> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = channels.get(addr) {
            return Ok(client.clone());
        }
        let client = RaftServiceClient::new(
            endpoint(
                addr,
                self.connect_timeout,
                self.credentials.tls.as_ref(),
                self.credentials.source_addr,
            )?
            .connect_lazy(),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        channels.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Drops the cached channel of a peer that could not be reached. tonic would
    /// otherwise retry the connection with a growing back-off, and a node that comes back
    /// (a restarted leader, a voter needed for an election) would stay unreachable for
    /// seconds after it is up again.
    pub fn forget(&self, addr: &str) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(addr);
    }

    fn failed(&self, addr: &str, status: tonic::Status) -> ClusterError {
        if status.code() == tonic::Code::Unavailable {
            self.forget(addr);
        }
        status_error(addr, status)
    }

    fn payload<T: Serialize>(&self, value: &T) -> Result<RaftPayload, ClusterError> {
        Ok(RaftPayload {
            json: serde_json::to_vec(value)
                .map_err(|error| ClusterError::Invalid(error.to_string()))?,
            cluster_id: self.identity.get().unwrap_or_default(),
        })
    }

    /// A payload in the binary form of [`crate::codec`] (for `AppendEntries`, which carries
    /// the commands in bulk).
    fn binary_payload<T: Serialize>(&self, value: &T) -> Result<RaftPayload, ClusterError> {
        Ok(RaftPayload {
            json: crate::codec::encode(value).map_err(ClusterError::Invalid)?,
            cluster_id: self.identity.get().unwrap_or_default(),
        })
    }

    /// Proposes `command` on the leader at `addr`. A `NotLeader` answer or a connection
    /// that could not be made means the command was not proposed there; any other
    /// failure (a timeout, a connection lost after sending) leaves its outcome unknown.
    pub async fn forward(
        &self,
        addr: &str,
        command: ProposedCommand,
        timeout: Duration,
    ) -> Result<CommandResponse, ClusterError> {
        let mut client = self.client(addr).map_err(ClusterError::Unavailable)?;
        let request_id = command.request_id.clone();
        let request = self.request(
            ForwardRequest {
                command: command.command,
                cluster_id: self.identity.get().unwrap_or_default(),
                request_id: command.request_id.unwrap_or_default(),
            },
            timeout,
        );
        let reply = match client.forward(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if never_sent(&status) => return Err(self.failed(addr, status)),
            Err(status) => {
                if status.code() == tonic::Code::Unavailable {
                    self.forget(addr);
                }
                return Err(ClusterError::OutcomeUnknown {
                    request_id,
                    detail: format!("forwarded to the leader at {addr}: {}", status.message()),
                });
            }
        };
        let result: Result<CommandResponse, ClusterError> = crate::codec::decode(&reply.json)
            .map_err(|error| ClusterError::OutcomeUnknown {
                request_id: request_id.clone(),
                detail: format!("undecodable reply from the leader at {addr}: {error}"),
            })?;
        result
    }

    /// The leader's read index: every write committed before the call is at or below it.
    pub async fn read_index(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<Option<u64>, ClusterError> {
        let mut client = self.client(addr).map_err(ClusterError::Unavailable)?;
        let request = self.request(self.payload(&())?, timeout);
        let reply = client
            .read_index(request)
            .await
            .map_err(|status| self.failed(addr, status))?;
        decode_result(&reply.into_inner().json)
    }

    pub async fn admin(
        &self,
        addr: &str,
        admin: &AdminRequest,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let mut client = self.client(addr).map_err(ClusterError::Unavailable)?;
        let request = self.request(self.payload(admin)?, timeout);
        let reply = client
            .admin(request)
            .await
            .map_err(|status| self.failed(addr, status))?;
        decode_result(&reply.into_inner().json)
    }

    pub async fn hello(&self, addr: &str, timeout: Duration) -> Result<NodeInfo, ClusterError> {
        let mut client = self.client(addr).map_err(ClusterError::Unavailable)?;
        let request = self.request(
            RaftPayload {
                json: b"null".to_vec(),
                // Hello is how a node is vetted before it joins: it must not be refused
                // for lacking or differing in cluster id, so the id is not sent.
                cluster_id: String::new(),
            },
            timeout,
        );
        let reply = client
            .hello(request)
            .await
            .map_err(|status| self.failed(addr, status))?;
        decode_result(&reply.into_inner().json)
    }
}

/// Whether a failed call certainly never reached the peer's handler: the connection was
/// refused or could not be made, or the peer refused it before handling (another
/// cluster, a bad secret).
fn never_sent(status: &tonic::Status) -> bool {
    if matches!(
        status.code(),
        tonic::Code::FailedPrecondition
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
    ) {
        return true;
    }
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NotFound
            )
        {
            return true;
        }
        let text = error.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = error.source();
    }
    let message = status.message();
    message.contains("tcp connect error") || message.contains("Connection refused")
}

fn status_error(addr: &str, status: tonic::Status) -> ClusterError {
    match status.code() {
        tonic::Code::Unavailable => {
            ClusterError::Unavailable(format!("node at {addr} unreachable: {}", status.message()))
        }
        tonic::Code::FailedPrecondition | tonic::Code::Unauthenticated => {
            ClusterError::Refused(status.message().to_string())
        }
        // The leader no longer counts this node as a member (it was just removed): the
        // request was not carried out, and another member can take it.
        tonic::Code::PermissionDenied => ClusterError::Unavailable(format!(
            "node at {addr} refused this node: {}; ask another member",
            status.message()
        )),
        _ => ClusterError::Unavailable(format!("node at {addr}: {}", status.message())),
    }
}

fn decode_result<T: DeserializeOwned>(json: &[u8]) -> Result<T, ClusterError> {
    let result: Result<T, ClusterError> = serde_json::from_slice(json)
        .map_err(|error| ClusterError::Invalid(format!("undecodable reply: {error}")))?;
    result
}

/// Creates one [`GrpcPeer`] per target node for openraft.
#[derive(Debug, Clone)]
pub struct GrpcNetworkFactory {
    clients: PeerClients,
}

impl GrpcNetworkFactory {
    pub fn new(clients: PeerClients) -> Self {
        Self { clients }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetworkFactory {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GrpcPeer {
            target,
            addr: node.addr.clone(),
            clients: self.clients.clone(),
            append_budget: Arc::default(),
        }
    }
}

/// openraft's connection to one peer.
pub struct GrpcPeer {
    target: NodeId,
    addr: String,
    clients: PeerClients,
    /// How many entries one AppendEntries to this peer may carry.
    append_budget: Arc<Mutex<AppendBudget>>,
}

/// How many entries one `AppendEntries` to a peer may carry, learned from the calls that
/// did not finish in time. openraft gives every `AppendEntries` one heartbeat interval
/// (`cluster.heartbeat_ms`) and drops the call past it; a follower that fell behind is sent
/// up to [`MAX_APPEND_BYTES`] at once, which a loaded machine may not move, decode and
/// store in that time. Without a smaller call the follower never catches up, and the
/// leader never hears its answers either (a restarted follower that started elections
/// keeps a higher term the leader never learns of). So a call that did not finish halves
/// the next calls' entries (openraft's own `PayloadTooLarge` hint, retried at once), and
/// calls that finish at the limit raise it again, doubling after [`REGROW_AFTER`] of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendBudget {
    /// At most this many entries per call (no limit when `None`).
    limit: Option<u64>,
    /// Calls finished at the limit since it was last changed.
    finished_at_limit: u32,
}

/// Finished calls at the limit before it doubles.
const REGROW_AFTER: u32 = 8;

impl AppendBudget {
    /// `Err(hint)` when a call of `entries` entries is over the limit.
    pub fn admit(&self, entries: u64) -> Result<(), u64> {
        match self.limit {
            Some(limit) if entries > limit => Err(limit),
            _ => Ok(()),
        }
    }

    /// A call of `entries` entries did not finish in time: the next carry half as many
    /// (one entry cannot be split).
    pub fn unfinished(&mut self, entries: u64) {
        if entries > 1 {
            self.limit = Some((entries / 2).max(1));
            self.finished_at_limit = 0;
        }
    }

    /// A call of `entries` entries finished.
    pub fn finished(&mut self, entries: u64) {
        let Some(limit) = self.limit else {
            return;
        };
        if entries < limit {
            return;
        }
        self.finished_at_limit += 1;
        if self.finished_at_limit >= REGROW_AFTER {
            self.finished_at_limit = 0;
            let doubled = limit.saturating_mul(2);
            // Past any slice the log store hands out: no limit.
            self.limit = (doubled < MAX_APPEND_BYTES as u64).then_some(doubled);
        }
    }
}

/// Marks an `AppendEntries` unfinished unless disarmed: dropped with the call's future when
/// openraft's timeout cancels it.
struct AppendInFlight {
    budget: Arc<Mutex<AppendBudget>>,
    entries: u64,
    finished: bool,
}

impl Drop for AppendInFlight {
    fn drop(&mut self) {
        let mut budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        if self.finished {
            budget.finished(self.entries);
        } else {
            budget.unfinished(self.entries);
        }
    }
}

type PeerError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

fn unreachable<E: std::error::Error>(message: String) -> PeerError<E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(message)))
}

#[derive(Debug, Clone, Copy)]
enum RaftMethod {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl GrpcPeer {
    async fn call<Req, Resp, E>(
        &mut self,
        method: RaftMethod,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, PeerError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self.clients.client(&self.addr).map_err(unreachable)?;
        let payload = match method {
            // Bulk data in the binary form: in JSON a snapshot chunk's bytes would be an
            // array of numbers, several times their size.
            RaftMethod::AppendEntries | RaftMethod::InstallSnapshot => {
                self.clients.binary_payload(rpc)
            }
            RaftMethod::Vote => self.clients.payload(rpc),
        }
        .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        let request = self.clients.request(payload, option.hard_ttl());
        let reply = match method {
            RaftMethod::AppendEntries => client.append_entries(request).await,
            RaftMethod::Vote => client.vote(request).await,
            RaftMethod::InstallSnapshot => client.install_snapshot(request).await,
        };
        if matches!(&reply, Err(status) if status.code() == tonic::Code::Unavailable) {
            self.clients.forget(&self.addr);
        }
        let payload = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::Unauthenticated
                        | tonic::Code::PermissionDenied
                ) =>
            {
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

/// The most entry bytes one `AppendEntries` call carries (the log store reads no more for
/// it, `LogStore::limited_get_log_entries`), far below the transport's message limit
/// ([`MAX_MESSAGE_BYTES`]): a follower that fell behind during batch submissions is sent
/// its backlog in slices it can take. One entry is never larger (the proposer's bound).
pub const MAX_APPEND_BYTES: usize = 2 * 1024 * 1024;

/// The largest message either end of the peer transport accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

impl RaftNetwork<TypeConfig> for GrpcPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, PeerError> {
        // The log store hands openraft at most about MAX_APPEND_BYTES of entries per call
        // (`LogStore::limited_get_log_entries`), so one call carries one bounded slice,
        // and fewer entries while calls to this peer do not finish in time.
        let entries = rpc.entries.len() as u64;
        if let Err(hint) = self
            .append_budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(entries)
        {
            return Err(RPCError::PayloadTooLarge(
                openraft::error::PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let mut in_flight = AppendInFlight {
            budget: self.append_budget.clone(),
            entries,
            finished: false,
        };
        let result = self.call(RaftMethod::AppendEntries, &rpc, &option).await;
        match &result {
            Ok(_) | Err(RPCError::RemoteError(_)) => in_flight.finished = true,
            // An unreachable peer says nothing of the size of a call.
            Err(RPCError::Unreachable(_)) => {
                in_flight.finished = true;
                in_flight.entries = 0;
            }
            // Cut at the peer's deadline (the gRPC deadline is the same interval), or lost
            // on the way: as if openraft had dropped it.
            Err(_) => {}
        }
        result
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

#[cfg(test)]
mod append_budget_tests {
    use super::*;

    #[test]
    fn an_unfinished_call_halves_the_next_and_finished_calls_at_the_limit_regrow_it() {
        let mut budget = AppendBudget::default();
        assert_eq!(budget.admit(10_000), Ok(()), "no limit until a call is cut");
        budget.unfinished(40);
        assert_eq!(budget.admit(21), Err(20));
        assert_eq!(budget.admit(20), Ok(()));
        budget.unfinished(20);
        assert_eq!(budget.admit(11), Err(10));
        // Calls under the limit (the follower caught up) leave it as it is.
        for _ in 0..REGROW_AFTER {
            budget.finished(3);
        }
        assert_eq!(budget.admit(11), Err(10));
        for _ in 0..REGROW_AFTER {
            budget.finished(10);
        }
        assert_eq!(
            budget.admit(21),
            Err(20),
            "doubled after {REGROW_AFTER} at the limit"
        );
        // One entry cannot be split: a cut call of one entry changes nothing.
        budget.unfinished(1);
        assert_eq!(budget.admit(20), Ok(()));
        let mut budget = AppendBudget::default();
        budget.unfinished(2);
        assert_eq!(budget.admit(2), Err(1));
        assert_eq!(budget.admit(1), Ok(()));
        // Regrown past what the log store ever hands out: no limit again.
        budget.limit = Some(MAX_APPEND_BYTES as u64 / 2 + 1);
        for _ in 0..REGROW_AFTER {
            budget.finished(MAX_APPEND_BYTES as u64);
        }
        assert_eq!(budget, AppendBudget::default());
    }
}
