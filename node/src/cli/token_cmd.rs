//! `hodei token ...` (a tenant's access tokens) and `hodei join-token ...` (a pool's join
//! tokens), over the REST API of any node. An issued token's secret is printed once.

use clap::Subcommand;
use serde_json::json;

use crate::cli::api::{Api, segment};
use crate::cli::output::{Column, Show, col};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a tenant; its secret is printed this once.
    Create {
        /// The tenant.
        tenant: String,
        /// What it is for (shown when tokens are listed).
        #[arg(long)]
        name: String,
        /// read | submit | admin-of-tenant (repeatable; at least one).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Seconds until it expires (default: until revoked).
        #[arg(long)]
        expires_in_s: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// A tenant's tokens (never their secrets).
    List {
        /// The tenant.
        tenant: String,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke any token by id (admin), the first start's admin token too (its id is the
    /// part after `hodei_a_`).
    Delete {
        /// The token's id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a tenant's token.
    Revoke {
        /// The tenant.
        tenant: String,
        /// The token's id (as listed).
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Subcommand)]
pub enum JoinTokenCommand {
    /// Issue a join token for a pool (admin); its secret is printed this once. Give it to
    /// `hodei worker` as HODEI_JOIN_TOKEN.
    Create {
        /// The pool.
        pool: String,
        /// What it is for (shown when join tokens are listed).
        #[arg(long)]
        name: String,
        /// Seconds until it expires (default: until revoked).
        #[arg(long)]
        expires_in_s: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// A pool's join tokens (never their secrets).
    List {
        /// The pool.
        pool: String,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a pool's join token (workers that joined with it stay).
    Revoke {
        /// The pool.
        pool: String,
        /// The token's id (as listed).
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

const TOKEN: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("NAME", "/name", Show::Text),
    col("TENANT", "/tenant", Show::Text),
    col("POOL", "/pool", Show::Text),
    col("SCOPES", "/scopes", Show::Text),
    col("CREATED", "/created_at_ms", Show::Time),
    col("EXPIRES", "/expires_at_ms", Show::Time),
];

const ISSUED: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("NAME", "/name", Show::Text),
    col("EXPIRES", "/expires_at_ms", Show::Time),
    col("TOKEN (shown once)", "/token", Show::Text),
];

const REVOKED: &[Column] = &[col("REVOKED", "/id", Show::Text)];

pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            tenant,
            name,
            scopes,
            expires_in_s,
            api,
        } => {
            let body = json!({ "name": name, "scopes": scopes, "expires_in_s": expires_in_s });
            let issued = api
                .post(
                    &format!("/api/v1/tenants/{}/tokens", segment(&tenant)),
                    body,
                )
                .await?;
            api.output.object(&issued, ISSUED)
        }
        TokenCommand::List { tenant, api } => {
            let list = api
                .get(&format!("/api/v1/tenants/{}/tokens", segment(&tenant)), &[])
                .await?;
            api.output.list(&list, "/items", TOKEN)
        }
        TokenCommand::Delete { id, api } => {
            let revoked = api
                .delete(&format!("/api/v1/tokens/{}", segment(&id)), &[])
                .await?;
            api.output.object(&revoked, REVOKED)
        }
        TokenCommand::Revoke { tenant, id, api } => {
            let revoked = api
                .delete(
                    &format!(
                        "/api/v1/tenants/{}/tokens/{}",
                        segment(&tenant),
                        segment(&id)
                    ),
                    &[],
                )
                .await?;
            api.output.object(&revoked, REVOKED)
        }
    }
}

pub async fn run_join(command: JoinTokenCommand) -> anyhow::Result<()> {
    match command {
        JoinTokenCommand::Create {
            pool,
            name,
            expires_in_s,
            api,
        } => {
            let body = json!({ "name": name, "expires_in_s": expires_in_s });
            let issued = api
                .post(
                    &format!("/api/v1/pools/{}/join-tokens", segment(&pool)),
                    body,
                )
                .await?;
            api.output.object(&issued, ISSUED)
        }
        JoinTokenCommand::List { pool, api } => {
            let list = api
                .get(
                    &format!("/api/v1/pools/{}/join-tokens", segment(&pool)),
                    &[],
                )
                .await?;
            api.output.list(&list, "/items", TOKEN)
        }
        JoinTokenCommand::Revoke { pool, id, api } => {
            let revoked = api
                .delete(
                    &format!(
                        "/api/v1/pools/{}/join-tokens/{}",
                        segment(&pool),
                        segment(&id)
                    ),
                    &[],
                )
                .await?;
            api.output.object(&revoked, REVOKED)
        }
    }
}
