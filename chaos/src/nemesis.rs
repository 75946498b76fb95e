//! `hodei-chaos nemesis`: a seeded random schedule of faults against a cluster of real
//! `hodei` nodes and real `hodei worker` agents running real jobs, while clients submit,
//! read and cancel jobs and create tenants; then the faults stop, the cluster must
//! recover within a bound, and the checker (`checker`) holds the clients' timed history,
//! the jobs' journal and the final state against the rules.
//!
//! The seed fixes the schedule's choices (which fault, on whom, for how long); the
//! interleaving with the clients and the cluster's own timing are not reproducible.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::checker::{self, FinalJob, Op, Told, Violation};
use crate::firewall::{Endpoint, Firewall};
use crate::latency::LatencyProxy;
use crate::limits::{self, BurstRead, BurstRequest, SessionSeen};
use crate::linearizable::{self, Action, KeyOp, Outcome};
use hodei_proto::v1 as pb;
use hodei_proto::v1::cluster_service_client::ClusterServiceClient;
use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, WorkerProcess};

/// The voters a node names in its status (`None` if it does not answer).
async fn voters_named_by(node: &NodeProcess) -> Option<BTreeSet<u64>> {
    let status = node.status().await?;
    Some(
        status["members"]
            .as_array()?
            .iter()
            .filter(|member| member["role"].as_str() == Some("voter"))
            .filter_map(|member| member["node_id"].as_u64())
            .collect(),
    )
}

/// The address members reach a node's peer port at.
fn member_peer_addr(node: &NodeProcess) -> String {
    format!("127.0.0.1:{}", node.peer_port)
}

/// The kinds of fault the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 a node (the leader half the time; up to a minority), restarted at the end.
    Kill,
    /// SIGSTOP a node (the leader half the time; up to a minority), SIGCONT at the end.
    Pause,
    /// Cut links: the leader isolated, a random minority split off, the leader unable
    /// to send (one way), or one node's links flapping.
    Partition,
    /// Drop 20-40% of one node's packets.
    Loss,
    /// kill -9 a worker agent, started again at the end.
    WorkerKill,
    /// SIGSTOP a worker agent (not its jobs), SIGCONT at the end.
    WorkerPause,
    /// Cut a worker off from every node.
    WorkerPartition,
    /// Move the leadership to another node.
    LeaderTransfer,
    /// Move one node's wall clock (the leader half the time): skewed up to a minute
    /// either way, or jumped ten minutes; its monotonic clock runs on (libfaketime).
    Clock,
    /// Fill one node's disk (its data dir is a small tmpfs) until the fault ends; a node
    /// that stopped on it is started again then.
    DiskFull,
    /// Make one node's fsyncs take 50-500 ms.
    SlowDisk,
    /// Delay what one node sends and what is sent to it by 50-400 ms.
    Latency,
    /// Remove a node from the cluster while another node loses 5-20% of its packets,
    /// then wipe it and add it back (it catches up by snapshot).
    Membership,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Loss,
        FaultKind::WorkerKill,
        FaultKind::WorkerPause,
        FaultKind::WorkerPartition,
        FaultKind::LeaderTransfer,
        FaultKind::Clock,
        FaultKind::DiskFull,
        FaultKind::SlowDisk,
        FaultKind::Latency,
        FaultKind::Membership,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::WorkerKill => "worker-kill",
            FaultKind::WorkerPause => "worker-pause",
            FaultKind::WorkerPartition => "worker-partition",
            FaultKind::LeaderTransfer => "leader-transfer",
            FaultKind::Clock => "clock",
            FaultKind::DiskFull => "disk-full",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::Latency => "latency",
            FaultKind::Membership => "membership",
        }
    }

    /// `all`, or a comma-separated list of names.
    pub fn parse_list(raw: &str) -> Result<FaultList, String> {
        let mut kinds = BTreeSet::new();
        for name in raw
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if name == "all" {
                kinds.extend(FaultKind::ALL);
                continue;
            }
            let kind = FaultKind::ALL
                .into_iter()
                .find(|kind| kind.name() == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
                    format!("unknown fault `{name}`: one of all, {}", names.join(", "))
                })?;
            kinds.insert(kind);
        }
        if kinds.is_empty() {
            return Err("name at least one fault".to_string());
        }
        Ok(FaultList(kinds.into_iter().collect()))
    }
}

/// The faults a run draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultList(pub Vec<FaultKind>);

#[derive(Debug, Clone, clap::Args)]
pub struct NemesisSettings {
    /// Seeds the schedule: which fault, on whom, for how long.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds of faults and client operations (then the faults stop and the checks run).
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub duration: u64,
    /// The faults to draw from: `all` or a list (kill, pause, partition, loss,
    /// worker-kill, worker-pause, worker-partition, leader-transfer, clock, disk-full,
    /// slow-disk, latency, membership).
    #[arg(long, default_value = "all", value_parser = FaultKind::parse_list)]
    pub faults: FaultList,
    /// Nodes in the cluster: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    pub nodes: u64,
    /// Worker agents (each runs up to 4 jobs at once).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub workers: u32,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub clients: u32,
    /// Percent of the jobs that run 3-6 s (the others 0.2-1.5 s): long enough to be
    /// running through a worker's loss.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub long_jobs: u8,
    /// Seconds the cluster has, once the faults stop, to take a write with every node
    /// caught up.
    #[arg(long, default_value_t = 60)]
    pub recovery_bound_s: u64,
    /// Keep the nodes' data, the logs, the history and the journal here (default: a
    /// temporary folder, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultEvent {
    pub kind: FaultKind,
    pub detail: String,
    pub at_ms: u64,
    pub healed_ms: Option<u64>,
}

/// What the nemesis holds between a fault and its healing.
#[derive(Default)]
struct Damage {
    killed: Vec<u64>,
    paused: Vec<u64>,
    workers_killed: Vec<usize>,
    workers_paused: Vec<usize>,
    links_cut: bool,
    clocks_moved: Vec<u64>,
    disks_filled: Vec<u64>,
    disks_slowed: Vec<u64>,
    slowed: bool,
    /// A node removed from the cluster, to add back.
    removed: Option<u64>,
    /// The node a membership fault tried to remove (the removal may commit late).
    membership_target: Option<u64>,
}

/// The cluster the nemesis works on.
struct Stage {
    cluster: ProcessCluster,
    workers: Vec<WorkerProcess>,
    firewall: Firewall,
    /// Peer endpoints by node, and gRPC endpoints by node as workers reach them.
    peers: BTreeMap<u64, Endpoint>,
    grpc: BTreeMap<u64, Endpoint>,
    worker_endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    /// Every cluster connection passes through it when latency is a fault.
    latency: Option<LatencyProxy>,
    /// Per node: the file libfaketime reads its clock offset from, the file the slow-disk
    /// library reads its delay from, and its data dir (a tmpfs when disks fill).
    clock_files: BTreeMap<u64, PathBuf>,
    slow_disk_files: BTreeMap<u64, PathBuf>,
    data_dirs: BTreeMap<u64, PathBuf>,
    /// Membership changes that did not complete (the node could not be added back).
    membership_failures: Vec<String>,
}

