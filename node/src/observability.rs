//! What Hodei ships for its operators' monitoring (issue 20): the Grafana dashboards,
//! generated here from one description (each panel a title, its PromQL and its unit) so
//! no JSON is edited by hand. `hodei observability write-dashboards --out DIR` writes them
//! (`deploy/grafana/dashboards/` holds the committed copy, checked against this by a test),
//! and a node writes them into `observability.grafana.dashboards_dir` at start.

use serde::Deserialize;
use serde_json::{Value, json};

/// Hodei's Prometheus alert rules (`deploy/prometheus/alerts/hodei.yml`), as shipped.
pub const ALERT_RULES: &str = include_str!("../../deploy/prometheus/alerts/hodei.yml");

/// One rule of [`ALERT_RULES`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AlertRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_duration: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<AlertRule>,
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

/// The shipped alert rules with their group's name.
pub fn alert_rules() -> Vec<(String, AlertRule)> {
    match serde_saphyr::from_str::<RuleFile>(ALERT_RULES) {
        Ok(file) => file
            .groups
            .into_iter()
            .flat_map(|group| {
                let name = group.name;
                group
                    .rules
                    .into_iter()
                    .map(move |rule| (name.clone(), rule))
            })
            .collect(),
        Err(error) => {
            tracing::error!(%error, "the shipped alert rules do not parse");
            Vec::new()
        }
    }
}

/// How a panel draws its queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// Lines over time.
    TimeSeries,
    /// The latest value, large.
    Stat,
}

/// One panel: its title, what it shows, its unit (Grafana's unit id) and its queries,
/// each with its legend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panel {
    pub title: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub draw: Draw,
    pub queries: Vec<(&'static str, &'static str)>,
}

/// One dashboard: its file name (and uid), title and panels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dashboard {
    pub uid: &'static str,
    pub title: &'static str,
    pub panels: Vec<Panel>,
}

fn panel(
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    draw: Draw,
    queries: &[(&'static str, &'static str)],
) -> Panel {
    Panel {
        title,
        description,
        unit,
        draw,
        queries: queries.to_vec(),
    }
}

use Draw::{Stat, TimeSeries};

