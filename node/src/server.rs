//! Assembles a node: storage, Raft, the actor tree, and the REST and gRPC listeners.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hodei_cluster::{ClusterSettings, RaftNode, SledStorage};
use hodei_config::{BootstrapMode, Config, PoolProviderConfig};
use hodei_proto::v1::cluster_service_server::ClusterServiceServer;
use hodei_proto::v1::cost_optimization_service_server::CostOptimizationServiceServer;
use hodei_proto::v1::job_service_server::JobServiceServer;
use hodei_proto::v1::observability_service_server::ObservabilityServiceServer;
use hodei_proto::v1::queue_service_server::QueueServiceServer;
use hodei_proto::v1::resource_pool_service_server::ResourcePoolServiceServer;
use hodei_proto::v1::tenant_service_server::TenantServiceServer;
use hodei_proto::v1::worker_service_server::WorkerServiceServer;
use ractor::{Actor, ActorRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::actors::control::ControlMsg;
use crate::actors::gateway::GatewayHandle;
use crate::actors::metrics::{MetricsHub, MetricsMsg};
use crate::actors::root::{RootMsg, RootSupervisor};
use crate::actors::workers::hub::{HeartbeatSettings, WorkerHub};
use crate::actors::workers::process_provider::ProcessProvider;
use crate::actors::workers::session::WorkerGrpc;
use crate::actors::{Catalog, LimitSettings, NodeContext};
use crate::api::connections::{ConnectionLimit, LimitedAcceptor};
use crate::api::grpc::{ClusterGrpc, JobGrpc, PoolGrpc, QueueGrpc, TenantGrpc};
use crate::gateway::Principal;
use crate::state::HodeiState;
use hodei_domain::burst::BurstPolicy;
use hodei_domain::pool::{Pool, PoolProvider, PoolType};
use hodei_domain::queue::{Queue, QueuePolicy};
use hodei_domain::quota::Quota;
use hodei_domain::resources::Resources;
use hodei_domain::sla::SlaTargets;

/// A running node. Dropping it does not stop it; call [`NodeHandle::shutdown`].
pub struct NodeHandle {
    pub rest_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// Where Prometheus scrapes this node, when metrics are enabled.
    pub metrics_addr: Option<SocketAddr>,
    pub raft: RaftNode,
    pub gateway: GatewayHandle,
    pub control: ActorRef<ControlMsg>,
    root: ActorRef<RootMsg>,
    /// Becomes true when the actor tree has stopped (its root gave up, or shutdown).
    actors_stopped: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    processes: ProcessProvider,
}

async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen for {what} on {host}:{port}"))
}

/// The work root of the agents this node starts: created so that only its owner lists or
/// changes it (0711: a job's user, `workers.run_as`, passes through to its own work
/// directory), and refused when it exists but belongs to another user (in a shared
/// temporary directory, another user could have placed it, or links in it).
fn private_work_root(config: &Config) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = config.workers.work_root(config.cluster.node_id);
    std::fs::create_dir_all(&root)
        .with_context(|| format!("workers.work_root: cannot create {}", root.display()))?;
    let metadata = std::fs::symlink_metadata(&root)
        .with_context(|| format!("workers.work_root: cannot read {}", root.display()))?;
    if metadata.file_type().is_symlink() || metadata.uid() != nix::unistd::Uid::effective().as_raw()
    {
        anyhow::bail!(
            "workers.work_root: {} is a link or belongs to another user: remove it or choose another",
            root.display()
        );
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("workers.work_root: cannot make {} private", root.display()))?;
    Ok(root)
}

/// The TLS material of `server.tls`, read from its files (none without TLS).
fn load_tls(config: &Config) -> anyhow::Result<Option<hodei_cluster::PeerTls>> {
    let Some(tls) = &config.server.tls else {
        return Ok(None);
    };
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
    };
    Ok(Some(hodei_cluster::PeerTls {
        ca_pem: read("server.tls.client_ca", &tls.client_ca)?,
        cert_pem: read("server.tls.cert", &tls.cert)?,
        key_pem: read("server.tls.key", &tls.key)?,
    }))
}