/// Where Debian's `faketime` puts libfaketime.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The size of each node's data dir when disks fill (a 3-minute run stores about 5 MB).
const DATA_DIR_SIZE: &str = "size=64m";

/// The slow-disk library (`chaos/slowdisk`) beside the `hodei` binary, built if missing.
fn slow_disk_library() -> anyhow::Result<PathBuf> {
    let hodei = hodei_tests::hodei_binary()?;
    let library = hodei
        .parent()
        .context("the hodei binary's folder")?
        .join("libhodei_slowdisk.so");
    if !library.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "hodei-slowdisk"])
            .status()
            .context("cannot run cargo build for the slow-disk library")?;
        if !status.success() || !library.exists() {
            bail!("no slow-disk library at {}", library.display());
        }
    }
    Ok(library)
}

const YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 1000000\n    memory_mb: 1000000\n    max_concurrent_jobs: 10000\n    max_pending_jobs: 100000\nworkers:\n  heartbeat_interval_ms: 500\n  missed_heartbeats: 3\nburst_capacity:\n  max_overage_percentage: 200\n  cooldown_minutes: 0\n  max_sessions_per_day: 100000\n  global_pool_percentage: 100\n  auto_approve_up_to_percentage: 200\n";

fn node_source(node: u64) -> String {
    format!("127.0.0.{}", 10 + node)
}

fn worker_source(index: usize) -> String {
    format!("127.0.0.{}", 50 + index)
}

impl Stage {
    async fn start(root: &Path, settings: &NemesisSettings) -> anyhow::Result<Self> {
        let firewall = Firewall::install()?;
        let faults = &settings.faults.0;
        let mut preload: Vec<String> = Vec::new();
        if faults.contains(&FaultKind::Clock) {
            if !Path::new(LIBFAKETIME).exists() {
                bail!("the clock fault needs libfaketime at {LIBFAKETIME} (Debian's `faketime`)");
            }
            preload.push(LIBFAKETIME.to_string());
        }
        if faults.contains(&FaultKind::SlowDisk) {
            preload.push(slow_disk_library()?.display().to_string());
        }
        let mut clock_files = BTreeMap::new();
        let mut slow_disk_files = BTreeMap::new();
        let mut data_dirs = BTreeMap::new();
        let mut specs: Vec<NodeSpec> = Vec::new();
        for mut spec in NodeSpec::cluster(settings.nodes) {
            spec.cluster_extra.extend([
                format!("source_addr: \"{}\"", node_source(spec.node_id)),
                // Snapshots and log compaction all the time, faults or not.
                "snapshot_every_entries: 200".to_string(),
                "log_entries_kept_after_snapshot: 50".to_string(),
            ]);
            spec.extra_yaml = YAML.to_string();
            let dir = root.join(format!("node{}", spec.node_id));
            let data = dir.join("data");
            std::fs::create_dir_all(&data)?;
            if faults.contains(&FaultKind::DiskFull) {
                nix::mount::mount(
                    Some("tmpfs"),
                    &data,
                    Some("tmpfs"),
                    nix::mount::MsFlags::empty(),
                    Some(DATA_DIR_SIZE),
                )
                .with_context(|| format!("cannot mount a tmpfs at {}", data.display()))?;
            }
            data_dirs.insert(spec.node_id, data);
            if !preload.is_empty() {
                spec.env.push(("LD_PRELOAD".to_string(), preload.join(":")));
            }
            if faults.contains(&FaultKind::Clock) {
                let file = dir.join("clock-offset");
                std::fs::write(&file, "+0s\n")?;
                spec.env.extend([
                    (
                        "FAKETIME_TIMESTAMP_FILE".to_string(),
                        file.display().to_string(),
                    ),
                    // Only the wall clock moves: leases and timers use the monotonic one.
                    ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
                    ("FAKETIME_CACHE_DURATION".to_string(), "1".to_string()),
                ]);
                clock_files.insert(spec.node_id, file);
            }
            if faults.contains(&FaultKind::SlowDisk) {
                let file = dir.join("fsync-delay-ms");
                std::fs::write(&file, "0\n")?;
                spec.env.push((
                    "HODEI_SLOW_DISK_FILE".to_string(),
                    file.display().to_string(),
                ));
                slow_disk_files.insert(spec.node_id, file);
            }
            specs.push(spec);
        }
        let latency = match faults.contains(&FaultKind::Latency) {
            true => {
                let sources: Vec<String> = specs
                    .iter()
                    .map(|spec| node_source(spec.node_id))
                    .chain((0..settings.workers as usize).map(worker_source))
                    .collect();
                Some(LatencyProxy::install(&sources).await?)
            }
            false => None,
        };
        let peers = specs
            .iter()
            .map(|spec| {
                (
                    spec.node_id,
                    Endpoint {
                        source: node_source(spec.node_id),
                        port: Some(spec.peer_port),
                    },
                )
            })
            .collect();
        let grpc = specs
            .iter()
            .map(|spec| {
                (
                    spec.node_id,
                    Endpoint {
                        source: node_source(spec.node_id),
                        port: Some(spec.grpc_port),
                    },
                )
            })
            .collect();
        let mut cluster = ProcessCluster::start_specs(root, specs).await?;
        cluster.wait_bootstrapped(Duration::from_secs(60)).await?;
        let servers: Vec<String> = cluster
            .nodes
            .values()
            .map(|node| node.grpc_addr())
            .collect();
        let mut workers = Vec::new();
        let mut worker_endpoints = Vec::new();
        for index in 0..settings.workers as usize {
            let source = worker_source(index);
            workers.push(WorkerProcess::start_with(
                &root.join(format!("w{index}")),
                &format!("w{index}"),
                "pool-default",
                &servers,
                4000,
                8192,
                &["--source-addr", &source],
            )?);
            worker_endpoints.push(Endpoint { source, port: None });
        }
        Ok(Self {
            cluster,
            workers,
            firewall,
            peers,
            grpc,
            worker_endpoints,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            latency,
            clock_files,
            slow_disk_files,
            data_dirs,
            membership_failures: Vec::new(),
        })
    }

    /// Starts again every node that stopped by itself (a fail-stop on a full disk can
    /// come seconds after the fault): the nemesis is the nodes' supervisor.
    /// A node that stopped because the cluster removed it (a change that committed after
    /// the nemesis gave up on it) is wiped and added back instead: started on its data it
    /// would be a member of nothing.
    async fn restart_stopped(&mut self) -> anyhow::Result<()> {
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        for id in ids {
            if self.cluster.node(id).exit_status().is_none() {
                continue;
            }
            if self.removed_by_others(id).await {
                self.rejoin(id).await?;
            } else {
                self.cluster.node(id).restart()?;
            }
        }
        Ok(())
    }

