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
use hodei_tests::{NodeSpec, ProcessCluster, WorkerProcess};

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
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Loss,
        FaultKind::WorkerKill,
        FaultKind::WorkerPause,
        FaultKind::WorkerPartition,
        FaultKind::LeaderTransfer,
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
    /// worker-kill, worker-pause, worker-partition, leader-transfer).
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
}

const YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 1000000\n    memory_mb: 1000000\n    max_concurrent_jobs: 10000\n    max_pending_jobs: 100000\nworkers:\n  heartbeat_interval_ms: 500\n  missed_heartbeats: 3\n";

fn node_source(node: u64) -> String {
    format!("127.0.0.{}", 10 + node)
}

fn worker_source(index: usize) -> String {
    format!("127.0.0.{}", 50 + index)
}

impl Stage {
    async fn start(root: &Path, settings: &NemesisSettings) -> anyhow::Result<Self> {
        let firewall = Firewall::install()?;
        let specs: Vec<NodeSpec> = NodeSpec::cluster(settings.nodes)
            .into_iter()
            .map(|mut spec| {
                spec.cluster_extra.extend([
                    format!("source_addr: \"{}\"", node_source(spec.node_id)),
                    // Snapshots and log compaction all the time, faults or not.
                    "snapshot_every_entries: 200".to_string(),
                    "log_entries_kept_after_snapshot: 50".to_string(),
                ]);
                spec.extra_yaml = YAML.to_string();
                spec
            })
            .collect();
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
        })
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
                let probability = rng.random_range(0.2..0.4);
                let ports: Vec<u16> = [&self.peers[&node], &self.grpc[&node]]
                    .iter()
                    .filter_map(|endpoint| endpoint.port)
                    .collect();
                self.firewall
                    .lose(&self.peers[&node].source, &ports, probability)?;
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
        }
    }

    /// Undoes every fault in place.
    fn heal(&mut self, damage: &mut Damage) -> anyhow::Result<()> {
        if damage.links_cut {
            self.firewall.heal()?;
            damage.links_cut = false;
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
        Ok(())
    }
}

/// What the clients share: the history and the jobs acknowledged so far.
struct Clients {
    started: Instant,
    history: Mutex<Vec<Op>>,
    acknowledged: Mutex<Vec<String>>,
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
    let mut unsettled: Vec<(String, u64)> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        // About three operations a second per client: the workers keep up with the jobs.
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..400))).await;
        let base = rest.choose(&mut rng).expect("a node").clone();
        let roll = rng.random_range(0..100);
        let invoked = shared.now_ms();
        if roll < 55 {
            let (key, millis) = match unsettled.pop() {
                Some((key, millis)) if rng.random_bool(0.7) => (Some(key), millis),
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
                    (key, millis)
                }
            };
            let mut body = json!({
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
                unsettled.push((key.clone(), millis));
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
        } else if roll < 80 {
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
            let cancel = roll >= 75;
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
        stage.heal(&mut damage)?;
        timeline.push(FaultEvent {
            kind,
            detail,
            at_ms,
            healed_ms: Some(shared.now_ms()),
        });
        let calm = Duration::from_millis(rng.random_range(1_000..3_000));
        tokio::time::sleep(calm.min(end.saturating_sub(shared.started.elapsed()))).await;
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
    found.extend(checker::check_tenants(
        &history,
        &tenants,
        &BTreeSet::from(["default".to_string()]),
    ));
    violations.extend(found.iter().map(|violation| json!(violation)));
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