/// Starts a node from its configuration. With `cluster.bootstrap: single`, a node that
/// belongs to no cluster forms a one-node cluster.
pub async fn start(config: &Config) -> anyhow::Result<NodeHandle> {
    // Other processes of this user (jobs among them) may not read this one's memory or
    // environment (its secrets) through /proc or ptrace.
    let _ = nix::sys::prctl::set_dumpable(false);
    // Before anything serves: a node that answers is one whose rules are in place.
    install_alert_rules(&config.observability.alerting)?;
    install_dashboards(&config.observability.grafana)?;
    let rest_listener = bind(&config.server.host, config.server.port, "REST").await?;
    let grpc_listener = bind(&config.server.host, config.server.grpc_port, "gRPC").await?;
    let peer_listener = bind(&config.server.host, config.cluster.peer_port, "peers").await?;
    let rest_addr = rest_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;
    let peer_addr = peer_listener.local_addr()?;
    let advertise_addr = config
        .cluster
        .advertise_addr
        .clone()
        .unwrap_or_else(|| peer_addr.to_string());
    // Clients and workers are sent to a member's public gRPC port: on the advertised
    // host when one is set, else where it listens.
    let api_addr = match config.cluster.advertise_addr.as_deref() {
        Some(advertised) => match advertised.rsplit_once(':') {
            Some((host, _)) => format!("{host}:{}", grpc_addr.port()),
            None => grpc_addr.to_string(),
        },
        None => grpc_addr.to_string(),
    };

    if let Err(problems) = catalog_problems(config) {
        anyhow::bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    let tls = load_tls(config)?;
    let ((raft, state), (metrics_history, audit)) =
        open_raft(config, advertise_addr, api_addr, tls.clone()).await?;
    let audit = Arc::new(crate::actors::audit::AuditLog::new(
        audit,
        config.cluster.node_id,
        config.server.audit_retention_days,
    ));
    bootstrap(config, &raft).await?;

    let leader_wait = Duration::from_millis(config.server.leader_wait_ms);
    let mut hub =
        MetricsHub::new().map_err(|error| anyhow::anyhow!("cannot set up metrics: {error}"))?;
    raft.report_timings_to(hub.raft_timings());
    let scrapes = Arc::new(crate::actors::metrics::ScrapeLog::default());
    let node_context = NodeContext {
        raft: raft.clone(),
        state,
        leader_wait,
        limits: Arc::new(limit_settings(config)),
        metrics: hub.metrics.clone(),
        catalog: Arc::new(catalog(config)),
        worker_hub: WorkerHub::new(HeartbeatSettings {
            interval: Duration::from_millis(config.workers.heartbeat_interval_ms),
            missed_beats: config.workers.missed_heartbeats,
        }),
        processes: ProcessProvider::new(
            std::env::current_exe().context("cannot find the hodei binary for worker processes")?,
            private_work_root(config)?,
            config.workers.agent_arguments(),
            config.cluster.secret.clone(),
            config.server.tls.as_ref().map(|tls| tls.client_ca.clone()),
        ),
        metrics_history: Some(metrics_history.clone()),
        scrapes: scrapes.clone(),
        secrets: config
            .cluster
            .secret
            .as_deref()
            .map(|secret| Arc::new(crate::gateway::secrets::Sealer::new(secret))),
        audit: Some(audit.clone()),
        members: Arc::new(crate::actors::MemberAccess {
            credential: config
                .cluster
                .secret
                .as_deref()
                .map(crate::gateway::credentials::member_credential),
            ca_pem: tls.as_ref().map(|tls| tls.ca_pem.clone()),
        }),
    };
    // Everything served stops when `stop` says so.
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(crate::actors::metrics_history::run(
        node_context.clone(),
        metrics_history,
        stopped.clone(),
    ));
    let processes = node_context.processes.clone();
    let worker_hub = node_context.worker_hub.clone();
    hub.observe_node(&node_context);
    let default_principal = Principal::parse(&config.server.default_principal)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let authenticator = crate::actors::authenticator::Authenticator::new(
        match config.server.auth {
            hodei_config::AuthMode::None => crate::actors::authenticator::AuthMode::None,
            hodei_config::AuthMode::Token => crate::actors::authenticator::AuthMode::Token,
        },
        config.server.admin_token.as_deref(),
        default_principal,
        config.cluster.secret.clone(),
        node_context.state.clone(),
    );
    let worker_service = WorkerGrpc::new(
        node_context.clone(),
        worker_hub.clone(),
        authenticator.clone(),
    );
    let (root, root_done) = Actor::spawn(None, RootSupervisor, node_context).await?;
    let (actors_stopped_tx, actors_stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = root_done.await;
        let _ = actors_stopped_tx.send(true);
    });
    let gateway = root
        .call(RootMsg::Gateway, None)
        .await?
        .expect("root answers");
    gateway.set_call_timeout(Duration::from_millis(
        config.server.limits.request_timeout_ms,
    ));
    gateway.set_in_flight_limit(config.server.limits.max_in_flight as usize);
    gateway.set_audit(audit);
    let control = root
        .call(RootMsg::Control, None)
        .await?
        .expect("root answers");
    root.call(
        |reply| RootMsg::StartMetrics(Box::new(hub.clone()), reply),
        None,
    )
    .await?
    .expect("root answers")
    .map_err(|error| anyhow::anyhow!("cannot start the metrics actor: {error}"))?;

    let metrics_addr = serve_metrics(config, root.clone(), scrapes, stopped.clone()).await?;
    let rest_app = crate::api::rest::router(
        hub.metrics.clone(),
        gateway.clone(),
        authenticator.clone(),
        config.server.max_body_bytes,
    );
    let limits = &config.server.limits;
    let connections =
        |port| ConnectionLimit::new(limits.max_connections as usize, port, hub.metrics.clone());
    let rest_server = serve_rest(
        rest_listener,
        rest_app,
        stopped.clone(),
        tls.clone(),
        limits,
        connections("rest"),
    )
    .await?;
    let grpc_router = api_router(&gateway, &authenticator, worker_service, tls.as_ref()).await?;
    // Raft, forwarded writes and membership changes on their own port: the public
    // ports serve only the API, and the peer service admits only members (with TLS,
    // only callers with a certificate the cluster's CA signed).
    let mut peer_builder = grpc_builder();
    if let Some(tls) = &tls {
        peer_builder = peer_builder
            .tls_config(tls.server_config().timeout(TLS_HANDSHAKE_TIMEOUT))
            .context("server.tls: the peer port's TLS")?;
    }
    let first_bytes_within = Duration::from_millis(limits.header_read_timeout_ms);
    let peer_router = peer_builder.add_service(raft.grpc_service());
    let peer_server = serve_grpc(
        peer_router,
        peer_listener,
        stopped.clone(),
        "peer",
        connections("peer"),
        first_bytes_within,
    );
    let grpc_server = serve_grpc(
        grpc_router,
        grpc_listener,
        stopped,
        "gRPC",
        connections("grpc"),
        first_bytes_within,
    );

    info!(rest = %rest_addr, grpc = %grpc_addr, peers = %peer_addr, node_id = config.cluster.node_id, "node started");
    Ok(NodeHandle {
        rest_addr,
        grpc_addr,
        metrics_addr,
        raft,
        gateway,
        control,
        root,
        actors_stopped,
        stop,
        servers: vec![rest_server, grpc_server, peer_server],
        processes,
    })
}

