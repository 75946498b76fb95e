//! The actor tree of a node:
//!
//! ```text
//! RootSupervisor
//! ├── GatewayActor            every node: requests -> validation -> Raft / read view
//! └── ControlSupervisor       starts controllers while this node leads, stops them after
//!     ├── TenantActor         one per tenant
//!     ├── QueueActor          one per queue: dispatch
//!     └── PoolActor           one per pool: health, scaling through its provider, drains
//! ```

pub mod audit;
pub mod authenticator;
pub mod autoscaler;
pub mod control;
pub mod cost_watch;
pub mod gateway;
pub mod gateway_access;
pub(crate) mod gateway_cost;
pub mod gateway_jobs;
pub mod gateway_limits;
mod gateway_observability;
pub mod gateway_pools;
pub mod gateway_queues;
pub mod gateway_reports;
mod gateway_scaling;
mod gateway_tenants;
pub mod leader_loop;
pub mod metrics;
pub mod metrics_history;
mod metrics_observed;
pub mod observability_sources;
pub mod pool_actor;
pub mod queue_actor;
pub mod queue_reports;
pub mod rate_limit;
pub mod restarts;
pub mod retention;
pub mod root;
pub mod tenant_actor;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use hodei_cluster::RaftNode;

use crate::state::SharedState;
use hodei_domain::burst::BurstPolicy;
use hodei_domain::quota::Quota;

/// The configured limits the gateway and controllers apply.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// The quota of a new tenant (`multi_tenancy.default_tenant_quota`).
    pub default_quota: Quota,
    /// The burst governance (`burst_capacity`), with the pools' total capacity.
    pub burst: BurstPolicy,
    /// One worker's capacity, per configured pool.
    pub worker_shapes: std::collections::BTreeMap<String, hodei_domain::resources::Resources>,
    /// Time-to-start target per SLA level.
    pub sla_targets: hodei_domain::sla::SlaTargets,
    /// How long a backlogged tenant may stay below its fair share before it is boosted.
    pub starvation_guard: Duration,
    /// The window of the fair-share report and of the observed dispatch rate.
    pub fair_share_window: Duration,
    /// How long finished jobs stay in memory, then in the history (`retention`).
    pub retention: RetentionSettings,
    /// `server.rate_limit`: requests per principal on this node.
    pub rate_limit: crate::actors::rate_limit::RateLimitSettings,
    pub autoscaling: AutoscalingSettings,
    /// The prices a new pool gets unless it says otherwise (the burst premium from
    /// `burst_capacity.premium_percentage`).
    pub default_pricing: hodei_domain::cost::Pricing,
    /// `cost_tracking.*`: what the leader commits as the cluster's cost settings.
    pub cost_settings: hodei_domain::cost::CostSettings,
    /// `metrics.*` and `observability.*`: what `/api/v1/observability/config` shows.
    pub observability: ObservabilitySettings,
}

/// This node's monitoring settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObservabilitySettings {
    pub metrics_enabled: bool,
    pub metrics_port: u16,
    pub metrics_path: String,
    pub grafana_enabled: bool,
    pub dashboards_dir: Option<String>,
    pub alerting_enabled: bool,
    pub alerts_dir: Option<String>,
    pub prometheus_url: Option<String>,
    pub alertmanager_url: Option<String>,
}

/// The leader's autoscaling loop (`resource_pools.auto_scaling_enabled`,
/// `resource_pools.pools[].auto_scaling_enabled`, `autoscaling.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoscalingSettings {
    pub enabled: bool,
    pub evaluation_interval: Duration,
    /// Pools this node's config turns autoscaling off for.
    pub pools_off: std::collections::BTreeSet<String>,
}

impl Default for AutoscalingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluation_interval: Duration::from_secs(10),
            pools_off: Default::default(),
        }
    }
}

/// `retention.*` of the config, for the leader's retention loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    pub finished_in_memory: Duration,
    pub job_history: Duration,
    pub sweep_interval: Duration,
    pub gone_workers: Duration,
    pub burst_history: Duration,
    /// How long the cost ledger keeps its hours (`cost_tracking.retention_days`).
    pub cost_ledger: Duration,
}

