//! The request and response bodies both APIs share. REST (de)serialises them as JSON;
//! gRPC converts its messages into the same inputs, so validation happens once, in the
//! gateway.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use hodei_domain::labels::Labels;
use hodei_domain::tenant::Tenant;

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

/// A page size asked for: 1 to `MAX_PAGE_SIZE`, `DEFAULT_PAGE_SIZE` when not given.
pub fn page_size(limit: Option<u32>) -> Result<usize, crate::gateway::GatewayError> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE as usize),
        Some(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => Ok(limit as usize),
        Some(limit) => Err(crate::gateway::GatewayError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}, got {limit}"),
        )),
    }
}

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
    /// The member's peer address (Raft traffic between members).
    pub addr: String,
    /// The member's public gRPC address, once this node has learnt it.
    pub api_addr: Option<String>,
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
    /// The digest of this node's replicated state (32 hex digits) at `digest_index`:
    /// replicas at the same index agree on it.
    pub state_digest: String,
    pub digest_index: Option<u64>,
    /// On the leader: how long ago a majority last acknowledged it (a leader cut off from
    /// the others keeps its role while this grows; HodeiNoLeader allows 5 s).
    pub quorum_ack_age_ms: Option<u64>,
    pub members: Vec<ClusterMemberView>,
}