/// Opens the data directory, loads the replicated state and starts this node's Raft core.
async fn open_raft(
    config: &Config,
    advertise_addr: String,
    api_addr: String,
    tls: Option<hodei_cluster::PeerTls>,
) -> anyhow::Result<(
    (RaftNode, crate::state::SharedState),
    (
        Arc<dyn hodei_cluster::Keyspace>,
        Arc<dyn hodei_cluster::Keyspace>,
    ),
)> {
    std::fs::create_dir_all(&config.cluster.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            config.cluster.data_dir.display()
        )
    })?;
    // The data directory (state, Raft log, snapshots) is the node's user's alone.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            &config.cluster.data_dir,
            std::fs::Permissions::from_mode(0o700),
        )
        .with_context(|| {
            format!(
                "cannot make data dir {} private",
                config.cluster.data_dir.display()
            )
        })?;
    }
    let opening = std::time::Instant::now();
    let storage = SledStorage::open(&config.cluster.data_dir).with_context(|| {
        format!(
            "cannot open storage in {}",
            config.cluster.data_dir.display()
        )
    })?;
    let settings = ClusterSettings {
        node_id: config.cluster.node_id,
        advertise_addr,
        api_addr,
        secret: config.cluster.secret.clone(),
        heartbeat_ms: config.cluster.heartbeat_ms,
        election_timeout_min_ms: config.cluster.election_timeout_min_ms,
        election_timeout_max_ms: config.cluster.election_timeout_max_ms,
        snapshot_every_entries: config.cluster.snapshot_every_entries,
        log_entries_kept_after_snapshot: config.cluster.log_entries_kept_after_snapshot,
        max_commands_per_entry: config.cluster.max_commands_per_entry,
        leader_wait_ms: config.server.leader_wait_ms,
        tls,
        source_addr: config.cluster.source_addr,
    };
    // The longest fair-share window is `retention.finished_in_memory_s`; a minute more.
    let share_horizon =
        Duration::from_secs(config.retention.finished_in_memory_s.saturating_add(60));
    // Per-job events come in bursts of thousands; receivers that lag resynchronise.
    let (events, _) = broadcast::channel(16_384);
    info!(
        elapsed_ms = opening.elapsed().as_millis() as u64,
        "storage opened"
    );
    let started = RaftNode::start(settings, &storage, |keyspace| {
        let loading = std::time::Instant::now();
        let state = HodeiState::load(keyspace, events.clone())?
            .with_share_horizon(share_horizon)
            .with_history(
                hodei_cluster::Storage::keyspace(&storage, hodei_cluster::STATE_KEYSPACE)
                    .map_err(|error| error.to_string())?,
            );
        info!(
            elapsed_ms = loading.elapsed().as_millis() as u64,
            jobs = state.job_count(),
            "replicated state loaded"
        );
        Ok(state)
    })
    .await
    .context("cannot start raft")?;
    info!(
        elapsed_ms = opening.elapsed().as_millis() as u64,
        "raft started"
    );
    // The node's own samples of the state (historical metrics): local, not replicated.
    let history = hodei_cluster::Storage::keyspace(&storage, "metrics_history")
        .context("cannot open the historical metrics")?;
    // Its audit log: local too (each node records the requests it served).
    let audit =
        hodei_cluster::Storage::keyspace(&storage, "audit").context("cannot open the audit log")?;
    Ok((started, (history, audit)))
}