/// Every dashboard Hodei ships.
pub fn dashboards() -> Vec<Dashboard> {
    vec![
        Dashboard {
            uid: "hodei-cluster",
            title: "Hodei / Cluster and Raft",
            panels: vec![
                panel(
                    "Leaders",
                    "Nodes that lead with a majority's acknowledgement in the last 5 s (1 in a healthy cluster)",
                    "none",
                    Stat,
                    &[(
                        "count(hodei_raft_leader_quorum_ack_age_seconds < 5) or vector(0)",
                        "leaders",
                    )],
                ),
                panel(
                    "Nodes up",
                    "Nodes Prometheus scrapes",
                    "none",
                    Stat,
                    &[("sum(up{job=\"hodei\"})", "up")],
                ),
                panel(
                    "Members by role",
                    "Voters and learners, as each node sees them",
                    "none",
                    TimeSeries,
                    &[("max by (role) (hodei_cluster_members)", "{{role}}")],
                ),
                panel(
                    "Raft term",
                    "The term each node is in",
                    "none",
                    TimeSeries,
                    &[("max by (instance) (hodei_raft_term)", "{{instance}}")],
                ),
                panel(
                    "Replication lag",
                    "Entries each follower is behind the leader",
                    "none",
                    TimeSeries,
                    &[(
                        "max by (follower) (hodei_raft_replication_lag_entries)",
                        "follower {{follower}}",
                    )],
                ),
                panel(
                    "Applied entries",
                    "Raft entries applied per second, per node",
                    "ops",
                    TimeSeries,
                    &[(
                        "sum by (instance) (rate(hodei_raft_applied_entries_total[1m]))",
                        "{{instance}}",
                    )],
                ),
                panel(
                    "Commit latency p99",
                    "Entries the leader proposed: from proposal until a majority stored them and the leader applied them",
                    "s",
                    TimeSeries,
                    &[(
                        "histogram_quantile(0.99, sum by (instance, le) (rate(hodei_raft_commit_duration_seconds_bucket[1m])))",
                        "{{instance}}",
                    )],
                ),
                panel(
                    "Apply latency p99",
                    "Time of the state machine's apply calls, per node",
                    "s",
                    TimeSeries,
                    &[(
                        "histogram_quantile(0.99, sum by (instance, le) (rate(hodei_raft_apply_duration_seconds_bucket[1m])))",
                        "{{instance}}",
                    )],
                ),
                panel(
                    "Latest snapshot size",
                    "Size of the latest snapshot each node built or installed",
                    "bytes",
                    TimeSeries,
                    &[(
                        "max by (instance) (hodei_raft_last_snapshot_bytes)",
                        "{{instance}}",
                    )],
                ),
                panel(
                    "Latest snapshot time",
                    "Seconds the latest snapshot took each node to build or install",
                    "s",
                    TimeSeries,
                    &[(
                        "max by (instance) (hodei_raft_last_snapshot_seconds)",
                        "{{instance}}",
                    )],
                ),
                panel(
                    "API requests",
                    "REST requests per second by status",
                    "reqps",
                    TimeSeries,
                    &[(
                        "sum by (status) (rate(hodei_api_requests_total[1m]))",
                        "{{status}}",
                    )],
                ),
                panel(
                    "Gateway latency p95",
                    "95th percentile of gateway operations (REST and gRPC)",
                    "s",
                    TimeSeries,
                    &[(
                        "histogram_quantile(0.95, sum by (le) (rate(hodei_gateway_request_duration_seconds_bucket[5m])))",
                        "p95",
                    )],
                ),
            ],
        },
        Dashboard {
            uid: "hodei-tenants",
            title: "Hodei / Tenants, quotas and burst",
            panels: vec![
                panel(
                    "Tenants",
                    "Tenants by status",
                    "none",
                    Stat,
                    &[("max by (status) (hodei_tenants)", "{{status}}")],
                ),
                panel(
                    "Quota use",
                    "Each tenant's highest use of a quota dimension",
                    "percentunit",
                    TimeSeries,
                    &[(
                        "max by (tenant, dimension) (hodei_quota_usage_ratio)",
                        "{{tenant}} {{dimension}}",
                    )],
                ),
                panel(
                    "Quota refusals",
                    "Quota refusals and waits per second, by tenant",
                    "ops",
                    TimeSeries,
                    &[(
                        "sum by (tenant) (rate(hodei_quota_violations_total[5m]))",
                        "{{tenant}}",
                    )],
                ),
                panel(
                    "Burst sessions",
                    "Burst sessions by status",
                    "none",
                    TimeSeries,
                    &[("max by (status) (hodei_burst_sessions)", "{{status}}")],
                ),
                panel(
                    "Jobs running under burst",
                    "Runs admitted above their tenant's quota",
                    "none",
                    TimeSeries,
                    &[("max by (tenant) (hodei_jobs_burst)", "{{tenant}}")],
                ),
                panel(
                    "Daily budget used",
                    "Each tenant's spending today over its daily budget",
                    "percentunit",
                    TimeSeries,
                    &[(
                        "max by (tenant) (hodei_tenant_budget_used_ratio)",
                        "{{tenant}}",
                    )],
                ),
            ],
        },
        Dashboard {
            uid: "hodei-queues",
            title: "Hodei / Queues, fair share and SLA",
            panels: vec![
                panel(
                    "Pending jobs",
                    "Jobs waiting, by queue",
                    "none",
                    TimeSeries,
                    &[(
                        "sum by (queue) (max by (queue, tenant) (hodei_jobs{state=\"pending\"}))",
                        "{{queue}}",
                    )],
                ),
                panel(
                    "Why jobs wait",
                    "Pending jobs by queue and the first reason each waits for (in_line: nothing but its turn)",
                    "none",
                    TimeSeries,
                    &[(
                        "max by (queue, reason) (hodei_jobs_pending_by_reason)",
                        "{{queue}} {{reason}}",
                    )],
                ),
                panel(
                    "Running jobs",
                    "Jobs running, by queue",
                    "none",
                    TimeSeries,
                    &[(
                        "sum by (queue) (max by (queue, tenant) (hodei_jobs{state=\"running\"}))",
                        "{{queue}}",
                    )],
                ),
                panel(
                    "Fair share and actual share",
                    "Each tenant's fair share of its queue's pools against what it held",
                    "percentunit",
                    TimeSeries,
                    &[
                        (
                            "max by (queue, tenant) (hodei_tenant_fair_share_ratio)",
                            "fair {{queue}} {{tenant}}",
                        ),
                        (
                            "max by (queue, tenant) (hodei_tenant_actual_share_ratio)",
                            "actual {{queue}} {{tenant}}",
                        ),
                    ],
                ),
                panel(
                    "Jain's index",
                    "How evenly each queue's tenants got their shares (1: evenly)",
                    "none",
                    TimeSeries,
                    &[("max by (queue) (hodei_queue_jain_index)", "{{queue}}")],
                ),
                panel(
                    "Wait to start p95",
                    "95th percentile from pending to assigned, by queue",
                    "s",
                    TimeSeries,
                    &[(
                        "histogram_quantile(0.95, sum by (le, queue) (rate(hodei_job_wait_seconds_bucket[5m])))",
                        "{{queue}}",
                    )],
                ),
                panel(
                    "Dispatch latency p95",
                    "95th percentile from room freed to assignment, by queue",
                    "s",
                    TimeSeries,
                    &[(
                        "histogram_quantile(0.95, sum by (le, queue) (rate(hodei_dispatch_latency_seconds_bucket[5m])))",
                        "{{queue}}",
                    )],
                ),
                panel(
                    "SLA compliance",
                    "Jobs that met their SLA, by tenant and level",
                    "percentunit",
                    TimeSeries,
                    &[(
                        "min by (tenant, level) (hodei_sla_compliance_ratio)",
                        "{{tenant}} {{level}}",
                    )],
                ),
                panel(
                    "SLA jobs by status",
                    "Jobs with an SLA by status (at_risk, critical, violated, ...)",
                    "none",
                    TimeSeries,
                    &[(
                        "sum by (status) (max by (tenant, level, status) (hodei_sla_jobs))",
                        "{{status}}",
                    )],
                ),
                panel(
                    "Finished jobs",
                    "Jobs ending per second, by state",
                    "ops",
                    TimeSeries,
                    &[(
                        "sum by (state) (rate(hodei_jobs_finished_total[5m]))",
                        "{{state}}",
                    )],
                ),
            ],
        },
        Dashboard {
            uid: "hodei-pools",
            title: "Hodei / Pools and autoscaling",
            panels: vec![
                panel(
                    "Pool size",
                    "Current, desired, min and max workers, by pool",
                    "none",
                    TimeSeries,
                    &[("max by (pool, kind) (hodei_pool_size)", "{{pool}} {{kind}}")],
                ),
                panel(
                    "Workers by state",
                    "Workers by pool and state",
                    "none",
                    TimeSeries,
                    &[("max by (pool, state) (hodei_workers)", "{{pool}} {{state}}")],
                ),
                panel(
                    "Utilization",
                    "Held over capacity, by pool and resource",
                    "percentunit",
                    TimeSeries,
                    &[(
                        "max by (pool, resource) (hodei_pool_utilization_ratio)",
                        "{{pool}} {{resource}}",
                    )],
                ),
                panel(
                    "Live workers per queue",
                    "Live workers of the pools each queue dispatches to",
                    "none",
                    TimeSeries,
                    &[("max by (queue) (hodei_queue_live_workers)", "{{queue}}")],
                ),
                panel(
                    "Provisioning",
                    "Worker starts per second, by pool and outcome",
                    "ops",
                    TimeSeries,
                    &[(
                        "sum by (pool, outcome) (rate(hodei_pool_provisioning_total[5m]))",
                        "{{pool}} {{outcome}}",
                    )],
                ),
                panel(
                    "Workers lost",
                    "Workers that missed their heartbeats, per second",
                    "ops",
                    TimeSeries,
                    &[(
                        "sum by (pool) (rate(hodei_workers_lost_total[5m]))",
                        "{{pool}}",
                    )],
                ),
                panel(
                    "Scaling decisions",
                    "Autoscaling decisions per second, by pool and outcome",
                    "ops",
                    TimeSeries,
                    &[(
                        "sum by (pool, outcome) (rate(hodei_scaling_decisions_total[5m]))",
                        "{{pool}} {{outcome}}",
                    )],
                ),
            ],
        },
        Dashboard {
            uid: "hodei-cost",
            title: "Hodei / Cost",
            panels: vec![
                panel(
                    "Spend rate by tenant",
                    "USD per hour billed, by tenant (running runs counted as they go)",
                    "currencyUSD",
                    TimeSeries,
                    &[(
                        "sum by (tenant) (rate(hodei_cost_nanodollars_total[5m])) * 3600 / 1e9",
                        "{{tenant}}",
                    )],
                ),
                panel(
                    "Spend rate by pool",
                    "USD per hour billed, by pool",
                    "currencyUSD",
                    TimeSeries,
                    &[(
                        "sum by (pool) (rate(hodei_cost_nanodollars_total[5m])) * 3600 / 1e9",
                        "{{pool}}",
                    )],
                ),
                panel(
                    "Idle cost rate",
                    "USD per hour of provisioned capacity no run used, by pool",
                    "currencyUSD",
                    TimeSeries,
                    &[(
                        "sum by (pool) (rate(hodei_pool_idle_cost_nanodollars_total[5m])) * 3600 / 1e9",
                        "{{pool}}",
                    )],
                ),
                panel(
                    "Billed so far",
                    "USD billed since the cluster started, by tenant",
                    "currencyUSD",
                    Stat,
                    &[(
                        "sum by (tenant) (max by (tenant, pool) (hodei_cost_nanodollars_total)) / 1e9",
                        "{{tenant}}",
                    )],
                ),
                panel(
                    "Daily budget used",
                    "Each tenant's spending today over its daily budget",
                    "percentunit",
                    TimeSeries,
                    &[(
                        "max by (tenant) (hodei_tenant_budget_used_ratio)",
                        "{{tenant}}",
                    )],
                ),
            ],
        },
    ]
}

