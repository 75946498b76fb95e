use crate::raft_types::NodeId;

/// Why the cluster could not carry out a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// This node is not the leader; `leader` names the one it knows of, if any.
    #[error("this node is not the leader (leader: {})", leader_text(.leader_id, .leader_addr))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    /// No leader is known or the cluster cannot reach a quorum right now.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("cluster is not initialised: run `hodei cluster init` or start with `hodei dev`")]
    NotInitialized,
    #[error("cluster storage: {0}")]
    Storage(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    #[error("invalid cluster request: {0}")]
    Invalid(String),
}

fn leader_text(leader_id: &Option<NodeId>, leader_addr: &Option<String>) -> String {
    match (leader_id, leader_addr) {
        (Some(id), Some(addr)) => format!("node {id} at {addr}"),
        (Some(id), None) => format!("node {id}"),
        _ => "unknown".to_string(),
    }
}