/// Serves Prometheus' scrape path on its own port, when enabled.
async fn serve_metrics(
    config: &Config,
    root: ActorRef<RootMsg>,
    scrapes: Arc<crate::actors::metrics::ScrapeLog>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Option<SocketAddr>> {
    if !config.metrics.prometheus.enabled {
        return Ok(None);
    }

    let listener = bind(
        &config.server.host,
        config.metrics.prometheus.port,
        "metrics",
    )
    .await?;
    let addr = listener.local_addr()?;
    scrapes.listening_on(addr.to_string());
    let app = axum::Router::new()
        .route(&config.metrics.prometheus.path, axum::routing::get(scrape))
        .with_state((root, scrapes));
    let mut metrics_stopped = stopped;
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = metrics_stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "metrics server failed");
        }
    });
    Ok(Some(addr))
}

/// The public gRPC services, with health and reflection.
async fn api_router(
    gateway: &GatewayHandle,
    authenticator: &crate::actors::authenticator::Authenticator,
    worker_service: WorkerGrpc,
    tls: Option<&hodei_cluster::PeerTls>,
) -> anyhow::Result<tonic::transport::server::Router> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TenantServiceServer<TenantGrpc>>()
        .await;
    health_reporter
        .set_serving::<ClusterServiceServer<ClusterGrpc>>()
        .await;
    health_reporter
        .set_serving::<JobServiceServer<JobGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(hodei_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut builder = grpc_builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(
                        &tls.cert_pem,
                        &tls.key_pem,
                    ))
                    .timeout(TLS_HANDSHAKE_TIMEOUT),
            )
            .context("server.tls: the gRPC port's TLS")?;
    }
    Ok(builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(TenantServiceServer::new(TenantGrpc::new(
            gateway.clone(),
            authenticator.clone(),
        )))
        .add_service(ClusterServiceServer::new(ClusterGrpc::new(
            gateway.clone(),
            authenticator.clone(),
        )))
        .add_service(WorkerServiceServer::new(worker_service))
        .add_service(JobServiceServer::new(JobGrpc::new(
            gateway.clone(),
            authenticator.clone(),
        )))
        .add_service(QueueServiceServer::new(QueueGrpc::new(
            gateway.clone(),
            authenticator.clone(),
        )))
        .add_service(ResourcePoolServiceServer::new(PoolGrpc::new(
            gateway.clone(),
            authenticator.clone(),
        )))
        .add_service(CostOptimizationServiceServer::new(
            crate::api::grpc::CostGrpc::new(gateway.clone(), authenticator.clone()),
        ))
        .add_service(ObservabilityServiceServer::new(
            crate::api::grpc::ObservabilityGrpc::new(gateway.clone(), authenticator.clone()),
        )))
}

/// How often a connection that is otherwise quiet is pinged (HTTP/2), and how long its
/// answer may take before the connection is closed: a vanished client gives its place
/// back (`server.limits.max_connections`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest TLS handshake on the gRPC and peer ports.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC server that pings quiet connections.
fn grpc_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
}

