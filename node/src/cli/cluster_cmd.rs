//! `hodei cluster init|join|leave|status|digests|transfer-leader`, over gRPC.

use clap::Subcommand;
use hodei_proto::v1 as pb;
use hodei_proto::v1::cluster_service_client::ClusterServiceClient;
use tonic::transport::Channel;

use crate::cli::grpc::{Connection, grpc_channel, request, status_error};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make the node at --addr (started with `cluster.bootstrap: join`) the first member
    /// of a new cluster.
    Init {
        #[command(flatten)]
        connection: Connection,
    },
    /// Add the node at --addr to the cluster that the node at --via belongs to. It joins as
    /// a learner, catches up, then is promoted to voter.
    Join {
        /// gRPC address of any member of the cluster to join.
        #[arg(long)]
        via: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Remove a node from the cluster (by default the node at --addr).
    Leave {
        /// The node to remove (default: the node at --addr).
        #[arg(long)]
        node: Option<u64>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Members, roles, leader, term, and each member's match index and lag.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// The digest of the node's replicated state at each of its last applied indexes:
    /// compare two nodes' lists, they agree at every index they share.
    Digests {
        /// Print only the last this many.
        #[arg(long, default_value_t = 10)]
        last: usize,
        #[command(flatten)]
        connection: Connection,
    },
    /// Hand leadership to another voter.
    TransferLeader {
        /// The voter to hand leadership to.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        connection: Connection,
    },
}

async fn client(
    addr: &str,
    connection: &Connection,
) -> anyhow::Result<ClusterServiceClient<Channel>> {
    Ok(ClusterServiceClient::new(
        grpc_channel(addr, connection.ca_cert.as_deref()).await?,
    ))
}

/// Whether each member answers on its gRPC address within a second (from here).
async fn reachability(
    status: &pb::ClusterStatus,
    connection: &Connection,
) -> std::collections::BTreeMap<u64, bool> {
    let mut reachable = std::collections::BTreeMap::new();
    for member in &status.members {
        let Some(addr) = &member.api_addr else {
            continue;
        };
        let answered = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            let mut grpc = client(addr, connection).await.ok()?;
            grpc.get_status(request(pb::GetClusterStatusRequest {}, connection).ok()?)
                .await
                .ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        reachable.insert(member.node_id, answered);
    }
    reachable
}

/// Prints the status table. Write errors (a closed pipe) are ignored: nothing to tell.
fn print_status(status: &pb::ClusterStatus, reachable: &std::collections::BTreeMap<u64, bool>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let or_dash =
        |value: Option<u64>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
    let _ = writeln!(
        out,
        "cluster {}  node {} ({})  role {}  term {}  leader {}  last log {}  applied {}  snapshot {}  digest {} at {}",
        if status.cluster_id.is_empty() {
            "(none)"
        } else {
            &status.cluster_id
        },
        status.node_id,
        status.addr,
        status.role,
        status.term,
        or_dash(status.leader_id),
        or_dash(status.last_log_index),
        or_dash(status.last_applied_index),
        or_dash(status.snapshot_index),
        if status.state_digest.is_empty() {
            "-"
        } else {
            &status.state_digest
        },
        or_dash(status.digest_index),
    );
    if let Some(age_ms) = status.quorum_ack_age_ms {
        let _ = writeln!(out, "a majority acknowledged this leader {age_ms} ms ago");
    }
    println!(
        "{:<8} {:<24} {:<8} {:>8} {:>8}  REACHABLE",
        "NODE", "ADDRESS", "ROLE", "MATCHED", "LAG"
    );
    for member in &status.members {
        let leader = if Some(member.node_id) == status.leader_id {
            " (leader)"
        } else {
            ""
        };
        let reached = match reachable.get(&member.node_id) {
            Some(true) => "yes",
            Some(false) => "UNREACHABLE",
            None => "-",
        };
        let line = format!(
            "{:<8} {:<24} {:<8} {:>8} {:>8}  {reached:<11}{leader}",
            member.node_id,
            member.addr,
            member.role,
            or_dash(member.matched_index),
            or_dash(member.lag),
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

impl ClusterCommand {
    fn connection(&self) -> &Connection {
        match self {
            ClusterCommand::Init { connection }
            | ClusterCommand::Join { connection, .. }
            | ClusterCommand::Leave { connection, .. }
            | ClusterCommand::Status { connection }
            | ClusterCommand::Digests { connection, .. }
            | ClusterCommand::TransferLeader { connection, .. } => connection,
        }
    }

    fn output(&self) -> crate::cli::output::Output {
        self.connection().output
    }
}

/// The status as JSON (`--output json|yaml`), with each member's reachability.
fn status_json(
    status: &pb::ClusterStatus,
    reachable: &std::collections::BTreeMap<u64, bool>,
) -> serde_json::Value {
    serde_json::json!({
        "cluster_id": status.cluster_id,
        "node_id": status.node_id,
        "addr": status.addr,
        "role": status.role,
        "term": status.term,
        "leader_id": status.leader_id,
        "last_log_index": status.last_log_index,
        "last_applied_index": status.last_applied_index,
        "snapshot_index": status.snapshot_index,
        "initialized": status.initialized,
        "state_digest": status.state_digest,
        "digest_index": status.digest_index,
        "quorum_ack_age_ms": status.quorum_ack_age_ms,
        "members": status.members.iter().map(|member| serde_json::json!({
            "node_id": member.node_id,
            "addr": member.addr,
            "api_addr": member.api_addr,
            "role": member.role,
            "matched_index": member.matched_index,
            "lag": member.lag,
            "reachable": reachable.get(&member.node_id),
        })).collect::<Vec<_>>(),
    })
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let output = command.output();
    let asking = command.connection().clone();
    let status = match command {
        ClusterCommand::Digests { last, connection } => {
            let digests = client(&connection.addr, &connection)
                .await?
                .get_digests(request(pb::GetDigestsRequest {}, &connection)?)
                .await
                .map_err(status_error)?
                .into_inner();
            if output.output != crate::cli::output::Format::Table {
                let readings: Vec<serde_json::Value> = digests
                    .digests
                    .iter()
                    .map(|reading| serde_json::json!({ "index": reading.index, "state_digest": reading.state_digest }))
                    .collect();
                return output
                    .raw(&serde_json::json!({ "node_id": digests.node_id, "digests": readings }));
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "node {}", digests.node_id);
            let _ = writeln!(out, "{:>12}  STATE DIGEST", "INDEX");
            let skip = digests.digests.len().saturating_sub(last);
            for reading in digests.digests.iter().skip(skip) {
                let _ = writeln!(out, "{:>12}  {}", reading.index, reading.state_digest);
            }
            return Ok(());
        }
        ClusterCommand::Init { connection } => client(&connection.addr, &connection)
            .await?
            .init(request(pb::InitClusterRequest {}, &connection)?)
            .await
            .map_err(status_error)?,
        ClusterCommand::Join { via, connection } => {
            let joining = client(&connection.addr, &connection)
                .await?
                .get_status(request(pb::GetClusterStatusRequest {}, &connection)?)
                .await
                .map_err(status_error)?
                .into_inner();
            let message = pb::AddMemberRequest {
                node_id: joining.node_id,
                addr: joining.addr,
            };
            client(&via, &connection)
                .await?
                .add_member(request(message, &connection)?)
                .await
                .map_err(status_error)?
        }
        ClusterCommand::Leave { node, connection } => {
            let mut grpc = client(&connection.addr, &connection).await?;
            let node_id = match node {
                Some(node_id) => node_id,
                None => {
                    grpc.get_status(request(pb::GetClusterStatusRequest {}, &connection)?)
                        .await
                        .map_err(status_error)?
                        .into_inner()
                        .node_id
                }
            };
            grpc.remove_member(request(pb::RemoveMemberRequest { node_id }, &connection)?)
                .await
                .map_err(status_error)?
        }
        ClusterCommand::Status { connection } => {
            let local = client(&connection.addr, &connection)
                .await?
                .get_status(request(pb::GetClusterStatusRequest {}, &connection)?)
                .await
                .map_err(status_error)?;
            // Match indexes and lag are the leader's view: ask it when this node is not it.
            let leader_addr = local
                .get_ref()
                .leader_id
                .filter(|leader| *leader != local.get_ref().node_id)
                .and_then(|leader| {
                    local
                        .get_ref()
                        .members
                        .iter()
                        .find(|member| member.node_id == leader)
                })
                .and_then(|member| member.api_addr.clone());
            match leader_addr {
                Some(addr) => match client(&addr, &connection).await {
                    Ok(mut leader) => leader
                        .get_status(request(pb::GetClusterStatusRequest {}, &connection)?)
                        .await
                        .unwrap_or(local),
                    Err(_) => local,
                },
                None => local,
            }
        }
        ClusterCommand::TransferLeader { to, connection } => client(&connection.addr, &connection)
            .await?
            .transfer_leader(request(
                pb::TransferLeaderRequest { node_id: to },
                &connection,
            )?)
            .await
            .map_err(status_error)?,
    };
    let reachable = reachability(status.get_ref(), &asking).await;
    if output.output != crate::cli::output::Format::Table {
        return output.raw(&status_json(status.get_ref(), &reachable));
    }
    print_status(status.get_ref(), &reachable);
    Ok(())
}