    /// Whether every other node that answers leaves `node` out of its voters.
    async fn removed_by_others(&self, node: u64) -> bool {
        let mut answered = 0;
        for (id, other) in &self.cluster.nodes {
            if *id == node {
                continue;
            }
            let Some(voters) = voters_named_by(other).await else {
                continue;
            };
            answered += 1;
            if voters.contains(&node) {
                return false;
            }
        }
        answered > 0
    }

    /// Wipes a removed node and adds it back.
    async fn rejoin(&mut self, id: u64) -> anyhow::Result<()> {
        self.cluster.node(id).restart_empty_to_join()?;
        if let Err(error) = self
            .change_membership(id, true, Duration::from_secs(60))
            .await
        {
            self.membership_failures.push(format!("{error:#}"));
        }
        Ok(())
    }

    /// One node: the leader half the time.
    fn one_node(&self, rng: &mut ChaCha8Rng, leader: Option<u64>) -> anyhow::Result<u64> {
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        match leader {
            Some(leader) if rng.random_bool(0.5) => Ok(leader),
            _ => ids.choose(rng).copied().context("a node"),
        }
    }

    /// Fills the node's data dir until the disk refuses more.
    fn fill_disk(&self, node: u64) -> anyhow::Result<u64> {
        use std::io::Write as _;
        let path = self.data_dirs[&node].join("ballast");
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(count) => written += count as u64,
                Err(error) if error.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(error) => return Err(error.into()),
            }
            if written > 1 << 30 {
                bail!("{} never filled: is it a tmpfs?", path.display());
            }
        }
        Ok(written)
    }

    /// The cluster's voters, as a node that answers says.
    async fn voters(&self) -> Option<BTreeSet<u64>> {
        for node in self.cluster.nodes.values() {
            if let Some(voters) = voters_named_by(node).await
                && !voters.is_empty()
            {
                return Some(voters);
            }
        }
        None
    }

    /// A node's peer and gRPC ports: what a fault on its links names.
    fn ports_of(&self, node: u64) -> Vec<u16> {
        [&self.peers[&node], &self.grpc[&node]]
            .iter()
            .filter_map(|endpoint| endpoint.port)
            .collect()
    }

    /// Asks the members to change the membership: `add` the node back (at its peer
    /// address) or remove it; retried on other nodes until `deadline`.
    async fn change_membership(
        &self,
        node: u64,
        add: bool,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < deadline {
            for (id, member) in &self.cluster.nodes {
                if *id == node {
                    continue;
                }
                let attempt = async {
                    let mut client = ClusterServiceClient::connect(member.grpc_url()).await?;
                    match add {
                        true => client
                            .add_member(pb::AddMemberRequest {
                                node_id: node,
                                addr: member_peer_addr(&self.cluster.nodes[&node]),
                            })
                            .await
                            .map(|_| ()),
                        false => client
                            .remove_member(pb::RemoveMemberRequest { node_id: node })
                            .await
                            .map(|_| ()),
                    }
                    .map_err(anyhow::Error::from)
                };
                match tokio::time::timeout(Duration::from_secs(20), attempt).await {
                    Ok(Ok(())) => return Ok(()),
                    // An earlier try whose answer was lost took effect: done.
                    Ok(Err(error))
                        if error.downcast_ref::<tonic::Status>().is_some_and(|status| {
                            status.code()
                                == match add {
                                    true => tonic::Code::AlreadyExists,
                                    false => tonic::Code::NotFound,
                                }
                        }) =>
                    {
                        return Ok(());
                    }
                    Ok(Err(error)) => last = format!("{error:#}"),
                    Err(_) => last = "no answer in 20 s".to_string(),
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "{} node {node} failed for {deadline:?}: {last}",
            if add { "adding" } else { "removing" }
        )
    }

    /// Creates the small-quota tenants (before any fault).
    async fn make_quota_tenants(&self, rest: &[String]) -> anyhow::Result<()> {
        for tenant in QUOTA_TENANTS {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (created, _) = call(
                    self.http
                        .post(format!("{}/api/v1/tenants", rest[0]))
                        .json(&json!({ "id": tenant })),
                )
                .await;
                let (quota, answer) = call(
                    self.http
                        .put(format!("{}/api/v1/tenants/{tenant}/quotas", rest[0]))
                        .json(&quota_body(INITIAL_PENDING)),
                )
                .await;
                if matches!(created, 201 | 409) && quota == 200 {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("cannot make tenant {tenant}: {created}, then {quota} {answer}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// The leader some answering node names (none while there is no leader).
    async fn leader(&self, damage: &Damage) -> Option<u64> {
        for (id, node) in &self.cluster.nodes {
            if damage.killed.contains(id) || damage.paused.contains(id) {
                continue;
            }
            if let Some(leader) = node
                .status()
                .await
                .and_then(|status| status["leader_id"].as_u64())
            {
                return Some(leader);
            }
        }
        None
    }

    /// A minority of nodes: the leader first half the time.
    fn victims(&self, rng: &mut ChaCha8Rng, leader: Option<u64>) -> Vec<u64> {
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        let minority = (ids.len() - 1) / 2;
        let count = rng.random_range(1..=minority);
        let mut chosen: Vec<u64> = Vec::new();
        if let Some(leader) = leader
            && rng.random_bool(0.5)
        {
            chosen.push(leader);
        }
        let mut others: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !chosen.contains(id))
            .collect();
        others.shuffle(rng);
        chosen.extend(others.into_iter().take(count.saturating_sub(chosen.len())));
        chosen
    }

    fn loss_on(&self, rng: &mut ChaCha8Rng, node: u64) -> anyhow::Result<f64> {
        self.loss_between(rng, node, 0.2..0.4)
    }

    fn loss_between(
        &self,
        rng: &mut ChaCha8Rng,
        node: u64,
        range: std::ops::Range<f64>,
    ) -> anyhow::Result<f64> {
        let probability = rng.random_range(range);
        self.firewall
            .lose(&self.peers[&node].source, &self.ports_of(node), probability)?;
        Ok(probability)
    }

    fn cut_both(&self, a: u64, b: u64) -> anyhow::Result<()> {
        self.firewall.cut(&self.peers[&a], &self.peers[&b])?;
        self.firewall.cut(&self.peers[&b], &self.peers[&a])
    }

    /// Injects one fault of `kind`; says what it did.
    async fn inject(
        &mut self,
        kind: FaultKind,
        rng: &mut ChaCha8Rng,
        damage: &mut Damage,
        hold: Duration,
    ) -> anyhow::Result<String> {
        let leader = self.leader(damage).await;
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        match kind {
            FaultKind::Kill => {
                let victims = self.victims(rng, leader);
                for id in &victims {
                    self.cluster.node(*id).kill9();
                }
                damage.killed.extend(&victims);
                Ok(format!("killed nodes {victims:?} (leader {leader:?})"))
            }
            FaultKind::Pause => {
                let victims = self.victims(rng, leader);
                for id in &victims {
                    self.cluster.nodes[id].pause(true)?;
                }
                damage.paused.extend(&victims);
                Ok(format!("paused nodes {victims:?} (leader {leader:?})"))
            }
            FaultKind::Partition => {
                damage.links_cut = true;
                let variant = rng.random_range(0..4);
                match (variant, leader) {
                    (0, Some(leader)) => {
                        for other in ids.iter().filter(|id| **id != leader) {
                            self.cut_both(leader, *other)?;
                        }
                        Ok(format!("leader {leader} isolated"))
                    }
                    (1, Some(leader)) => {
                        for other in ids.iter().filter(|id| **id != leader) {
                            self.firewall
                                .cut(&self.peers[&leader], &self.peers[other])?;
                        }
                        Ok(format!(
                            "leader {leader} cannot send (it still hears the others)"
                        ))
                    }
                    (2, _) => {
                        let node = *ids.choose(rng).context("a node")?;
                        let started = Instant::now();
                        let mut cut = false;
                        let mut flips = 0;
                        while started.elapsed() < hold {
                            if cut {
                                self.firewall.heal()?;
                            } else {
                                for other in ids.iter().filter(|id| **id != node) {
                                    self.cut_both(node, *other)?;
                                }
                            }
                            cut = !cut;
                            flips += 1;
                            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200)))
                                .await;
                        }
                        Ok(format!("node {node}'s links flapping ({flips} flips)"))
                    }
                    _ => {
                        let mut shuffled = ids.clone();
                        shuffled.shuffle(rng);
                        let minority = rng.random_range(1..=(ids.len() - 1) / 2);
                        let (small, large) = shuffled.split_at(minority);
                        for a in small {
                            for b in large {
                                self.cut_both(*a, *b)?;
                            }
                        }
                        Ok(format!("nodes {small:?} split from {large:?}"))
                    }
                }
            }
            FaultKind::Loss => {
                damage.links_cut = true;
                let node = *ids.choose(rng).context("a node")?;
                let probability = self.loss_on(rng, node)?;
                Ok(format!(
                    "node {node} loses {:.0}% of its packets",
                    probability * 100.0
                ))
            }
            FaultKind::WorkerKill => {
                let index = rng.random_range(0..self.workers.len());
                self.workers[index].kill9();
                damage.workers_killed.push(index);
                Ok(format!("worker w{index} killed"))
            }
            FaultKind::WorkerPause => {
                let index = rng.random_range(0..self.workers.len());
                self.workers[index].pause(true)?;
                damage.workers_paused.push(index);
                Ok(format!("worker w{index} paused"))
            }
            FaultKind::WorkerPartition => {
                damage.links_cut = true;
                let index = rng.random_range(0..self.workers.len());
                for node in self.grpc.values() {
                    self.firewall.cut(&self.worker_endpoints[index], node)?;
                    self.firewall.cut(node, &self.worker_endpoints[index])?;
                }
                Ok(format!("worker w{index} cut off from every node"))
            }
            FaultKind::LeaderTransfer => {
                let Some(leader) = leader else {
                    return Ok("no leader to move".to_string());
                };
                let target = *ids
                    .iter()
                    .filter(|id| **id != leader)
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .context("another node")?;
                let answer = self
                    .http
                    .post(self.cluster.nodes[&leader].rest_url("/api/v1/cluster/transfer-leader"))
                    .json(&json!({ "node_id": target }))
                    .send()
                    .await
                    .map(|response| response.status().as_u16());
                Ok(format!("leadership {leader} -> {target}: {answer:?}"))
            }
            FaultKind::Clock => {
                let node = self.one_node(rng, leader)?;
                let offset_s: i64 = match rng.random_range(0..4) {
                    0 => 600,
                    1 => -600,
                    _ => rng.random_range(2..60) * if rng.random_bool(0.5) { 1 } else { -1 },
                };
                std::fs::write(&self.clock_files[&node], format!("{offset_s:+}s\n"))?;
                damage.clocks_moved.push(node);
                Ok(format!(
                    "node {node}'s clock moved {offset_s:+} s (leader {leader:?})"
                ))
            }
            FaultKind::DiskFull => {
                let node = self.one_node(rng, leader)?;
                let written = self.fill_disk(node)?;
                damage.disks_filled.push(node);
                Ok(format!(
                    "node {node}'s disk filled ({} MiB of ballast; leader {leader:?})",
                    written >> 20
                ))
            }
            FaultKind::SlowDisk => {
                let node = self.one_node(rng, leader)?;
                let delay_ms = rng.random_range(50..500);
                std::fs::write(&self.slow_disk_files[&node], format!("{delay_ms}\n"))?;
                damage.disks_slowed.push(node);
                Ok(format!(
                    "node {node}'s fsyncs take {delay_ms} ms (leader {leader:?})"
                ))
            }
            FaultKind::Latency => {
                let node = self.one_node(rng, leader)?;
                let delay = Duration::from_millis(rng.random_range(50..400));
                let ports = self.ports_of(node);
                self.latency.as_ref().context("the latency proxy")?.slow(
                    &node_source(node),
                    &ports,
                    delay,
                )?;
                damage.slowed = true;
                Ok(format!(
                    "node {node}'s links delayed {delay:?} (leader {leader:?})"
                ))
            }
            FaultKind::Membership => {
                if self.voters().await.map(|voters| voters.len()) != Some(ids.len()) {
                    return Ok("skipped: not every node is a voter".to_string());
                }
                let node = match (leader, rng.random_range(0..3)) {
                    (Some(leader), 0) => leader,
                    _ => *ids.choose(rng).context("a node")?,
                };
                let lossy = *ids
                    .iter()
                    .filter(|id| **id != node)
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .context("another node")?;
                damage.links_cut = true;
                // Lossy enough to slow the change, not to stop every commit.
                let probability = self.loss_between(rng, *lossy, 0.05..0.2)?;
                let removed = self
                    .change_membership(node, false, Duration::from_secs(30))
                    .await;
                // Only a node the cluster let go is wiped: wiping a member would lose
                // what it promised to keep.
                damage.membership_target = Some(node);
                if removed.is_ok() {
                    damage.removed = Some(node);
                }
                Ok(format!(
                    "node {node} removed (leader {leader:?}) while node {lossy} loses {:.0}% of its packets: {}",
                    probability * 100.0,
                    match &removed {
                        Ok(()) => "done".to_string(),
                        Err(error) => format!("{error:#}"),
                    }
                ))
            }
        }
    }

    /// Undoes every fault in place.
    async fn heal(&mut self, damage: &mut Damage) -> anyhow::Result<()> {
        if damage.links_cut {
            self.firewall.heal()?;
            damage.links_cut = false;
        }
        if damage.slowed {
            if let Some(proxy) = &self.latency {
                proxy.heal();
            }
            damage.slowed = false;
        }
        for id in damage.clocks_moved.drain(..) {
            std::fs::write(&self.clock_files[&id], "+0s\n")?;
        }
        for id in damage.disks_slowed.drain(..) {
            std::fs::write(&self.slow_disk_files[&id], "0\n")?;
        }
        for id in damage.disks_filled.drain(..) {
            std::fs::remove_file(self.data_dirs[&id].join("ballast"))?;
            // A node that could not store stopped (fail-stop): its supervisor, here,
            // starts it again.
            let node = self.cluster.node(id);
            if node.exit_status().is_some() {
                node.restart()?;
            }
        }
        // A removal the nemesis gave up on may have committed since: the voters say.
        let target = damage.membership_target.take();
        let removed = match (damage.removed.take(), target) {
            (Some(id), _) => Some(id),
            (None, Some(id)) if self.removed_by_others(id).await => Some(id),
            _ => None,
        };
        if let Some(id) = removed {
            // A removed node stops itself; it comes back empty and is added again.
            self.rejoin(id).await?;
        }
        for id in damage.paused.drain(..) {
            self.cluster.nodes[&id].pause(false)?;
        }
        for id in damage.killed.drain(..) {
            self.cluster.node(id).restart()?;
        }
        for index in damage.workers_paused.drain(..) {
            self.workers[index].pause(false)?;
        }
        for index in damage.workers_killed.drain(..) {
            self.workers[index].restart()?;
        }
        self.restart_stopped().await
    }
}

/// What the clients share: the history and the jobs acknowledged so far.
struct Clients {
    started: Instant,
    history: Mutex<Vec<Op>>,
    acknowledged: Mutex<Vec<String>>,
    /// Tenant and quota operations, for the linearizability check.
    key_ops: Mutex<Vec<KeyOp>>,
    burst_reads: Mutex<Vec<BurstRead>>,
    burst_requests: Mutex<Vec<BurstRequest>>,
    stop: AtomicBool,
    next: AtomicU64,
}

impl Clients {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn record(&self, op: Op) {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }

    fn record_key_op(&self, op: KeyOp) {
        self.key_ops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }
}

/// Tenants the workload creates, updates, deletes and reads as registers (no jobs).
const REGISTER_TENANTS: [&str; 3] = ["r0", "r1", "r2"];
/// Tenants with a small quota (`QUOTA_JOBS` jobs at once) and burst sessions, running a
/// share of the jobs; their `max_pending_jobs` is a register too.
const QUOTA_TENANTS: [&str; 2] = ["q0", "q1"];
const QUOTA_JOBS: u64 = 2;
/// The largest burst ceiling the workload asks for (and the config allows).
const BURST_PERCENT: u64 = 200;
const INITIAL_PENDING: u64 = 100_000;

fn quota_body(max_pending_jobs: u64) -> Value {
    // Each job asks 1000 m and 64 MiB: the CPU quota holds the same two jobs (and the
    // burst overage stays within the global burst pool).
    json!({
        "cpu_m": QUOTA_JOBS * 1_000,
        "memory_mb": 10_000,
        "max_concurrent_jobs": QUOTA_JOBS,
        "max_pending_jobs": max_pending_jobs,
    })
}

/// A key operation's outcome from an HTTP status: `None` for a refusal that says nothing
/// of the key (validation, rate limit), which never took effect.
fn key_outcome(status: u16, read: Option<String>) -> Option<Outcome> {
    match status {
        200 | 201 => Some(read.map_or(Outcome::Ok, Outcome::Saw)),
        404 => Some(Outcome::Absent),
        409 => Some(Outcome::Exists),
        400..=499 if status != 408 => None,
        _ => Some(Outcome::Unknown),
    }
}

fn record_key(
    shared: &Clients,
    number: u32,
    key: &str,
    action: Action,
    outcome: Option<Outcome>,
    invoked: u64,
) {
    let Some(outcome) = outcome else {
        return;
    };
    // A read with no answer (or a body that could not be read) says nothing.
    if action == Action::Read && matches!(outcome, Outcome::Unknown | Outcome::Ok) {
        return;
    }
    shared.record_key_op(KeyOp {
        key: key.to_string(),
        client: number,
        action,
        outcome,
        invoked_ms: invoked,
        completed_ms: shared.now_ms(),
    });
}

/// One operation on a register tenant: create, update, delete or read.
async fn register_op(
    number: u32,
    rng: &mut ChaCha8Rng,
    http: &reqwest::Client,
    base: &str,
    shared: &Clients,
) {
    let tenant = *REGISTER_TENANTS.choose(rng).expect("a tenant");
    let value = format!("v-{number}-{}", shared.next.fetch_add(1, Ordering::Relaxed));
    let url = format!("{base}/api/v1/tenants/{tenant}");
    let invoked = shared.now_ms();
    let (action, request) = match rng.random_range(0..10) {
        0..=1 => (
            Action::Create {
                value: value.clone(),
            },
            http.post(format!("{base}/api/v1/tenants"))
                .json(&json!({ "id": tenant, "display_name": value })),
        ),
        2..=4 => (
            Action::Update {
                value: value.clone(),
            },
            http.patch(&url).json(&json!({ "display_name": value })),
        ),
        5 => (Action::Delete, http.delete(&url)),
        _ => (Action::Read, http.get(&url)),
    };
    let (status, answer) = call(request).await;
    let read = match action {
        Action::Read => answer["display_name"].as_str().map(str::to_string),
        _ => None,
    };
    record_key(
        shared,
        number,
        tenant,
        action,
        key_outcome(status, read),
        invoked,
    );
}

/// Sets or reads a quota tenant's `max_pending_jobs`.
async fn quota_op(
    number: u32,
    rng: &mut ChaCha8Rng,
    http: &reqwest::Client,
    base: &str,
    shared: &Clients,
) {
    let tenant = *QUOTA_TENANTS.choose(rng).expect("a tenant");
    let url = format!("{base}/api/v1/tenants/{tenant}/quotas");
    let invoked = shared.now_ms();
    let key = format!("quota/{tenant}");
    if rng.random_bool(0.4) {
        let value = INITIAL_PENDING + 1 + shared.next.fetch_add(1, Ordering::Relaxed);
        let (status, _) = call(http.put(&url).json(&quota_body(value))).await;
        let action = Action::Update {
            value: value.to_string(),
        };
        record_key(
            shared,
            number,
            &key,
            action,
            key_outcome(status, None),
            invoked,
        );
    } else {
        let (status, answer) = call(http.get(&url)).await;
        let read = answer["max_pending_jobs"]
            .as_u64()
            .map(|value| value.to_string());
        record_key(
            shared,
            number,
            &key,
            Action::Read,
            key_outcome(status, read),
            invoked,
        );
    }
}

/// Asks for a short burst session for a quota tenant, or reads its sessions.
async fn burst_op(rng: &mut ChaCha8Rng, http: &reqwest::Client, base: &str, shared: &Clients) {
    let tenant = *QUOTA_TENANTS.choose(rng).expect("a tenant");
    let url = format!("{base}/api/v1/tenants/{tenant}/burst");
    let invoked = shared.now_ms();
    if rng.random_bool(0.4) {
        let percent = *[150u64, BURST_PERCENT].choose(rng).expect("a ceiling");
        let body = json!({
            "ceiling_percentage": percent,
            "duration_seconds": rng.random_range(2..8),
            "reason": "nemesis",
        });
        let (status, answer) = call(http.post(&url).json(&body)).await;
        let acknowledged = match status {
            200..=299 => SessionSeen::from_view(&answer),
            _ => None,
        };
        let request = BurstRequest {
            tenant: tenant.to_string(),
            // A 2xx whose body was lost made a session we cannot name.
            unknown: told(status) == Told::Unknown
                || ((200..300).contains(&status) && acknowledged.is_none()),
            acknowledged,
        };
        shared
            .burst_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
    } else {
        let (status, answer) = call(http.get(&url)).await;
        if status != 200 {
            return;
        }
        let sessions = answer["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(SessionSeen::from_view)
            .collect();
        shared
            .burst_reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(BurstRead {
                tenant: tenant.to_string(),
                invoked_ms: invoked,
                completed_ms: shared.now_ms(),
                sessions,
            });
    }
}

/// What a response says of a write: 2xx done, 4xx refused by a rule, anything else
/// (5xx, no answer) unknown.
fn told(status: u16) -> Told {
    match status {
        200..=299 => Told::Ok,
        400..=499 if status != 408 => Told::Refused,
        _ => Told::Unknown,
    }
}

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn client(
    number: u32,
    seed: u64,
    long_jobs: u8,
    rest: Vec<String>,
    runner: PathBuf,
    journal: PathBuf,
    shared: Arc<Clients>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(number) << 32));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    // Keys whose submission had no known outcome: tried again, with the same key.
    let mut unsettled: Vec<(String, u64, &str)> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        // About three operations a second per client: the workers keep up with the jobs.
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..400))).await;
        let base = rest.choose(&mut rng).expect("a node").clone();
        let roll = rng.random_range(0..100);
        let invoked = shared.now_ms();
        if roll < 50 {
            let (key, millis, tenant) = match unsettled.pop() {
                Some((key, millis, tenant)) if rng.random_bool(0.7) => (Some(key), millis, tenant),
                other => {
                    if let Some(back) = other {
                        unsettled.push(back);
                    }
                    let n = shared.next.fetch_add(1, Ordering::Relaxed);
                    let key = rng.random_bool(0.5).then(|| format!("k-{number}-{n}"));
                    let millis = match rng.random_range(0..100) < long_jobs {
                        true => rng.random_range(3_000..6_000),
                        false => rng.random_range(200..1_500),
                    };
                    // A third of the jobs go to the small-quota tenants.
                    let tenant = match rng.random_range(0..3) {
                        0 => *QUOTA_TENANTS.choose(&mut rng).expect("a tenant"),
                        _ => "default",
                    };
                    (key, millis, tenant)
                }
            };
            let mut body = json!({
                "tenant": tenant,
                "max_retries": 20,
                "resources": { "cpu_m": 1000, "memory_mb": 64 },
                "command": { "argv": [runner.display().to_string(), "runner", "--journal", journal.display().to_string(), "--ms", millis.to_string()] },
            });
            if let Some(key) = &key {
                body["idempotency_key"] = json!(key);
            }
            let (status, answer) = call(http.post(format!("{base}/api/v1/jobs")).json(&body)).await;
            let id = answer["job"]["id"].as_str().map(str::to_string);
            let outcome = told(status);
            if outcome == Told::Ok
                && let Some(id) = &id
            {
                shared
                    .acknowledged
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(id.clone());
            }
            if outcome == Told::Unknown
                && let Some(key) = &key
            {
                unsettled.push((key.clone(), millis, tenant));
            }
            shared.record(Op {
                client: number,
                kind: "submit",
                id,
                key,
                invoked_ms: invoked,
                completed_ms: shared.now_ms(),
                told: outcome,
                status,
            });
        } else if roll < 68 {
            let known = shared
                .acknowledged
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .choose(&mut rng)
                .cloned();
            let Some(id) = known else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let cancel = roll >= 64;
            let (kind, request) = if cancel {
                (
                    "cancel",
                    http.post(format!("{base}/api/v1/jobs/{id}/cancel"))
                        .json(&json!({})),
                )
            } else {
                ("read", http.get(format!("{base}/api/v1/jobs/{id}")))
            };
            let (status, _) = call(request).await;
            shared.record(Op {
                client: number,
                kind,
                id: Some(id),
                key: None,
                invoked_ms: invoked,
                completed_ms: shared.now_ms(),
                told: told(status),
                status,
            });
        } else if roll < 80 {
            register_op(number, &mut rng, &http, &base, &shared).await;
        } else if roll < 88 {
            quota_op(number, &mut rng, &http, &base, &shared).await;
        } else if roll < 95 {
            burst_op(&mut rng, &http, &base, &shared).await;
        } else {
            let n = shared.next.fetch_add(1, Ordering::Relaxed);
            let id = format!("t-{number}-{n}");
            let (status, _) = call(
                http.post(format!("{base}/api/v1/tenants"))
                    .json(&json!({ "id": id })),
            )
            .await;
            shared.record(Op {
                client: number,
                kind: "create_tenant",
                id: Some(id),
                key: None,
                invoked_ms: invoked,
                completed_ms: shared.now_ms(),
                told: told(status),
                status,
            });
        }
    }
}

