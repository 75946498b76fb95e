//! The configuration tree. Every struct denies unknown keys so a typo is an error, and
//! every field has the default the specification or `DOMAIN.md` gives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub cluster: ClusterConfig,
    pub resource_pools: ResourcePoolsConfig,
    /// The queues a fresh cluster starts with.
    pub queues: Vec<QueueConfig>,
    pub workers: WorkersConfig,
    pub scheduling: SchedulingConfig,
    pub multi_tenancy: MultiTenancyConfig,
    pub burst_capacity: BurstCapacityConfig,
    pub cost_tracking: CostTrackingConfig,
    pub retention: RetentionConfig,
    pub autoscaling: AutoscalingConfig,
    pub metrics: MetricsConfig,
    pub observability: ObservabilityConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            cluster: ClusterConfig::default(),
            resource_pools: ResourcePoolsConfig::default(),
            queues: vec![QueueConfig::default()],
            workers: WorkersConfig::default(),
            scheduling: SchedulingConfig::default(),
            multi_tenancy: MultiTenancyConfig::default(),
            burst_capacity: BurstCapacityConfig::default(),
            cost_tracking: CostTrackingConfig::default(),
            retention: RetentionConfig::default(),
            autoscaling: AutoscalingConfig::default(),
            metrics: MetricsConfig::default(),
            observability: ObservabilityConfig::default(),
        }
    }
}

/// How requests are authenticated (`server.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Each request names its principal in `x-hodei-principal` (or the default applies):
    /// for a node on a loopback address, or one told `--insecure`.
    #[default]
    None,
    /// Each request presents a bearer token: `server.admin_token`, the admin token
    /// printed at the cluster's first start, or a tenant's token.
    Token,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the REST and gRPC listeners bind to.
    pub host: String,
    pub port: u16,
    pub grpc_port: u16,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a request may wait for a leader before it fails with 503.
    pub leader_wait_ms: u64,
    /// The principal of a request that names none (`admin` or `tenant:<id>`), with
    /// `auth: none`.
    pub default_principal: String,
    pub log_format: LogFormat,
    /// `none` or `token`.
    pub auth: AuthMode,
    /// Serve `auth: none` on a non-loopback address (anyone who reaches the node may act
    /// as anyone).
    pub insecure: bool,
    /// With `auth: token`, a token that authenticates admins (at least 32 characters);
    /// redacted when printed. Without it, the cluster's first start prints one.
    pub admin_token: Option<String>,
    pub rate_limit: RateLimitConfig,
    /// Connections, requests in flight and time limits of the API ports.
    pub limits: ServerLimits,
    /// TLS on the REST, gRPC and peer ports (off without it).
    pub tls: Option<TlsConfig>,
    /// How long a node keeps its audit log of state-changing requests (1 to 3650 days).
    pub audit_retention_days: u64,
}

/// `server.tls`: this node's certificate and key, and the CA that signed every member's
/// certificate. With it the REST, gRPC and peer ports speak TLS only; members check each
/// other's certificates against the CA and present their own (mutual TLS on the peer
/// port), and the agents a node starts trust the CA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate (chain) of this node, valid for the addresses it is reached at.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM certificate of the CA that signed the members' certificates.
    pub client_ca: PathBuf,
}

/// Per-principal request rates on this node (REST and gRPC operations alike; worker
/// agents' streams are not counted): a token bucket per principal, refilled at
/// `requests_per_second` and holding at most `burst`; a request finding it empty gets 429
/// (RESOURCE_EXHAUSTED) with the seconds to wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub requests_per_second: u32,
    pub burst: u32,
    /// Whether the admin principal is limited too (off: operators' tools and scripts
    /// keep their pace; tenants cannot slow them down).
    pub limit_admin: bool,
}

