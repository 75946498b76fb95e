//! Commands carried in the Raft log. Ids and timestamps are chosen by the gateway before
//! proposing, so that apply stays deterministic. The enum is versioned: a new shape of a
//! command is a new variant or a new version, never a change to a logged one.

use serde::{Deserialize, Serialize};

use crate::state::jobs::SubmittedJob;
use hodei_domain::DomainError;
use hodei_domain::burst::{BurstPolicy, BurstRequest, BurstSession, EndReason};
use hodei_domain::dispatch::Assignment;
use hodei_domain::job::Job;
use hodei_domain::labels::Labels;
use hodei_domain::pool::{DynamicSettings, Pool, PoolProvider, StaticSettings};
use hodei_domain::queue::{Queue, QueuePolicy};
use hodei_domain::quota::Quota;
use hodei_domain::resources::Resources;
use hodei_domain::run::{RunReport, WorkerRegistration};
use hodei_domain::tenant::{Tenant, TenantId, TenantPatch};
use hodei_domain::worker::Worker;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    V1(CommandV1),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandV1 {
    Bootstrap(Bootstrap),
    CreateTenant(CreateTenant),
    UpdateTenant(UpdateTenant),
    DeleteTenant(DeleteTenant),
    Probe(Probe),
    SetQuota(SetQuota),
    RequestBurst(RequestBurst),
    ApproveBurst(ApproveBurst),
    EndBurst(EndBurst),
    EnsureQueuesAndPools(EnsureQueuesAndPools),
    CreateQueue(CreateQueue),
    UpdateQueue(UpdateQueue),
    DeleteQueue(DeleteQueue),
    SubmitJobs(SubmitJobs),
    AssignJobs(AssignJobs),
    JobStarted(JobStarted),
    JobFinished(JobFinished),
    RunReports(RunReports),
    CancelJob(CancelJob),
    RegisterWorker(RegisterWorker),
    CreatePool(CreatePool),
    UpdatePool(UpdatePool),
    DeletePool(DeletePool),
    PoolHealth(PoolHealth),
    StopWorker(StopWorker),
    CountProvisioning(CountProvisioning),
    ReleasePool(ReleasePool),
    PoolLifecycle(PoolLifecycle),
    RecordSla(RecordSla),
    WorkerLost(WorkerLost),
    WorkerLeft(WorkerLeft),
    RunOutput(RunOutput),
    ArchiveJobs(ArchiveJobs),
    PurgeHistory(PurgeHistory),
    SetScaling(SetScaling),
    ScalePool(ScalePool),
    SettleScaling(SettleScaling),
    SetPoolPricing(SetPoolPricing),
    PurgeCostLedger(PurgeCostLedger),
    SetCostSettings(SetCostSettings),
    PutCostReport(PutCostReport),
    DeleteCostReport(DeleteCostReport),
    RecordBudgetAlert(RecordBudgetAlert),
    IssueToken(IssueToken),
    RevokeToken(RevokeToken),
    IssueJoinToken(IssueJoinToken),
    RevokeJoinToken(RevokeJoinToken),
    RegisterAgentWorker(RegisterAgentWorker),
    WorkerLostSince(WorkerLostSince),
    RunsVanished(RunsVanished),
}

/// Records an access token (its secret's digest). A tenant's needs the tenant; the admin
/// token of the first start (`bootstrap`) is issued once in the cluster's life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueToken {
    pub token: hodei_domain::access::AccessToken,
    pub bootstrap: bool,
}

/// Forgets a token: it authenticates no request after this entry. With `tenant`, only
/// that tenant's token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokeToken {
    pub id: String,
    pub tenant: Option<TenantId>,
}

/// Records a token that lets a worker join one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueJoinToken {
    pub token: hodei_domain::access::JoinToken,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokeJoinToken {
    pub pool: String,
    pub id: String,
}

/// The cluster's cost tracking, from the leader's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetCostSettings {
    pub settings: hodei_domain::cost::CostSettings,
    pub at_ms: u64,
}

/// Stores a report definition (or replaces the one with its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutCostReport {
    pub definition: crate::state::cost_book::ReportDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteCostReport {
    pub id: String,
    /// A tenant deletes only its own definitions.
    pub tenant: Option<hodei_domain::tenant::TenantId>,
}

/// A tenant reached a level of its daily budget (the leader's budget watch saw it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordBudgetAlert {
    pub alert: crate::state::cost_book::BudgetAlert,
}

/// Deletes the cost ledger's hours before `before_ms` (the start of an hour).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeCostLedger {
    pub before_ms: u64,
}

