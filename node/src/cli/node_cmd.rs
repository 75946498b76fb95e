//! `hodei server` and `hodei dev`.

use std::path::PathBuf;

use clap::Args;
use hodei_config::{Config, ConfigLoader, LogFormat};

/// Flags that override configuration keys (the highest layer).
#[derive(Debug, Args, Default)]
pub struct OverrideFlags {
    /// This node's Raft id (cluster.node_id).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Where the node keeps its data (cluster.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (server.host).
    #[arg(long)]
    pub host: Option<String>,
    /// REST port (server.port).
    #[arg(long)]
    pub port: Option<u16>,
    /// gRPC port (server.grpc_port).
    #[arg(long)]
    pub grpc_port: Option<u16>,
    /// Log format: text or json (server.log_format).
    #[arg(long, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Serve without authentication on a non-loopback address (server.insecure): anyone
    /// who reaches the node may act as any principal.
    #[arg(long)]
    pub insecure: bool,
}

impl OverrideFlags {
    pub fn apply(&self, mut loader: ConfigLoader) -> ConfigLoader {
        if let Some(node_id) = self.node_id {
            loader = loader.flag("cluster.node_id", node_id.to_string());
        }
        if let Some(data_dir) = &self.data_dir {
            loader = loader.flag("cluster.data_dir", data_dir.display().to_string());
        }
        if let Some(host) = &self.host {
            loader = loader.flag("server.host", host.clone());
        }
        if let Some(port) = self.port {
            loader = loader.flag("server.port", port.to_string());
        }
        if let Some(grpc_port) = self.grpc_port {
            loader = loader.flag("server.grpc_port", grpc_port.to_string());
        }
        if let Some(log_format) = &self.log_format {
            loader = loader.flag("server.log_format", log_format.clone());
        }
        if self.insecure {
            loader = loader.flag("server.insecure", "true");
        }
        loader
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The config.yaml to read (optional: defaults apply without one).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: OverrideFlags,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// An optional config.yaml; dev only changes the data dir's default to ./.hodei/data.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Local `hodei worker` processes to start in pool-default.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[command(flatten)]
    pub overrides: OverrideFlags,
}

pub fn load_config(
    config: Option<&PathBuf>,
    overrides: &OverrideFlags,
    dev: bool,
) -> Result<Config, hodei_config::ConfigError> {
    let mut loader = ConfigLoader::new().env_vars(std::env::vars());
    if let Some(path) = config {
        loader = loader.file(path);
    }
    if dev {
        // Dev always forms its own single-node cluster.
        loader = loader.flag("cluster.bootstrap", "single");
    }
    overrides.apply(loader).load()
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,sled=warn,tower=warn,h2=warn")
    });
    // Colours only for a person at a terminal: a file or a pipe gets plain text.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Starts `count` worker agents as child processes of this one, in the first pool, with