/// Serves the REST API until `stopped`: at most `server.limits.max_connections`
/// connections, each given `header_read_timeout_ms` to send a request's headers (a client
/// that trickles them holds no connection for long).
async fn serve_rest(
    listener: TcpListener,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
    tls: Option<hodei_cluster::PeerTls>,
    limits: &hodei_config::ServerLimits,
    connections: ConnectionLimit,
) -> anyhow::Result<JoinHandle<()>> {
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        stopping.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let server = axum_server::from_tcp(listener.into_std()?)?.handle(handle);
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    Ok(match tls {
        Some(tls) => {
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem(
                tls.cert_pem.clone(),
                tls.key_pem.clone(),
            )
            .await
            .context("server.tls: the REST port's certificate and key")?;
            spawn_rest(
                server.acceptor(LimitedAcceptor::new(
                    connections,
                    header_timeout,
                    axum_server::tls_rustls::RustlsAcceptor::new(rustls),
                )),
                app,
                header_timeout,
            )
        }
        None => spawn_rest(
            server.acceptor(LimitedAcceptor::new(
                connections,
                header_timeout,
                axum_server::accept::DefaultAcceptor::new(),
            )),
            app,
            header_timeout,
        ),
    })
}

fn spawn_rest<A>(
    mut server: axum_server::Server<SocketAddr, A>,
    app: axum::Router,
    header_timeout: Duration,
) -> JoinHandle<()>
where
    A: axum_server::accept::Accept<TcpStream, axum::Router> + Clone + Send + Sync + 'static,
    A::Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    A::Service:
        axum_server::service::SendService<axum::http::Request<hyper::body::Incoming>> + Send,
    A::Future: Send,
{
    let builder = server.http_builder();
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    // An HTTP/2 client that stopped answering pings gives its connection back.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    tokio::spawn(async move {
        if let Err(error) = server.serve(app.into_make_service()).await {
            tracing::error!(%error, "REST server failed");
        }
    })
}

/// Serves `router` on `listener` until `stopped`. Raft and forwarded writes are many
/// small messages: Nagle's algorithm with delayed ACKs would stall them by tens of
/// milliseconds, so it is off.
fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    what: &'static str,
    connections: ConnectionLimit,
    first_bytes_within: Duration,
) -> JoinHandle<()> {
    let incoming = crate::api::connections::incoming(listener, connections, first_bytes_within);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(%error, "{what} server failed");
        }
    })
}

/// `GET /metrics`: the Prometheus text exposition, from the metrics actor.
async fn scrape(
    axum::extract::State((root, scrapes)): axum::extract::State<(
        ActorRef<RootMsg>,
        Arc<crate::actors::metrics::ScrapeLog>,
    )>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let started = std::time::Instant::now();
    let actor = match root
        .call(RootMsg::Metrics, Some(Duration::from_secs(5)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Some(actor))) => actor,
        _ => {
            scrapes.failed();
            return (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "metrics are restarting\n",
            )
                .into_response();
        }
    };
    match actor
        .call(MetricsMsg::Scrape, Some(Duration::from_secs(10)))
        .await
    {
        Ok(ractor::rpc::CallResult::Success(Ok(text))) => {
            scrapes.served(crate::actors::now_ms(), started.elapsed(), text.len());
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        _ => {
            scrapes.failed();
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                "metrics are unavailable\n",
            )
                .into_response()
        }
    }
}