/// A node's state digests at its last applied indexes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterDigestsView {
    pub node_id: u64,
    pub digests: Vec<DigestView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DigestView {
    pub index: u64,
    pub state_digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` while the process serves requests (a node whose Raft core stopped answers
    /// 503 instead, and exits within seconds).
    pub status: String,
    /// Whether a leader is known and this node is a member, i.e. writes can be served.
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
    /// The governance rule that refused the request (burst capacity), where one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `outcome_unknown`: the request id to send again as `x-request-id`; a retry
    /// with it is answered with the first attempt's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
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

/// Resource amounts: millicores, MiB, GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesView {
    #[serde(default)]
    pub cpu_m: u64,
    #[serde(default)]
    pub memory_mb: u64,
    #[serde(default)]
    pub gpu: u64,
}

impl From<hodei_domain::resources::Resources> for ResourcesView {
    fn from(resources: hodei_domain::resources::Resources) -> Self {
        Self {
            cpu_m: resources.cpu_m,
            memory_mb: resources.memory_mb,
            gpu: resources.gpu,
        }
    }
}

impl From<ResourcesView> for hodei_domain::resources::Resources {
    fn from(view: ResourcesView) -> Self {
        Self::new(view.cpu_m, view.memory_mb, view.gpu)
    }
}

/// A tenant's quota. `PUT` replaces it: a field left out takes the configured default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaInput {
    pub cpu_m: Option<u64>,
    pub memory_mb: Option<u64>,
    pub gpu: Option<u64>,
    pub max_concurrent_jobs: Option<u64>,
    pub max_pending_jobs: Option<u64>,
    /// Caps on running resources per pool id.
    pub pool_limits: Option<std::collections::BTreeMap<String, ResourcesView>>,
    /// Daily cost budget in US dollars (warnings at 80% and 95%).
    pub daily_cost_budget_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    pub tenant: String,
    pub cpu_m: u64,
    pub memory_mb: u64,
    pub gpu: u64,
    pub max_concurrent_jobs: u64,
    pub max_pending_jobs: u64,
    pub pool_limits: std::collections::BTreeMap<String, ResourcesView>,
    pub daily_cost_budget_usd: Option<f64>,
    /// Where running jobs already exceed this quota (allowed; nothing is stopped).
    pub warnings: Vec<String>,
}

impl QuotaView {
    pub fn new(
        tenant: &hodei_domain::tenant::TenantId,
        quota: &hodei_domain::quota::Quota,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            tenant: tenant.to_string(),
            cpu_m: quota.cpu_m,
            memory_mb: quota.memory_mb,
            gpu: quota.gpu,
            max_concurrent_jobs: quota.max_concurrent_jobs,
            max_pending_jobs: quota.max_pending_jobs,
            pool_limits: quota
                .pool_limits
                .iter()
                .map(|(pool, limit)| (pool.clone(), ResourcesView::from(*limit)))
                .collect(),
            daily_cost_budget_usd: quota
                .daily_cost_budget_micros
                .map(|micros| micros as f64 / 1_000_000.0),
            warnings,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DimensionUsageView {
    /// cpu | memory | gpu | concurrent_jobs
    pub dimension: String,
    pub used: u64,
    pub quota: u64,
    /// The limit while the active burst session lasts.
    pub burst_ceiling: Option<u64>,
    /// What can still be admitted now (against the burst ceiling when one is active).
    pub available: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    pub tenant: String,
    pub dimensions: Vec<DimensionUsageView>,
    pub pending_jobs: u64,
    pub max_pending_jobs: u64,
    pub burst: Option<BurstView>,
    /// Its daily cost budget today (when it has one and costs are tracked by tenant).
    pub budget: Option<BudgetView>,
}

/// A tenant's daily cost budget on the current day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub daily_budget_nanos: u64,
    /// Runs that ended today, and the running ones up to now.
    pub spent_today_nanos: u64,
    pub used_ratio: f64,
    /// The highest of 80, 95, 100 reached, if any.
    pub level_percent: Option<u32>,
    /// The highest warning recorded today (the leader records each level once a day).
    pub warned_percent: Option<u32>,
    pub warned_at_ms: Option<u64>,
    /// warn | queue (`cost_tracking.budget_action`)
    pub action: String,
    /// Spent, with `queue`: its jobs wait until the next day (`budget_exhausted`).
    pub exhausted: bool,
}

/// A hypothetical job, for `POST /api/v1/quotas/enforce`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnforceInput {
    /// Defaults to the principal's tenant (or `default` for an admin).
    pub tenant: Option<String>,
    #[serde(default)]
    pub cpu_m: u64,
    #[serde(default)]
    pub memory_mb: u64,
    #[serde(default)]
    pub gpu: u64,
    /// The pool the job would run in, for per-pool limits.
    pub pool: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReasonView {
    /// exceeds_ceiling | exceeds_pool_limit | exceeds_worker | backlog_full | tenant_suspended | quota | burst_ceiling | pool_limit
    pub code: String,
    pub dimension: Option<String>,
    pub used: u64,
    pub requested: u64,
    pub limit: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    pub tenant: String,
    /// allow | allow_burst | queue | deny
    pub verdict: String,
    pub reasons: Vec<ReasonView>,
}

impl DecisionView {
    pub fn new(
        tenant: &hodei_domain::tenant::TenantId,
        decision: &hodei_domain::admission::Decision,
    ) -> Self {
        Self {
            tenant: tenant.to_string(),
            verdict: decision.verdict.as_str().to_string(),
            reasons: decision
                .reasons
                .iter()
                .map(|reason| ReasonView {
                    code: reason.code.as_str().to_string(),
                    dimension: reason
                        .dimension
                        .map(|dimension| dimension.as_str().to_string()),
                    used: reason.used,
                    requested: reason.requested,
                    limit: reason.limit,
                    message: reason.message.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViolationView {
    pub at_ms: u64,
    pub tenant: String,
    pub verdict: String,
    pub source: String,
    pub reasons: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViolationCountView {
    pub tenant: String,
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViolationsView {
    /// Most recent first.
    pub items: Vec<ViolationView>,
    pub counts: Vec<ViolationCountView>,
}

/// A burst request: a ceiling above 100% of quota, for a time, with a reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BurstInput {
    /// The ceiling as a percentage of the quota, e.g. 150 for 1.5x.
    pub ceiling_percentage: u64,
    /// How long; give this or `duration_minutes`.
    pub duration_seconds: Option<u64>,
    pub duration_minutes: Option<u64>,
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BurstView {
    pub id: String,
    pub tenant: String,
    pub ceiling_percentage: u64,
    pub duration_ms: u64,
    pub reason: String,
    /// awaiting_approval | active | ended
    pub status: String,
    pub requested_by: String,
    pub requested_at_ms: u64,
    pub approved_by: Option<String>,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub ended_at_ms: Option<u64>,
    /// expired | ended_early | withdrawn
    pub end_reason: Option<String>,
    pub ended_by: Option<String>,
}

impl From<&hodei_domain::burst::BurstSession> for BurstView {
    fn from(session: &hodei_domain::burst::BurstSession) -> Self {
        Self {
            id: session.id.clone(),
            tenant: session.tenant.to_string(),
            ceiling_percentage: session.ceiling_percentage,
            duration_ms: session.duration_ms,
            reason: session.reason.clone(),
            status: session.status.as_str().to_string(),
            requested_by: session.requested_by.clone(),
            requested_at_ms: session.requested_at_ms,
            approved_by: session.approved_by.clone(),
            starts_at_ms: session.starts_at_ms,
            ends_at_ms: session.ends_at_ms,
            ended_at_ms: session.ended_at_ms,
            end_reason: session.end_reason.map(|reason| reason.as_str().to_string()),
            ended_by: session.ended_by.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BurstListView {
    pub tenant: String,
    /// The open session (active or awaiting approval), if any.
    pub current: Option<BurstView>,
    /// Every session, newest first.
    pub history: Vec<BurstView>,
}