/// A dashboard in Grafana's dashboard model (schema version 39), its panels two to a row.
pub fn dashboard_json(dashboard: &Dashboard) -> Value {
    let panels: Vec<Value> = dashboard
        .panels
        .iter()
        .enumerate()
        .map(|(index, panel)| {
            let targets: Vec<Value> = panel
                .queries
                .iter()
                .enumerate()
                .map(|(query, (expr, legend))| {
                    json!({
                        "refId": char::from(b'A' + query as u8).to_string(),
                        "datasource": { "type": "prometheus", "uid": "${datasource}" },
                        "expr": expr,
                        "legendFormat": legend,
                    })
                })
                .collect();
            json!({
                "id": index + 1,
                "type": match panel.draw { Draw::TimeSeries => "timeseries", Draw::Stat => "stat" },
                "title": panel.title,
                "description": panel.description,
                "datasource": { "type": "prometheus", "uid": "${datasource}" },
                "gridPos": { "h": 8, "w": 12, "x": (index % 2) * 12, "y": (index / 2) * 8 },
                "fieldConfig": { "defaults": { "unit": panel.unit }, "overrides": [] },
                "options": {},
                "targets": targets,
            })
        })
        .collect();
    json!({
        "uid": dashboard.uid,
        "title": dashboard.title,
        "tags": ["hodei"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": true,
        "refresh": "30s",
        "time": { "from": "now-1h", "to": "now" },
        "templating": {
            "list": [{
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "hide": 0,
            }],
        },
        "annotations": { "list": [] },
        "panels": panels,
    })
}

/// Grafana's provisioning file for the dashboards in `dir`.
pub fn provisioning_yaml(dir: &str) -> String {
    format!(
        "# Grafana provisioning: load Hodei's dashboards from {dir}.\napiVersion: 1\nproviders:\n  - name: hodei\n    folder: Hodei\n    type: file\n    disableDeletion: false\n    allowUiUpdates: false\n    options:\n      path: {dir}\n"
    )
}

/// Each dashboard's file name and its JSON text, as written.
pub fn dashboard_files() -> Vec<(String, String)> {
    dashboards()
        .iter()
        .map(|dashboard| {
            let text = serde_json::to_string_pretty(&dashboard_json(dashboard)).unwrap_or_default();
            (format!("{}.json", dashboard.uid), format!("{text}\n"))
        })
        .collect()
}

/// Writes every dashboard (and the provisioning file naming `dir`) into `dir`, each
/// file replaced whole.
pub fn write_dashboards(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let files = dashboard_files();
    for (name, text) in &files {
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, dir.join(name))?;
    }
    Ok(files.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed copies in `deploy/grafana/dashboards/` are what the generator writes.
    #[test]
    fn the_committed_dashboards_are_the_generated_ones() {
        let committed =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards");
        for (name, text) in dashboard_files() {
            let found = std::fs::read_to_string(committed.join(&name)).unwrap_or_default();
            assert!(
                found == text,
                "{name} differs from the generator: run `hodei observability write-dashboards --out deploy/grafana/dashboards`"
            );
        }
    }

    #[test]
    fn the_shipped_alert_rules_parse_with_a_severity_summary_and_runbook_each() {
        let rules = alert_rules();
        assert_eq!(rules.len(), 19);
        for (_, rule) in &rules {
            assert!(
                matches!(
                    rule.labels.get("severity").map(String::as_str),
                    Some("warning" | "critical")
                ),
                "{}",
                rule.alert
            );
            for key in ["summary", "description", "runbook"] {
                assert!(
                    rule.annotations
                        .get(key)
                        .is_some_and(|text| !text.is_empty()),
                    "{} {key}",
                    rule.alert
                );
            }
        }
    }

    /// The dashboard model's required shape: unique uids and panel ids, every panel with a
    /// type, a title, a grid position inside the 24-column grid, and a query per target.
    #[test]
    fn every_dashboard_has_the_shape_grafana_loads() {
        let mut uids = std::collections::BTreeSet::new();
        for dashboard in dashboards() {
            assert!(
                uids.insert(dashboard.uid),
                "duplicate uid {}",
                dashboard.uid
            );
            let json = dashboard_json(&dashboard);
            assert_eq!(json["schemaVersion"], 39);
            assert!(
                json["title"]
                    .as_str()
                    .is_some_and(|title| !title.is_empty())
            );
            let mut ids = std::collections::BTreeSet::new();
            for panel in json["panels"].as_array().unwrap() {
                assert!(ids.insert(panel["id"].as_u64().unwrap()));
                assert!(matches!(
                    panel["type"].as_str(),
                    Some("timeseries" | "stat")
                ));
                let grid = &panel["gridPos"];
                let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
                assert!(x + w <= 24 && grid["h"].as_u64().unwrap() > 0);
                let targets = panel["targets"].as_array().unwrap();
                assert!(!targets.is_empty(), "{}", panel["title"]);
                for target in targets {
                    assert!(
                        target["expr"]
                            .as_str()
                            .is_some_and(|expr| expr.contains("hodei_") || expr.contains("up{"))
                    );
                }
            }
        }
        assert_eq!(uids.len(), 5);
    }
}