/// Every item of a paginated list, from any node that answers.
async fn list_all(
    http: &reqwest::Client,
    rest: &[String],
    path: &str,
) -> anyhow::Result<Vec<Value>> {
    for base in rest {
        let mut items = Vec::new();
        let mut cursor = String::new();
        let complete = loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let url = format!("{base}{path}{separator}limit=1000&cursor={cursor}");
            let (status, page) = call(http.get(url)).await;
            if status != 200 {
                break false;
            }
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_string(),
                None => break true,
            }
        };
        if complete {
            return Ok(items);
        }
    }
    bail!("no node listed {path}")
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "timed_out" | "cancelled")
}

/// Runs the nemesis; the report, and whether every rule held.
pub async fn run(settings: NemesisSettings) -> anyhow::Result<(Value, bool)> {
    let temporary = tempfile::tempdir()?;
    let root = settings
        .dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    // The jobs write the journal from their own working directories: an absolute path.
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    let journal = root.join("journal");
    let runner = std::env::current_exe()?;
    let mut stage = Stage::start(&root, &settings).await?;
    let rest: Vec<String> = stage
        .cluster
        .nodes
        .values()
        .map(|node| node.rest_url(""))
        .collect();
    stage.make_quota_tenants(&rest).await?;
    eprintln!(
        "nemesis: seed {}, {} s, {} nodes, {} workers, faults {:?}",
        settings.seed,
        settings.duration,
        settings.nodes,
        settings.workers,
        settings
            .faults
            .0
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
    );

    let shared = Arc::new(Clients {
        started: Instant::now(),
        history: Mutex::new(Vec::new()),
        acknowledged: Mutex::new(Vec::new()),
        key_ops: Mutex::new(Vec::new()),
        burst_reads: Mutex::new(Vec::new()),
        burst_requests: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        next: AtomicU64::new(0),
    });
    let clients: Vec<_> = (0..settings.clients)
        .map(|number| {
            tokio::spawn(client(
                number,
                settings.seed,
                settings.long_jobs,
                rest.clone(),
                runner.clone(),
                journal.clone(),
                shared.clone(),
            ))
        })
        .collect();

    // The schedule: a fault, held for 2-8 s, healed, 1-3 s of calm; until the end.
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut timeline: Vec<FaultEvent> = Vec::new();
    let mut damage = Damage::default();
    let end = Duration::from_secs(settings.duration);
    // The first fault finds jobs running.
    tokio::time::sleep((end / 4).min(Duration::from_secs(5))).await;
    while shared.started.elapsed() < end {
        let kind = *settings.faults.0.choose(&mut rng).context("a fault kind")?;
        let hold = Duration::from_millis(rng.random_range(2_000..8_000))
            .min(end.saturating_sub(shared.started.elapsed()));
        let at_ms = shared.now_ms();
        let detail = stage.inject(kind, &mut rng, &mut damage, hold).await?;
        eprintln!(
            "nemesis: {:>6.1} s {}: {detail}",
            at_ms as f64 / 1000.0,
            kind.name()
        );
        if kind != FaultKind::Partition || !detail.contains("flapping") {
            tokio::time::sleep(hold).await;
        }
        stage.heal(&mut damage).await?;
        timeline.push(FaultEvent {
            kind,
            detail,
            at_ms,
            healed_ms: Some(shared.now_ms()),
        });
        let calm = Duration::from_millis(rng.random_range(1_000..3_000));
        tokio::time::sleep(calm.min(end.saturating_sub(shared.started.elapsed()))).await;
    }
    // A node that stops on a full disk does so within seconds (it exits within 10 s of
    // its failed write): watch for it after the last fault too.
    if timeline
        .last()
        .is_some_and(|event| event.kind == FaultKind::DiskFull)
    {
        let watching = Instant::now();
        while watching.elapsed() < Duration::from_secs(12) {
            stage.restart_stopped().await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.await;
    }
    let faults_stopped = Instant::now();

    // Recovery: a write acknowledged, and every node caught up, within the bound.
    let bound = Duration::from_secs(settings.recovery_bound_s);
    let mut violations: Vec<Value> = Vec::new();
    let mut first_write_s = None;
    while faults_stopped.elapsed() < bound {
        let (status, _) =
            call(stage.http.post(format!("{}/api/v1/tenants", rest[0])).json(
                &json!({ "id": format!("recovery-{}", faults_stopped.elapsed().as_millis()) }),
            ))
            .await;
        if status == 201 {
            first_write_s = Some(faults_stopped.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = stage
        .cluster
        .wait_caught_up(
            bound
                .saturating_sub(faults_stopped.elapsed())
                .max(Duration::from_secs(1)),
        )
        .await;
    let recovered_s = faults_stopped.elapsed().as_secs_f64();
    if first_write_s.is_none() || caught_up.is_err() {
        violations.push(json!({
            "rule": "recovery_bound",
            "bound_s": settings.recovery_bound_s,
            "first_write_s": first_write_s,
            "caught_up": caught_up.as_ref().err().map(|error| format!("{error:#}")),
        }));
    }

    // Every acknowledged job reaches a final state.
    let acknowledged: BTreeSet<String> = shared
        .acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    let settle = Instant::now();
    let mut jobs: Vec<Value> = Vec::new();
    while settle.elapsed() < Duration::from_secs(300) {
        jobs = list_all(&stage.http, &rest, "/api/v1/jobs")
            .await
            .unwrap_or_default();
        let open = jobs
            .iter()
            .filter(|job| {
                job["id"]
                    .as_str()
                    .is_some_and(|id| acknowledged.contains(id))
                    && !job["state"].as_str().is_some_and(is_final)
            })
            .count();
        if open == 0 && !jobs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled_s = settle.elapsed().as_secs_f64();
    let final_jobs: Vec<FinalJob> = jobs
        .iter()
        .map(|job| FinalJob {
            id: job["id"].as_str().unwrap_or_default().to_string(),
            state: job["state"].as_str().unwrap_or_default().to_string(),
            attempt: job["attempt"].as_u64().unwrap_or(0) as u32,
            key: job["idempotency_key"].as_str().map(str::to_string),
        })
        .collect();
    // The registers' and the bursts' final state, read after every client stopped.
    for key in REGISTER_TENANTS {
        let invoked = shared.now_ms();
        let (status, answer) =
            call(stage.http.get(format!("{}/api/v1/tenants/{key}", rest[0]))).await;
        let read = answer["display_name"].as_str().map(str::to_string);
        record_key(
            &shared,
            u32::MAX,
            key,
            Action::Read,
            key_outcome(status, read),
            invoked,
        );
    }
    let mut final_bursts: BTreeMap<String, Vec<SessionSeen>> = BTreeMap::new();
    // The wall-clock time of the final reads (every node's clock is right again by now):
    // a session whose end time is later may rightly still be open (made on a node whose
    // clock ran ahead).
    let finals_read_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or_default();
    for tenant in QUOTA_TENANTS {
        let invoked = shared.now_ms();
        let (status, answer) = call(
            stage
                .http
                .get(format!("{}/api/v1/tenants/{tenant}/quotas", rest[0])),
        )
        .await;
        let read = answer["max_pending_jobs"]
            .as_u64()
            .map(|value| value.to_string());
        record_key(
            &shared,
            u32::MAX,
            &format!("quota/{tenant}"),
            Action::Read,
            key_outcome(status, read),
            invoked,
        );
        let (status, answer) = call(
            stage
                .http
                .get(format!("{}/api/v1/tenants/{tenant}/burst", rest[0])),
        )
        .await;
        if status != 200 {
            bail!("the final read of {tenant}'s burst sessions failed: {status}");
        }
        final_bursts.insert(
            tenant.to_string(),
            answer["history"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(SessionSeen::from_view)
                .collect(),
        );
    }
    let tenants: BTreeSet<String> = list_all(&stage.http, &rest, "/api/v1/tenants")
        .await?
        .iter()
        .filter_map(|tenant| tenant["id"].as_str().map(str::to_string))
        .filter(|id| !id.starts_with("recovery-"))
        .collect();
    let history = shared
        .history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let journaled = std::fs::read_to_string(&journal);
    if journaled.is_err() && !acknowledged.is_empty() {
        violations.push(json!({
            "rule": "journal_missing",
            "journal": journal.display().to_string(),
            "acknowledged": acknowledged.len(),
        }));
    }
    let runs = checker::runs_of(&journaled.unwrap_or_default());
    let mut found: Vec<Violation> = checker::check_jobs(&history, &runs, &final_jobs);
    found.extend(checker::check_outcomes(&final_jobs));
    let system: BTreeSet<String> = ["default"]
        .into_iter()
        .chain(REGISTER_TENANTS)
        .chain(QUOTA_TENANTS)
        .map(str::to_string)
        .collect();
    found.extend(checker::check_tenants(&history, &tenants, &system));
    for violation in &found {
        let mut entry = json!(violation);
        // An unfinished job comes with all the cluster says of it (its transitions, its
        // worker), and that worker's view.
        if let Violation::JobNotFinished { job, .. } = violation {
            let (_, detail) = call(stage.http.get(format!("{}/api/v1/jobs/{job}", rest[0]))).await;
            if let Some(worker) = detail["worker"].as_str() {
                let (_, workers) =
                    call(stage.http.get(format!("{}/api/v1/workers", rest[0]))).await;
                entry["worker_detail"] = workers["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|view| view["id"].as_str() == Some(worker))
                    .cloned()
                    .unwrap_or_default();
            }
            entry["detail"] = detail;
        }
        violations.push(entry);
    }

    // Tenants and quotas are linearizable registers.
    let key_ops = shared
        .key_ops
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let initial: BTreeMap<String, String> = QUOTA_TENANTS
        .iter()
        .map(|tenant| (format!("quota/{tenant}"), INITIAL_PENDING.to_string()))
        .collect();
    let linearizability = linearizable::check(&key_ops, &initial);
    violations.extend(linearizability.violations.iter().map(|violation| {
        json!({ "rule": "not_linearizable", "key": violation.key, "operations": violation.operations, "stuck_at": violation.stuck_at })
    }));
    if !linearizability.inconclusive.is_empty() {
        violations.push(
            json!({ "rule": "linearizability_inconclusive", "keys": linearizability.inconclusive }),
        );
    }

    // Quotas held, burst sessions expired once; and what the nodes saw themselves. A
    // cancelled job frees its quota when the cancel commits, while its process runs on
    // until its worker kills it: its runs are left out.
    let tenant_of: BTreeMap<String, String> = jobs
        .iter()
        .filter(|job| job["state"].as_str() != Some("cancelled"))
        .filter_map(|job| {
            Some((
                job["id"].as_str()?.to_string(),
                job["tenant"].as_str()?.to_string(),
            ))
        })
        .collect();
    let ceilings: BTreeMap<String, u64> = QUOTA_TENANTS
        .iter()
        .map(|tenant| (tenant.to_string(), QUOTA_JOBS * BURST_PERCENT / 100))
        .collect();
    let burst_reads = shared
        .burst_reads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let burst_requests = shared
        .burst_requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut limit_violations = limits::check_quota(&runs, &tenant_of, &ceilings);
    limit_violations.extend(limits::check_bursts(
        &burst_reads,
        &burst_requests,
        &final_bursts,
        finals_read_at_ms,
    ));
    limit_violations.extend(limits::audit_breaches(&root));
    violations.extend(limit_violations.iter().map(|violation| json!(violation)));
    for failure in &stage.membership_failures {
        violations.push(json!({ "rule": "membership_not_restored", "error": failure }));
    }
    let digests = stage.cluster.check_digests(Duration::from_secs(60)).await;
    if let Err(error) = &digests {
        violations.push(json!({ "rule": "digests_agree", "error": format!("{error:#}") }));
    }

    let mut faults_by_kind: BTreeMap<&str, u32> = BTreeMap::new();
    for event in &timeline {
        *faults_by_kind.entry(event.kind.name()).or_default() += 1;
    }
    let mut operations: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for op in &history {
        let outcome = match op.told {
            Told::Ok => "ok",
            Told::Refused => "refused",
            Told::Unknown => "unknown",
        };
        *operations
            .entry(op.kind.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }
    let mut states: BTreeMap<String, u32> = BTreeMap::new();
    for job in &final_jobs {
        *states.entry(job.state.clone()).or_default() += 1;
    }
    let retried = final_jobs.iter().filter(|job| job.attempt > 1).count();
    let killed_runs = runs.iter().filter(|run| !run.ended).count();
    let report = json!({
        "seed": settings.seed,
        "duration_s": settings.duration,
        "nodes": settings.nodes,
        "workers": settings.workers,
        "clients": settings.clients,
        "faults_enabled": settings.faults.0.iter().map(|kind| kind.name()).collect::<Vec<_>>(),
        "faults_by_kind": faults_by_kind,
        "operations": operations,
        "jobs": {
            "acknowledged": acknowledged.len(),
            "in_final_state": final_jobs.len(),
            "by_state": states,
            "retried": retried,
            "runs_journaled": runs.len(),
            "runs_killed": killed_runs,
        },
        "tenants_at_end": tenants.len(),
        "linearizability": {
            "keys": linearizability.keys,
            "operations": linearizability.operations,
            "inconclusive": linearizability.inconclusive,
        },
        "bursts": {
            "requested": burst_requests.len(),
            "acknowledged": burst_requests.iter().filter(|request| request.acknowledged.is_some()).count(),
            "reads": burst_reads.len(),
            "sessions_at_end": final_bursts.values().map(Vec::len).sum::<usize>(),
        },
        "quota_tenant_runs": runs.iter().filter(|run| tenant_of.get(&run.job).is_some_and(|tenant| ceilings.contains_key(tenant))).count(),
        "recovery": {
            "first_write_s": first_write_s,
            "caught_up_s": recovered_s,
            "bound_s": settings.recovery_bound_s,
            "jobs_settled_s": settled_s,
        },
        "digests_compared": digests.as_ref().map(|check| check.compared).unwrap_or(0),
        "violations": violations,
        "timeline": timeline,
        "history_file": settings.dir.as_ref().map(|dir| dir.join("history.json").display().to_string()),
    });
    std::fs::write(root.join("history.json"), serde_json::to_string(&history)?)?;
    let held = report["violations"].as_array().is_none_or(Vec::is_empty);
    Ok((report, held))
}
