//! One member of a Hodei cluster: openraft over [`Storage`], the gRPC transport, and group
//! commit, around a [`StateMachine`] the caller supplies.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hodei_proto::v1::raft_service_server::RaftServiceServer;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::error::ClusterError;
use crate::log_store::LogStore;
use crate::network::{GrpcNetworkFactory, RaftGrpcService};
use crate::proposer::Proposer;
use crate::raft_types::{NodeId, Raft};
use crate::state_machine::{StateMachine, StateMachineStore};
use crate::storage::{Keyspace, Storage, StorageError, WriteBatch};

pub const STATE_KEYSPACE: &str = "state";
const LOG_KEYSPACE: &str = "raft_log";
const META_KEYSPACE: &str = "raft_meta";
const SNAPSHOT_KEYSPACE: &str = "raft_snapshot";
const CLUSTER_ID_KEY: &[u8] = b"cluster_id";

/// Timings and limits of one node; the node's config supplies them.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    pub advertise_addr: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub log_entries_kept_after_snapshot: u64,
    pub max_commands_per_entry: usize,
}

/// What a node knows about the cluster right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub cluster_id: Option<String>,
    pub node_id: NodeId,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<ClusterMemberStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMemberStatus {
    pub node_id: NodeId,
    pub addr: String,
    pub voter: bool,
    pub matched_index: Option<u64>,
}

#[derive(Clone)]
pub struct RaftNode {
    raft: Raft,
    settings: ClusterSettings,
    proposer: Proposer,
    meta: Arc<dyn Keyspace>,
}

fn storage_error(error: StorageError) -> ClusterError {
    ClusterError::Storage(error.to_string())
}

impl RaftNode {
    /// Opens this node's storage, lets `load` rebuild the application state from the
    /// state keyspace, and starts Raft. A node that was part of a cluster resumes it.
    pub async fn start<S, L>(
        settings: ClusterSettings,
        storage: &dyn Storage,
        load: L,
    ) -> Result<(Self, Arc<RwLock<S>>), ClusterError>
    where
        S: StateMachine,
        L: FnOnce(&dyn Keyspace) -> Result<S, String>,
    {
        let state_keyspace = storage.keyspace(STATE_KEYSPACE).map_err(storage_error)?;
        let state = Arc::new(RwLock::new(
            load(state_keyspace.as_ref()).map_err(ClusterError::Storage)?,
        ));
        let meta = storage.keyspace(META_KEYSPACE).map_err(storage_error)?;
        let log_store = LogStore::new(
            storage.keyspace(LOG_KEYSPACE).map_err(storage_error)?,
            meta.clone(),
        );
        let state_machine = StateMachineStore::open(
            state.clone(),
            state_keyspace,
            storage.keyspace(SNAPSHOT_KEYSPACE).map_err(storage_error)?,
        )
        .map_err(|error| ClusterError::Storage(error.to_string()))?;
        let config = openraft::Config {
            cluster_name: "hodei".to_string(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
            max_in_snapshot_log_to_keep: settings.log_entries_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|error| ClusterError::Invalid(error.to_string()))?;
        let network =
            GrpcNetworkFactory::new(Duration::from_millis(settings.election_timeout_min_ms));
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| ClusterError::Fatal(error.to_string()))?;
        let proposer = Proposer::start(raft.clone(), settings.max_commands_per_entry);
        let node = Self {
            raft,
            settings,
            proposer,
            meta,
        };
        Ok((node, state))
    }

    pub fn node_id(&self) -> NodeId {
        self.settings.node_id
    }

    /// The id chosen when the cluster was initialised; `None` before that.
    pub fn cluster_id(&self) -> Option<String> {
        self.meta
            .get(CLUSTER_ID_KEY)
            .ok()
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    }

    pub async fn is_initialized(&self) -> Result<bool, ClusterError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|error| ClusterError::Fatal(error.to_string()))
    }

    /// Makes this node the single voter of a new cluster with id `cluster_id`. Returns
    /// false, changing nothing, when the node already belongs to a cluster.
    pub async fn initialize_single(&self, cluster_id: &str) -> Result<bool, ClusterError> {
        if self.is_initialized().await? {
            return Ok(false);
        }
        let mut batch = WriteBatch::new();
        batch.put(CLUSTER_ID_KEY.to_vec(), cluster_id.as_bytes().to_vec());
        self.meta.write(batch).map_err(storage_error)?;
        self.meta.flush().map_err(storage_error)?;
        let members = BTreeMap::from([(
            self.settings.node_id,
            BasicNode {
                addr: self.settings.advertise_addr.clone(),
            },
        )]);
        self.raft
            .initialize(members)
            .await
            .map_err(|error| ClusterError::Invalid(error.to_string()))?;
        Ok(true)
    }

    /// Waits until some node is known as leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |metrics| metrics.current_leader.is_some(),
                "a leader is known",
            )
            .await
            .map_err(|_| {
                ClusterError::Unavailable(format!(
                    "no leader elected within {} ms",
                    timeout.as_millis()
                ))
            })?;
        metrics
            .current_leader
            .ok_or_else(|| ClusterError::Unavailable("no leader".to_string()))
    }

    /// Replicates one command through group commit and returns the state machine's
    /// response once it is applied on this node.
    pub async fn propose(&self, command: String) -> Result<String, ClusterError> {
        self.proposer.propose(command).await
    }

    /// Returns once this node's state machine reflects every write committed before the
    /// call (Raft read-index): reads after it are linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), ClusterError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                Err(ClusterError::NotLeader {
                    leader_id: forward.leader_id,
                    leader_addr: forward.leader_node.map(|node| node.addr),
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(error))) => {
                Err(ClusterError::Unavailable(error.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(ClusterError::Fatal(fatal.to_string())),
        }
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.current_leader == Some(self.settings.node_id)
            && metrics.state == ServerState::Leader
    }

    /// Changes of role, term and leader, for actors that start and stop with leadership.
    pub fn watch_server_state(
        &self,
    ) -> watch::Receiver<openraft::metrics::RaftServerMetrics<NodeId, BasicNode>> {
        self.raft.server_metrics()
    }

    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let replication = metrics.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(node_id, node)| ClusterMemberStatus {
                node_id: *node_id,
                addr: node.addr.clone(),
                voter: voters.contains(node_id),
                matched_index: replication
                    .get(node_id)
                    .and_then(|matched| matched.as_ref().map(|log_id| log_id.index)),
            })
            .collect();
        ClusterStatus {
            cluster_id: self.cluster_id(),
            node_id: self.settings.node_id,
            role: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|log_id| log_id.index),
            snapshot_index: metrics.snapshot.map(|log_id| log_id.index),
            members,
        }
    }

    /// The gRPC service other nodes call to replicate to this one.
    pub fn grpc_service(&self) -> RaftServiceServer<RaftGrpcService> {
        RaftServiceServer::new(RaftGrpcService::new(self.raft.clone()))
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft did not shut down cleanly");
        }
    }
}
