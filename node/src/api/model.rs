//! The request and response bodies both APIs share. REST (de)serialises them as JSON;
//! gRPC converts its messages into the same inputs, so validation happens once, in the
//! gateway.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::labels::Labels;
use crate::domain::tenant::Tenant;

#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantInput {
    /// `[a-z0-9][a-z0-9-]{0,62}`
    pub id: String,
    /// Defaults to the id.
    #[serde(default)]
    pub display_name: Option<String>,
    /// free | standard (default) | premium | enterprise
    #[serde(default)]
    pub tier: Option<String>,
    /// Fair-share weight, 0.1–100; defaults by tier (1 / 2 / 3 / 5).
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub labels: Labels,
}

/// Only the fields present change; `labels`, when present, replaces every label.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantInput {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub labels: Option<Labels>,
    /// active | suspended
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub display_name: String,
    pub tier: String,
    pub weight: f64,
    pub labels: Labels,
    pub status: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl From<&Tenant> for TenantView {
    fn from(tenant: &Tenant) -> Self {
        Self {
            id: tenant.id.to_string(),
            display_name: tenant.display_name.clone(),
            tier: tenant.tier.as_str().to_string(),
            weight: tenant.weight,
            labels: tenant.labels.clone(),
            status: tenant.status.as_str().to_string(),
            created_at_ms: tenant.created_at_ms,
            updated_at_ms: tenant.updated_at_ms,
        }
    }
}

/// A page request: at most `limit` items after `cursor` (the previous page's `next_cursor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageInput {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// One page of a list, in id order; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantPageView {
    pub items: Vec<TenantView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterMemberView {
    pub node_id: u64,
    pub addr: String,
    /// voter | learner
    pub role: String,
    /// Leader's view: the last log index known replicated to this member.
    pub matched_index: Option<u64>,
    /// Leader's view: entries this member is behind.
    pub lag: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatusView {
    pub cluster_id: Option<String>,
    pub node_id: u64,
    /// This node's gRPC address as the cluster knows it.
    pub addr: String,
    /// Whether this node belongs to a cluster.
    pub initialized: bool,
    /// leader | follower | candidate | learner | shutdown
    pub role: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub members: Vec<ClusterMemberView>,
}

impl From<&hodei_cluster::ClusterStatus> for ClusterStatusView {
    fn from(status: &hodei_cluster::ClusterStatus) -> Self {
        Self {
            cluster_id: status.cluster_id.clone(),
            node_id: status.node_id,
            addr: status.addr.clone(),
            initialized: status.initialized,
            role: status.role.to_string(),
            term: status.term,
            leader_id: status.leader_id,
            last_log_index: status.last_log_index,
            last_applied_index: status.last_applied_index,
            snapshot_index: status.snapshot_index,
            members: status
                .members
                .iter()
                .map(|member| ClusterMemberView {
                    node_id: member.node_id,
                    addr: member.addr.clone(),
                    role: if member.voter { "voter" } else { "learner" }.to_string(),
                    matched_index: member.matched_index,
                    lag: member.lag,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` while the process serves requests.
    pub status: String,
    /// Whether a leader is known, i.e. writes can be served.
    pub ready: bool,
    pub node_id: u64,
    pub role: String,
    pub leader_id: Option<u64>,
    pub version: String,
}

/// An RFC 9457 problem document, the body of every error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProblemView {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberInput {
    pub node_id: u64,
    /// The new node's gRPC address, `host:port`.
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferLeaderInput {
    pub node_id: u64,
}