/// `server.limits`: what one node serves at once, and for how long it waits on a client
/// or on itself. Each holds whatever the callers do; none is per principal (that is
/// `rate_limit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// Open connections on each port (REST, gRPC, peer; worker agents' streams count on
    /// the gRPC port). A connection over it is closed as soon as it is accepted.
    pub max_connections: u32,
    /// Operations being answered at once on this node (REST and gRPC); one more gets 503
    /// (UNAVAILABLE) with Retry-After.
    pub max_in_flight: u32,
    /// The longest an operation may take inside the node; a read over it answers 504, a
    /// write 504 with outcome unknown (it may still apply). More than `leader_wait_ms`.
    pub request_timeout_ms: u64,
    /// How long a REST client has to send a request's headers (on a new connection, and
    /// between requests on a kept-alive one) before its connection is closed.
    pub header_read_timeout_ms: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1_024,
            max_in_flight: 1_024,
            request_timeout_ms: 30_000,
            header_read_timeout_ms: 10_000,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 200,
            burst: 400,
            limit_admin: false,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_string(),
            port: 8080,
            grpc_port: 9090,
            max_body_bytes: 1024 * 1024,
            leader_wait_ms: 5_000,
            default_principal: "admin".to_string(),
            log_format: LogFormat::Text,
            auth: AuthMode::None,
            insecure: false,
            admin_token: None,
            rate_limit: RateLimitConfig::default(),
            limits: ServerLimits::default(),
            tls: None,
            audit_retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's Raft id, unique in the cluster and never reused.
    pub node_id: u64,
    /// Where sled keeps the Raft log, vote, state machine and snapshots.
    pub data_dir: PathBuf,
    /// The port of the peer listener: Raft traffic, forwarded writes and membership
    /// changes between members, apart from the public API ports.
    pub peer_port: u16,
    /// The address other nodes reach this one's peer listener at; defaults to
    /// `server.host:peer_port`.
    pub advertise_addr: Option<String>,
    /// The local address this node's connections to its peers leave from, on a host with
    /// several (an IP address of this host); default: the system's choice.
    pub source_addr: Option<std::net::IpAddr>,
    /// The secret every member presents on the peer port (at least 16 characters; set it
    /// with `HODEI_CLUSTER_SECRET` rather than in a file). Required when the node listens
    /// on a non-loopback address.
    pub secret: Option<String>,
    /// The other founding members, `<node id>@<host>:<peer port>`, for a cluster formed
    /// from config: the lowest id initialises it with all of them.
    pub peers: Vec<String>,
    /// What a node that belongs to no cluster yet does at start: `single` forms a
    /// one-node cluster (the embedded default); `join` waits to be initialised or joined.
    pub bootstrap: BootstrapMode,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log behind it) every this many applied entries.
    pub snapshot_every_entries: u64,
    /// Entries kept behind a snapshot so that slightly lagging followers need no snapshot.
    pub log_entries_kept_after_snapshot: u64,
    /// Most commands a single Raft entry carries (group commit).
    pub max_commands_per_entry: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: PathBuf::from("./.hodei/data"),
            peer_port: 9190,
            advertise_addr: None,
            source_addr: None,
            secret: None,
            peers: Vec::new(),
            bootstrap: BootstrapMode::Single,
            heartbeat_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every_entries: 10_000,
            log_entries_kept_after_snapshot: 1_000,
            max_commands_per_entry: 4_096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BootstrapMode {
    #[default]
    Single,
    Join,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub id: String,
    pub pools: Vec<String>,
    /// weighted_fair | strict_priority | fifo | edf
    pub policy: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            id: "default".to_string(),
            pools: vec!["pool-default".to_string()],
            policy: "weighted_fair".to_string(),
        }
    }
}

/// Worker agents' liveness: a worker that misses `missed_heartbeats` beats in a row (at
/// least 3) is declared lost and its jobs re-queued; a worker stops its own jobs one beat
/// sooner (its lease), so they have ended before they run elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    pub heartbeat_interval_ms: u64,
    pub missed_heartbeats: u32,
    /// The worker agents this node starts (process pools, `hodei dev`'s) run each job with
    /// kernel limits from its request (`hodei worker --enforce-limits`).
    pub enforce_limits: bool,
    /// Where the agents this node starts keep their work directories; default: a folder
    /// `hodei-node-<node id>` in the system's temporary directory, away from the data
    /// directory.
    pub work_root: Option<PathBuf>,
    /// Absolute directories the jobs of those agents may name as their working directory
    /// (`hodei worker --allowed-dir`); without any, jobs run only in the work directory.
    pub allowed_dirs: Vec<PathBuf>,
    /// The user those agents run jobs as (`hodei worker --run-as`; the node must run as
    /// root); default: the node's own.
    pub run_as: Option<String>,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 5_000,
            missed_heartbeats: 3,
            enforce_limits: false,
            work_root: None,
            allowed_dirs: Vec::new(),
            run_as: None,
        }
    }
}

impl WorkersConfig {
    /// `work_root`, or its default for node `node_id`.
    pub fn work_root(&self, node_id: u64) -> PathBuf {
        self.work_root
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("hodei-node-{node_id}")))
    }

    /// The `hodei worker` arguments that confine jobs as configured.
    pub fn agent_arguments(&self) -> Vec<std::ffi::OsString> {
        let mut arguments = Vec::new();
        if self.enforce_limits {
            arguments.push("--enforce-limits".into());
        }
        for dir in &self.allowed_dirs {
            arguments.push("--allowed-dir".into());
            arguments.push(dir.clone().into_os_string());
        }
        if let Some(user) = &self.run_as {
            arguments.push("--run-as".into());
            arguments.push(user.into());
        }
        arguments
    }
}

