use serde::{Deserialize, Serialize};

use crate::raft_types::NodeId;

/// Why the cluster could not carry out a request. It crosses the wire between nodes
/// (forwarded writes and admin operations), so it is plain data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClusterError {
    /// This node is not the leader; it names the one it knows of, if any.
    #[error("this node is not the leader (leader: {})", leader_text(.leader_id, .leader_addr))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// No leader is known or the cluster cannot reach a quorum right now.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error(
        "this node belongs to no cluster yet: run `hodei cluster init` on it, or add it to a cluster with `hodei cluster join`"
    )]
    NotInitialized,
    #[error("node {0} is already a member of this cluster")]
    AlreadyMember(NodeId),
    #[error("node {0} is not a member of this cluster")]
    NotMember(NodeId),
    /// The request is valid but the cluster's state forbids it.
    #[error("{0}")]
    Refused(String),
    #[error("invalid cluster request: {0}")]
    Invalid(String),
    #[error("cluster storage: {0}")]
    Storage(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    /// The command may or may not have been applied: its reply was lost (a timeout, a
    /// connection broken after it was sent, the leader stopping). Retrying with the same
    /// request id is safe: a repeat is answered with the first outcome.
    #[error("the outcome of request {} is unknown: {detail}; retry with the same request id", .request_id.as_deref().unwrap_or("(no id)"))]
    OutcomeUnknown {
        request_id: Option<String>,
        detail: String,
    },
}

impl ClusterError {
    /// Whether the failed attempt certainly did not reach any log, so it may be tried
    /// again as if it had never been made.
    pub fn certainly_not_applied(&self) -> bool {
        matches!(
            self,
            ClusterError::NotLeader { .. } | ClusterError::Unavailable(_)
        )
    }
}

fn leader_text(leader_id: &Option<NodeId>, leader_addr: &Option<String>) -> String {
    match (leader_id, leader_addr) {
        (Some(id), Some(addr)) => format!("node {id} at {addr}"),
        (Some(id), None) => format!("node {id}"),
        _ => "unknown".to_string(),
    }
}
