//! Semantic checks that the types alone cannot express. Every problem is collected, not
//! only the first, and each names its key and the rule it broke.

use std::collections::BTreeSet;
use std::fmt;

use crate::schema::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub key: String,
    pub rule: String,
}

impl ValidationError {
    pub fn new(key: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.key, self.rule)
    }
}

struct Problems(Vec<ValidationError>);

impl Problems {
    fn at_least(&mut self, key: &str, value: u64, minimum: u64) {
        if value < minimum {
            self.0.push(ValidationError::new(
                key,
                format!("must be >= {minimum}, got {value}"),
            ));
        }
    }

    fn at_most(&mut self, key: &str, value: u64, maximum: u64) {
        if value > maximum {
            self.0.push(ValidationError::new(
                key,
                format!("must be <= {maximum}, got {value}"),
            ));
        }
    }

    fn rule(&mut self, holds: bool, key: &str, rule: String) {
        if !holds {
            self.0.push(ValidationError::new(key, rule));
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn is_slug(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    text.len() <= 63
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Parses a peer `<node id>@<host>:<port>`.
pub fn parse_peer(peer: &str) -> Result<(u64, String), String> {
    let (id, addr) = peer
        .split_once('@')
        .ok_or_else(|| format!("expected <node id>@<host>:<port>, got `{peer}`"))?;
    let node_id: u64 = id
        .parse()
        .ok()
        .filter(|id| *id >= 1)
        .ok_or_else(|| format!("the node id of `{peer}` must be a whole number >= 1"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("the address of `{peer}` needs a port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(format!("`{addr}` is not <host>:<port>"));
    }
    Ok((node_id, addr.to_string()))
}

pub(crate) fn validate(config: &Config) -> Vec<ValidationError> {
    let mut problems = Problems(Vec::new());

    let server = &config.server;
    // Port 0 asks the operating system for a free port (tests use it).
    problems.rule(
        server.port == 0 || server.port != server.grpc_port,
        "server.grpc_port",
        format!("must differ from server.port, both are {}", server.port),
    );
    problems.at_least("server.max_body_bytes", server.max_body_bytes as u64, 1024);
    problems.at_most(
        "server.max_body_bytes",
        server.max_body_bytes as u64,
        64 * 1024 * 1024,
    );
    problems.rule(
        server.default_principal == "admin"
            || server
                .default_principal
                .strip_prefix("tenant:")
                .is_some_and(is_slug),
        "server.default_principal",
        format!(
            "must be `admin` or `tenant:<tenant id>`, got `{}`",
            server.default_principal
        ),
    );

    let tokens = server.auth == crate::AuthMode::Token;
    match &server.admin_token {
        Some(_) if !tokens => problems.rule(
            false,
            "server.admin_token",
            "is checked only with server.auth: token (with `none` each request names its principal): set server.auth: token or remove the token".to_string(),
        ),
        Some(token) => problems.rule(
            token.chars().count() >= 32 && !token.chars().any(char::is_whitespace),
            "server.admin_token",
            format!(
                "must be at least 32 characters without spaces, got {}",
                token.chars().count()
            ),
        ),
        None => {}
    }
    problems.rule(
        tokens || server.insecure || is_loopback_host(&server.host),
        "server.auth",
        format!(
            "is `none` on a non-loopback address (server.host is `{}`): anyone who reaches the node could act as any tenant or as an admin; set server.auth: token, listen on 127.0.0.1, or pass --insecure",
            server.host
        ),
    );
    problems.rule(
        !tokens || config.workers.run_as.is_some(),
        "workers.run_as",
        "is required with server.auth: token: the jobs of this node's process pools would otherwise run as the node's user, who can read its secrets (configuration, data directory); name an unprivileged user (the node runs as root)".to_string(),
    );
    problems.rule(
        !tokens || server.tls.is_some() || is_loopback_host(&server.host),
        "server.tls",
        format!(
            "is required with server.auth: token on a non-loopback address (server.host is `{}`): tokens, the cluster secret and jobs' secret variables would cross the network in clear",
            server.host
        ),
    );
    problems.rule(
        !(tokens && server.insecure),
        "server.insecure",
        "has no effect with server.auth: token; remove it".to_string(),
    );
    problems.rule(
        !tokens || server.default_principal == "admin",
        "server.default_principal",
        "applies only with server.auth: none (with tokens, the token names the principal); remove it".to_string(),
    );
    problems.rule(
        !tokens || config.cluster.secret.is_some(),
        "cluster.secret",
        "is required with server.auth: token: the agents of a node's process pools join with a credential made from it; set HODEI_CLUSTER_SECRET on every member".to_string(),
    );
    if let Some(tls) = &server.tls {
        for (key, path) in [
            ("server.tls.cert", &tls.cert),
            ("server.tls.key", &tls.key),
            ("server.tls.client_ca", &tls.client_ca),
        ] {
            let pem = std::fs::read_to_string(path);
            problems.rule(
                pem.as_ref().is_ok_and(|text| text.contains("-----BEGIN ")),
                key,
                match pem {
                    Ok(_) => format!("{} is not a PEM file", path.display()),
                    Err(error) => format!("cannot read {}: {error}", path.display()),
                },
            );
        }
    }
    for dir in &config.workers.allowed_dirs {
        problems.rule(
            dir.is_absolute() && dir.is_dir(),
            "workers.allowed_dirs",
            format!("{} must be an absolute path to a directory", dir.display()),
        );
    }
    if let Some(user) = &config.workers.run_as {
        problems.rule(
            !user.is_empty() && !user.contains(char::is_whitespace),
            "workers.run_as",
            format!("`{user}` is not a user name"),
        );
    }
    problems.at_least(
        "server.audit_retention_days",
        server.audit_retention_days,
        1,
    );
    problems.at_most(
        "server.audit_retention_days",
        server.audit_retention_days,
        3650,
    );
    let limits = &server.limits;
    for (key, value) in [
        ("server.limits.max_connections", limits.max_connections),
        ("server.limits.max_in_flight", limits.max_in_flight),
    ] {
        problems.at_least(key, u64::from(value), 1);
        problems.at_most(key, u64::from(value), 1_000_000);
    }
    problems.rule(
        limits.request_timeout_ms > server.leader_wait_ms,
        "server.limits.request_timeout_ms",
        format!(
            "must be more than server.leader_wait_ms ({}), got {}",
            server.leader_wait_ms, limits.request_timeout_ms
        ),
    );
    problems.at_most(
        "server.limits.request_timeout_ms",
        limits.request_timeout_ms,
        3_600_000,
    );
    problems.at_least(
        "server.limits.header_read_timeout_ms",
        limits.header_read_timeout_ms,
        100,
    );
    problems.at_most(
        "server.limits.header_read_timeout_ms",
        limits.header_read_timeout_ms,
        600_000,
    );
    let rate = &server.rate_limit;
    problems.at_least(
        "server.rate_limit.requests_per_second",
        u64::from(rate.requests_per_second),
        1,
    );
    problems.at_most(
        "server.rate_limit.requests_per_second",
        u64::from(rate.requests_per_second),
        1_000_000,
    );
    problems.rule(
        rate.burst >= 1 && rate.burst >= rate.requests_per_second / 10,
        "server.rate_limit.burst",
        format!(
            "must be at least 1 and at least a tenth of requests_per_second ({}), got {}",
            rate.requests_per_second, rate.burst
        ),
    );

    let cluster = &config.cluster;
    problems.at_least("cluster.node_id", cluster.node_id, 1);
    problems.at_least("cluster.heartbeat_ms", cluster.heartbeat_ms, 10);
    // HodeiNoLeader counts a leader while a majority acknowledged it in the last 5 s:
    // heartbeats must come well within that.
    problems.at_most("cluster.heartbeat_ms", cluster.heartbeat_ms, 1_000);
    problems.rule(
        cluster.election_timeout_min_ms > cluster.heartbeat_ms * 2,
        "cluster.election_timeout_min_ms",
        format!(
            "must be more than twice cluster.heartbeat_ms ({}), got {}",
            cluster.heartbeat_ms, cluster.election_timeout_min_ms
        ),
    );
    problems.rule(
        cluster.election_timeout_max_ms > cluster.election_timeout_min_ms,
        "cluster.election_timeout_max_ms",
        format!(
            "must be greater than cluster.election_timeout_min_ms ({}), got {}",
            cluster.election_timeout_min_ms, cluster.election_timeout_max_ms
        ),
    );
    problems.at_least(
        "cluster.snapshot_every_entries",
        cluster.snapshot_every_entries,
        10,
    );
    problems.at_least(
        "cluster.max_commands_per_entry",
        cluster.max_commands_per_entry as u64,
        1,
    );
    let mut peer_ids = BTreeSet::from([cluster.node_id]);
    for (index, peer) in cluster.peers.iter().enumerate() {
        match parse_peer(peer) {
            Ok((node_id, _)) => problems.rule(
                peer_ids.insert(node_id),
                &format!("cluster.peers[{index}]"),
                format!(
                    "node id {node_id} appears twice (this node is {})",
                    cluster.node_id
                ),
            ),
            Err(rule) => problems.rule(false, &format!("cluster.peers[{index}]"), rule),
        }
    }
    problems.rule(
        !cluster.data_dir.as_os_str().is_empty(),
        "cluster.data_dir",
        "must not be empty".to_string(),
    );
    problems.rule(
        cluster.peer_port == 0
            || (cluster.peer_port != server.port && cluster.peer_port != server.grpc_port),
        "cluster.peer_port",
        format!(
            "must differ from server.port ({}) and server.grpc_port ({}), got {}",
            server.port, server.grpc_port, cluster.peer_port
        ),
    );
    if let Some(secret) = &cluster.secret {
        problems.rule(
            secret.chars().count() >= 16,
            "cluster.secret",
            format!(
                "must be at least 16 characters, got {}",
                secret.chars().count()
            ),
        );
    }
    problems.rule(
        cluster.secret.is_some() || is_loopback_host(&server.host),
        "cluster.secret",
        format!(
            "is required when the node listens on a non-loopback address (server.host is `{}`): any process that reaches the peer port could otherwise change the cluster; set HODEI_CLUSTER_SECRET on every member",
            server.host
        ),
    );

    let mut pool_ids = BTreeSet::new();
    for (index, pool) in config.resource_pools.pools.iter().enumerate() {
        let key = format!("resource_pools.pools[{index}]");
        problems.rule(
            is_slug(&pool.id),
            &format!("{key}.id"),
            format!("must match [a-z0-9][a-z0-9-]{{0,62}}, got `{}`", pool.id),
        );
        problems.rule(
            pool_ids.insert(pool.id.clone()),
            &format!("{key}.id"),
            format!("duplicate pool id `{}`", pool.id),
        );
        problems.rule(
            pool.min_size <= pool.max_size,
            &format!("{key}.min_size"),
            format!(
                "must be <= max_size ({}), got {}",
                pool.max_size, pool.min_size
            ),
        );
        problems.at_least(&format!("{key}.max_size"), u64::from(pool.max_size), 1);
    }

    let mut queue_ids = BTreeSet::new();
    for (index, queue) in config.queues.iter().enumerate() {
        let key = format!("queues[{index}]");
        problems.rule(
            is_slug(&queue.id),
            &format!("{key}.id"),
            format!("must match [a-z0-9][a-z0-9-]{{0,62}}, got `{}`", queue.id),
        );
        problems.rule(
            queue_ids.insert(queue.id.clone()),
            &format!("{key}.id"),
            format!("duplicate queue id `{}`", queue.id),
        );
        problems.rule(
            !queue.pools.is_empty(),
            &format!("{key}.pools"),
            "must name at least one pool".to_string(),
        );
        for (pool_index, pool) in queue.pools.iter().enumerate() {
            problems.rule(
                pool_ids.contains(pool),
                &format!("{key}.pools[{pool_index}]"),
                format!("`{pool}` is not a pool in resource_pools.pools"),
            );
        }
        problems.rule(
            ["weighted_fair", "strict_priority", "fifo", "edf"].contains(&queue.policy.as_str()),
            &format!("{key}.policy"),
            format!(
                "must be one of weighted_fair, strict_priority, fifo, edf, got `{}`",
                queue.policy
            ),
        );
    }
    problems.at_least(
        "workers.heartbeat_interval_ms",
        config.workers.heartbeat_interval_ms,
        50,
    );
    let scheduling = &config.scheduling;
    problems.at_least(
        "scheduling.fair_share_window_s",
        scheduling.fair_share_window_s,
        1,
    );
    problems.at_least(
        "autoscaling.evaluation_interval_s",
        config.autoscaling.evaluation_interval_s,
        1,
    );
    problems.at_most(
        "autoscaling.evaluation_interval_s",
        config.autoscaling.evaluation_interval_s,
        3_600,
    );
    problems.at_least(
        "cost_tracking.retention_days",
        config.cost_tracking.retention_days,
        1,
    );
    problems.at_most(
        "cost_tracking.retention_days",
        config.cost_tracking.retention_days,
        3_650,
    );
    problems.rule(
        config.cost_tracking.budget_action == crate::BudgetAction::Warn
            || (config.cost_tracking.enabled && config.cost_tracking.track_by_tenant),
        "cost_tracking.budget_action",
        "queue needs cost_tracking.enabled and cost_tracking.track_by_tenant: a budget is a tenant's spending, which is not tracked otherwise".to_string(),
    );
    let observability = &config.observability;
    problems.rule(
        observability.grafana.enabled || observability.grafana.dashboards_dir.is_none(),
        "observability.grafana.dashboards_dir",
        "is set while observability.grafana.enabled is false: nothing would be written there; remove one".to_string(),
    );
    problems.rule(
        observability.alerting.enabled || observability.alerting.prometheus_alerts_dir.is_none(),
        "observability.alerting.prometheus_alerts_dir",
        "is set while observability.alerting.enabled is false: nothing would be written there; remove one".to_string(),
    );
    for (key, dir) in [
        (
            "observability.grafana.dashboards_dir",
            &observability.grafana.dashboards_dir,
        ),
        (
            "observability.alerting.prometheus_alerts_dir",
            &observability.alerting.prometheus_alerts_dir,
        ),
    ] {
        problems.rule(
            dir.as_deref().is_none_or(|dir| !dir.trim().is_empty()),
            key,
            "must be a folder's path, got an empty one".to_string(),
        );
    }
    problems.rule(
        observability.alerting.enabled || observability.alertmanager_url.is_none(),
        "observability.alertmanager_url",
        "is set while observability.alerting.enabled is false: alerts are not read from it; remove one".to_string(),
    );
    for (key, url) in [
        (
            "observability.prometheus_url",
            &observability.prometheus_url,
        ),
        (
            "observability.alertmanager_url",
            &observability.alertmanager_url,
        ),
    ] {
        if let Some(url) = url {
            problems.rule(
                is_http_base_url(url),
                key,
                format!(
                    "must be an http:// or https:// address with a host and no query (such as http://127.0.0.1:9090), got {url:?}"
                ),
            );
        }
    }
    let retention = &config.retention;
    problems.rule(
        retention.finished_in_memory_s >= scheduling.fair_share_window_s,
        "retention.finished_in_memory_s",
        format!(
            "must be at least scheduling.fair_share_window_s ({}): the fair-share report reads the jobs in memory, got {}",
            scheduling.fair_share_window_s, retention.finished_in_memory_s
        ),
    );
    problems.at_least("retention.job_history_days", retention.job_history_days, 1);
    problems.at_least("retention.sweep_interval_s", retention.sweep_interval_s, 1);
    problems.at_most(
        "retention.sweep_interval_s",
        retention.sweep_interval_s,
        3_600,
    );
    problems.at_least(
        "retention.gone_workers_hours",
        retention.gone_workers_hours,
        1,
    );
    // The burst rules look back a day (sessions per day, the cooldown).
    problems.at_least(
        "retention.burst_history_days",
        retention.burst_history_days,
        1,
    );
    for (level, seconds) in [
        ("critical", scheduling.sla_targets_s.critical),
        ("high", scheduling.sla_targets_s.high),
        ("medium", scheduling.sla_targets_s.medium),
        ("low", scheduling.sla_targets_s.low),
        ("best_effort", scheduling.sla_targets_s.best_effort),
    ] {
        problems.at_least(&format!("scheduling.sla_targets_s.{level}"), seconds, 1);
    }
    // A worker stops its jobs one beat before the leader declares it lost (fencing), and
    // must be able to miss one beat without stopping them: three beats at least.
    if config.workers.missed_heartbeats < 3 {
        problems.0.push(ValidationError::new(
            "workers.missed_heartbeats",
            format!(
                "must be >= 3, got {}: a worker stops its jobs after one beat fewer than the leader waits (so they never run twice at once), and may miss one beat without stopping them",
                config.workers.missed_heartbeats
            ),
        ));
    }

    let quota = &config.multi_tenancy.default_tenant_quota;
    problems.at_least("multi_tenancy.default_tenant_quota.cpu_m", quota.cpu_m, 1);
    problems.at_least(
        "multi_tenancy.default_tenant_quota.memory_mb",
        quota.memory_mb,
        1,
    );
    problems.at_least(
        "multi_tenancy.default_tenant_quota.max_concurrent_jobs",
        u64::from(quota.max_concurrent_jobs),
        1,
    );
    problems.at_least(
        "multi_tenancy.default_tenant_quota.max_pending_jobs",
        u64::from(quota.max_pending_jobs),
        1,
    );

    let burst = &config.burst_capacity;
    problems.at_least(
        "burst_capacity.max_overage_percentage",
        u64::from(burst.max_overage_percentage),
        100,
    );
    problems.at_most(
        "burst_capacity.max_overage_percentage",
        u64::from(burst.max_overage_percentage),
        1000,
    );
    problems.at_least(
        "burst_capacity.burst_duration_minutes",
        u64::from(burst.burst_duration_minutes),
        1,
    );
    problems.at_most(
        "burst_capacity.burst_duration_minutes",
        u64::from(burst.burst_duration_minutes),
        7 * 24 * 60,
    );

    problems.at_least(
        "burst_capacity.max_sessions_per_day",
        u64::from(burst.max_sessions_per_day),
        1,
    );
    problems.at_most(
        "burst_capacity.global_pool_percentage",
        u64::from(burst.global_pool_percentage),
        100,
    );
    problems.at_least(
        "burst_capacity.premium_percentage",
        u64::from(burst.premium_percentage),
        100,
    );
    // The pools' burst premium: the same bounds as a price list's.
    problems.at_most(
        "burst_capacity.premium_percentage",
        u64::from(burst.premium_percentage),
        1_000,
    );

    let prometheus = &config.metrics.prometheus;
    if prometheus.enabled {
        problems.rule(
            prometheus.port == 0
                || (prometheus.port != server.port && prometheus.port != server.grpc_port),
            "metrics.prometheus.port",
            format!(
                "must differ from server.port and server.grpc_port, got {}",
                prometheus.port
            ),
        );
        problems.rule(
            prometheus.path.starts_with('/'),
            "metrics.prometheus.path",
            format!("must start with `/`, got `{}`", prometheus.path),
        );
    }

    problems.0
}

/// `http://host[:port][/path]` or `https://...`: what a base URL the node appends API
/// paths to must look like.
fn is_http_base_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    if url.contains(['?', '#', ' ', '@']) {
        return false;
    }
    let authority = rest.split('/').next().unwrap_or_default();
    // `[v6 address]` or `[v6 address]:port`; otherwise `host` or `host:port`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let Some((address, after)) = bracketed.split_once(']') else {
                return false;
            };
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after {
                "" => (address, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (address, Some(port)),
                    None => return false,
                },
            }
        }
        None => match authority.split_once(':') {
            // A second colon: an IPv6 address without its brackets.
            Some((_, port)) if port.contains(':') => return false,
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    !host.is_empty() && port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0))
}

#[cfg(test)]
mod url_tests {
    use super::is_http_base_url;

    #[test]
    fn base_urls_are_http_with_a_host() {
        for good in [
            "http://127.0.0.1:9090",
            "https://alerts.example.com/am",
            "http://[::1]",
            "http://[::1]:9093/",
            "http://prometheus",
        ] {
            assert!(is_http_base_url(good), "{good}");
        }
        for bad in [
            "localhost:9090",
            "http://",
            "http://::1:9090",
            "http://[::1",
            "http://host:0",
            "http://host:99999",
            "http://host/?q=1",
            "http://user@host",
            "ftp://host",
        ] {
            assert!(!is_http_base_url(bad), "{bad}");
        }
    }
}
