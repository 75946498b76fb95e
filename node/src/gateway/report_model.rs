//! Reports on queues, fairness, positions and service levels, shared by REST and gRPC.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::model::ResourcesView;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantShareView {
    pub tenant: String,
    pub weight: f64,
    /// Has pending jobs in the queue now.
    pub backlogged: bool,
    /// Had pending jobs in the queue at some time in the window: the fair share of the
    /// window counts it.
    pub backlogged_in_window: bool,
    /// weight / sum of the weights of the tenants backlogged in the window (0 for the
    /// others).
    pub fair_share: f64,
    /// Its part of the resource-time used in the queue's pools during the window.
    pub actual_share: f64,
    /// actual / fair (1.0 = exactly its weighted share), for backlogged tenants.
    pub normalized_share: Option<f64>,
    /// Pending jobs now.
    pub pending: u64,
    /// Jobs assigned or running now in the queue's pools.
    pub running: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FairShareView {
    pub queue: String,
    pub policy: String,
    pub window_s: u64,
    /// The capacity of the live workers of the queue's pools.
    pub capacity: ResourcesView,
    pub tenants: Vec<TenantShareView>,
    /// Jain's index over the backlogged tenants' normalised shares (1.0 = perfectly fair).
    pub jain_index: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountView {
    /// The tenant or priority counted.
    pub key: String,
    pub pending: u64,
    pub running: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueStatusView {
    pub queue: String,
    pub policy: String,
    pub pools: Vec<String>,
    pub pending: u64,
    /// Assigned or running.
    pub running: u64,
    pub by_tenant: Vec<CountView>,
    pub by_priority: Vec<CountView>,
    pub oldest_pending_age_s: Option<f64>,
    /// Jobs assigned per second over the fair-share window.
    pub dispatch_rate_per_s: f64,
    /// pending / dispatch rate; absent while nothing is dispatched.
    pub estimated_wait_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueStatusListView {
    pub items: Vec<QueueStatusView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingReasonView {
    /// tenant_suspended | quota | no_matching_pool | pool_unavailable | no_capacity |
    /// behind_smaller_share | behind_earlier_jobs | dispatching
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobPositionView {
    pub id: String,
    pub state: String,
    pub queue: String,
    /// Pending jobs of its queue ahead of it (submit order); absent unless pending.
    pub position: Option<u64>,
    /// Every reason it is still pending; empty unless pending.
    pub reasons: Vec<PendingReasonView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlaChangeView {
    pub status: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PredictionView {
    /// Pending jobs ahead of it in its queue.
    pub position: u64,
    /// Jobs the queue dispatched per second over the window.
    pub dispatch_rate_per_s: f64,
    pub method: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobSlaView {
    pub id: String,
    pub level: String,
    /// When it must start.
    pub target_start_ms: u64,
    pub finish_by_ms: Option<u64>,
    /// on_track | at_risk | critical | violated | met, as of now.
    pub status: String,
    /// While pending, when a dispatch rate has been observed.
    pub predicted_start_ms: Option<u64>,
    pub prediction: Option<PredictionView>,
    /// Every recorded status change.
    pub history: Vec<SlaChangeView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaSummaryItemView {
    pub tenant: String,
    pub level: String,
    pub jobs: u64,
    pub met: u64,
    pub violated: u64,
    /// Not judged yet, by their last recorded status.
    pub on_track: u64,
    pub at_risk: u64,
    pub critical: u64,
    /// met / (met + violated); absent before any verdict.
    pub compliance_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlaSummaryView {
    pub items: Vec<SlaSummaryItemView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolSizeView {
    /// Live workers now.
    pub current: u64,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UtilizationView {
    /// Used over capacity of the live workers, per resource (absent without capacity).
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub gpu: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolJobsView {
    /// Pending jobs that may run in this pool.
    pub queued: u64,
    /// Assigned to or running on its workers.
    pub running: u64,
    /// Jobs that ran in it and ended.
    pub finished: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LatencyView {
    /// How many assignments the percentiles cover (the most recent, at most 1,000).
    pub samples: u64,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProvisioningView {
    pub succeeded: u64,
    pub failed: u64,
    pub success_rate: Option<f64>,
}

/// US-09.5.1: a pool's size, workers, utilization, jobs, allocation latency (pending to
/// assigned) and provisioning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolMetricsView {
    pub pool: String,
    pub state: String,
    pub size: PoolSizeView,
    pub workers: std::collections::BTreeMap<String, u64>,
    pub utilization: UtilizationView,
    pub jobs: PoolJobsView,
    pub allocation_latency: LatencyView,
    pub provisioning: ProvisioningView,
}
