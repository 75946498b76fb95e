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
    /// What Hodei ships for monitoring: write the Grafana dashboards or the alert rules.
    #[command(subcommand)]
    Observability(ObservabilityCommand),
    /// Cluster membership: init, join, leave, status, digests, transfer-leader (gRPC).
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
    /// Is the node up, ready, and who leads?
    Health {
        #[command(flatten)]
        api: api::Api,
    },
    /// Tenants: create, list, get, update, delete.
    #[command(subcommand)]
    Tenant(tenant_cmd::TenantCommand),
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
    /// Write the Grafana dashboards (generated from `observability.rs`) and a Grafana
    /// provisioning file for them into a folder.
    Dashboards {
        /// The folder to write them into (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Write the Prometheus alert rules (`hodei.yml`) into a folder.
    Rules {
        /// The folder to write them into (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

/// Runs `hodei observability ...`.
pub fn run_observability(command: ObservabilityCommand) -> anyhow::Result<()> {
    match command {
        ObservabilityCommand::Dashboards { out } => {
            let written = crate::observability::write_dashboards(&out)?;
            std::fs::write(
                out.join("provisioning.yaml"),
                crate::observability::provisioning_yaml(&out.display().to_string()),
            )?;
            println!(
                "{written} dashboards and provisioning.yaml written to {}",
                out.display()
            );
        }
        ObservabilityCommand::Rules { out } => {
            std::fs::create_dir_all(&out)?;
            std::fs::write(out.join("hodei.yml"), crate::server::ALERT_RULES)?;
            println!("alert rules written to {}", out.join("hodei.yml").display());
        }
    }
    Ok(())
}
