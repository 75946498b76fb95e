//! The `HODEI_*` environment variables: the specification's names, each mapped to the key
//! it overrides, plus the variables of the `server` and `cluster` sections.

/// One environment variable and the configuration key it overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVariable {
    pub name: &'static str,
    pub key: &'static str,
}

const fn var(name: &'static str, key: &'static str) -> EnvVariable {
    EnvVariable { name, key }
}

/// Every variable Hodei reads. The first block is the specification's list, verbatim.
pub const ENV_VARIABLES: &[EnvVariable] = &[
    var("HODEI_RESOURCE_POOLS_ENABLED", "resource_pools.enabled"),
    var(
        "HODEI_RESOURCE_POOL_TYPE",
        "resource_pools.default_pool_type",
    ),
    var(
        "HODEI_AUTO_SCALING_ENABLED",
        "resource_pools.auto_scaling_enabled",
    ),
    var("HODEI_MULTI_TENANCY_ENABLED", "multi_tenancy.enabled"),
    var(
        "HODEI_DEFAULT_TENANT_QUOTA_CPU",
        "multi_tenancy.default_tenant_quota.cpu_m",
    ),
    var(
        "HODEI_DEFAULT_TENANT_QUOTA_MEMORY",
        "multi_tenancy.default_tenant_quota.memory_mb",
    ),
    var("HODEI_BURST_CAPACITY_ENABLED", "burst_capacity.enabled"),
    var(
        "HODEI_BURST_MAX_OVERAGE",
        "burst_capacity.max_overage_percentage",
    ),
    var(
        "HODEI_BURST_DURATION_MINUTES",
        "burst_capacity.burst_duration_minutes",
    ),
    var("HODEI_COST_TRACKING_ENABLED", "cost_tracking.enabled"),
    var("HODEI_COST_RETENTION_DAYS", "cost_tracking.retention_days"),
    var("HODEI_COST_BUDGET_ACTION", "cost_tracking.budget_action"),
    var(
        "HODEI_FINISHED_IN_MEMORY_S",
        "retention.finished_in_memory_s",
    ),
    var("HODEI_JOB_HISTORY_DAYS", "retention.job_history_days"),
    var("HODEI_PROMETHEUS_ENABLED", "metrics.prometheus.enabled"),
    var("HODEI_PROMETHEUS_PORT", "metrics.prometheus.port"),
    var("HODEI_GRAFANA_ENABLED", "observability.grafana.enabled"),
    var(
        "HODEI_GRAFANA_DASHBOARDS_DIR",
        "observability.grafana.dashboards_dir",
    ),
    var("HODEI_ALERTING_ENABLED", "observability.alerting.enabled"),
    var(
        "HODEI_PROMETHEUS_ALERTS_DIR",
        "observability.alerting.prometheus_alerts_dir",
    ),
    var("HODEI_PROMETHEUS_URL", "observability.prometheus_url"),
    var("HODEI_ALERTMANAGER_URL", "observability.alertmanager_url"),
    // Beyond the specification: the rest of the quota, the server and the cluster.
    var(
        "HODEI_DEFAULT_TENANT_QUOTA_GPU",
        "multi_tenancy.default_tenant_quota.gpu",
    ),
    var(
        "HODEI_DEFAULT_TENANT_QUOTA_MAX_CONCURRENT_JOBS",
        "multi_tenancy.default_tenant_quota.max_concurrent_jobs",
    ),
    var(
        "HODEI_DEFAULT_TENANT_QUOTA_MAX_PENDING_JOBS",
        "multi_tenancy.default_tenant_quota.max_pending_jobs",
    ),
    var("HODEI_SERVER_HOST", "server.host"),
    var("HODEI_SERVER_PORT", "server.port"),
    var("HODEI_GRPC_PORT", "server.grpc_port"),
    var("HODEI_LOG_FORMAT", "server.log_format"),
    var("HODEI_ADMIN_TOKEN", "server.admin_token"),
    var("HODEI_AUTH", "server.auth"),
    var("HODEI_INSECURE", "server.insecure"),
    var("HODEI_AUDIT_RETENTION_DAYS", "server.audit_retention_days"),
    var("HODEI_TLS_CERT", "server.tls.cert"),
    var("HODEI_TLS_KEY", "server.tls.key"),
    var("HODEI_TLS_CLIENT_CA", "server.tls.client_ca"),
    var(
        "HODEI_RATE_LIMIT_REQUESTS_PER_SECOND",
        "server.rate_limit.requests_per_second",
    ),
    var("HODEI_RATE_LIMIT_BURST", "server.rate_limit.burst"),
    var("HODEI_RATE_LIMIT_ADMIN", "server.rate_limit.limit_admin"),
    var("HODEI_MAX_CONNECTIONS", "server.limits.max_connections"),
    var("HODEI_MAX_IN_FLIGHT", "server.limits.max_in_flight"),
    var(
        "HODEI_REQUEST_TIMEOUT_MS",
        "server.limits.request_timeout_ms",
    ),
    var(
        "HODEI_HEADER_READ_TIMEOUT_MS",
        "server.limits.header_read_timeout_ms",
    ),
    var("HODEI_WORKER_ENFORCE_LIMITS", "workers.enforce_limits"),
    var("HODEI_WORKER_WORK_ROOT", "workers.work_root"),
    var("HODEI_WORKER_RUN_AS", "workers.run_as"),
    var("HODEI_NODE_ID", "cluster.node_id"),
    var("HODEI_DATA_DIR", "cluster.data_dir"),
    var("HODEI_ADVERTISE_ADDR", "cluster.advertise_addr"),
    var("HODEI_PEER_PORT", "cluster.peer_port"),
    var("HODEI_CLUSTER_SECRET", "cluster.secret"),
    var("HODEI_CLUSTER_BOOTSTRAP", "cluster.bootstrap"),
];

/// The key a variable overrides, if Hodei reads it.
pub(crate) fn key_for(name: &str) -> Option<&'static str> {
    ENV_VARIABLES
        .iter()
        .find(|variable| variable.name.eq_ignore_ascii_case(name))
        .map(|variable| variable.key)
}