/// The limits of `config` in the domain's terms.
pub fn limit_settings(config: &Config) -> LimitSettings {
    let quota = &config.multi_tenancy.default_tenant_quota;
    let burst = &config.burst_capacity;
    let capacity = config
        .resource_pools
        .pools
        .iter()
        .map(|pool| {
            let size = u64::from(pool.max_size);
            Resources::new(
                pool.worker_shape.cpu_m.saturating_mul(size),
                pool.worker_shape.memory_mb.saturating_mul(size),
                pool.worker_shape.gpu.saturating_mul(size),
            )
        })
        .fold(Resources::ZERO, Resources::saturating_add);
    LimitSettings {
        rate_limit: crate::actors::rate_limit::RateLimitSettings {
            requests_per_second: config.server.rate_limit.requests_per_second,
            burst: config.server.rate_limit.burst,
            limit_admin: config.server.rate_limit.limit_admin,
        },
        default_pricing: default_pricing(config),
        observability: crate::actors::ObservabilitySettings {
            metrics_enabled: config.metrics.prometheus.enabled,
            metrics_port: config.metrics.prometheus.port,
            metrics_path: config.metrics.prometheus.path.clone(),
            grafana_enabled: config.observability.grafana.enabled,
            dashboards_dir: config.observability.grafana.dashboards_dir.clone(),
            alerting_enabled: config.observability.alerting.enabled,
            alerts_dir: config.observability.alerting.prometheus_alerts_dir.clone(),
            prometheus_url: config.observability.prometheus_url.clone(),
            alertmanager_url: config.observability.alertmanager_url.clone(),
        },
        cost_settings: hodei_domain::cost::CostSettings {
            enabled: config.cost_tracking.enabled,
            track_by_tenant: config.cost_tracking.track_by_tenant,
            track_by_job: config.cost_tracking.track_by_job,
            budget_action: match config.cost_tracking.budget_action {
                hodei_config::BudgetAction::Warn => hodei_domain::cost::BudgetAction::Warn,
                hodei_config::BudgetAction::Queue => hodei_domain::cost::BudgetAction::Queue,
            },
        },
        autoscaling: crate::actors::AutoscalingSettings {
            enabled: config.resource_pools.auto_scaling_enabled,
            evaluation_interval: Duration::from_secs(config.autoscaling.evaluation_interval_s),
            pools_off: config
                .resource_pools
                .pools
                .iter()
                .filter(|pool| !pool.auto_scaling_enabled)
                .map(|pool| pool.id.clone())
                .collect(),
        },
        retention: crate::actors::RetentionSettings {
            finished_in_memory: Duration::from_secs(config.retention.finished_in_memory_s),
            job_history: Duration::from_secs(
                config.retention.job_history_days.saturating_mul(86_400),
            ),
            sweep_interval: Duration::from_secs(config.retention.sweep_interval_s),
            gone_workers: Duration::from_secs(
                config.retention.gone_workers_hours.saturating_mul(3_600),
            ),
            burst_history: Duration::from_secs(
                config.retention.burst_history_days.saturating_mul(86_400),
            ),
            cost_ledger: Duration::from_secs(
                config.cost_tracking.retention_days.saturating_mul(86_400),
            ),
        },
        default_quota: Quota {
            cpu_m: quota.cpu_m,
            memory_mb: quota.memory_mb,
            gpu: u64::from(quota.gpu),
            max_concurrent_jobs: u64::from(quota.max_concurrent_jobs),
            max_pending_jobs: u64::from(quota.max_pending_jobs),
            ..Quota::default()
        },
        burst: BurstPolicy {
            enabled: burst.enabled,
            max_overage_percentage: u64::from(burst.max_overage_percentage),
            max_duration_ms: u64::from(burst.burst_duration_minutes) * 60_000,
            cooldown_ms: u64::from(burst.cooldown_minutes) * 60_000,
            max_sessions_per_day: u64::from(burst.max_sessions_per_day),
            global_pool_percentage: u64::from(burst.global_pool_percentage),
            auto_approve_up_to_percentage: u64::from(burst.auto_approve_up_to_percentage),
            capacity,
        },
        sla_targets: SlaTargets {
            critical_ms: config.scheduling.sla_targets_s.critical * 1_000,
            high_ms: config.scheduling.sla_targets_s.high * 1_000,
            medium_ms: config.scheduling.sla_targets_s.medium * 1_000,
            low_ms: config.scheduling.sla_targets_s.low * 1_000,
            best_effort_ms: config.scheduling.sla_targets_s.best_effort * 1_000,
        },
        starvation_guard: Duration::from_secs(config.scheduling.starvation_guard_s),
        fair_share_window: Duration::from_secs(config.scheduling.fair_share_window_s),
        worker_shapes: config
            .resource_pools
            .pools
            .iter()
            .map(|pool| {
                let shape = &pool.worker_shape;
                (
                    pool.id.clone(),
                    Resources::new(shape.cpu_m, shape.memory_mb, shape.gpu),
                )
            })
            .collect(),
    }
}

