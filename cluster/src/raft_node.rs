//! One member of a Hodei cluster: openraft over [`Storage`], the gRPC transport, group
//! commit, forwarding to the leader, and membership, around a [`StateMachine`] the caller
//! supplies. Any node accepts any request: writes and linearizable reads that need the
//! leader reach it from here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hodei_proto::v1::raft_service_server::RaftServiceServer;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};

use crate::error::ClusterError;
use crate::identity::ClusterIdentity;
use crate::log_store::LogStore;
use crate::network::{AdminRequest, GrpcNetworkFactory, NodeInfo, PeerClients, PeerCredentials};
use crate::proposer::Proposer;
use crate::raft_service::RaftGrpcService;
use crate::raft_types::{CommandResponse, NodeId, ProposedCommand, Raft};
use crate::recent_requests::DedupLimits;
use crate::state_machine::{
    ApplyStats, ApplyStatsReading, RaftTimings, StateMachine, StateMachineStore,
};
use crate::storage::{Keyspace, Storage, StorageError};

pub const STATE_KEYSPACE: &str = "state";
const LOG_KEYSPACE: &str = "raft_log";
const META_KEYSPACE: &str = "raft_meta";
const SNAPSHOT_KEYSPACE: &str = "raft_snapshot";

/// Timings and limits of one node; the node's config supplies them.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    /// The peer address other members reach this node at (its Raft service).
    pub advertise_addr: String,
    /// The public gRPC address clients and workers reach this node at.
    pub api_addr: String,
    /// The secret every member presents on the peer port; `None` admits any caller
    /// that knows the cluster id (loopback-only setups).
    pub secret: Option<String>,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_every_entries: u64,
    pub log_entries_kept_after_snapshot: u64,
    pub max_commands_per_entry: usize,
    /// How long a request waits for a leader (and for a forwarded call) before it fails.
    pub leader_wait_ms: u64,
    /// TLS between members (mutual), when configured.
    pub tls: Option<crate::network::PeerTls>,
    /// The local address connections to peers leave from (`cluster.source_addr`).
    pub source_addr: Option<std::net::IpAddr>,
}

/// What a node knows about the cluster right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub cluster_id: Option<String>,
    pub node_id: NodeId,
    pub addr: String,
    pub initialized: bool,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// The digest of this node's replicated state (32 hex digits) at `digest_index`:
    /// replicas at the same index agree on it.
    pub state_digest: String,
    pub digest_index: Option<u64>,
    pub members: Vec<ClusterMemberStatus>,
    /// Set when this node's Raft core stopped without being asked to.
    pub core_stop: Option<CoreStop>,
    /// On the leader: how long ago a majority last acknowledged it. A leader cut off from
    /// the others goes on believing it leads; this age grows.
    pub quorum_ack_age_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMemberStatus {
    pub node_id: NodeId,
    /// The member's peer address.
    pub addr: String,
    /// The member's public gRPC address, once this node has learnt it.
    pub api_addr: Option<String>,
    pub voter: bool,
    /// Leader's view: the last index known replicated to this member.
    pub matched_index: Option<u64>,
    /// Leader's view: how many entries this member is behind.
    pub lag: Option<u64>,
}

#[derive(Clone)]
pub struct RaftNode {
    raft: Raft,
    settings: ClusterSettings,
    proposer: Proposer,
    identity: Arc<ClusterIdentity>,
    peers: PeerClients,
    apply_stats: Arc<ApplyStats>,
    /// Members' public gRPC addresses (membership holds their peer addresses), learnt by
    /// asking each; clients and workers are sent to these.
    api_addrs: Arc<std::sync::Mutex<BTreeMap<NodeId, String>>>,
    /// Set once this node saw itself removed from the membership and stopped its core.
    removed: Arc<std::sync::atomic::AtomicBool>,
    /// Set when this node was asked to shut down (a stopped core is then no failure).
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Why a node's Raft core no longer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreStop {
    /// Removed from the cluster: it stopped on purpose.
    Removed,
    /// Storage or Raft failed: the node must not serve and should be restarted.
    Failed(String),
}