/// Fair sharing and service levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// A backlogged tenant below its fair share this long is served first.
    pub starvation_guard_s: u64,
    /// The window of the fair-share report and of the observed dispatch rate.
    pub fair_share_window_s: u64,
    /// Time-to-start target per SLA level.
    pub sla_targets_s: SlaTargetsConfig,
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        Self {
            starvation_guard_s: 300,
            fair_share_window_s: 60,
            sla_targets_s: SlaTargetsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaTargetsConfig {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub best_effort: u64,
}

impl Default for SlaTargetsConfig {
    fn default() -> Self {
        Self {
            critical: 300,
            high: 900,
            medium: 3_600,
            low: 14_400,
            best_effort: 86_400,
        }
    }
}

/// Where a pool's workers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolProviderConfig {
    /// Operators start `hodei worker` agents.
    #[default]
    Static,
    /// `min_size` virtual workers inside the leader (load tests, demos).
    Simulated,
    /// `hodei worker` child processes of the leader, started and stopped by the pool.
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolType {
    #[default]
    Static,
    Dynamic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourcePoolsConfig {
    pub enabled: bool,
    pub default_pool_type: PoolType,
    /// The node's leader evaluates the pools' scaling policies and triggers (a pool's
    /// own switch, in config or through the API, can turn one pool off).
    pub auto_scaling_enabled: bool,
    pub pools: Vec<PoolConfig>,
}

impl Default for ResourcePoolsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_pool_type: PoolType::Static,
            auto_scaling_enabled: true,
            pools: vec![PoolConfig::default()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    pub id: String,
    #[serde(rename = "type")]
    pub pool_type: PoolType,
    pub provider: PoolProviderConfig,
    pub min_size: u32,
    pub max_size: u32,
    /// The capacity of one worker of this pool.
    pub worker_shape: WorkerShapeConfig,
    /// `false`: the leader of a node with this config never autoscales this pool.
    pub auto_scaling_enabled: bool,
    /// Scaling policies and cooldown a fresh cluster gives this (dynamic) pool; after
    /// that the API owns them.
    pub scaling: PoolScalingConfig,
    /// The pool's prices (DOMAIN.md's defaults when absent); after the pool exists, the
    /// API changes them (`PUT /api/v1/pools/{id}/pricing`).
    pub pricing: PoolPricingConfig,
}

/// Prices in US dollars per unit-hour; absent fields take the defaults (0.05 per
/// core-hour, 0.01 per GB-hour of memory, 2.50 per GPU-hour) and the burst premium
/// `burst_capacity.premium_percentage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolPricingConfig {
    pub cpu_core_hour_usd: Option<f64>,
    pub memory_gb_hour_usd: Option<f64>,
    pub gpu_hour_usd: Option<f64>,
}

/// A pool's autoscaling as config seeds it (the same fields as the REST API's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolScalingConfig {
    pub policies: Vec<ScalingPolicyConfig>,
    pub cooldown: Option<ScalingCooldownConfig>,
}