/// The configured pools and queues in the domain's terms (config validation already
/// checked ids, references and policies).
pub fn catalog(config: &Config) -> Catalog {
    let pools = config
        .resource_pools
        .pools
        .iter()
        .enumerate()
        .map(|(index, pool)| {
            let provider = match pool.provider {
                PoolProviderConfig::Static => PoolProvider::Static,
                PoolProviderConfig::Simulated => PoolProvider::Simulated,
                PoolProviderConfig::Process => PoolProvider::Process,
            };
            // A pool whose provider starts workers is dynamic whatever its `type` says.
            let pool_type = if provider == PoolProvider::Static {
                PoolType::Static
            } else {
                PoolType::Dynamic
            };
            Pool::new(
                &pool.id,
                pool_type,
                provider,
                Resources::new(
                    pool.worker_shape.cpu_m,
                    pool.worker_shape.memory_mb,
                    pool.worker_shape.gpu,
                ),
                pool.min_size,
                pool.max_size,
                0,
            )
            .with_pricing(pool_pricing(config, index).unwrap_or_else(|_| default_pricing(config)))
        })
        .collect();
    let queues = config
        .queues
        .iter()
        .map(|queue| Queue {
            id: queue.id.clone(),
            pools: queue.pools.clone(),
            policy: QueuePolicy::parse("policy", &queue.policy).unwrap_or_default(),
            created_at_ms: 0,
            updated_at_ms: 0,
        })
        .collect();
    Catalog {
        pools,
        queues,
        // Refused at start and by `hodei config check` when invalid (see `catalog_scaling`).
        scaling: catalog_scaling(config).unwrap_or_default(),
        admin_token_at_first_start: config.server.auth == hodei_config::AuthMode::Token
            && config.server.admin_token.is_none(),
    }
}

