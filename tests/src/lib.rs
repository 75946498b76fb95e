//! Test harness: real `hodei` processes on loopback ports, each with its own data dir
//! and log file, and helpers to wait on conditions with a deadline (never a fixed sleep).

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod proxy;

/// The Prometheus exposition a node serves on `port`.
pub async fn scrape_metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("the metrics endpoint answers")
        .text()
        .await
        .expect("a text exposition")
}

/// The value of the one sample of `name` whose labels include every `label="value"`.
pub fn metric_sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Makes ring the process's rustls provider: reqwest (built without a provider of its
/// own) needs one before any client is built. Each test binary calls it at load.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The `hodei` binary of this build: `$HODEI_BIN`, or `target/<profile>/hodei` next to
/// the test executable (built on demand if missing).
pub fn hodei_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("HODEI_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // A binary in target/<profile>/ has hodei beside it; a test in target/<profile>/deps/
    // one level up.
    let beside = exe.parent().context("unexpected executable location")?;
    if beside.join("hodei").exists() {
        return Ok(beside.join("hodei"));
    }
    let profile_dir = beside.parent().context("unexpected executable location")?;
    let binary = profile_dir.join("hodei");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .args(["build", "-p", "hodei-node", "--bin", "hodei"])
            .status()
            .context("cannot run cargo build for the hodei binary")?;
        if !status.success() {
            bail!("cargo build of the hodei binary failed");
        }
    }
    Ok(binary)
}

/// A port free on 127.0.0.1 right now, and never handed out before by this process: the
/// system may offer a port again once its listener is closed, and two ports of one node
/// (or of two nodes) would then collide.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free loopback port");
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// Polls `check` until it returns `Ok(Some(value))` or `timeout` passes.
/// How many `hodei worker` processes of `pool` run now (the process table, not the API);
/// with `parent`, only that process's children.
pub fn worker_processes(pool: &str, parent: Option<u32>) -> usize {
    let mut pgrep = std::process::Command::new("pgrep");
    if let Some(pid) = parent {
        pgrep.args(["-P", &pid.to_string()]);
    }
    let output = pgrep
        .args(["-f", &format!("worker --id {pool}-")])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout).lines().count()
}

pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(error) => bail!("timed out after {timeout:?} waiting for {what}: {error:#}"),
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `hodei server` process.
/// The cluster secret every node the harness starts shares (the peer port refuses
/// callers without it).
pub const CLUSTER_SECRET: &str = "harness-cluster-secret-0123456789";

pub struct NodeProcess {
    pub node_id: u64,
    pub rest_port: u16,
    pub grpc_port: u16,
    pub peer_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Extra environment of every start (e.g. `LD_PRELOAD` for a fault library).
    env: Vec<(String, String)>,
}

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub node_id: u64,
    pub rest_port: u16,
    pub grpc_port: u16,
    pub peer_port: u16,
    /// Other founding members, `<id>@127.0.0.1:<peer port>`.
    pub peers: Vec<String>,
    /// `single` (form a cluster) or `join` (wait to be added).
    pub bootstrap: &'static str,
    /// Extra `cluster:` keys, one `key: value` per line.
    pub cluster_extra: Vec<String>,
    /// Extra `server:` keys, as YAML indented under `server:` (e.g. `rate_limit:\n    burst: 5`).
    pub server_extra: Vec<String>,
    /// Extra top-level sections (not `server`, `cluster` or `metrics`), as YAML.
    pub extra_yaml: String,
    /// Serve Prometheus metrics on this port (off when `None`).
    pub metrics_port: Option<u16>,
    /// Extra environment of the process, at every start.
    pub env: Vec<(String, String)>,
}

impl NodeSpec {
    /// The specs of nodes `1..=size` that form one cluster (each names the others).
    pub fn cluster(size: u64) -> Vec<NodeSpec> {
        let specs: Vec<NodeSpec> = (1..=size).map(NodeSpec::new).collect();
        specs
            .iter()
            .map(|spec| {
                let mut spec = spec.clone();
                spec.peers = specs
                    .iter()
                    .filter(|other| other.node_id != spec.node_id)
                    .map(|other| format!("{}@{}", other.node_id, other.peer_addr()))
                    .collect();
                spec
            })
            .collect()
    }

