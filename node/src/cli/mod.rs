//! The `hodei` command line. Every REST operation has a command (`commands.rs` maps them;
//! a test holds the map against the OpenAPI document); answers print as tables, JSON or
//! YAML (`--output`).

pub mod api;
pub mod cluster_cmd;
pub mod commands;
pub mod config_cmd;
pub mod cost_cmd;
pub mod grpc;
pub mod job_cmd;
pub mod limits_cmd;
pub mod node_cmd;
pub mod output;
pub mod pool_cmd;
pub mod scaling_cmd;
pub mod tenant_cmd;
pub mod tls_cmd;
pub mod token_cmd;
pub mod worker_cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hodei",
    version,
    about = "Hodei: a multi-tenant job-scheduling control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a node from a config file (and HODEI_* variables, and flags).
    Server(node_cmd::ServerArgs),
    /// Run a single-node cluster with its data under ./.hodei: the embedded default.
    Dev(node_cmd::DevArgs),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Throwaway TLS certificates for trying TLS on one machine.
    #[command(subcommand)]
    Tls(tls_cmd::TlsCommand),
    /// What Hodei ships for monitoring: write the Grafana dashboards or the alert rules.
    #[command(subcommand)]
    Observability(ObservabilityCommand),
    /// Cluster membership: init, join, leave, status, digests, transfer-leader (gRPC).
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
    /// The audit log (admin): state-changing requests, with principal, action,
    /// resource, result and trace id, oldest first.
    Audit {
        /// From this time (ms since the epoch).
        #[arg(long)]
        from: Option<u64>,
        /// Until this time (ms since the epoch).
        #[arg(long)]
        to: Option<u64>,
        /// Only this principal's (`admin` or `tenant:<id>`).
        #[arg(long = "of")]
        principal_filter: Option<String>,
        /// At most this many records (1-1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Only the asked node's records.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        api: api::Api,
    },
    /// Is the node up, ready, and who leads?
    Health {
        #[command(flatten)]
        api: api::Api,
    },
    /// Tenants: create, list, get, update, delete.
    #[command(subcommand)]
    Tenant(tenant_cmd::TenantCommand),
    /// A tenant's access tokens: create (printed once), list, revoke.
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// A pool's join tokens, which workers present to register: create, list, revoke.
    #[command(subcommand)]
    JoinToken(token_cmd::JoinTokenCommand),
    /// A tenant's quota and usage, and what-if admission checks.
    #[command(subcommand)]
    Quota(limits_cmd::QuotaCommand),
    /// Time-boxed capacity above a tenant's quota.
    #[command(subcommand)]
    Burst(limits_cmd::BurstCommand),
    /// Submit, list and follow jobs; why a job waits.
    #[command(subcommand)]
    Job(job_cmd::JobCommand),
    /// SLA compliance.
    #[command(subcommand)]
    Sla(job_cmd::SlaCommand),
    /// Queues: their pools and policy, status and fair share.
    #[command(subcommand)]
    Queue(pool_cmd::QueueCommand),
    /// Worker pools: size, lifecycle, workers and metrics.
    #[command(subcommand)]
    Pool(pool_cmd::PoolCommand),
    /// What the jobs and pools cost: reports, stored definitions, the breakdown and
    /// recommendations.
    #[command(subcommand)]
    Cost(cost_cmd::CostCommand),
    /// Run a worker agent that joins a pool and runs jobs as child processes; or
    /// `hodei worker list`.
    Worker(worker_cmd::WorkerCli),
}

