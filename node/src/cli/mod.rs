//! The `hodei` command line.

pub mod cluster_cmd;
pub mod config_cmd;
pub mod job_cmd;
pub mod node_cmd;
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
    /// Cluster membership: init, join, leave, status, transfer-leader.
    #[command(subcommand)]
    Cluster(cluster_cmd::ClusterCommand),
    /// Manage tenants on a running node.
    #[command(subcommand)]
    Tenant(tenant_cmd::TenantCommand),
    /// Submit and follow jobs.
    #[command(subcommand)]
    Job(job_cmd::JobCommand),
    /// Run a worker agent that joins a pool and runs jobs as child processes.
    Worker(worker_cmd::WorkerArgs),
}