/// What the domain refuses in the configured pools (scaling policies, prices), each by
/// its key: checked at start and by `hodei config check`.
pub fn catalog_problems(config: &Config) -> Result<(), Vec<String>> {
    let mut problems = catalog_scaling(config).err().unwrap_or_default();
    for index in 0..config.resource_pools.pools.len() {
        problems.extend(pool_pricing(config, index).err().unwrap_or_default());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The prices of a pool that sets none: DOMAIN.md's, with the configured burst premium.
fn default_pricing(config: &Config) -> hodei_domain::cost::Pricing {
    hodei_domain::cost::Pricing {
        burst_premium_percent: config.burst_capacity.premium_percentage,
        ..Default::default()
    }
}

/// A configured pool's prices, each wrong one named by its key.
fn pool_pricing(config: &Config, index: usize) -> Result<hodei_domain::cost::Pricing, Vec<String>> {
    let pricing = &config.resource_pools.pools[index].pricing;
    let input = crate::gateway::pricing_model::PricingInput {
        cpu_core_hour_usd: pricing.cpu_core_hour_usd,
        memory_gb_hour_usd: pricing.memory_gb_hour_usd,
        gpu_hour_usd: pricing.gpu_hour_usd,
        burst_premium_percent: None,
        tier_percent: None,
    };
    input.over(default_pricing(config)).map_err(|error| {
        vec![format!(
            "resource_pools.pools[{index}].pricing.{}",
            error.detail
        )]
    })
}

/// The scaling policies and cooldowns the config gives its pools, in the domain's terms;
/// each invalid one named by its key (`resource_pools.pools[i].scaling...`).
pub fn catalog_scaling(
    config: &Config,
) -> Result<BTreeMap<String, crate::actors::SeededScaling>, Vec<String>> {
    use crate::gateway::scaling_model::{CooldownInput, PolicyInput, StepView};
    let mut seeded = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, pool) in config.resource_pools.pools.iter().enumerate() {
        let scaling = &pool.scaling;
        if scaling.policies.is_empty() && scaling.cooldown.is_none() {
            continue;
        }
        let key = format!("resource_pools.pools[{index}].scaling");
        if pool.provider == PoolProviderConfig::Static {
            problems.push(format!(
                "{key}: a static pool has no autoscaling (its provider must be process or simulated)"
            ));
            continue;
        }
        let mut policies = Vec::new();
        for (number, policy) in scaling.policies.iter().enumerate() {
            let input = PolicyInput {
                id: None,
                policy_type: policy.policy_type.clone(),
                enabled: policy.enabled,
                metric: policy.metric.clone(),
                target: policy.target,
                adjustment_type: policy.adjustment_type.clone(),
                steps: (!policy.steps.is_empty()).then(|| {
                    policy
                        .steps
                        .iter()
                        .map(|step| StepView {
                            lower: step.lower,
                            upper: step.upper,
                            adjustment: step.adjustment,
                        })
                        .collect()
                }),
                cron: policy.cron.clone(),
                timezone: policy.timezone.clone(),
                duration_s: policy.duration_s,
                min: policy.min,
                max: policy.max,
                desired: policy.desired,
                headroom: policy.headroom,
            };
            match input.into_policy(policy.id.clone(), 0) {
                Ok(converted) => policies.push(converted),
                Err(error) => problems.push(format!(
                    "{key}.policies[{number}].{}",
                    error.detail.trim_start_matches("policy.")
                )),
            }
        }
        let cooldown = scaling.cooldown.as_ref().map(|cooldown| {
            CooldownInput {
                scale_up_s: cooldown.scale_up_s,
                scale_down_s: cooldown.scale_down_s,
                max_added_per_minute: cooldown.max_added_per_minute,
                scale_down_stabilization_s: cooldown.scale_down_stabilization_s,
            }
            .over(hodei_domain::autoscale::Cooldown::default())
        });
        if let Some(Err(error)) = cooldown.map(|cooldown| cooldown.validate()) {
            problems.push(format!("{key}.cooldown.{error}"));
        }
        seeded.insert(
            pool.id.clone(),
            crate::actors::SeededScaling { policies, cooldown },
        );
    }
    if problems.is_empty() {
        Ok(seeded)
    } else {
        Err(problems)
    }
}

/// Forms a cluster at first start when the config says so: alone without peers, or with
/// every founding member when `cluster.peers` lists them (the lowest id initialises, the
/// others are contacted by it). A node that already belongs to a cluster resumes it.
async fn bootstrap(config: &Config, raft: &RaftNode) -> anyhow::Result<()> {
    if config.cluster.bootstrap != BootstrapMode::Single || raft.is_initialized().await? {
        return Ok(());
    }
    let mut members = BTreeMap::from([(config.cluster.node_id, raft.addr().to_string())]);
    for peer in &config.cluster.peers {
        let (node_id, addr) = hodei_config::parse_peer(peer)
            .map_err(|error| anyhow::anyhow!("cluster.peers: {error}"))?;
        members.insert(node_id, addr);
    }
    let lowest = members
        .keys()
        .next()
        .copied()
        .unwrap_or(config.cluster.node_id);
    if lowest != config.cluster.node_id {
        info!(
            initialiser = lowest,
            "waiting to be contacted by the founding member with the lowest id"
        );
        return Ok(());
    }
    let cluster_id = uuid::Uuid::now_v7().to_string();
    raft.initialize(&cluster_id, members.clone()).await?;
    info!(%cluster_id, members = ?members.keys().collect::<Vec<_>>(), "initialised a new cluster");
    Ok(())
}

impl NodeHandle {
    /// Resolves when the node's actor tree stops: its root gave up restarting a child
    /// (the node must exit for its process supervisor to restart it), or shutdown.
    pub async fn actors_stopped(&self) {
        let mut stopped = self.actors_stopped.clone();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// Stops the listeners, the actors and Raft, in that order.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.processes.stop_all();
        for server in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
        self.root.stop(Some("node shutdown".to_string()));
        self.raft.shutdown().await;
    }
}

pub use crate::observability::ALERT_RULES;

/// Writes the alert rules into `observability.alerting.prometheus_alerts_dir` (when set
/// and alerting is on), replacing the file atomically so a Prometheus reload never reads
/// half of it.
fn install_alert_rules(alerting: &hodei_config::AlertingConfig) -> anyhow::Result<()> {
    let Some(dir) = alerting.prometheus_alerts_dir.as_deref() else {
        return Ok(());
    };
    if !alerting.enabled {
        info!(dir, "alerting is off: no alert rules written");
        return Ok(());
    }
    let dir = std::path::Path::new(dir);
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "observability.alerting.prometheus_alerts_dir: cannot create {}",
            dir.display()
        )
    })?;
    let temporary = dir.join(".hodei.yml.tmp");
    std::fs::write(&temporary, ALERT_RULES)
        .and_then(|()| std::fs::rename(&temporary, dir.join("hodei.yml")))
        .with_context(|| {
            format!(
                "observability.alerting.prometheus_alerts_dir: cannot write {}",
                dir.display()
            )
        })?;
    info!(dir = %dir.display(), "alert rules written");
    Ok(())
}

/// Writes the Grafana dashboards into `observability.grafana.dashboards_dir` (when set and
/// Grafana is on).
fn install_dashboards(grafana: &hodei_config::GrafanaConfig) -> anyhow::Result<()> {
    let Some(dir) = grafana.dashboards_dir.as_deref() else {
        return Ok(());
    };
    if !grafana.enabled {
        info!(dir, "Grafana is off: no dashboards written");
        return Ok(());
    }
    let written = crate::observability::write_dashboards(std::path::Path::new(dir))
        .with_context(|| format!("observability.grafana.dashboards_dir: cannot write {dir}"))?;
    info!(dir, dashboards = written, "dashboards written");
    Ok(())
}
