//! The gRPC side of the CLI: `hodei cluster` speaks to a node's gRPC port (membership
//! changes are admin calls there).

use clap::Args;
use tonic::transport::Channel;

use crate::gateway::principal::PRINCIPAL_HEADER;

#[derive(Debug, Clone, Args)]
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
    /// The CA certificate (PEM) a node's TLS certificate is checked against.
    #[arg(long, env = "HODEI_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub output: crate::cli::output::Output,
}

/// A channel to a node's gRPC address (`host:port` or a URL).
pub async fn grpc_channel(
    addr: &str,
    ca_cert: Option<&std::path::Path>,
) -> anyhow::Result<Channel> {
    let scheme = if ca_cert.is_some() { "https" } else { "http" };
    let url = match addr.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{addr}"),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.clone())?;
    if let Some(path) = ca_cert {
        let ca = std::fs::read(path)
            .map_err(|error| anyhow::anyhow!("--ca-cert {}: {error}", path.display()))?;
        endpoint = endpoint.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        )?;
    }
    endpoint
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