/// their work directories under the data dir. They stop when this process does.
fn start_local_workers(
    config: &Config,
    grpc_addr: std::net::SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<tokio::process::Child>> {
    let program = std::env::current_exe()?;
    let pool = config
        .resource_pools
        .pools
        .first()
        .map(|pool| pool.id.clone())
        .unwrap_or_else(|| "pool-default".to_string());
    let mut children = Vec::new();
    for index in 1..=count {
        let work_dir = config
            .cluster
            .data_dir
            .join("..")
            .join(format!("work-{index}"));
        std::fs::create_dir_all(&work_dir)?;
        let child =
            tokio::process::Command::new(&program)
                .arg("worker")
                .args(["--pool", &pool])
                .args(["--servers", &grpc_addr.to_string()])
                .args(["--id", &format!("dev-worker-{index}")])
                // Stopping dev should not wait long for jobs: 2 s, then they are killed.
                .args(["--shutdown-grace-s", "2"])
                .arg("--work-dir")
                .arg(&work_dir)
                .args(config.workers.agent_arguments())
                .args(
                    config.server.tls.iter().flat_map(|tls| {
                        [std::ffi::OsStr::new("--ca-cert"), tls.client_ca.as_os_str()]
                    }),
                )
                .env_clear()
                .envs(crate::actors::workers::process_provider::agent_environment(
                    config.cluster.secret.as_deref(),
                    &pool,
                ))
                .kill_on_drop(true)
                .spawn()?;
        children.push(child);
    }
    Ok(children)
}

/// Runs a node until Ctrl-C or SIGTERM; `local_workers` worker agents run beside it.
pub async fn run_node(config: Config, announce: bool, local_workers: usize) -> anyhow::Result<()> {
    init_logging(config.server.log_format);
    let node = crate::server::start(&config).await?;
    let mut workers = start_local_workers(&config, node.grpc_addr, local_workers)?;
    if announce {
        let rest = node.rest_addr;
        println!(
            "Hodei is running (single-node cluster, data in {})",
            config.cluster.data_dir.display()
        );
        println!("  REST:     http://{rest}/api/v1");
        println!("  gRPC:     {}", node.grpc_addr);
        println!(
            "  OpenAPI:  http://{rest}/api/v1/openapi.json (browse: http://{rest}/api/v1/docs)"
        );
        if config.metrics.prometheus.enabled {
            println!(
                "  Metrics:  http://{}:{}{}",
                config.server.host, config.metrics.prometheus.port, config.metrics.prometheus.path
            );
        }
        println!("  Workers:  {local_workers} local worker process(es) in the first pool");
        println!("  Try:      curl -s http://{rest}/api/v1/tenants");
        println!("            cargo run --release -- job submit --wait -- echo hello");
        println!("Press Ctrl-C to stop.");
    }
    let stopped = tokio::select! {
        () = wait_for_signal() => None,
        stop = node.raft.stopped() => Some(stop),
        () = node.actors_stopped() => {
            for worker in &mut workers {
                let _ = worker.start_kill();
            }
            tracing::error!("the node's actors gave up restarting a failed actor: exiting");
            exit_within(std::time::Duration::from_secs(10), 1);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), node.shutdown()).await;
            anyhow::bail!("the node's actors gave up restarting a failed actor");
        }
    };
    match stopped {
        None => {
            stop_local_workers(&mut workers).await;
            tracing::info!("shutting down");
            node.shutdown().await;
            Ok(())
        }
        // Fail-stop: a node that cannot store what it applies must not go on serving;
        // exiting non-zero lets its supervisor restart it from what is stored.
        Some(hodei_cluster::CoreStop::Failed(reason)) => {
            kill_local_workers(&mut workers);
            tracing::error!(%reason, "the raft core stopped: exiting");
            exit_within(std::time::Duration::from_secs(10), 1);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), node.shutdown()).await;
            anyhow::bail!("the raft core stopped: {reason}")
        }
        Some(hodei_cluster::CoreStop::Removed) => {
            kill_local_workers(&mut workers);
            tracing::warn!("this node was removed from the cluster: exiting");
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), node.shutdown()).await;
            Ok(())
        }
    }
}

/// Makes sure the process ends within `deadline` with `code`, whatever the shutdown does:
/// a storage call blocked on a full disk must not keep a failed node alive (its
/// supervisor restarts it from what is stored).
fn exit_within(deadline: std::time::Duration, code: i32) {
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("error: the node did not stop within {deadline:?} of its failure: exiting");
        std::process::exit(code);
    });
}

/// Asks the local workers to stop (SIGTERM: they leave their pool, recorded `terminated`
/// while this node still runs), then kills those still there after a few seconds.
async fn stop_local_workers(workers: &mut [tokio::process::Child]) {
    for worker in workers.iter() {
        if let Some(pid) = worker.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let all_exited = async {
        for worker in workers.iter_mut() {
            let _ = worker.wait().await;
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(7), all_exited)
        .await
        .is_err()
    {
        tracing::warn!("local workers did not stop in time: killing them");
        kill_local_workers(workers);
    }
}

fn kill_local_workers(workers: &mut [tokio::process::Child]) {
    for worker in workers.iter_mut() {
        let _ = worker.start_kill();
    }
}

pub async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