/// New prices (from `at_ms` on: runs before keep the old ones) and/or tier percentages for
/// a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPoolPricing {
    pub pool: String,
    /// The prices that change (merged in apply with the committed ones, so two changes
    /// of different prices never undo each other).
    pub changes: hodei_domain::cost::PricingChanges,
    pub tiers: Option<hodei_domain::cost::TierPercents>,
    pub at_ms: u64,
}

/// A change to a pool's autoscaling rules (US-09.4.1 - US-09.4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetScaling {
    pub pool: String,
    pub change: ScalingChange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ScalingChange {
    /// Add the policy, or replace the one with its id.
    PutPolicy(hodei_domain::autoscale::ScalingPolicy),
    DeletePolicy(String),
    PutTrigger(hodei_domain::autoscale::ScalingTrigger),
    DeleteTrigger(String),
    Cooldown(hodei_domain::autoscale::Cooldown),
    Enabled(bool),
    /// What the config gives a pool that has no autoscaling yet (refused once it has).
    Seed {
        policies: Vec<hodei_domain::autoscale::ScalingPolicy>,
        cooldown: Option<hodei_domain::autoscale::Cooldown>,
    },
}

/// A scaling decision of the leader's scaling loop (or a fired trigger): record it, and
/// unless it was blocked, set the pool's desired size to `record.to`. Refused when the
/// desired size is no longer `record.from` (someone changed it meanwhile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalePool {
    pub pool: String,
    pub record: hodei_domain::autoscale::ScalingRecord,
    /// Schedule triggers that fired, (id, when): each fires once per occurrence.
    pub fired_schedules: Vec<(String, u64)>,
}

/// How a decision in progress turned out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettleScaling {
    pub pool: String,
    pub seq: u64,
    pub outcome: hodei_domain::autoscale::ScalingOutcome,
    pub error: Option<String>,
    pub reached_at_ms: Option<u64>,
    pub at_ms: u64,
}

/// Moves up to `limit` final jobs that ended before `ended_before_ms` from the in-memory
/// state to the job history (oldest first). Proposed by the leader's retention loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveJobs {
    pub ended_before_ms: u64,
    pub limit: u32,
    /// Lost or terminated workers (holding no job) whose state changed before this go.
    pub gone_workers_before_ms: u64,
    /// Burst sessions that ended before this go.
    pub ended_bursts_before_ms: u64,
}

/// Deletes these jobs from the job history. The leader lists them from its history
/// (ended before `ended_before_ms`); apply refuses the whole command if one did not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeHistory {
    pub ended_before_ms: u64,
    pub jobs: Vec<PurgedJob>,
}

/// What locates every key of a job in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedJob {
    pub id: String,
    pub tenant: TenantId,
    pub ended_at_ms: u64,
    pub idempotency_key: Option<String>,
}

/// Creates what a fresh cluster starts with (the default tenant) if it is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub default_tenant: Tenant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateTenant {
    pub tenant: Tenant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateTenant {
    pub id: TenantId,
    pub patch: TenantPatch,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteTenant {
    pub id: TenantId,
    pub cascade: bool,
    pub at_ms: u64,
}

/// Changes nothing but goes through the whole replication path: measures the Raft
/// layer alone, and checks that writes are possible.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetQuota {
    pub id: TenantId,
    pub quota: Quota,
    pub at_ms: u64,
}

/// Apply checks every governance rule against the replicated sessions; the policy
/// (from config) travels in the command so every node decides alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestBurst {
    pub tenant: TenantId,
    pub session_id: String,
    pub request: BurstRequest,
    pub requested_by: String,
    pub policy: BurstPolicy,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApproveBurst {
    pub tenant: TenantId,
    pub session_id: String,
    pub approved_by: String,
    pub policy: BurstPolicy,
    pub at_ms: u64,
}

/// Ends an open session: at its end time (decided by the leader's tenant actor), early
/// on request, or withdrawn before approval. Ending an ended session changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndBurst {
    pub tenant: TenantId,
    pub session_id: String,
    pub reason: EndReason,
    pub ended_by: String,
    pub at_ms: u64,
}