/// One scaling policy: `type` target_tracking | step_scaling | scheduled | sla_headroom,
/// with the fields of that type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingPolicyConfig {
    pub id: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub enabled: Option<bool>,
    pub metric: Option<String>,
    pub target: Option<f64>,
    pub adjustment_type: Option<String>,
    pub steps: Vec<ScalingStepConfig>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub duration_s: Option<u64>,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub desired: Option<u32>,
    pub headroom: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingStepConfig {
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub adjustment: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingCooldownConfig {
    pub scale_up_s: Option<u64>,
    pub scale_down_s: Option<u64>,
    pub max_added_per_minute: Option<u32>,
    pub scale_down_stabilization_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerShapeConfig {
    pub cpu_m: u64,
    pub memory_mb: u64,
    pub gpu: u64,
}

impl Default for WorkerShapeConfig {
    fn default() -> Self {
        Self {
            cpu_m: 4_000,
            memory_mb: 8_192,
            gpu: 0,
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            id: "pool-default".to_string(),
            pool_type: PoolType::Static,
            provider: PoolProviderConfig::Static,
            min_size: 2,
            max_size: 20,
            worker_shape: WorkerShapeConfig::default(),
            auto_scaling_enabled: true,
            scaling: PoolScalingConfig::default(),
            pricing: PoolPricingConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiTenancyConfig {
    pub enabled: bool,
    pub default_tenant_quota: TenantQuotaConfig,
}

impl Default for MultiTenancyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_tenant_quota: TenantQuotaConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantQuotaConfig {
    pub cpu_m: u64,
    pub memory_mb: u64,
    pub gpu: u32,
    pub max_concurrent_jobs: u32,
    pub max_pending_jobs: u32,
}

impl Default for TenantQuotaConfig {
    fn default() -> Self {
        Self {
            cpu_m: 4_000,
            memory_mb: 8_192,
            gpu: 0,
            max_concurrent_jobs: 10,
            max_pending_jobs: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BurstCapacityConfig {
    pub enabled: bool,
    /// The ceiling during a burst as a percentage of the quota (150 = 1.5x).
    pub max_overage_percentage: u32,
    /// The longest burst session.
    pub burst_duration_minutes: u32,
    /// How long a tenant waits after a session ends before it may start another.
    pub cooldown_minutes: u32,
    /// Sessions a tenant may request in any 24 hours.
    pub max_sessions_per_day: u32,
    /// The global burst pool: every active session's overage together stays within this
    /// percentage of the pools' total capacity.
    pub global_pool_percentage: u32,
    /// Requests with a ceiling above this wait for an admin's approval.
    pub auto_approve_up_to_percentage: u32,
    /// Burst usage is billed at this percentage of the normal price.
    pub premium_percentage: u32,
}

impl Default for BurstCapacityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_overage_percentage: 150,
            burst_duration_minutes: 60,
            cooldown_minutes: 30,
            max_sessions_per_day: 3,
            global_pool_percentage: 20,
            auto_approve_up_to_percentage: 130,
            premium_percentage: 150,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostTrackingConfig {
    pub enabled: bool,
    pub track_by_tenant: bool,
    pub track_by_job: bool,
    /// The cost ledger keeps this many days (whole hours older are purged by the leader).
    pub retention_days: u64,
    /// What a tenant that spent its daily budget gets: `warn` (warnings only) or `queue`
    /// (its jobs wait until the next day, UTC).
    pub budget_action: BudgetAction,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetAction {
    #[default]
    Warn,
    Queue,
}

impl Default for CostTrackingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            track_by_tenant: true,
            track_by_job: true,
            retention_days: 90,
            budget_action: BudgetAction::Warn,
        }
    }
}

/// The leader's autoscaling loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscalingConfig {
    /// How often the leader evaluates each autoscaled pool.
    pub evaluation_interval_s: u64,
}

impl Default for AutoscalingConfig {
    fn default() -> Self {
        Self {
            evaluation_interval_s: 10,
        }
    }
}

/// How long finished jobs stay in memory and in the job history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// A finished job stays in the in-memory state this long, then moves to the job
    /// history on disk (still found by id, in lists and by its logs).
    pub finished_in_memory_s: u64,
    /// Jobs in the history longer than this are deleted, with their output and
    /// idempotency keys.
    pub job_history_days: u64,
    /// How often the leader moves finished jobs to the history and deletes expired ones.
    pub sweep_interval_s: u64,
    /// Lost and terminated workers (holding no job) are forgotten this long after they
    /// went.
    pub gone_workers_hours: u64,
    /// Ended burst sessions are forgotten this long after they ended.
    pub burst_history_days: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            finished_in_memory_s: 300,
            job_history_days: 30,
            sweep_interval_s: 10,
            gone_workers_hours: 24,
            burst_history_days: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub prometheus: PrometheusConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub enabled: bool,
    pub port: u16,
    pub path: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 9091,
            path: "/metrics".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilityConfig {
    pub grafana: GrafanaConfig,
    pub alerting: AlertingConfig,
    /// The Prometheus that scrapes the cluster (`http://host:port`): when set,
    /// `/observability/health` shows its view of every scrape target and
    /// `/observability/alerts` its pending and firing alerts.
    pub prometheus_url: Option<String>,
    /// The Alertmanager the alerts go to: when set, `/observability/alerts` shows the
    /// alerts it holds (active, silenced, inhibited) and its silences.
    pub alertmanager_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrafanaConfig {
    /// Off: the node writes no dashboards and `/observability/dashboards` answers 409.
    pub enabled: bool,
    /// Where the node writes Hodei's Grafana dashboards at start, for a Grafana file
    /// provider to load (unset: not written).
    pub dashboards_dir: Option<String>,
}

impl Default for GrafanaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dashboards_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Off: the node installs no alert rules, `/observability/alerts` answers 409, and
    /// `observability.alertmanager_url` is refused.
    pub enabled: bool,
    /// Where the node writes Hodei's Prometheus alert rules (`hodei.yml`) at start, for a
    /// Prometheus `rule_files` glob to load (unset: not written).
    pub prometheus_alerts_dir: Option<String>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prometheus_alerts_dir: None,
        }
    }
}

impl Config {
    /// The peer address other nodes use to reach this node.
    pub fn advertise_addr(&self) -> String {
        match &self.cluster.advertise_addr {
            Some(addr) => addr.clone(),
            None => format!("{}:{}", self.server.host, self.cluster.peer_port),
        }
    }
}