/// What every actor of a node shares: the Raft handle and the read view of the state.
#[derive(Clone)]
pub struct NodeContext {
    pub raft: RaftNode,
    pub state: SharedState,
    /// How long a request waits for a leader before it fails with 503.
    pub leader_wait: Duration,
    pub limits: Arc<LimitSettings>,

    pub metrics: crate::actors::metrics::Metrics,
    /// The pools and queues a fresh cluster starts with (from config).
    pub catalog: Arc<Catalog>,
    /// The worker processes this node started for `process` pools.
    pub processes: crate::actors::workers::process_provider::ProcessProvider,
    /// The worker agents' streams (used while this node leads).
    pub worker_hub: crate::actors::workers::hub::WorkerHub,
    /// This node's samples of the state over time (`metrics_history.rs`).
    pub metrics_history: Option<Arc<dyn hodei_cluster::Keyspace>>,
    /// How Prometheus has scraped this node.
    pub scrapes: Arc<crate::actors::metrics::ScrapeLog>,
    /// Seals and opens secret job variables (with `cluster.secret`).
    pub secrets: Option<Arc<crate::gateway::secrets::Sealer>>,
    /// How this node calls another member's public API.
    pub members: Arc<MemberAccess>,
    /// The requests this node served that changed the state.
    pub audit: Option<Arc<crate::actors::audit::AuditLog>>,
}

/// How a member calls another's public API: the credential it presents (from
/// `cluster.secret`) and, with TLS, the CA it checks the other's certificate against.
#[derive(Debug, Clone, Default)]
pub struct MemberAccess {
    pub credential: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
}

impl MemberAccess {
    /// A channel to `api_addr` (`host:port`), over TLS when the cluster uses it, that
    /// answers within `within`.
    pub async fn channel(
        &self,
        api_addr: &str,
        within: std::time::Duration,
    ) -> Result<tonic::transport::Channel, String> {
        let endpoint = match &self.ca_pem {
            Some(ca) => tonic::transport::Endpoint::from_shared(format!("https://{api_addr}"))
                .and_then(|endpoint| {
                    endpoint.tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
                    )
                }),
            None => tonic::transport::Endpoint::from_shared(format!("http://{api_addr}")),
        }
        .map_err(|error| error.to_string())?;
        endpoint
            .connect_timeout(within)
            .timeout(within)
            .connect()
            .await
            .map_err(|error| format!("cannot reach {api_addr}: {error}"))
    }

    /// `message` as this member asks another: as the admin the gateway already checked
    /// the caller to be (with `auth: none`), with the member credential (with
    /// `auth: token`).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            crate::gateway::principal::PRINCIPAL_HEADER,
            tonic::metadata::MetadataValue::from_static("admin"),
        );
        if let Some(credential) = &self.credential
            && let Ok(value) = format!("Bearer {credential}").parse()
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

/// The configured pools and queues, created at bootstrap if missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub pools: Vec<hodei_domain::pool::Pool>,
    pub queues: Vec<hodei_domain::queue::Queue>,
    /// Scaling policies and cooldowns for configured pools, given to a pool that has no
    /// autoscaling yet (the API owns them after).
    pub scaling: std::collections::BTreeMap<String, SeededScaling>,
    /// Whether the cluster issues an admin token at its first start (`server.auth: token`
    /// without `server.admin_token`), printed once by the node that issued it.
    pub admin_token_at_first_start: bool,
}

/// A configured pool's autoscaling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeededScaling {
    pub policies: Vec<hodei_domain::autoscale::ScalingPolicy>,
    pub cooldown: Option<hodei_domain::autoscale::Cooldown>,
}

impl NodeContext {
    /// Runs `read` against the read view. The lock is held only for the closure, which
    /// must be quick (copy out what is needed).
    pub fn read<T>(&self, read: impl FnOnce(&crate::state::HodeiState) -> T) -> T {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read(&state)
    }
}

pub use crate::clock::now_ms;
