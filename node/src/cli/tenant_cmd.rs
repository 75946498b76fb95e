//! `hodei tenant create|list|get|update|delete` and `hodei quota ...`, `hodei burst ...`:
//! a tenant and its limits, over the REST API of any node.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::api::{Api, pairs_object, parse_pair, segment};
use crate::cli::output::{Column, Show, col};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// The tenant id: lower-case letters, digits and `-`, up to 63.
        id: String,
        /// A name for people (default: the id).
        #[arg(long)]
        display_name: Option<String>,
        /// free | standard | premium | enterprise (default standard).
        #[arg(long)]
        tier: Option<String>,
        /// Fair-share weight, 0.1-100 (default by tier).
        #[arg(long)]
        weight: Option<f64>,
        /// A label, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        api: Api,
    },
    /// List tenants (every page unless --limit is given).
    List {
        /// Page size, 1-1000.
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of an earlier page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Show one tenant.
    Get {
        /// The tenant id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Change some fields of a tenant.
    Update {
        /// The tenant id.
        id: String,
        /// A name for people.
        #[arg(long)]
        display_name: Option<String>,
        /// free | standard | premium | enterprise
        #[arg(long)]
        tier: Option<String>,
        /// Fair-share weight, 0.1-100.
        #[arg(long)]
        weight: Option<f64>,
        /// active | suspended (a suspended tenant submits nothing and runs nothing new).
        #[arg(long)]
        status: Option<String>,
        /// Replace every label with these (`key=value`, repeatable).
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a tenant.
    Delete {
        /// The tenant id.
        id: String,
        /// Cancel the tenant's pending and running jobs first.
        #[arg(long)]
        cascade: bool,
        #[command(flatten)]
        api: Api,
    },
}

const TENANT: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("DISPLAY NAME", "/display_name", Show::Text),
    col("TIER", "/tier", Show::Text),
    col("WEIGHT", "/weight", Show::Text),
    col("STATUS", "/status", Show::Text),
    col("LABELS", "/labels", Show::Pairs),
    col("CREATED", "/created_at_ms", Show::Time),
];

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create {
            id,
            display_name,
            tier,
            weight,
            labels,
            api,
        } => {
            let body = json!({
                "id": id,
                "display_name": display_name,
                "tier": tier,
                "weight": weight,
                "labels": pairs_object(labels),
            });
            let tenant = api.post("/api/v1/tenants", without_nulls(body)).await?;
            api.output.object(&tenant, TENANT)
        }
        TenantCommand::List { limit, cursor, api } => {
            let mut cursor = cursor;
            let mut items = Vec::new();
            let next = loop {
                let page = api
                    .get(
                        "/api/v1/tenants",
                        &[
                            ("limit", limit.map(|limit| limit.to_string())),
                            ("cursor", cursor.clone()),
                        ],
                    )
                    .await?;
                items.extend(page["items"].as_array().cloned().unwrap_or_default());
                let next = page["next_cursor"].as_str().map(str::to_string);
                if next.is_none() || limit.is_some() {
                    break next;
                }
                cursor = next;
            };
            let answer = json!({ "items": items, "next_cursor": next });
            api.output.list(&answer, "/items", TENANT)?;
            more(&api, &answer);
            Ok(())
        }
        TenantCommand::Get { id, api } => {
            let tenant = api
                .get(&format!("/api/v1/tenants/{}", segment(&id)), &[])
                .await?;
            api.output.object(&tenant, TENANT)
        }
        TenantCommand::Update {
            id,
            display_name,
            tier,
            weight,
            status,
            labels,
            api,
        } => {
            let body = json!({
                "display_name": display_name,
                "tier": tier,
                "weight": weight,
                "status": status,
                "labels": pairs_object(labels),
            });
            let tenant = api
                .patch(
                    &format!("/api/v1/tenants/{}", segment(&id)),
                    without_nulls(body),
                )
                .await?;
            api.output.object(&tenant, TENANT)
        }
        TenantCommand::Delete { id, cascade, api } => {
            let deleted = api
                .delete(
                    &format!("/api/v1/tenants/{}", segment(&id)),
                    &[("cascade", cascade.then(|| "cancel".to_string()))],
                )
                .await?;
            api.output
                .object(&deleted, &[col("DELETED", "/id", Show::Text)])
        }
    }
}

/// Leaves out the fields not given (the API takes an absent field as "unchanged" or "the
/// default"; `null` is not always the same).
pub fn without_nulls(mut body: Value) -> Value {
    if let Some(object) = body.as_object_mut() {
        object.retain(|_, value| !value.is_null());
    }
    body
}

/// Under a table, how to ask for the next page.
pub fn more(api: &Api, page: &Value) {
    if api.output.output == crate::cli::output::Format::Table
        && let Some(next) = page["next_cursor"].as_str()
    {
        println!("(more: --cursor {next})");
    }
}

/// `hodei health`: the node's own view (answered without the leader).
pub async fn health(api: Api) -> anyhow::Result<()> {
    let health = api.get("/api/v1/health", &[]).await?;
    api.output.object(
        &health,
        &[
            col("STATUS", "/status", Show::Text),
            col("READY", "/ready", Show::Text),
            col("NODE", "/node_id", Show::Text),
            col("ROLE", "/role", Show::Text),
            col("LEADER", "/leader_id", Show::Text),
            col("VERSION", "/version", Show::Text),
        ],
    )
}
