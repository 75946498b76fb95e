//! The `process` provider: `hodei worker` child processes of this node, started and
//! stopped by the leader's pool actors. The children live as long as this node (the kernel
//! kills them if it dies), across leadership changes: a node that stops leading keeps its
//! children working for the new leader, which adopts them as registered workers and may
//! stop them through their stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tracing::{info, warn};

use crate::actors::workers::provider::WorkerProvider;
use hodei_domain::pool::Pool;

struct Spawned {
    pool: String,
    started: Instant,
    child: tokio::process::Child,
}

/// The worker processes this node started.
#[derive(Clone)]
pub struct ProcessProvider {
    children: Arc<Mutex<BTreeMap<String, Spawned>>>,
    program: PathBuf,
    work_root: PathBuf,
    /// `workers.enforce_limits`, `allowed_dirs` and `run_as`, as agent arguments.
    agent_arguments: Vec<std::ffi::OsString>,
    /// `cluster.secret`: the agents join with a credential made from it.
    cluster_secret: Option<String>,
    /// `server.tls.client_ca`: the agents check the nodes' certificates against it.
    ca_cert: Option<PathBuf>,
}

/// The environment of an agent a node starts: `PATH`, `HOME`, `LANG` and `RUST_LOG` as
/// the node has them, and with a cluster secret the join credential of its pool.
pub fn agent_environment(cluster_secret: Option<&str>, pool: &str) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = ["PATH", "HOME", "LANG", "RUST_LOG"]
        .into_iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| (name.to_string(), value))
        })
        .collect();
    if let Some(secret) = cluster_secret {
        environment.push((
            "HODEI_JOIN_TOKEN".to_string(),
            crate::gateway::credentials::node_join_credential(secret, pool),
        ));
    }
    environment
}

impl ProcessProvider {
    /// Workers run `program worker ...` with their work directories under `work_root`.
    pub fn new(
        program: PathBuf,
        work_root: PathBuf,
        agent_arguments: Vec<std::ffi::OsString>,
        cluster_secret: Option<String>,
        ca_cert: Option<PathBuf>,
    ) -> Self {
        Self {
            children: Arc::new(Mutex::new(BTreeMap::new())),
            program,
            work_root,
            agent_arguments,
            cluster_secret,
            ca_cert,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Spawned>> {
        self.children.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts one worker of `pool` that will register with one of `servers`.
    fn spawn(&self, pool: &Pool, servers: &[String]) -> std::io::Result<String> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let worker_id = format!("{}-{}", pool.id, &suffix[..12]);
        let work_dir = self.work_root.join(&worker_id);
        std::fs::create_dir_all(&work_dir)?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("worker")
            .args(["--id", &worker_id])
            .args(["--pool", &pool.id])
            .args(["--servers", &servers.join(",")])
            .args(["--cpu-m", &pool.worker_shape.cpu_m.to_string()])
            .args(["--memory-mb", &pool.worker_shape.memory_mb.to_string()])
            .args(["--gpu", &pool.worker_shape.gpu.to_string()])
            .arg("--work-dir")
            .arg(&work_dir)
            .args(&self.agent_arguments)
            .args(
                self.ca_cert
                    .iter()
                    .flat_map(|path| [std::ffi::OsStr::new("--ca-cert"), path.as_os_str()]),
            )
            // The agent gets none of the node's variables (its admin token, the cluster
            // secret): only its join credential and what a process needs.
            .env_clear()
            .envs(agent_environment(self.cluster_secret.as_deref(), &pool.id))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(work_dir.join("worker.log"))?)
            .kill_on_drop(true);
        crate::worker::process::die_with_parent(&mut command);
        let child = command.spawn()?;
        info!(worker = %worker_id, pool = %pool.id, pid = child.id(), "started a worker process");
        self.lock().insert(
            worker_id.clone(),
            Spawned {
                pool: pool.id.clone(),
                started: Instant::now(),
                child,
            },
        );
        Ok(worker_id)
    }

    /// When this node started the process of `worker`, ms since the epoch.
    pub fn started_at_ms(&self, worker: &str) -> Option<u64> {
        let started = self.lock().get(worker)?.started;
        let ago = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(crate::actors::now_ms().saturating_sub(ago))
    }

    /// Stops every child (node shutdown).
    pub fn stop_all(&self) {
        let workers: Vec<String> = self.lock().keys().cloned().collect();
        for worker in workers {
            self.stop(&worker);
        }
    }
}

impl WorkerProvider for ProcessProvider {
    fn start(&self, pool: &Pool, _live: &[String], servers: &[String]) -> Result<String, String> {
        self.spawn(pool, servers).map_err(|error| error.to_string())
    }

    /// Stops the process of `worker` if this node started it.
    fn stop(&self, worker: &str) {
        if let Some(mut spawned) = self.lock().remove(worker) {
            if let Err(error) = spawned.child.start_kill() {
                warn!(%worker, %error, "could not stop a worker process");
            }
            // Reap it in the background.
            tokio::spawn(async move {
                let _ = spawned.child.wait().await;
            });
        }
    }

    /// Forgets children that exited, and returns the ids of those of `pool` still running
    /// with when each was started.
    fn running(&self, pool: &str) -> Vec<(String, Instant)> {
        let mut children = self.lock();
        children.retain(|worker, spawned| match spawned.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                info!(%worker, %status, "a worker process exited");
                false
            }
            Err(_) => false,
        });
        children
            .iter()
            .filter(|(_, spawned)| spawned.pool == pool)
            .map(|(worker, spawned)| (worker.clone(), spawned.started))
            .collect()
    }
}