    pub fn new(node_id: u64) -> Self {
        Self {
            node_id,
            rest_port: free_port(),
            grpc_port: free_port(),
            peer_port: free_port(),
            peers: Vec::new(),
            bootstrap: "single",
            cluster_extra: Vec::new(),
            server_extra: Vec::new(),
            extra_yaml: String::new(),
            metrics_port: None,
            env: Vec::new(),
        }
    }

    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// The address members reach this node's peer port at.
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// Makes the other members of `specs` reach node `node_id` only at `addr` (a proxy in
    /// front of its peer port), which it also advertises.
    pub fn reach_through(specs: &mut [NodeSpec], node_id: u64, addr: &str) {
        let addresses: Vec<(u64, String)> = specs
            .iter()
            .map(|spec| match spec.node_id == node_id {
                true => (spec.node_id, addr.to_string()),
                false => (spec.node_id, spec.peer_addr()),
            })
            .collect();
        for spec in specs.iter_mut() {
            spec.peers = addresses
                .iter()
                .filter(|(other, _)| *other != spec.node_id)
                .map(|(other, addr)| format!("{other}@{addr}"))
                .collect();
            if spec.node_id == node_id {
                spec.cluster_extra
                    .push(format!("advertise_addr: \"{addr}\""));
            }
        }
    }
}

impl NodeProcess {
    /// Writes a config for a single-node cluster in `dir` and starts the node.
    pub fn start(dir: &Path, node_id: u64) -> anyhow::Result<Self> {
        Self::start_spec(dir, &NodeSpec::new(node_id))
    }

