//! The gRPC side of the CLI: `hodei cluster` speaks to a node's gRPC port (membership
//! changes are admin calls there).

use clap::Args;
use tonic::transport::Channel;

use crate::gateway::principal::PRINCIPAL_HEADER;

#[derive(Debug, Args)]
pub struct Connection {
    /// gRPC address of any node.
    #[arg(long, env = "HODEI_ADDR", default_value = "http://127.0.0.1:9090")]
    pub addr: String,
    /// Act as `admin` or `tenant:<id>` (nodes with `server.auth: none`).
    #[arg(long, env = "HODEI_PRINCIPAL")]
    pub principal: Option<String>,
    /// The bearer token (nodes with `server.auth: token`).
    #[arg(long, env = "HODEI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub output: crate::cli::output::Output,
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

pub fn request<T>(message: T, connection: &Connection) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(principal) = &connection.principal {
        request
            .metadata_mut()
            .insert(PRINCIPAL_HEADER, principal.parse()?);
    }
    if let Some(token) = &connection.token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(request)
}

pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}