fn storage_error(error: StorageError) -> ClusterError {
    ClusterError::Storage(error.to_string())
}

fn write_error(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ClusterError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ClusterError::NotLeader {
                leader_id: forward.leader_id,
                leader_addr: forward.leader_node.map(|node| node.addr),
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            ClusterError::Refused(error.to_string())
        }
        RaftError::Fatal(fatal) => ClusterError::Fatal(fatal.to_string()),
    }
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
        let identity = Arc::new(ClusterIdentity::load(meta.clone())?);
        let log_store = LogStore::new(storage.keyspace(LOG_KEYSPACE).map_err(storage_error)?, meta);
        let state_machine = StateMachineStore::open(
            state.clone(),
            state_keyspace,
            storage.keyspace(SNAPSHOT_KEYSPACE).map_err(storage_error)?,
            storage.snapshot_dir(),
            DedupLimits::default(),
        )
        .map_err(|error| ClusterError::Storage(error.to_string()))?;
        let apply_stats = state_machine.stats();
        let config = openraft::Config {
            cluster_name: "hodei".to_string(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
            max_in_snapshot_log_to_keep: settings.log_entries_kept_after_snapshot,
            // Snapshots travel in chunks this size (binary), far below the message limit.
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            // A chunk's deadline; the last one also covers installing the whole state
            // (openraft's 200 ms would time every install of a sizeable state out, and
            // the follower would be sent the snapshot again and again).
            install_snapshot_timeout: (settings.election_timeout_max_ms * 20).max(10_000),
            ..Default::default()
        }
        .validate()
        .map_err(|error| ClusterError::Invalid(error.to_string()))?;
        let peers = PeerClients::new(
            identity.clone(),
            PeerCredentials {
                node_id: settings.node_id,
                secret: settings.secret.clone(),
                tls: settings.tls.clone(),
                source_addr: settings.source_addr,
            },
            Duration::from_millis(settings.election_timeout_min_ms),
        );
        let network = GrpcNetworkFactory::new(peers.clone());
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| ClusterError::Fatal(error.to_string()))?;
        let proposer = Proposer::start(
            raft.clone(),
            settings.max_commands_per_entry,
            apply_stats.clone(),
        );
        let api_addrs = Arc::new(std::sync::Mutex::new(BTreeMap::from([(
            settings.node_id,
            settings.api_addr.clone(),
        )])));
        let node = Self {
            raft,
            settings,
            proposer,
            identity,
            peers,
            apply_stats,
            api_addrs,
            removed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            stopping: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        tokio::spawn(node.clone().watch_membership());
        Ok((node, state))
    }

    /// Follows the membership: learns each member's public address, and stops this
    /// node's Raft core once it sees itself removed, so that it neither campaigns nor
    /// answers as a member.
    async fn watch_membership(self) {
        let mut metrics = self.raft.metrics();
        let mut was_member = false;
        // When this node, leading, first saw a membership without itself.
        let mut dropped_at: Option<Instant> = None;
        loop {
            let (members, state, committed) = {
                let current = metrics.borrow_and_update();
                let members: BTreeMap<NodeId, String> = current
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, node)| (*id, node.addr.clone()))
                    .collect();
                // The membership in effect is the last one appended; it binds once
                // applied (committed) here.
                let committed = match (current.membership_config.log_id(), current.last_applied) {
                    (Some(config), Some(applied)) => config.index <= applied.index,
                    (None, _) => true,
                    (Some(_), None) => false,
                };
                (members, current.state, committed)
            };
            if state == ServerState::Shutdown {
                return;
            }
            let is_member = members.contains_key(&self.settings.node_id);
            let removed = was_member && !is_member && !members.is_empty();
            if is_member {
                was_member = true;
                dropped_at = None;
            }
            if removed && state == ServerState::Leader {
                dropped_at.get_or_insert_with(Instant::now);
            }
            // A leader removing itself goes on until the change has committed (stopped
            // when it appended it, it could leave the others without it, in the joint
            // membership that still names this node). The others may refuse it as soon as
            // they hold the change, so it may never hear of that commit: it stops at the
            // latest a leader-wait after it appended the change. A follower stops on
            // receiving it.
            let leader_done =
                committed || dropped_at.is_some_and(|since| since.elapsed() >= self.leader_wait());
            if removed && (state != ServerState::Leader || leader_done) {
                tracing::warn!(
                    node_id = self.settings.node_id,
                    "this node was removed from the cluster: stopping its raft core"
                );
                self.removed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                if let Err(error) = self.raft.shutdown().await {
                    tracing::warn!(%error, "raft did not shut down cleanly");
                }
                return;
            }
            let unknown: Vec<(NodeId, String)> = {
                let known = self
                    .api_addrs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                members
                    .into_iter()
                    .filter(|(id, _)| !known.contains_key(id))
                    .collect()
            };
            for (node_id, addr) in unknown {
                if let Ok(info) = self.peers.hello(&addr, self.leader_wait()).await
                    && info.node_id == node_id
                    && !info.api_addr.is_empty()
                {
                    self.api_addrs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(node_id, info.api_addr);
                }
            }
            let still_unknown = {
                let known = self
                    .api_addrs
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                metrics
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .any(|(id, _)| !known.contains_key(id))
            };
            let changed = if still_unknown || dropped_at.is_some() {
                // Ask again in a while: the member may not be up yet, or this removed
                // leader's time may run out without any change.
                let wait = match dropped_at {
                    Some(_) => Duration::from_millis(200),
                    None => Duration::from_secs(1),
                };
                tokio::time::timeout(wait, metrics.changed())
                    .await
                    .unwrap_or(Ok(()))
            } else {
                metrics.changed().await
            };
            if changed.is_err() {
                return;
            }
        }
    }

    /// Why this node's Raft core stopped, if it did (and was not asked to).
    pub fn core_stop(&self) -> Option<CoreStop> {
        use std::sync::atomic::Ordering;
        if self.removed.load(Ordering::SeqCst) {
            return Some(CoreStop::Removed);
        }
        if self.apply_stats.write_failed() {
            return Some(CoreStop::Failed(
                "applied state could not be stored".to_string(),
            ));
        }
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        if let Err(fatal) = &metrics.running_state {
            return Some(CoreStop::Failed(fatal.to_string()));
        }
        if metrics.state == ServerState::Shutdown && !self.stopping.load(Ordering::SeqCst) {
            return Some(CoreStop::Failed("the raft core stopped".to_string()));
        }
        None
    }

    /// Returns once this node's Raft core has stopped without being asked to (storage
    /// failed, a task of the core died, or the node was removed).
    pub async fn stopped(&self) -> CoreStop {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(stop) = self.core_stop() {
                return stop;
            }
            // The metrics change when the core fails or stops; the write flag is polled.
            let _ = tokio::time::timeout(Duration::from_millis(500), metrics.changed()).await;
        }
    }

    /// The public gRPC address of a member, if known.
    pub fn api_addr_of(&self, node_id: NodeId) -> Option<String> {
        self.api_addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&node_id)
            .cloned()
    }

    /// The leader's public gRPC address, if a leader and its address are known.
    pub fn leader_api_addr(&self) -> Option<String> {
        let leader = self.raft.metrics().borrow().current_leader?;
        self.api_addr_of(leader)
    }

    pub(crate) fn secret(&self) -> Option<&str> {
        self.settings.secret.as_deref()
    }

    /// Whether a peer call from `node_id` is admitted: it is a member (voter or
    /// learner) of this node's membership, or this node knows no membership yet (it is
    /// being added, and hears from the leader first).
    pub(crate) fn admits_member(&self, node_id: NodeId) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let mut nodes = membership.nodes().peekable();
        nodes.peek().is_none() || membership.get_node(&node_id).is_some()
    }

    pub fn node_id(&self) -> NodeId {
        self.settings.node_id
    }

    pub fn addr(&self) -> &str {
        &self.settings.advertise_addr
    }

    pub(crate) fn identity(&self) -> &ClusterIdentity {
        &self.identity
    }

    fn leader_wait(&self) -> Duration {
        Duration::from_millis(self.settings.leader_wait_ms)
    }

    /// The id chosen when the cluster was initialised; `None` before this node knew one.
    pub fn cluster_id(&self) -> Option<String> {
        self.identity.get()
    }

    /// Whether this node knows a membership, i.e. belongs to a cluster.
    fn has_membership(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    }

    pub async fn is_initialized(&self) -> Result<bool, ClusterError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|error| ClusterError::Fatal(error.to_string()))
    }

    /// Makes this node the first member of a new cluster with id `cluster_id`.
    pub async fn initialize_single(&self, cluster_id: &str) -> Result<(), ClusterError> {
        let members =
            BTreeMap::from([(self.settings.node_id, self.settings.advertise_addr.clone())]);
        self.initialize(cluster_id, members).await
    }

    /// Forms a new cluster of `members` (id to gRPC address), this node among them. The
    /// others need not run yet; they join as they come up.
    pub async fn initialize(
        &self,
        cluster_id: &str,
        members: BTreeMap<NodeId, String>,
    ) -> Result<(), ClusterError> {
        if !members.contains_key(&self.settings.node_id) {
            return Err(ClusterError::Invalid(format!(
                "the members must include this node ({})",
                self.settings.node_id
            )));
        }
        if self.is_initialized().await? {
            return Err(ClusterError::Refused(format!(
                "node {} already belongs to cluster {}",
                self.settings.node_id,
                self.cluster_id()
                    .unwrap_or_else(|| "(unknown id)".to_string())
            )));
        }
        self.identity.adopt(cluster_id)?;
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(node_id, addr)| (node_id, BasicNode { addr }))
            .collect();
        self.raft
            .initialize(nodes)
            .await
            .map_err(|error| ClusterError::Refused(error.to_string()))
    }

    /// The leader this node knows of, with its address.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader_id = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader_id)
            .map(|node| node.addr.clone())?;
        Some((leader_id, addr))
    }

    /// Waits (up to `timeout`) until a leader is known that this node can reach: one in
    /// its membership. A leader just removed from the cluster stays `current_leader` in
    /// the followers' metrics until they elect another; it has no address here.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, ClusterError> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |metrics| {
                    metrics.current_leader.is_some_and(|leader| {
                        metrics
                            .membership_config
                            .membership()
                            .get_node(&leader)
                            .is_some()
                    })
                },
                "a leader in the membership is known",
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

    /// Runs `attempt` against the current leader until it succeeds, fails for good, or
    /// the leader wait runs out. `attempt` gets `None` when this node leads.
    async fn with_leader<T, F, Fut>(&self, mut attempt: F) -> Result<T, ClusterError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<T, ClusterError>>,
    {
        // Every request passes here: read the membership from the metrics rather than
        // asking the Raft core (a round trip through its mailbox).
        if !self.has_membership() {
            return Err(ClusterError::NotInitialized);
        }
        let deadline = Instant::now() + self.leader_wait();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = match self.leader() {
                Some((leader_id, _)) if leader_id == self.settings.node_id => attempt(None).await,
                Some((_, addr)) => attempt(Some(addr)).await,
                None => {
                    // No leader known (or the known one left the membership): wait for
                    // one, then try again; never past the deadline.
                    if remaining.is_zero() {
                        return Err(ClusterError::Unavailable(format!(
                            "no leader elected within {} ms",
                            self.leader_wait().as_millis()
                        )));
                    }
                    self.wait_for_leader(remaining).await?;
                    continue;
                }
            };
            match outcome {
                Err(error) if error.certainly_not_applied() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20).min(remaining)).await;
                }
                other => return other,
            }
        }
    }

    /// Replicates one command (forwarded to the leader when this node is not it) and
    /// returns the state machine's response once it is applied. An attempt is tried again
    /// only when it certainly reached no log (no leader, not the leader, connection
    /// refused); when its outcome cannot be known the caller gets
    /// [`ClusterError::OutcomeUnknown`]. A command with a `request_id` applies at most
    /// once: a repeat of the id is answered with the first response.
    pub async fn propose(
        &self,
        command: Vec<u8>,
        request_id: Option<String>,
    ) -> Result<CommandResponse, ClusterError> {
        let wait = self.leader_wait();
        let proposed = ProposedCommand {
            request_id,
            command,
        };
        self.with_leader(|leader_addr| {
            let proposed = proposed.clone();
            async move {
                match leader_addr {
                    None => self.proposer.propose(proposed).await,
                    Some(addr) => self.peers.forward(&addr, proposed, wait).await,
                }
            }
        })
        .await
    }

    /// Proposes on this node, which must lead (the receiving end of a forward).
    pub(crate) async fn propose_here(
        &self,
        command: ProposedCommand,
    ) -> Result<CommandResponse, ClusterError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.proposer.propose(command).await
    }

    fn not_leader(&self) -> ClusterError {
        let leader = self.leader();
        ClusterError::NotLeader {
            leader_id: leader.as_ref().map(|(id, _)| *id),
            leader_addr: leader.map(|(_, addr)| addr),
        }
    }

    /// Returns once this node's state machine reflects every write committed before the
    /// call (Raft read-index, asked of the leader): reads after it are linearizable.
    pub async fn ensure_linearizable(&self) -> Result<(), ClusterError> {
        let wait = self.leader_wait();
        let read_index = self
            .with_leader(|leader_addr| async move {
                match leader_addr {
                    None => self.read_index_here().await,
                    Some(addr) => self.peers.read_index(&addr, wait).await,
                }
            })
            .await?;
        let Some(read_index) = read_index else {
            return Ok(());
        };
        self.raft
            .wait(Some(wait))
            .applied_index_at_least(Some(read_index), "applied up to the read index")
            .await
            .map(|_| ())
            .map_err(|_| {
                ClusterError::Unavailable(format!(
                    "this node did not apply up to index {read_index} in time"
                ))
            })
    }

    /// Whether a quorum confirms, now, that this node leads (a read-index round).
    pub async fn confirm_leadership(&self) -> bool {
        self.read_index_here().await.is_ok()
    }

    /// The read index of this node, which must lead.
    pub(crate) async fn read_index_here(&self) -> Result<Option<u64>, ClusterError> {
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map(|log_id| log_id.index)),
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

    /// Adds a node: it joins as a learner, catches up (by snapshot if the log was
    /// compacted), then is promoted to voter. Carried out by the leader.
    pub async fn add_member(&self, node_id: NodeId, addr: String) -> Result<(), ClusterError> {
        self.admin(AdminRequest::AddMember { node_id, addr }).await
    }

    /// Removes a node from the cluster (refused for the last voter).
    pub async fn remove_member(&self, node_id: NodeId) -> Result<(), ClusterError> {
        self.admin(AdminRequest::RemoveMember { node_id }).await
    }

    /// Hands leadership to another voter.
    pub async fn transfer_leader(&self, node_id: NodeId) -> Result<(), ClusterError> {
        self.admin(AdminRequest::TransferLeader { node_id }).await
    }

    async fn admin(&self, admin: AdminRequest) -> Result<(), ClusterError> {
        // Membership changes wait for a learner to catch up, which may take a while.
        let timeout = self.leader_wait() * 12;
        self.with_leader(|leader_addr| {
            let admin = admin.clone();
            async move {
                match leader_addr {
                    None => self.admin_here(admin).await,
                    Some(addr) => self.peers.admin(&addr, &admin, timeout).await,
                }
            }
        })
        .await
    }

    /// Carries out an admin request on this node (the leader, except for `Elect`).
    pub(crate) async fn admin_here(&self, admin: AdminRequest) -> Result<(), ClusterError> {
        if admin == AdminRequest::Elect {
            return self
                .raft
                .trigger()
                .elect()
                .await
                .map_err(|error| ClusterError::Fatal(error.to_string()));
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        match admin {
            AdminRequest::AddMember { node_id, addr } => self.add_member_here(node_id, addr).await,
            AdminRequest::RemoveMember { node_id } => self.remove_member_here(node_id).await,
            AdminRequest::TransferLeader { node_id } => self.transfer_leader_here(node_id).await,
            AdminRequest::Elect => Ok(()),
        }
    }

    fn membership(&self) -> (BTreeSet<NodeId>, BTreeMap<NodeId, String>) {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().collect();
        let nodes = membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect();
        (voters, nodes)
    }

    async fn add_member_here(&self, node_id: NodeId, addr: String) -> Result<(), ClusterError> {
        let (voters, nodes) = self.membership();
        if voters.contains(&node_id) {
            return Err(ClusterError::AlreadyMember(node_id));
        }
        if let Some((other, _)) = nodes
            .iter()
            .find(|(id, node_addr)| **node_addr == addr && **id != node_id)
        {
            return Err(ClusterError::Refused(format!(
                "address {addr} is already used by node {other}"
            )));
        }
        let info =
            self.peers
                .hello(&addr, self.leader_wait())
                .await
                .map_err(|error| match error {
                    ClusterError::Unavailable(message) => {
                        ClusterError::Unavailable(format!("cannot reach the new node: {message}"))
                    }
                    other => other,
                })?;
        if info.node_id != node_id {
            return Err(ClusterError::Invalid(format!(
                "the node at {addr} is node {}, not node {node_id}",
                info.node_id
            )));
        }
        let own_cluster = self.cluster_id();
        if let (Some(theirs), Some(ours)) = (&info.cluster_id, &own_cluster)
            && theirs != ours
        {
            return Err(ClusterError::Refused(format!(
                "node {node_id} at {addr} belongs to cluster {theirs}; this is cluster {ours}"
            )));
        }
        self.raft
            .add_learner(node_id, BasicNode { addr }, true)
            .await
            .map_err(write_error)?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
            .await
            .map_err(write_error)?;
        tracing::info!(node_id, "node joined the cluster as a voter");
        Ok(())
    }

    async fn remove_member_here(&self, node_id: NodeId) -> Result<(), ClusterError> {
        let (voters, nodes) = self.membership();
        if !nodes.contains_key(&node_id) {
            return Err(ClusterError::NotMember(node_id));
        }
        let change = if voters.contains(&node_id) {
            if voters.len() == 1 {
                return Err(ClusterError::Refused(format!(
                    "node {node_id} is the last voter: removing it would leave no cluster"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
        };
        let changed = self.raft.change_membership(change, false).await;
        match changed {
            Ok(_) => {}
            // This leader removed itself: its core stopped once the change committed.
            Err(_)
                if node_id == self.settings.node_id
                    && self.removed.load(std::sync::atomic::Ordering::SeqCst) => {}
            Err(error) => return Err(write_error(error)),
        }
        tracing::info!(node_id, "node left the cluster");
        Ok(())
    }

    async fn transfer_leader_here(&self, target: NodeId) -> Result<(), ClusterError> {
        if target == self.settings.node_id {
            return Ok(());
        }
        let (voters, nodes) = self.membership();
        if !voters.contains(&target) {
            return Err(match nodes.contains_key(&target) {
                true => ClusterError::Refused(format!(
                    "node {target} is a learner; only a voter can lead"
                )),
                false => ClusterError::NotMember(target),
            });
        }
        let wait = self.leader_wait();
        // The target must hold every entry, or it cannot win the election.
        let last_log_index = self.raft.metrics().borrow().last_log_index;
        self.raft
            .wait(Some(wait))
            .metrics(
                |metrics| {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|replication| replication.get(&target).cloned().flatten())
                        .map(|log_id| log_id.index)
                        >= last_log_index
                },
                "the target caught up",
            )
            .await
            .map_err(|_| {
                ClusterError::Unavailable(format!("node {target} did not catch up in time"))
            })?;
        let addr = nodes.get(&target).cloned().unwrap_or_default();
        // openraft 0.9 has no leadership transfer, and voters refuse to vote while the
        // leader's lease (election_timeout_max since its last heartbeat) holds. So the
        // leader falls silent for one lease, then has the target call an election, which
        // its complete log lets it win.
        self.raft.runtime_config().heartbeat(false);
        let handover = async {
            let lease = Duration::from_millis(
                self.settings.election_timeout_max_ms + self.settings.heartbeat_ms,
            );
            tokio::time::sleep(lease).await;
            self.peers.admin(&addr, &AdminRequest::Elect, wait).await?;
            let metrics = self
                .raft
                .wait(Some(wait))
                .metrics(
                    |metrics| {
                        metrics
                            .current_leader
                            .is_some_and(|leader| leader != self.settings.node_id)
                    },
                    "leadership moved",
                )
                .await
                .map_err(|_| {
                    ClusterError::Unavailable(format!(
                        "node {target} did not take leadership in time"
                    ))
                })?;
            match metrics.current_leader {
                Some(leader) if leader == target => Ok(()),
                other => Err(ClusterError::Unavailable(format!(
                    "leadership moved to node {} instead of node {target}; try again",
                    other.map_or_else(|| "?".to_string(), |id| id.to_string())
                ))),
            }
        };
        let outcome = handover.await;
        self.raft.runtime_config().heartbeat(true);
        outcome
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics.current_leader == Some(self.settings.node_id)
            && metrics.state == ServerState::Leader
    }

    /// Who this node is, as it tells a leader vetting it before a join.
    pub async fn info(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.settings.node_id,
            addr: self.settings.advertise_addr.clone(),
            api_addr: self.settings.api_addr.clone(),
            cluster_id: self.cluster_id(),
            initialized: self.is_initialized().await.unwrap_or(false),
        }
    }

    pub fn status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let digest = self.apply_stats.digest();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let replication = metrics.replication.clone().unwrap_or_default();
        let members: Vec<ClusterMemberStatus> = membership
            .nodes()
            .map(|(node_id, node)| {
                let matched_index = replication
                    .get(node_id)
                    .and_then(|matched| matched.as_ref().map(|log_id| log_id.index));
                let lag = match (metrics.state, matched_index) {
                    (ServerState::Leader, Some(matched)) => metrics
                        .last_log_index
                        .map(|last| last.saturating_sub(matched)),
                    (ServerState::Leader, None) => metrics.last_log_index,
                    _ => None,
                };
                ClusterMemberStatus {
                    node_id: *node_id,
                    addr: node.addr.clone(),
                    api_addr: self.api_addr_of(*node_id),
                    voter: voters.contains(node_id),
                    matched_index,
                    lag,
                }
            })
            .collect();
        ClusterStatus {
            cluster_id: self.cluster_id(),
            node_id: self.settings.node_id,
            addr: self.settings.advertise_addr.clone(),
            initialized: !members.is_empty(),
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
            state_digest: digest.digest.to_hex(),
            digest_index: digest.index,
            members,
            core_stop: self.core_stop(),
            quorum_ack_age_ms: match metrics.state {
                ServerState::Leader => metrics.millis_since_quorum_ack,
                _ => None,
            },
        }
    }

    /// The gRPC service other nodes call to replicate to and forward through this one.
    pub fn grpc_service(&self) -> RaftServiceServer<RaftGrpcService> {
        RaftServiceServer::new(RaftGrpcService::new(self.clone()))
            .max_decoding_message_size(crate::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::network::MAX_MESSAGE_BYTES)
    }

    /// This node's state digests at its last applied indexes, oldest first.
    pub fn recent_digests(&self) -> Vec<crate::DigestReading> {
        self.apply_stats.recent_digests()
    }

    /// Entries and commands applied, time spent applying, snapshots built and installed.
    pub fn apply_stats(&self) -> ApplyStatsReading {
        self.apply_stats.read()
    }

    /// Sends apply, commit and snapshot timings to `timings` from now on.
    pub fn report_timings_to(&self, timings: Arc<dyn RaftTimings>) {
        self.apply_stats.report_timings_to(timings);
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft did not shut down cleanly");
        }
    }
}
