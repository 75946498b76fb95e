//! `hodei tenant create|list|get|update|delete`, over gRPC to any node.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use hodei_proto::v1 as pb;
use hodei_proto::v1::tenant_service_client::TenantServiceClient;
use tonic::transport::Channel;

use crate::gateway::principal::PRINCIPAL_HEADER;

#[derive(Debug, Args)]
pub struct Connection {
    /// gRPC address of any node.
    #[arg(long, env = "HODEI_ADDR", default_value = "http://127.0.0.1:9090")]
    pub addr: String,
    /// Act as `admin` or `tenant:<id>`.
    #[arg(long, env = "HODEI_PRINCIPAL")]
    pub principal: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        id: String,
        #[arg(long)]
        display_name: Option<String>,
        /// free | standard | premium | enterprise
        #[arg(long)]
        tier: Option<String>,
        /// Fair-share weight, 0.1-100 (default by tier).
        #[arg(long)]
        weight: Option<f64>,
        /// A label, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List tenants (every page unless --limit is given).
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one tenant.
    Get {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Change some fields of a tenant.
    Update {
        id: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long)]
        weight: Option<f64>,
        /// active | suspended
        #[arg(long)]
        status: Option<String>,
        /// Replace every label with these (`key=value`, repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete a tenant.
    Delete {
        id: String,
        /// Cancel the tenant's pending and running jobs first.
        #[arg(long)]
        cascade: bool,
        #[command(flatten)]
        connection: Connection,
    },
}

fn parse_label(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected key=value, got `{raw}`"))
}

/// A channel to a node's gRPC address (`host:port` or a URL).
pub async fn grpc_channel(addr: &str) -> anyhow::Result<Channel> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    tonic::transport::Endpoint::from_shared(url.clone())?
        .connect()
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach {url}: {error}"))
}

async fn client(connection: &Connection) -> anyhow::Result<TenantServiceClient<Channel>> {
    Ok(TenantServiceClient::new(
        grpc_channel(&connection.addr).await?,
    ))
}

pub fn request<T>(message: T, connection: &Connection) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(principal) = &connection.principal {
        request
            .metadata_mut()
            .insert(PRINCIPAL_HEADER, principal.parse()?);
    }
    Ok(request)
}

fn tenant_json(tenant: &pb::Tenant) -> serde_json::Value {
    serde_json::json!({
        "id": tenant.id,
        "display_name": tenant.display_name,
        "tier": tenant.tier,
        "weight": tenant.weight,
        "labels": tenant.labels,
        "status": tenant.status,
        "created_at_ms": tenant.created_at_ms,
        "updated_at_ms": tenant.updated_at_ms,
    })
}

fn print_tenant(tenant: &pb::Tenant) {
    println!(
        "{}",
        serde_json::to_string_pretty(&tenant_json(tenant)).unwrap_or_default()
    );
}

pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create {
            id,
            display_name,
            tier,
            weight,
            labels,
            connection,
        } => {
            let message = pb::CreateTenantRequest {
                id,
                display_name: display_name.unwrap_or_default(),
                tier: tier.unwrap_or_default(),
                weight,
                labels: labels.into_iter().collect::<HashMap<_, _>>(),
            };
            let tenant = client(&connection)
                .await?
                .create_tenant(request(message, &connection)?)
                .await
                .map_err(status_error)?;
            print_tenant(tenant.get_ref());
        }
        TenantCommand::List {
            limit,
            cursor,
            connection,
        } => {
            let mut grpc = client(&connection).await?;
            let mut cursor = cursor.unwrap_or_default();
            println!(
                "{:<30} {:<12} {:>7} {:<10} DISPLAY NAME",
                "ID", "TIER", "WEIGHT", "STATUS"
            );
            loop {
                let message = pb::ListTenantsRequest {
                    page_size: limit.unwrap_or(500),
                    cursor: cursor.clone(),
                    consistency: String::new(),
                };
                let page = grpc
                    .list_tenants(request(message, &connection)?)
                    .await
                    .map_err(status_error)?
                    .into_inner();
                for tenant in &page.tenants {
                    println!(
                        "{:<30} {:<12} {:>7} {:<10} {}",
                        tenant.id, tenant.tier, tenant.weight, tenant.status, tenant.display_name
                    );
                }
                if page.next_cursor.is_empty() || limit.is_some() {
                    if !page.next_cursor.is_empty() {
                        println!("(more: --cursor {})", page.next_cursor);
                    }
                    break;
                }
                cursor = page.next_cursor;
            }
        }
        TenantCommand::Get { id, connection } => {
            let message = pb::GetTenantRequest {
                id,
                consistency: String::new(),
            };
            let tenant = client(&connection)
                .await?
                .get_tenant(request(message, &connection)?)
                .await
                .map_err(status_error)?;
            print_tenant(tenant.get_ref());
        }
        TenantCommand::Update {
            id,
            display_name,
            tier,
            weight,
            status,
            labels,
            connection,
        } => {
            let message = pb::UpdateTenantRequest {
                id,
                display_name,
                tier,
                weight,
                labels: (!labels.is_empty()).then(|| pb::Labels {
                    entries: labels.into_iter().collect(),
                }),
                status,
            };
            let tenant = client(&connection)
                .await?
                .update_tenant(request(message, &connection)?)
                .await
                .map_err(status_error)?;
            print_tenant(tenant.get_ref());
        }
        TenantCommand::Delete {
            id,
            cascade,
            connection,
        } => {
            let message = pb::DeleteTenantRequest { id, cascade };
            let deleted = client(&connection)
                .await?
                .delete_tenant(request(message, &connection)?)
                .await
                .map_err(status_error)?;
            println!("deleted tenant {}", deleted.get_ref().id);
        }
    }
    Ok(())
}