/// Creates the configured pools and queues that do not exist yet (at bootstrap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsureQueuesAndPools {
    pub pools: Vec<Pool>,
    pub queues: Vec<Queue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateQueue {
    pub queue: Queue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateQueue {
    pub id: String,
    pub pools: Option<Vec<String>>,
    pub policy: Option<QueuePolicy>,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteQueue {
    pub id: String,
}

/// One or many jobs (a batch is one entry); each is accepted or refused on its own.
/// `max_burst_percent` is the configured burst ceiling, so every node refuses alike
/// a job larger than its tenant could ever run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitJobs {
    pub jobs: Vec<Job>,
    pub max_burst_percent: Option<u64>,
}

/// A dispatch plan; apply re-checks every assignment. The SLA status changes the
/// dispatcher saw while planning ride along, recorded before the assignments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignJobs {
    pub assignments: Vec<Assignment>,
    pub at_ms: u64,
    #[serde(default)]
    pub sla_changes: Vec<SlaUpdate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStarted {
    pub job: String,
    pub attempt: u32,
    pub worker: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFinished {
    pub report: RunReport,
}

/// Many run reports in one command (the simulator's, which runs thousands of jobs at
/// once): the starts, then the ends, each applied as its single command would be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReports {
    pub started: Vec<StartReport>,
    pub finished: Vec<RunReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelJob {
    pub id: String,
    pub cancelled_by: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterWorker {
    pub registration: WorkerRegistration,
    pub at_ms: u64,
    /// When its provider started it (a process pool's worker started by the leader):
    /// its pool pays for it from then, not from its registration.
    #[serde(default)]
    pub provisioned_at_ms: Option<u64>,
}

/// A worker the leader found silent, lost only if it has not registered since the
/// leader judged it: `session_ms` is the time of the registration it judged. A loss
/// decided before a registration and committed after it (a slow commit under faults)
/// would otherwise take the jobs given to the worker since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLostSince {
    pub lost: WorkerLost,
    pub session_ms: u64,
}

/// Runs the state gives a live worker that its heartbeats stopped listing: the agent no
/// longer runs them (it ended them out of its lease, or its report of their start came
/// after it registered without them). Each is lost as with a lost worker (another
/// attempt, or failed once its retries are spent), if it is still that attempt on that
/// worker and the worker has not registered again since `session_ms` (its registration
/// then says itself what it runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunsVanished {
    pub worker: String,
    pub session_ms: u64,
    /// (job, attempt)
    pub runs: Vec<(String, u32)>,
    pub at_ms: u64,
}

/// A worker's registration by an agent: refused while the worker is live under another
/// agent (whichever node leads; the leader's sessions alone are lost with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAgentWorker {
    pub register: RegisterWorker,
    /// The digest (SHA-256, hex) of the agent's instance id: the id itself, which the
    /// agent alone knows, is never stored.
    pub agent: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePool {
    pub pool: Pool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatePool {
    pub id: String,
    pub patch: PoolPatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletePool {
    pub id: String,
}

/// The leader's health count of a pool (static pools go degraded and back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolHealth {
    pub pool: String,
    pub healthy: u32,
    pub at_ms: u64,
}

/// Stop an idle worker (scale-down or the end of a drain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopWorker {
    pub worker: String,
    pub reason: String,
    pub at_ms: u64,
}

/// Worker starts observed by the leader's pool actor since its last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountProvisioning {
    pub pool: String,
    pub succeeded: u64,
    pub failed: u64,
}

/// A drain timed out: re-queue the pool's running jobs and stop its workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleasePool {
    pub pool: String,
    pub reason: String,
    pub at_ms: u64,
}

/// A lifecycle action on a pool (activate, suspend, resume, drain, decommission).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolLifecycle {
    pub pool: String,
    pub action: hodei_domain::pool::PoolAction,
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
}

/// SLA status changes of pending jobs, decided by the leader's dispatcher from the clock
/// and its prediction; a job's start and end are judged in apply itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSla {
    pub changes: Vec<SlaUpdate>,
}

/// The worker missed its heartbeats (decided by the leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLost {
    pub worker: String,
    pub reason: String,
    pub at_ms: u64,
}

/// The worker said it is shutting down: terminated, its runs re-queued (or failed once
/// their retries are spent), as for a lost worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLeft {
    pub worker: String,
    pub reason: String,
    pub at_ms: u64,
}

/// What a run wrote so far (the last 64 KiB, interleaved and per stream), from its
/// worker; `seq` increases, an older one changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutput {
    pub job: String,
    pub attempt: u32,
    pub worker: String,
    pub seq: u64,
    pub combined: String,
    pub stdout: String,
    pub stderr: String,
}

