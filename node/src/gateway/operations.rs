//! Every operation of the gateway, one struct each: its fields are the operation's
//! input, its `Reply` the answer. The REST and gRPC adapters build these; the gateway
//! actor runs them (`crate::actors::gateway::Handler`).

use crate::gateway::policy::Access;
use hodei_domain::access::Scope;
use tokio::sync::mpsc;

use crate::gateway::job_model::{
    BatchView, CreatePoolInput, CreateQueueInput, DynamicInput, DynamicSettingsView, JobFilter,
    JobLogsView, JobPageView, JobView, PoolActionInput, PoolLifecycleView, PoolListView, PoolView,
    QueueListView, QueueView, StaticInput, StaticSettingsView, SubmitJobInput, SubmittedJobView,
    UpdatePoolInput, UpdateQueueInput, WorkerListView,
};
use crate::gateway::{Consistency, Operation};
use hodei_domain::tenant::{Tenant, TenantId};

use crate::gateway::model::{
    BurstInput, BurstListView, BurstView, ClusterStatusView, CreateTenantInput, DecisionView,
    EnforceInput, Page, PageInput, QuotaInput, QuotaView, UpdateTenantInput, UsageView,
    ViolationsView,
};
use crate::gateway::report_model::{
    FairShareView, JobPositionView, JobSlaView, PoolMetricsView, QueueStatusListView,
    QueueStatusView, SlaSummaryView,
};

// Tenants.

#[derive(Debug)]
pub struct CreateTenant {
    pub input: CreateTenantInput,
}

impl Operation for CreateTenant {
    type Reply = Tenant;
    const NAME: &'static str = "create_tenant";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetTenant {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetTenant {
    type Reply = Tenant;
    const NAME: &'static str = "get_tenant";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct ListTenants {
    pub page: PageInput,
    pub consistency: Consistency,
}

impl Operation for ListTenants {
    type Reply = Page<Tenant>;
    const NAME: &'static str = "list_tenants";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct UpdateTenant {
    pub id: String,
    pub input: UpdateTenantInput,
}

impl Operation for UpdateTenant {
    type Reply = Tenant;
    const NAME: &'static str = "update_tenant";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct DeleteTenant {
    pub id: String,
    /// Also delete what the tenant owns.
    pub cascade: bool,
}

impl Operation for DeleteTenant {
    type Reply = TenantId;
    const NAME: &'static str = "delete_tenant";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

// The cluster.

/// Membership and leadership changes (admin only); each answers with the status after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterOperation {
    /// Make this uninitialised node the first member of a new cluster.
    Init,
    AddMember {
        node_id: u64,
        addr: String,
    },
    RemoveMember {
        node_id: u64,
    },
    TransferLeader {
        node_id: u64,
    },
}

#[derive(Debug)]
pub struct ChangeCluster {
    pub operation: ClusterOperation,
}