    /// Writes the config `spec` describes in `dir` and starts the node.
    pub fn start_spec(dir: &Path, spec: &NodeSpec) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let peers = spec
            .peers
            .iter()
            .map(|peer| format!("\"{peer}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut cluster_extra = String::new();
        for line in &spec.cluster_extra {
            cluster_extra.push_str(&format!("  {line}\n"));
        }
        let mut server_extra = String::new();
        for line in &spec.server_extra {
            server_extra.push_str(&format!("  {line}\n"));
        }
        let config = format!(
            "server:\n  host: 127.0.0.1\n  port: {rest}\n  grpc_port: {grpc}\n  log_format: json\n{server_extra}\
             cluster:\n  node_id: {node_id}\n  peer_port: {peer}\n  data_dir: {data}\n  bootstrap: {bootstrap}\n  peers: [{peers}]\n{cluster_extra}\
             metrics:\n  prometheus:\n    enabled: {metrics_enabled}\n    port: {metrics_port}\n{extra_yaml}",
            rest = spec.rest_port,
            grpc = spec.grpc_port,
            peer = spec.peer_port,
            node_id = spec.node_id,
            data = dir.join("data").display(),
            bootstrap = spec.bootstrap,
            extra_yaml = spec.extra_yaml,
            metrics_enabled = spec.metrics_port.is_some(),
            metrics_port = spec.metrics_port.unwrap_or(9091),
        );
        std::fs::write(dir.join("config.yaml"), config)?;
        let mut node = Self {
            node_id: spec.node_id,
            rest_port: spec.rest_port,
            grpc_port: spec.grpc_port,
            peer_port: spec.peer_port,
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
            env: spec.env.clone(),
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = File::create(self.dir.join(format!("node-{}.log", self.starts)))?;
        let child = Command::new(hodei_binary()?)
            .arg("server")
            .arg("--config")
            .arg(self.dir.join("config.yaml"))
            .env("RUST_LOG", "info,openraft=info")
            .env("HODEI_CLUSTER_SECRET", CLUSTER_SECRET)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start hodei")?;
        self.child = Some(child);
        Ok(())
    }

    pub fn rest_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.rest_port)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// Where members reach this node (its Raft service).
    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// This node's `/api/v1/cluster/status`, if it answers.
    pub async fn status(&self) -> Option<serde_json::Value> {
        let response = reqwest::get(self.rest_url("/api/v1/cluster/status"))
            .await
            .ok()?;
        response.json().await.ok()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until the node answers health with a known leader.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = self.rest_url("/api/v1/health");
        let result = eventually(timeout, "the node to be ready", || {
            let request = client.get(&url).send();
            async move {
                let Ok(response) = request.await else {
                    return Ok(None);
                };
                let body: serde_json::Value = response.json().await?;
                Ok((body["ready"] == true).then_some(()))
            }
        })
        .await;
        if let Err(error) = result {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!("hodei exited with {status}; log:\n{}", self.log_tail());
            }
            bail!("{error:#}; log:\n{}", self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the current run's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let path = self.dir.join(format!("node-{}.log", self.starts));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data dir and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    /// Stops the process, empties its data dir and starts it again waiting to be added
    /// to a cluster (`bootstrap: join`), on the same ports: a node replaced after it
    /// left. The data dir itself stays (it may be a mount point).
    pub fn restart_empty_to_join(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let data = self.dir.join("data");
        if let Ok(entries) = std::fs::read_dir(&data) {
            for entry in entries.flatten() {
                let path = entry.path();
                match path.is_dir() {
                    true => std::fs::remove_dir_all(&path)?,
                    false => std::fs::remove_file(&path)?,
                }
            }
        }
        let config_path = self.dir.join("config.yaml");
        let config = std::fs::read_to_string(&config_path)?;
        let joining: Vec<String> = config
            .lines()
            .map(|line| match line.trim_start().starts_with("bootstrap:") {
                true => "  bootstrap: join".to_string(),
                false => line.to_string(),
            })
            .collect();
        std::fs::write(&config_path, joining.join("\n") + "\n")?;
        self.spawn()
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): the node freezes as a long GC pause or a
    /// swapping machine would, its connections open and silent.
    pub fn pause(&self, stopped: bool) -> anyhow::Result<()> {
        signal_pause(self.pid(), stopped)
    }

    /// How the process ended, once it has (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    /// The process id of every thread of the process (for a tracer to attach to).
    pub fn thread_ids(&self) -> Vec<u32> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Several `hodei` processes forming one cluster from `cluster.peers`.
pub struct ProcessCluster {
    pub root: PathBuf,
    pub nodes: std::collections::BTreeMap<u64, NodeProcess>,
}

impl ProcessCluster {
    /// Starts nodes `1..=size` in subfolders of `root` and waits until every one of them
    /// knows the same leader.
    pub async fn start(root: &Path, size: u64, cluster_extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(root, size, cluster_extra, "").await
    }

    /// Like [`ProcessCluster::start`], with `extra_yaml` appended to every node's config.
    pub async fn start_with(
        root: &Path,
        size: u64,
        cluster_extra: &[&str],
        extra_yaml: &str,
    ) -> anyhow::Result<Self> {
        let specs = NodeSpec::cluster(size)
            .into_iter()
            .map(|mut spec| {
                spec.cluster_extra = cluster_extra.iter().map(|line| line.to_string()).collect();
                spec.extra_yaml = extra_yaml.to_string();
                spec
            })
            .collect();
        Self::start_specs(root, specs).await
    }

    /// Starts one node per spec (each in `root/node<id>`), its peers as the spec says,
    /// and waits until every one of them knows the same leader.
    pub async fn start_specs(root: &Path, specs: Vec<NodeSpec>) -> anyhow::Result<Self> {
        let mut nodes = std::collections::BTreeMap::new();
        for spec in &specs {
            let node = NodeProcess::start_spec(&root.join(format!("node{}", spec.node_id)), spec)?;
            nodes.insert(spec.node_id, node);
        }
        let mut cluster = Self {
            root: root.to_path_buf(),
            nodes,
        };
        for node in cluster.nodes.values_mut() {
            node.wait_ready(Duration::from_secs(30)).await?;
        }
        cluster.leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    pub fn node(&mut self, node_id: u64) -> &mut NodeProcess {
        self.nodes
            .get_mut(&node_id)
            .expect("a node of this cluster")
    }

    /// The leader every running node agrees on, waiting up to `timeout` for one.
    pub async fn leader(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let running: Vec<u64> = self
            .nodes
            .iter_mut()
            .filter_map(|(id, node)| node.is_running().then_some(*id))
            .collect();
        let nodes = &self.nodes;
        eventually(timeout, "one leader known to every running node", || {
            let running = running.clone();
            async move {
                let mut leaders = std::collections::BTreeSet::new();
                for id in &running {
                    let Some(status) = nodes[id].status().await else {
                        return Ok(None);
                    };
                    match status["leader_id"].as_u64() {
                        Some(leader) if running.contains(&leader) => leaders.insert(leader),
                        _ => return Ok(None),
                    };
                }
                Ok((leaders.len() == 1).then(|| *leaders.iter().next().expect("one leader")))
            }
        })
        .await
    }

    /// Waits until the leader has committed the cluster's bootstrap (the default tenant,
    /// queue and pools), which it proposes once it leads: writes before it find no queue.
    pub async fn wait_bootstrapped(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let leader = self.leader(timeout).await?;
        let url = self.nodes[&leader].rest_url("/api/v1/queues/default");
        eventually(timeout, "the default queue to exist", || {
            let url = url.clone();
            async move {
                Ok(reqwest::get(url)
                    .await
                    .is_ok_and(|response| response.status() == 200)
                    .then_some(()))
            }
        })
        .await?;
        self.wait_caught_up(timeout).await
    }

    /// Moves the leadership to `node_id` (if another node leads) and waits until every
    /// running node follows it and has caught up.
    pub async fn make_leader(&mut self, node_id: u64, timeout: Duration) -> anyhow::Result<()> {
        let leader = self.leader(timeout).await?;
        if leader != node_id {
            let response = reqwest::Client::new()
                .post(self.nodes[&leader].rest_url("/api/v1/cluster/transfer-leader"))
                .json(&serde_json::json!({ "node_id": node_id }))
                .send()
                .await?;
            let status = response.status();
            if !status.is_success() {
                bail!(
                    "transfer to node {node_id}: {status} {}",
                    response.text().await?
                );
            }
        }
        let leader = self.wait_caught_up(timeout).await?;
        if leader != node_id {
            bail!("node {leader} leads, not node {node_id}");
        }
        Ok(())
    }

    /// Waits until the cluster is in a steady state: one leader known to every running
    /// node, and every member replicated up to the leader's last log index.
    pub async fn wait_caught_up(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        let leader = self.leader(timeout).await?;
        let running: Vec<u64> = self
            .nodes
            .iter_mut()
            .filter_map(|(id, node)| node.is_running().then_some(*id))
            .collect();
        let nodes = &self.nodes;
        eventually(
            timeout,
            "every running node to catch up with the leader",
            || {
                let running = running.clone();
                async move {
                    let Some(status) = nodes[&leader].status().await else {
                        return Ok(None);
                    };
                    let last_log_index = status["last_log_index"].as_u64();
                    for id in &running {
                        let Some(node_status) = nodes[id].status().await else {
                            return Ok(None);
                        };
                        if node_status["leader_id"].as_u64() != Some(leader)
                            || node_status["last_applied_index"].as_u64() < last_log_index
                        {
                            return Ok(None);
                        }
                    }
                    Ok(Some(()))
                }
            },
        )
        .await?;
        Ok(leader)
    }
}

/// What comparing the replicas' state digests found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCheck {
    /// (node, node, index) triples compared and found equal.
    pub compared: usize,
    /// Running nodes that shared no index with any other (still catching up, removed).
    pub without_overlap: Vec<u64>,
}

/// The state digest a node reported at each of its recent applied indexes.
async fn node_digests(node: &NodeProcess) -> Option<std::collections::BTreeMap<u64, String>> {
    let response = reqwest::get(node.rest_url("/api/v1/cluster/digests"))
        .await
        .ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    Some(
        body["digests"]
            .as_array()?
            .iter()
            .filter_map(|reading| {
                Some((
                    reading["index"].as_u64()?,
                    reading["state_digest"].as_str()?.to_string(),
                ))
            })
            .collect(),
    )
}

impl ProcessCluster {
    /// Compares the running replicas' state digests at every applied index two of them
    /// share: any difference is an error at once (the replicas diverged). Waits up to
    /// `timeout` for every running node to answer and to share an index with another.
    pub async fn check_digests(&mut self, timeout: Duration) -> anyhow::Result<DigestCheck> {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<u64> = self
                .nodes
                .iter_mut()
                .filter_map(|(id, node)| node.is_running().then_some(*id))
                .collect();
            let mut readings = std::collections::BTreeMap::new();
            for id in &running {
                if let Some(digests) = node_digests(&self.nodes[id]).await {
                    readings.insert(*id, digests);
                }
            }
            let mut check = DigestCheck::default();
            for (node, digests) in &readings {
                let mut overlaps = false;
                for (other, other_digests) in &readings {
                    if other == node {
                        continue;
                    }
                    for (index, digest) in digests {
                        let Some(other_digest) = other_digests.get(index) else {
                            continue;
                        };
                        overlaps = true;
                        if digest != other_digest {
                            bail!(
                                "replicas diverged: at index {index} node {node} has state digest {digest}, node {other} has {other_digest}"
                            );
                        }
                        if node < other {
                            check.compared += 1;
                        }
                    }
                }
                if !overlaps && readings.len() > 1 {
                    check.without_overlap.push(*node);
                }
            }
            let everyone_answered = readings.len() == running.len();
            if everyone_answered && check.without_overlap.is_empty() {
                return Ok(check);
            }
            if Instant::now() >= deadline {
                return Ok(check);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`ProcessCluster::check_digests`], also failing when some running node could not
    /// be compared with any other.
    pub async fn assert_digests_agree(&mut self, timeout: Duration) -> anyhow::Result<usize> {
        let check = self.check_digests(timeout).await?;
        if !check.without_overlap.is_empty() {
            bail!(
                "nodes {:?} shared no applied index with the others within {timeout:?}",
                check.without_overlap
            );
        }
        if check.compared == 0 && self.nodes.len() > 1 {
            bail!("no two replicas could be compared within {timeout:?}");
        }
        Ok(check.compared)
    }
}

/// Every cluster a test started is checked as it is dropped: replicas that diverged fail
/// the test, even one that checked nothing itself.
impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if std::thread::panicking() || self.nodes.len() < 2 {
            return;
        }
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(self.check_digests(Duration::from_secs(15)))
                })
                .join()
        });
        match outcome {
            Ok(Ok(check)) => {
                if !check.without_overlap.is_empty() {
                    eprintln!(
                        "digest check: nodes {:?} shared no applied index with the others",
                        check.without_overlap
                    );
                }
            }
            Ok(Err(error)) => panic!("{error:#}"),
            Err(_) => panic!("the digest check panicked"),
        }
    }
}

