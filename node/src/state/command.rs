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
    /// Creates what a fresh cluster starts with (the default tenant) if it is missing.
    Bootstrap {
        default_tenant: Tenant,
    },
    CreateTenant {
        tenant: Tenant,
    },
    UpdateTenant {
        id: TenantId,
        patch: TenantPatch,
        at_ms: u64,
    },
    DeleteTenant {
        id: TenantId,
        cascade: bool,
        at_ms: u64,
    },
    /// Changes nothing but goes through the whole replication path: measures the Raft
    /// layer alone, and checks that writes are possible.
    Probe {
        payload: String,
    },
    SetQuota {
        id: TenantId,
        quota: Quota,
        at_ms: u64,
    },
    /// Apply checks every governance rule against the replicated sessions; the policy
    /// (from config) travels in the command so every node decides alike.
    RequestBurst {
        tenant: TenantId,
        session_id: String,
        request: BurstRequest,
        requested_by: String,
        policy: BurstPolicy,
        at_ms: u64,
    },
    ApproveBurst {
        tenant: TenantId,
        session_id: String,
        approved_by: String,
        policy: BurstPolicy,
        at_ms: u64,
    },
    /// Ends an open session: at its end time (decided by the leader's tenant actor), early
    /// on request, or withdrawn before approval. Ending an ended session changes nothing.
    EndBurst {
        tenant: TenantId,
        session_id: String,
        reason: EndReason,
        ended_by: String,
        at_ms: u64,
    },
    /// Creates the configured pools and queues that do not exist yet (at bootstrap).
    EnsureQueuesAndPools {
        pools: Vec<Pool>,
        queues: Vec<Queue>,
    },
    CreateQueue {
        queue: Queue,
    },
    UpdateQueue {
        id: String,
        pools: Option<Vec<String>>,
        policy: Option<QueuePolicy>,
        at_ms: u64,
    },
    DeleteQueue {
        id: String,
    },
    /// One or many jobs (a batch is one entry); each is accepted or refused on its own.
    /// `max_burst_percent` is the configured burst ceiling, so every node refuses alike
    /// a job larger than its tenant could ever run.
    SubmitJobs {
        jobs: Vec<Job>,
        max_burst_percent: Option<u64>,
    },
    /// A dispatch plan; apply re-checks every assignment. The SLA status changes the
    /// dispatcher saw while planning ride along, recorded before the assignments.
    AssignJobs {
        assignments: Vec<Assignment>,
        at_ms: u64,
        #[serde(default)]
        sla_changes: Vec<SlaUpdate>,
    },
    JobStarted {
        job: String,
        attempt: u32,
        worker: String,
        at_ms: u64,
    },
    JobFinished {
        report: RunReport,
    },
    /// Many run reports in one command (the simulator's, which runs thousands of jobs at
    /// once): the starts, then the ends, each applied as its single command would be.
    RunReports {
        started: Vec<StartReport>,
        finished: Vec<RunReport>,
    },
    CancelJob {
        id: String,
        cancelled_by: String,
        at_ms: u64,
    },
    RegisterWorker {
        registration: WorkerRegistration,
        at_ms: u64,
    },
    CreatePool {
        pool: Pool,
    },
    UpdatePool {
        id: String,
        patch: PoolPatch,
    },
    DeletePool {
        id: String,
    },
    /// The leader's health count of a pool (static pools go degraded and back).
    PoolHealth {
        pool: String,
        healthy: u32,
        at_ms: u64,
    },
    /// Stop an idle worker (scale-down or the end of a drain).
    StopWorker {
        worker: String,
        reason: String,
        at_ms: u64,
    },
    /// Worker starts observed by the leader's pool actor since its last report.
    CountProvisioning {
        pool: String,
        succeeded: u64,
        failed: u64,
    },
    /// A drain timed out: re-queue the pool's running jobs and stop its workers.
    ReleasePool {
        pool: String,
        reason: String,
        at_ms: u64,
    },
    /// A lifecycle action on a pool (activate, suspend, resume, drain, decommission).
    PoolLifecycle {
        pool: String,
        action: hodei_domain::pool::PoolAction,
        by: String,
        reason: String,
        at_ms: u64,
    },
    /// SLA status changes of pending jobs, decided by the leader's dispatcher from the clock
    /// and its prediction; a job's start and end are judged in apply itself.
    RecordSla {
        changes: Vec<SlaUpdate>,
    },
    /// The worker missed its heartbeats (decided by the leader).
    WorkerLost {
        worker: String,
        reason: String,
        at_ms: u64,
    },
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