#[derive(Debug, Subcommand)]
pub enum ObservabilityCommand {
    /// What the node has switched on and where: metrics, dashboards, alert rules.
    Config {
        #[command(flatten)]
        api: api::Api,
    },
    /// The shipped Grafana dashboards; with a uid, that dashboard's JSON.
    Dashboards {
        /// A dashboard's uid (e.g. hodei-cost): print its Grafana JSON.
        uid: Option<String>,
        #[command(flatten)]
        api: api::Api,
    },
    /// The alert rules in effect (severity, duration, summary); with
    /// observability.prometheus_url / alertmanager_url, the alerts active there and the
    /// silences.
    Alerts {
        #[command(flatten)]
        api: api::Api,
    },
    /// Whether metrics flow: every member's metrics endpoint and its scrapes, and with
    /// observability.prometheus_url how Prometheus scrapes each target.
    Health {
        /// Only the asked node's own endpoint.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        api: api::Api,
    },
    /// A metric's history as the node sampled it (every 10 s; averaged per step).
    History {
        /// hodei_jobs | hodei_workers_live | hodei_pool_utilization_ratio |
        /// hodei_tenant_running_cpu_m | hodei_cost_nanodollars | hodei_tenant_budget_used_ratio
        #[arg(long)]
        metric: String,
        /// Label filter, e.g. queue=batch,state=pending.
        #[arg(long)]
        labels: Option<String>,
        /// Start, ms since the epoch (default: an hour before --to).
        #[arg(long)]
        from: Option<u64>,
        /// End, ms since the epoch (default: now).
        #[arg(long)]
        to: Option<u64>,
        /// Seconds per point, a multiple of 10 (default 10).
        #[arg(long)]
        step: Option<u64>,
        #[command(flatten)]
        api: api::Api,
    },
    /// Write the Grafana dashboards (generated from `observability.rs`) and a Grafana
    /// provisioning file for them into a folder (no node needed).
    WriteDashboards {
        /// The folder to write them into (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Write the Prometheus alert rules (`hodei.yml`) into a folder (no node needed).
    WriteRules {
        /// The folder to write them into (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

const ALERT_RULE: &[output::Column] = &[
    output::col("NAME", "/name", output::Show::Text),
    output::col("SEVERITY", "/severity", output::Show::Text),
    output::col("FOR", "/for_duration", output::Show::Text),
    output::col("SUMMARY", "/summary", output::Show::Text),
];

const ACTIVE_ALERT: &[output::Column] = &[
    output::col("NAME", "/name", output::Show::Text),
    output::col("SOURCE", "/source", output::Show::Text),
    output::col("STATE", "/state", output::Show::Text),
    output::col("SEVERITY", "/severity", output::Show::Text),
    output::col("SINCE", "/since", output::Show::Text),
    output::col("SILENCED BY", "/silenced_by", output::Show::Text),
    output::col("SUMMARY", "/summary", output::Show::Text),
];

const SILENCE: &[output::Column] = &[
    output::col("ID", "/id", output::Show::Text),
    output::col("STATE", "/state", output::Show::Text),
    output::col("ENDS", "/ends_at", output::Show::Text),
    output::col("BY", "/created_by", output::Show::Text),
    output::col("COMMENT", "/comment", output::Show::Text),
];

const SOURCE: &[output::Column] = &[
    output::col("SOURCE", "/name", output::Show::Text),
    output::col("URL", "/url", output::Show::Text),
    output::col("REACHABLE", "/reachable", output::Show::Text),
    output::col("ERROR", "/error", output::Show::Text),
];

const MEMBER_METRICS: &[output::Column] = &[
    output::col("NODE", "/node_id", output::Show::Text),
    output::col("REACHABLE", "/reachable", output::Show::Text),
    output::col("METRICS", "/endpoint/enabled", output::Show::Text),
    output::col("ADDRESS", "/endpoint/address", output::Show::Text),
    output::col("SCRAPES", "/endpoint/scrapes", output::Show::Text),
    output::col("FAILED", "/endpoint/failed_scrapes", output::Show::Text),
    output::col(
        "LAST SCRAPE",
        "/endpoint/last_scrape_ms",
        output::Show::Time,
    ),
    output::col("ERROR", "/error", output::Show::Text),
];

const SCRAPE_TARGET: &[output::Column] = &[
    output::col("INSTANCE", "/instance", output::Show::Text),
    output::col("JOB", "/job", output::Show::Text),
    output::col("HEALTH", "/health", output::Show::Text),
    output::col("LAST SCRAPE", "/last_scrape", output::Show::Text),
    output::col("ERROR", "/last_error", output::Show::Text),
];

const DASHBOARD: &[output::Column] = &[
    output::col("UID", "/uid", output::Show::Text),
    output::col("TITLE", "/title", output::Show::Text),
    output::col("PANELS", "/panels", output::Show::Text),
];

const OBSERVABILITY: &[output::Column] = &[
    output::col("METRICS", "/metrics_enabled", output::Show::Text),
    output::col("METRICS PORT", "/metrics_port", output::Show::Text),
    output::col("GRAFANA", "/grafana_enabled", output::Show::Text),
    output::col("DASHBOARDS DIR", "/dashboards_dir", output::Show::Text),
    output::col("ALERTING", "/alerting_enabled", output::Show::Text),
    output::col("ALERTS DIR", "/alerts_dir", output::Show::Text),
    output::col("DASHBOARDS", "/dashboards", output::Show::Text),
    output::col("ALERT RULES", "/alert_rules", output::Show::Text),
];

/// Runs `hodei observability ...`.
pub async fn run_observability(command: ObservabilityCommand) -> anyhow::Result<()> {
    match command {
        ObservabilityCommand::Config { api } => {
            let found = api.get("/api/v1/observability/config", &[]).await?;
            api.output.object(&found, OBSERVABILITY)
        }
        ObservabilityCommand::Dashboards { uid: None, api } => {
            let found = api.get("/api/v1/observability/dashboards", &[]).await?;
            api.output.list(&found, "/items", DASHBOARD)
        }
        ObservabilityCommand::Dashboards {
            uid: Some(uid),
            api,
        } => {
            let path = format!("/api/v1/observability/dashboards/{}", api::segment(&uid));
            let found = api.get(&path, &[]).await?;
            println!("{}", serde_json::to_string_pretty(&found)?);
            Ok(())
        }
        ObservabilityCommand::History {
            metric,
            labels,
            from,
            to,
            step,
            api,
        } => {
            let query = [
                ("metric", Some(metric)),
                ("labels", labels),
                ("from", from.map(|value| value.to_string())),
                ("to", to.map(|value| value.to_string())),
                ("step", step.map(|value| value.to_string())),
            ];
            let found = api.get("/api/v1/metrics/historical", &query).await?;
            if api.output.output != output::Format::Table {
                return api.output.raw(&found);
            }
            for series in found["series"].as_array().into_iter().flatten() {
                println!("{}", series["labels"]);
                for point in series["points"].as_array().into_iter().flatten() {
                    let at = point[0].as_u64().unwrap_or_default();
                    println!("  {}  {}", output::utc(at), point[1]);
                }
            }
            Ok(())
        }
        ObservabilityCommand::Alerts { api } => {
            let found = api.get("/api/v1/observability/alerts", &[]).await?;
            if api.output.output != output::Format::Table {
                return api.output.raw(&found);
            }
            api.output.list(&found, "/items", ALERT_RULE)?;
            for (heading, rows, columns) in [
                ("Active alerts", "/active", ACTIVE_ALERT),
                ("Silences", "/silences", SILENCE),
                ("Asked", "/sources", SOURCE),
            ] {
                if found
                    .pointer(rows)
                    .and_then(serde_json::Value::as_array)
                    .is_some_and(|rows| !rows.is_empty())
                {
                    println!("\n{heading}");
                    api.output.list(&found, rows, columns)?;
                }
            }
            Ok(())
        }
        ObservabilityCommand::Health { local, api } => {
            let query = [("local", local.then(|| "true".to_string()))];
            let found = api.get("/api/v1/observability/health", &query).await?;
            if api.output.output != output::Format::Table {
                return api.output.raw(&found);
            }
            if local {
                let members = serde_json::json!({ "members": [{
                    "node_id": found["node"]["node_id"],
                    "reachable": true,
                    "endpoint": found["node"],
                }] });
                return api.output.list(&members, "/members", MEMBER_METRICS);
            }
            api.output.list(&found, "/members", MEMBER_METRICS)?;
            if found["prometheus"].is_object() {
                println!("\nPrometheus scrapes");
                let source = serde_json::json!({ "rows": [found["prometheus"]["source"]] });
                api.output.list(&source, "/rows", SOURCE)?;
                api.output
                    .list(&found, "/prometheus/targets", SCRAPE_TARGET)?;
            }
            Ok(())
        }
        ObservabilityCommand::WriteDashboards { out } => {
            let written = crate::observability::write_dashboards(&out)?;
            std::fs::write(
                out.join("provisioning.yaml"),
                crate::observability::provisioning_yaml(&out.display().to_string()),
            )?;
            println!(
                "{written} dashboards and provisioning.yaml written to {}",
                out.display()
            );
            Ok(())
        }
        ObservabilityCommand::WriteRules { out } => {
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("hodei.yml"), crate::observability::ALERT_RULES)?;
            println!("alert rules written to {}", out.join("hodei.yml").display());
            Ok(())
        }
    }
}

/// `hodei audit`.
pub async fn run_audit(
    from: Option<u64>,
    to: Option<u64>,
    principal: Option<String>,
    limit: Option<u32>,
    local: bool,
    api: api::Api,
) -> anyhow::Result<()> {
    let answer = api
        .get(
            "/api/v1/audit",
            &[
                ("from", from.map(|value| value.to_string())),
                ("to", to.map(|value| value.to_string())),
                ("principal", principal),
                ("limit", limit.map(|value| value.to_string())),
                ("local", local.then(|| "true".to_string())),
            ],
        )
        .await?;
    use crate::cli::output::{Show, col};
    api.output.list(
        &answer,
        "/items",
        &[
            col("AT", "/at_ms", Show::Time),
            col("NODE", "/node_id", Show::Text),
            col("PRINCIPAL", "/principal", Show::Text),
            col("ACTION", "/action", Show::Text),
            col("RESOURCE", "/resource", Show::Text),
            col("RESULT", "/result", Show::Text),
            col("TRACE", "/trace_id", Show::Text),
        ],
    )?;
    for why in answer["unreachable"].as_array().into_iter().flatten() {
        eprintln!("missing: {}", why.as_str().unwrap_or_default());
    }
    Ok(())
}