/// A worker's report that it started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReport {
    pub job: String,
    pub attempt: u32,
    pub worker: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaUpdate {
    pub job: String,
    pub status: hodei_domain::sla::SlaStatus,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Bootstrapped {
        created: bool,
    },
    Tenant(Tenant),
    TenantDeleted {
        id: TenantId,
    },
    Probed {
        bytes: usize,
    },
    QuotaSet {
        tenant: Tenant,
        warnings: Vec<String>,
    },
    Burst(BurstSession),
    /// The session had already ended; nothing changed.
    BurstAlreadyEnded(BurstSession),
    Ensured {
        created: usize,
    },
    Queue(Queue),
    QueueDeleted {
        id: String,
    },
    JobsSubmitted(Vec<Result<SubmittedJob, DomainError>>),
    JobsAssigned {
        assigned: usize,
        rejected: usize,
    },
    /// Whether a worker's report changed the job (a stale or repeated one does not).
    RunReported {
        applied: bool,
    },
    /// How many reports of a `RunReports` batch changed their job.
    RunsReported {
        applied: usize,
    },
    Job(Box<Job>),
    WorkerRegistered {
        worker: Worker,
        /// The reported running jobs it should keep; it stops the others.
        keep: Vec<String>,
        /// Jobs it no longer runs that went back to pending.
        requeued: usize,
    },
    WorkerLost {
        requeued: usize,
    },
    SlaRecorded {
        changed: usize,
    },
    Pool(Pool),
    PoolDeleted {
        id: String,
    },
    WorkerStopped {
        worker: Worker,
    },
    /// How many jobs moved to the history (and how many gone workers and ended burst
    /// sessions were dropped), or left it.
    Archived {
        count: usize,
        workers: usize,
        bursts: usize,
    },
    Purged {
        count: usize,
    },
    Scaling(Box<hodei_domain::autoscale::PoolScaling>),
    /// A decision was recorded as `seq`; the pool as it is now.
    Scaled {
        seq: u64,
        pool: Pool,
    },
    Prices(Box<hodei_domain::cost::PoolPrices>),
    CostSettings(hodei_domain::cost::CostSettings),
    CostReport(Box<crate::state::cost_book::ReportDefinition>),
    CostReportDeleted {
        id: String,
    },
    /// Whether the alert was new (a level above the one recorded that day).
    BudgetAlert {
        recorded: bool,
    },
    Token(Box<hodei_domain::access::AccessToken>),
    JoinToken(Box<hodei_domain::access::JoinToken>),
    TokenRevoked {
        id: String,
    },
}

pub type CommandResult = Result<CommandOutcome, DomainError>;

impl Command {
    /// The binary form carried in the Raft log ([`hodei_cluster::codec`]).
    pub fn encode(&self) -> Vec<u8> {
        hodei_cluster::codec::encode(self).expect("commands always serialize")
    }

    /// Reads the binary form, or JSON.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        hodei_cluster::codec::decode(bytes)
    }
}

/// The fields of a pool a caller may change; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolPatch {
    pub min_size: Option<u32>,
    pub max_size: Option<u32>,
    pub worker_shape: Option<Resources>,
    pub labels: Option<Labels>,
    pub provider: Option<PoolProvider>,
    pub desired_size: Option<u32>,
    pub static_settings: Option<StaticSettings>,
    pub dynamic_settings: Option<DynamicSettings>,
}

impl PoolPatch {
    pub fn is_empty(&self) -> bool {
        *self == PoolPatch::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape commands had before they became structs: variants with named fields.
    #[derive(Serialize)]
    enum LegacyCommand {
        V1(LegacyV1),
    }

    /// Only the position of the first variants matters (it is their encoded tag).
    #[derive(Serialize)]
    #[allow(dead_code)]
    enum LegacyV1 {
        Bootstrap,
        CreateTenant,
        UpdateTenant,
        DeleteTenant {
            id: TenantId,
            cascade: bool,
            at_ms: u64,
        },
        Probe {
            payload: String,
        },
    }

    /// Entries already in a Raft log were written with struct variants; a variant holding a
    /// struct is encoded the same way, in the binary codec and in JSON, so they still read.
    #[test]
    fn commands_logged_as_struct_variants_still_decode() {
        let id = TenantId::parse("team-a").unwrap();
        let legacy = [
            LegacyCommand::V1(LegacyV1::DeleteTenant {
                id: id.clone(),
                cascade: true,
                at_ms: 7,
            }),
            LegacyCommand::V1(LegacyV1::Probe {
                payload: "ping".to_string(),
            }),
        ];
        let current = [
            Command::V1(CommandV1::DeleteTenant(DeleteTenant {
                id,
                cascade: true,
                at_ms: 7,
            })),
            Command::V1(CommandV1::Probe(Probe {
                payload: "ping".to_string(),
            })),
        ];
        for (legacy, current) in legacy.iter().zip(current) {
            let binary = hodei_cluster::codec::encode(legacy).unwrap();
            assert_eq!(binary, current.encode());
            assert_eq!(Command::decode(&binary).unwrap(), current);
            let json = serde_json::to_vec(legacy).unwrap();
            assert_eq!(json, serde_json::to_vec(&current).unwrap());
            assert_eq!(Command::decode(&json).unwrap(), current);
        }
    }
}