/// SIGSTOP or SIGCONT to one process.
fn signal_pause(pid: Option<u32>, stopped: bool) -> anyhow::Result<()> {
    let pid = pid.context("the process is not running")?;
    let signal = if stopped {
        nix::sys::signal::Signal::SIGSTOP
    } else {
        nix::sys::signal::Signal::SIGCONT
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
    Ok(())
}

/// One `hodei worker` agent process.
pub struct WorkerProcess {
    pub id: String,
    pub dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    starts: u32,
}

impl WorkerProcess {
    /// Starts a worker `id` in `pool` offering `cpu_m`/`memory_mb`, talking to `servers`
    /// (gRPC addresses); it runs jobs in `dir/work` and logs to `dir`.
    pub fn start(
        dir: &Path,
        id: &str,
        pool: &str,
        servers: &[String],
        cpu_m: u64,
        memory_mb: u64,
    ) -> anyhow::Result<Self> {
        Self::start_with(dir, id, pool, servers, cpu_m, memory_mb, &[])
    }

    /// Like [`WorkerProcess::start`], with `extra` arguments (e.g. `--runner instant`).
    pub fn start_with(
        dir: &Path,
        id: &str,
        pool: &str,
        servers: &[String],
        cpu_m: u64,
        memory_mb: u64,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("work"))?;
        let mut args = vec![
            "worker".to_string(),
            "--id".to_string(),
            id.to_string(),
            "--pool".to_string(),
            pool.to_string(),
            "--servers".to_string(),
            servers.join(","),
            "--cpu-m".to_string(),
            cpu_m.to_string(),
            "--memory-mb".to_string(),
            memory_mb.to_string(),
            "--work-dir".to_string(),
            dir.join("work").display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let mut worker = Self {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            args,
            child: None,
            starts: 0,
        };
        worker.spawn()?;
        Ok(worker)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = File::create(self.dir.join(format!("worker-{}.log", self.starts)))?;
        let child = Command::new(hodei_binary()?)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start hodei worker")?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM, and waits for the agent to exit (it leaves its pool first).
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("the worker is not running")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        Ok(child.wait()?)
    }

    /// SIGKILL: the agent dies without a word to the leader.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) to the agent alone: not to its jobs or its
    /// fence, as a debugger, a swapping machine or a long pause of the process would.
    pub fn pause(&self, stopped: bool) -> anyhow::Result<()> {
        signal_pause(self.pid(), stopped)
    }

    /// Starts the agent again (after `kill9`), with the same id and arguments.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    pub fn log_tail(&self) -> String {
        let path = self.dir.join(format!("worker-{}.log", self.starts));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A REST client for one node: each call answers the status and the JSON body (`Null` if
/// none); a node that does not answer gives status 0, so a test can try another node.
#[derive(Clone)]
pub struct RestApi {
    http: reqwest::Client,
    base: String,
    /// Sent as `authorization: Bearer <token>` with every call.
    token: Option<String>,
}

impl RestApi {
    pub fn new(node: &NodeProcess) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: node.rest_url(""),
            token: None,
        }
    }

    /// This client, presenting `token` on every call.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// `principal` goes in `x-hodei-principal` (`admin` or `tenant:<id>`).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        principal: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(principal) = principal {
            request = request.header("x-hodei-principal", principal);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (
                    status,
                    response.json().await.unwrap_or(serde_json::Value::Null),
                )
            }
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, None, Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PUT, path, None, Some(body))
            .await
    }

    /// A call that must succeed (2xx): its body, or a panic naming the call and answer.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, answer) = self.call(method.clone(), path, None, body.clone()).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} {body:?}: {status} {answer}"
        );
        answer
    }
}