impl Operation for ChangeCluster {
    type Reply = ClusterStatusView;
    const NAME: &'static str = "cluster_admin";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

// Jobs, queues, workers and pools.

#[derive(Debug)]
pub struct SubmitJob {
    pub input: Box<SubmitJobInput>,
}

impl Operation for SubmitJob {
    type Reply = SubmittedJobView;
    const NAME: &'static str = "submit_job";
    const ACCESS: Access = Access::Tenant(Scope::Submit);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct SubmitJobs {
    pub inputs: Vec<SubmitJobInput>,
}

impl Operation for SubmitJobs {
    type Reply = BatchView;
    const NAME: &'static str = "submit_jobs";
    const ACCESS: Access = Access::Tenant(Scope::Submit);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetJob {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetJob {
    type Reply = JobView;
    const NAME: &'static str = "get_job";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct ListJobs {
    pub filter: JobFilter,
    pub page: PageInput,
    pub consistency: Consistency,
}

impl Operation for ListJobs {
    type Reply = JobPageView;
    const NAME: &'static str = "list_jobs";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct CancelJob {
    pub id: String,
}

impl Operation for CancelJob {
    type Reply = JobView;
    const NAME: &'static str = "cancel_job";
    const ACCESS: Access = Access::Tenant(Scope::Submit);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetJobLogs {
    pub id: String,
    /// `all` (default), `stdout` or `stderr`.
    pub stream: Option<String>,
    pub consistency: Consistency,
}

impl Operation for GetJobLogs {
    type Reply = JobLogsView;
    const NAME: &'static str = "job_logs";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

/// The job now, then each change until it is final, on the returned channel.
#[derive(Debug)]
pub struct WatchJob {
    pub id: String,
}

impl Operation for WatchJob {
    type Reply = mpsc::Receiver<JobView>;
    const NAME: &'static str = "watch_job";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct CreateQueue {
    pub input: CreateQueueInput,
}

impl Operation for CreateQueue {
    type Reply = QueueView;
    const NAME: &'static str = "create_queue";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetQueue {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetQueue {
    type Reply = QueueView;
    const NAME: &'static str = "get_queue";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct ListQueues {
    pub consistency: Consistency,
}

impl Operation for ListQueues {
    type Reply = QueueListView;
    const NAME: &'static str = "list_queues";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct UpdateQueue {
    pub id: String,
    pub input: UpdateQueueInput,
}

impl Operation for UpdateQueue {
    type Reply = QueueView;
    const NAME: &'static str = "update_queue";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct DeleteQueue {
    pub id: String,
}

impl Operation for DeleteQueue {
    type Reply = String;
    const NAME: &'static str = "delete_queue";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ListPools {
    pub consistency: Consistency,
}

impl Operation for ListPools {
    type Reply = PoolListView;
    const NAME: &'static str = "list_pools";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct GetPool {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetPool {
    type Reply = PoolView;
    const NAME: &'static str = "get_pool";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct GetPoolLifecycle {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetPoolLifecycle {
    type Reply = PoolLifecycleView;
    const NAME: &'static str = "pool_lifecycle";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ChangePoolLifecycle {
    pub id: String,
    pub input: PoolActionInput,
}

impl Operation for ChangePoolLifecycle {
    type Reply = PoolLifecycleView;
    const NAME: &'static str = "pool_action";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct CreatePool {
    pub input: Box<CreatePoolInput>,
}

impl Operation for CreatePool {
    type Reply = PoolView;
    const NAME: &'static str = "create_pool";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetPoolMetrics {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetPoolMetrics {
    type Reply = Box<PoolMetricsView>;
    const NAME: &'static str = "pool_metrics";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct UpdatePool {
    pub id: String,
    pub input: UpdatePoolInput,
}

impl Operation for UpdatePool {
    type Reply = PoolView;
    const NAME: &'static str = "update_pool";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct DeletePool {
    pub id: String,
}

impl Operation for DeletePool {
    type Reply = String;
    const NAME: &'static str = "delete_pool";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct SetStaticSettings {
    pub id: String,
    pub input: StaticInput,
}

impl Operation for SetStaticSettings {
    type Reply = StaticSettingsView;
    const NAME: &'static str = "set_static_pool";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct SetDynamicSettings {
    pub id: String,
    pub input: DynamicInput,
}

impl Operation for SetDynamicSettings {
    type Reply = DynamicSettingsView;
    const NAME: &'static str = "set_dynamic_pool";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetStaticSettings {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetStaticSettings {
    type Reply = StaticSettingsView;
    const NAME: &'static str = "get_static_pool";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct GetDynamicSettings {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetDynamicSettings {
    type Reply = DynamicSettingsView;
    const NAME: &'static str = "get_dynamic_pool";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct GetFairShare {
    pub queue: String,
    pub window_s: Option<u64>,
    pub consistency: Consistency,
}

impl Operation for GetFairShare {
    type Reply = FairShareView;
    const NAME: &'static str = "fair_share";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

/// One queue's status.
#[derive(Debug)]
pub struct GetQueueStatus {
    pub queue: String,
    pub consistency: Consistency,
}

impl Operation for GetQueueStatus {
    type Reply = QueueStatusView;
    const NAME: &'static str = "queue_status";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

/// Every queue's status.
#[derive(Debug)]
pub struct ListQueueStatus {
    pub consistency: Consistency,
}

impl Operation for ListQueueStatus {
    type Reply = QueueStatusListView;
    const NAME: &'static str = "list_queue_status";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct GetJobPosition {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetJobPosition {
    type Reply = JobPositionView;
    const NAME: &'static str = "job_position";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct GetJobSla {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetJobSla {
    type Reply = JobSlaView;
    const NAME: &'static str = "job_sla";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct GetSlaSummary {
    pub tenant: Option<String>,
    pub level: Option<String>,
    pub consistency: Consistency,
}

impl Operation for GetSlaSummary {
    type Reply = SlaSummaryView;
    const NAME: &'static str = "sla_summary";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct ListWorkers {
    pub pool: Option<String>,
    pub consistency: Consistency,
}

impl Operation for ListWorkers {
    type Reply = WorkerListView;
    const NAME: &'static str = "list_workers";
    const ACCESS: Access = Access::Admin;
}

// Quotas, enforcement and burst capacity.

#[derive(Debug)]
pub struct GetQuota {
    pub tenant: String,
    pub consistency: Consistency,
}

impl Operation for GetQuota {
    type Reply = QuotaView;
    const NAME: &'static str = "get_quota";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct SetQuota {
    pub tenant: String,
    pub input: QuotaInput,
}

impl Operation for SetQuota {
    type Reply = QuotaView;
    const NAME: &'static str = "set_quota";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetUsage {
    pub tenant: String,
    pub consistency: Consistency,
}

impl Operation for GetUsage {
    type Reply = UsageView;
    const NAME: &'static str = "get_usage";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct EnforceQuota {
    pub input: EnforceInput,
}

impl Operation for EnforceQuota {
    type Reply = DecisionView;
    const NAME: &'static str = "enforce_quota";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct ListViolations {
    pub tenant: Option<String>,
    pub limit: Option<u32>,
}

impl Operation for ListViolations {
    type Reply = ViolationsView;
    const NAME: &'static str = "list_violations";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct RequestBurst {
    pub tenant: String,
    pub input: BurstInput,
}

impl Operation for RequestBurst {
    type Reply = BurstView;
    const NAME: &'static str = "request_burst";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetBursts {
    pub tenant: String,
    pub consistency: Consistency,
}

impl Operation for GetBursts {
    type Reply = BurstListView;
    const NAME: &'static str = "get_burst";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct EndBurst {
    pub tenant: String,
}

impl Operation for EndBurst {
    type Reply = BurstView;
    const NAME: &'static str = "end_burst";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ApproveBurst {
    pub tenant: String,
    pub session: String,
}

impl Operation for ApproveBurst {
    type Reply = BurstView;
    const NAME: &'static str = "approve_burst";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

// Tokens (issue 21).

#[derive(Debug)]
pub struct IssueTenantToken {
    pub tenant: String,
    pub input: crate::gateway::access_model::TokenInput,
}

impl Operation for IssueTenantToken {
    type Reply = crate::gateway::access_model::IssuedTokenView;
    const NAME: &'static str = "issue_tenant_token";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ListTenantTokens {
    pub tenant: String,
    pub consistency: Consistency,
}

impl Operation for ListTenantTokens {
    type Reply = crate::gateway::access_model::TokenListView;
    const NAME: &'static str = "list_tenant_tokens";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
}

#[derive(Debug)]
pub struct RevokeTenantToken {
    pub tenant: String,
    pub id: String,
}

impl Operation for RevokeTenantToken {
    type Reply = String;
    const NAME: &'static str = "revoke_tenant_token";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct IssueJoinToken {
    pub pool: String,
    pub input: crate::gateway::access_model::JoinTokenInput,
}

impl Operation for IssueJoinToken {
    type Reply = crate::gateway::access_model::IssuedTokenView;
    const NAME: &'static str = "issue_join_token";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ListJoinTokens {
    pub pool: String,
    pub consistency: Consistency,
}

impl Operation for ListJoinTokens {
    type Reply = crate::gateway::access_model::TokenListView;
    const NAME: &'static str = "list_join_tokens";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct RevokeJoinToken {
    pub pool: String,
    pub id: String,
}

impl Operation for RevokeJoinToken {
    type Reply = String;
    const NAME: &'static str = "revoke_join_token";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

/// Revokes any token by id, the first start's admin token too (admin).
#[derive(Debug)]
pub struct RevokeAnyToken {
    pub id: String,
}

impl Operation for RevokeAnyToken {
    type Reply = String;
    const NAME: &'static str = "revoke_token";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}
