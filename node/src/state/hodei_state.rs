//! [`HodeiState`]: the entities every node holds, changed only by applying commands.
//! Each entity is also written to the state keyspace under its own key so a restarted
//! node loads it back without replaying the whole log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use hodei_cluster::{Keyspace, StateMachine, WriteBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::state::command;
use crate::state::command::{Command, CommandOutcome, CommandResult, CommandV1};
use hodei_domain::DomainError;
use hodei_domain::burst::BurstSession;
use hodei_domain::job::Job;
use hodei_domain::pool::Pool;
use hodei_domain::queue::Queue;
use hodei_domain::quota::Usage;
use hodei_domain::tenant::{Tenant, TenantId};
use hodei_domain::worker::Worker;

use crate::state::keys::{
    BURST_PREFIX, JOB_LOG_PREFIX, JOB_PREFIX, POOL_PREFIX, QUEUE_PREFIX, TENANT_PREFIX,
    WORKER_PREFIX, key as jobs_key,
};

fn load_all<T: serde::de::DeserializeOwned>(
    keyspace: &dyn Keyspace,
    prefix: &str,
    kind: &str,
) -> Result<Vec<T>, String> {
    let stored = keyspace
        .scan_prefix(prefix.as_bytes())
        .map_err(|error| error.to_string())?;
    stored
        .into_iter()
        .map(|(key, value)| {
            hodei_cluster::codec::decode(&value).map_err(|error| {
                format!("corrupt {kind} {}: {error}", String::from_utf8_lossy(&key))
            })
        })
        .collect()
}

/// What changed, for the controllers on the leader. Sent after apply; a lagging receiver
/// may miss some, so receivers reconcile against the state rather than count events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    TenantCreated(TenantId),
    TenantUpdated(TenantId),
    TenantDeleted(TenantId),
    /// A burst session of the tenant was requested, approved or ended.
    BurstChanged(TenantId),
    /// The whole state was replaced by a snapshot.
    StateReplaced,
    /// A queue or pool was created, changed or deleted.
    QueuesChanged,
    /// Jobs became pending in the queue (submitted or re-queued).
    JobsQueued(String),
    /// Jobs were assigned to these workers.
    JobsAssigned(BTreeSet<String>),
    /// Room was freed on some worker or a worker (re)joined. `ended_in` names the pool
    /// when the room is that of a run that ended: the dispatch latency (room freed to
    /// its next assignment) is measured from these.
    CapacityFreed {
        ended_in: Option<String>,
    },
    /// A job held by `worker` was cancelled: the worker must stop it.
    JobCancelled {
        job: String,
        worker: String,
    },
    /// The job's state changed.
    JobChanged(String),
    /// A worker was stopped by its pool: its agent must exit.
    WorkerStopped {
        worker: String,
    },
}

/// A job that reached a final state: what the metrics of wait and run time need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    pub queue: String,
    pub tenant: TenantId,
    pub state: hodei_domain::job::JobState,
    /// From submission to the start of its last run, if it ran.
    pub wait_ms: Option<u64>,
    /// The last run's duration, if it ran.
    pub run_ms: Option<u64>,
}

/// Told of each job end as apply makes it, on the applying thread: unlike the event
/// stream, whose slow readers lose what overflows it, it misses none (the run and wait
/// histograms count every job). Must be quick and must not touch the state.
pub type JobEndObserver = Arc<dyn Fn(&JobEnd) + Send + Sync>;

impl DomainEvent {
    /// Per-job chatter: for watchers, the worker hub and the metrics, not for the
    /// controllers that reconcile against the state.
    pub fn is_job_chatter(&self) -> bool {
        matches!(
            self,
            DomainEvent::JobChanged(_)
                | DomainEvent::JobsAssigned(_)
                | DomainEvent::WorkerStopped { .. }
                | DomainEvent::JobCancelled { .. }
        )
    }
}

/// [`SnapshotData`] by reference, field for field (flat: the same bytes), for encoding.
#[derive(Serialize)]
struct SnapshotView<'a> {
    tenants: Vec<&'a Tenant>,
    bursts: Vec<&'a BurstSession>,
    jobs: Vec<&'a Job>,
    job_logs: &'a BTreeMap<String, String>,
    queues: Vec<&'a Queue>,
    pools: Vec<&'a Pool>,
    workers: Vec<&'a Worker>,
    violations: &'a crate::state::violations::ViolationLog,
    archived_tally: &'a crate::state::history::ArchivedTally,
    archived_idempotency: &'a BTreeMap<(TenantId, String), String>,
    scaling: Vec<&'a hodei_domain::autoscale::PoolScaling>,
    prices: Vec<&'a hodei_domain::cost::PoolPrices>,
    cost_ledger: Vec<crate::state::cost_ledger::LedgerEntry>,
    cost_book: Vec<crate::state::cost_book::BookEntry>,
    access: Vec<crate::state::access_book::AccessEntry>,
}

/// A snapshot as decoded. Each version of the shape appended fields to the one before, and
/// the binary codec writes a struct's fields one after the other with nothing between,
/// so each older shape is a prefix of this one: the entities, then the violations, then
/// what the job history leaves in memory, then autoscaling. [`SnapshotView`] writes the
/// same bytes.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct SnapshotData {
    base: WithBook,
    access: Vec<crate::state::access_book::AccessEntry>,
}

/// The snapshot shape before the access tokens.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct WithBook {
    base: WithCost,
    cost_book: Vec<crate::state::cost_book::BookEntry>,
}

/// The snapshot shape before the cost book.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct WithCost {
    base: WithHistory,
    scaling: Vec<hodei_domain::autoscale::PoolScaling>,
    prices: Vec<hodei_domain::cost::PoolPrices>,
    cost_ledger: Vec<crate::state::cost_ledger::LedgerEntry>,
}

/// The snapshot shape before autoscaling.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct WithHistory {
    base: WithViolations,
    archived_tally: crate::state::history::ArchivedTally,
    archived_idempotency: BTreeMap<(TenantId, String), String>,
}

/// The snapshot shape before the job history.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct WithViolations {
    entities: Entities,
    violations: crate::state::violations::ViolationLog,
}

/// The first snapshot shape: the entities alone.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct Entities {
    tenants: Vec<Tenant>,
    bursts: Vec<BurstSession>,
    jobs: Vec<Job>,
    job_logs: BTreeMap<String, String>,
    queues: Vec<Queue>,
    pools: Vec<Pool>,
    workers: Vec<Worker>,
}

impl SnapshotData {
    /// Reads a snapshot of any shape; what an older one lacks is empty. Each shape must
    /// take every byte: the bytes of a shape this version does not know are refused, not
    /// read as an older shape with the rest dropped.
    fn decode(snapshot: &[u8]) -> Result<Self, String> {
        use hodei_cluster::codec::decode_whole as decode;
        let error = match decode::<SnapshotData>(snapshot) {
            Ok(data) => return Ok(data),
            Err(error) => error,
        };
        if let Ok(base) = decode::<WithBook>(snapshot) {
            return Ok(SnapshotData {
                base,
                ..Default::default()
            });
        }
        if let Ok(base) = decode::<WithCost>(snapshot) {
            return Ok(SnapshotData {
                base: WithBook {
                    base,
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        if let Ok(base) = decode::<WithHistory>(snapshot) {
            return Ok(SnapshotData {
                base: WithBook {
                    base: WithCost {
                        base,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        let base = decode::<WithViolations>(snapshot)
            .or_else(|_| {
                decode::<Entities>(snapshot).map(|entities| WithViolations {
                    entities,
                    violations: Default::default(),
                })
            })
            .map_err(|_| error)?;
        Ok(SnapshotData {
            base: WithBook {
                base: WithCost {
                    base: WithHistory {
                        base,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

pub struct HodeiState {
    pub(super) tenants: BTreeMap<TenantId, Tenant>,
    /// Every tenant's burst sessions, oldest first.
    pub(super) bursts: BTreeMap<TenantId, Vec<BurstSession>>,
    /// Running resources and job counts per tenant (derived from the jobs).
    pub(super) usage: BTreeMap<TenantId, Usage>,
    /// Every job by id (uuid v7, so in submit order).
    /// Boxed: the map's nodes then hold pointers, not whole jobs (a third less memory per
    /// job, BENCHMARKS.md).
    pub(super) jobs: BTreeMap<String, Box<Job>>,
    /// The output tail of finished runs.
    pub(super) job_logs: BTreeMap<String, String>,
    /// Pending job ids per queue (derived from the jobs).
    pub(super) pending: BTreeMap<String, BTreeSet<String>>,
    /// Pending jobs per shape: jobs of one shape wait for the same reasons (derived from
    /// the jobs; a shape leaves with its last pending job).
    pub(super) pending_shapes: BTreeMap<PendingShape, u64>,
    /// (tenant, idempotency key) -> job id (derived from the jobs).
    pub(super) idempotency: BTreeMap<(TenantId, String), String>,
    /// Assignments per queue over the last minutes, (at_ms, count), for the observed
    /// dispatch rate (derived from the jobs).
    pub(super) dispatch_log: BTreeMap<String, std::collections::VecDeque<(u64, u64)>>,
    /// Jobs with an SLA per (tenant, level, last status) (derived from the jobs).
    pub(super) sla_tally: BTreeMap<
        (
            TenantId,
            hodei_domain::sla::SlaLevel,
            hodei_domain::sla::SlaStatus,
        ),
        u64,
    >,
    /// Jobs per (queue, tenant, state) (derived from the jobs).
    pub(super) job_tally: BTreeMap<(String, TenantId, hodei_domain::job::JobState), u64>,
    /// How many jobs are in each (queue, priority, state): the queue status reads it.
    pub(super) priority_tally: BTreeMap<
        (
            String,
            hodei_domain::job::Priority,
            hodei_domain::job::JobState,
        ),
        u64,
    >,
    pub(super) queues: BTreeMap<String, Queue>,
    pub(super) pools: BTreeMap<String, Pool>,
    /// Each pool's autoscaling (only pools that have any rule, cooldown or history).
    pub(super) scaling: BTreeMap<String, hodei_domain::autoscale::PoolScaling>,
    /// Each pool's price history and tier percentages (only pools whose prices changed).
    pub(super) prices: BTreeMap<String, hodei_domain::cost::PoolPrices>,
    /// What the finished runs billed, by hour, then (tenant, pool, queue).
    pub(super) cost_ledger:
        BTreeMap<u64, BTreeMap<(TenantId, String, String), crate::state::cost_ledger::CostLine>>,
    pub(super) workers: BTreeMap<String, Worker>,
    /// Cost settings and what the ledger keeps beside the jobs' lines (`cost_book.rs`).
    pub(super) book: crate::state::cost_book::CostBook,
    /// The tokens the cluster issued (`access_book.rs`).
    pub(super) access: crate::state::access_book::AccessBook,
    /// Quota violations recorded by apply (`violations.rs`).
    pub(super) violations: crate::state::violations::ViolationLog,
    /// The last waits (pending to assigned) of jobs assigned in each pool, (at_ms, wait_ms),
    /// oldest first, at most [`crate::state::indexes::WAIT_SAMPLES`] (derived from the jobs).
    pub(super) pool_waits: BTreeMap<String, std::collections::VecDeque<(u64, u64)>>,
    /// How many jobs are in each (pool, state), of the jobs that ran in a pool.
    pub(super) pool_tally: BTreeMap<(String, hodei_domain::job::JobState), u64>,
    /// Final jobs still in memory, by (end time, id): what `ArchiveJobs` moves next
    /// (derived from the jobs).
    pub(super) finished: BTreeSet<(u64, String)>,
    /// Resources held over time and backlog times per queue, pool and tenant: what the
    /// fair-share report reads (derived from the jobs).
    pub(super) shares: crate::state::share_ledger::ShareLedger,
    /// The tallies' counts of the jobs in the history (`history.rs`).
    pub(super) archived_tally: crate::state::history::ArchivedTally,
    /// (tenant, idempotency key) -> id, of jobs in the history.
    pub(super) archived_idempotency: BTreeMap<(TenantId, String), String>,
    /// The jobs the last `ArchiveJobs` moved, until the next one: readers find them
    /// here between apply and the write of their history records.
    /// Shared with readers ([`crate::state::history::HistoryReader`]), who read the
    /// history outside the state lock; replaced (not changed) by each `ArchiveJobs`.
    pub(super) recently_archived: Arc<crate::state::history::RecentlyArchived>,
    /// The keyspace the job history is read from (none in unit tests of apply alone).
    pub(super) history: Option<Arc<dyn Keyspace>>,
    /// The log index of the entry being applied (history records are tagged with it).
    pub(super) applying_index: u64,
    events: broadcast::Sender<DomainEvent>,
    job_ends: Option<JobEndObserver>,
}

pub type SharedState = Arc<RwLock<HodeiState>>;

pub(super) fn tenant_key(id: &TenantId) -> Vec<u8> {
    format!("{TENANT_PREFIX}{id}").into_bytes()
}

/// Puts an entity's stored form into `writes`. Entities are plain data, which the codec
/// always encodes; should one ever fail, apply must still not panic (every replica would
/// stop on the same entry), so that write is left out and logged: the entity stays in
/// memory and in snapshots, and is written again at its next change.
pub(super) fn put_encoded<T: Serialize>(writes: &mut WriteBatch, key: Vec<u8>, value: &T) {
    match hodei_cluster::codec::encode(value) {
        Ok(bytes) => writes.put(key, bytes),
        Err(error) => tracing::error!(
            key = %String::from_utf8_lossy(&key),
            %error,
            "a state entity could not be encoded: its write is left out"
        ),
    }
}

/// What a pending job's reasons to wait depend on besides the state around it: its
/// queue, tenant, resources and pool selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PendingShape {
    pub queue: String,
    pub tenant: TenantId,
    pub resources: hodei_domain::resources::Resources,
    pub pool_selector: Vec<String>,
}

impl PendingShape {
    pub fn of(job: &Job) -> Self {
        Self {
            queue: job.spec.queue.clone(),
            tenant: job.spec.tenant.clone(),
            resources: job.spec.resources,
            pool_selector: job.spec.pool_selector.clone(),
        }
    }
}

impl HodeiState {
    pub fn new(events: broadcast::Sender<DomainEvent>) -> Self {
        Self {
            tenants: BTreeMap::new(),
            bursts: BTreeMap::new(),
            usage: BTreeMap::new(),
            jobs: BTreeMap::new(),
            job_logs: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_shapes: BTreeMap::new(),
            idempotency: BTreeMap::new(),
            job_tally: BTreeMap::new(),
            priority_tally: BTreeMap::new(),
            sla_tally: BTreeMap::new(),
            dispatch_log: BTreeMap::new(),
            queues: BTreeMap::new(),
            pools: BTreeMap::new(),
            scaling: BTreeMap::new(),
            prices: BTreeMap::new(),
            cost_ledger: BTreeMap::new(),
            book: Default::default(),
            access: Default::default(),
            workers: BTreeMap::new(),
            violations: Default::default(),
            pool_tally: BTreeMap::new(),
            pool_waits: BTreeMap::new(),
            finished: BTreeSet::new(),
            shares: Default::default(),
            archived_tally: Default::default(),
            archived_idempotency: BTreeMap::new(),
            recently_archived: Default::default(),
            history: None,
            applying_index: 0,
            events,
            job_ends: None,
        }
    }

    /// Keeps what the fair-share report reads for windows up to `horizon` long.
    pub fn with_share_horizon(mut self, horizon: std::time::Duration) -> Self {
        self.shares
            .set_horizon(u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX));
        // What a load replayed under the default horizon is replayed again under this one.
        self.shares.clear();
        for job in self.jobs.values() {
            self.shares.replay(job);
        }
        self
    }

    /// Reads the job history from `keyspace` (the state keyspace this state is stored in).
    pub fn with_history(mut self, keyspace: Arc<dyn Keyspace>) -> Self {
        self.history = Some(keyspace);
        self
    }

    /// Rebuilds the state from the entities stored in `keyspace`.
    pub fn load(
        keyspace: &dyn Keyspace,
        events: broadcast::Sender<DomainEvent>,
    ) -> Result<Self, String> {
        let mut state = Self::new(events);
        let stored = keyspace
            .scan_prefix(TENANT_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (key, value) in stored {
            let tenant: Tenant = hodei_cluster::codec::decode(&value).map_err(|error| {
                format!("corrupt tenant {}: {error}", String::from_utf8_lossy(&key))
            })?;
            state.tenants.insert(tenant.id.clone(), tenant);
        }
        let stored = keyspace
            .scan_prefix(BURST_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (key, value) in stored {
            let session: BurstSession = hodei_cluster::codec::decode(&value).map_err(|error| {
                format!(
                    "corrupt burst session {}: {error}",
                    String::from_utf8_lossy(&key)
                )
            })?;
            state
                .bursts
                .entry(session.tenant.clone())
                .or_default()
                .push(session);
        }
        for sessions in state.bursts.values_mut() {
            sessions.sort_by(|left, right| {
                (left.requested_at_ms, &left.id).cmp(&(right.requested_at_ms, &right.id))
            });
        }
        for job in load_all::<Job>(keyspace, JOB_PREFIX, "job")? {
            state.jobs.insert(job.id.clone(), Box::new(job));
        }
        for queue in load_all::<Queue>(keyspace, QUEUE_PREFIX, "queue")? {
            state.queues.insert(queue.id.clone(), queue);
        }
        for pool in load_all::<Pool>(keyspace, POOL_PREFIX, "pool")? {
            state.pools.insert(pool.id.clone(), pool);
        }
        for worker in load_all::<Worker>(keyspace, WORKER_PREFIX, "worker")? {
            state.workers.insert(worker.id.clone(), worker);
        }
        for pool_scaling in load_all::<hodei_domain::autoscale::PoolScaling>(
            keyspace,
            crate::state::keys::SCALING_PREFIX,
            "pool scaling",
        )? {
            state
                .scaling
                .insert(pool_scaling.pool.clone(), pool_scaling);
        }
        for pool_prices in load_all::<hodei_domain::cost::PoolPrices>(
            keyspace,
            crate::state::keys::PRICES_PREFIX,
            "pool prices",
        )? {
            state.prices.insert(pool_prices.pool.clone(), pool_prices);
        }
        for entry in load_all::<crate::state::cost_ledger::LedgerEntry>(
            keyspace,
            crate::state::keys::COST_PREFIX,
            "cost ledger entry",
        )? {
            state.insert_cost_entry(entry);
        }
        for entry in load_all::<crate::state::cost_book::BookEntry>(
            keyspace,
            crate::state::keys::COST_BOOK_PREFIX,
            "cost book entry",
        )? {
            state.book.insert(entry);
        }
        for entry in load_all::<crate::state::access_book::AccessEntry>(
            keyspace,
            crate::state::keys::ACCESS_PREFIX,
            "access entry",
        )? {
            state.access.insert(entry);
        }
        state.rebuild_day_spend();
        let logs = keyspace
            .scan_prefix(JOB_LOG_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (key, value) in logs {
            let id = String::from_utf8_lossy(&key[JOB_LOG_PREFIX.len()..]).into_owned();
            state
                .job_logs
                .insert(id, String::from_utf8_lossy(&value).into_owned());
        }
        state.load_violation_log(keyspace)?;
        state.load_archived(keyspace)?;
        state.rebuild_job_indices();
        Ok(state)
    }

    /// How many jobs the state holds (final ones included, until retention removes them).
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.events.subscribe()
    }

    pub fn tenant(&self, id: &TenantId) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    /// Up to `limit` tenants whose id sorts after `after`, in id order.
    pub fn tenants_after(&self, after: Option<&TenantId>, limit: usize) -> Vec<Tenant> {
        let range = match after {
            Some(after) => self.tenants.range((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => self.tenants.range(..),
        };
        range
            .take(limit)
            .map(|(_, tenant)| tenant.clone())
            .collect()
    }

    pub fn tenant_ids(&self) -> Vec<TenantId> {
        self.tenants.keys().cloned().collect()
    }

    pub(super) fn emit(&self, event: DomainEvent) {
        // No receiver is fine: followers run no controllers.
        let _ = self.events.send(event);
    }

    /// Tells `observer` of every job end applied from now on.
    pub fn observe_job_ends(&mut self, observer: JobEndObserver) {
        self.job_ends = Some(observer);
    }

    pub(super) fn job_ended(&self, end: &JobEnd) {
        if let Some(observer) = &self.job_ends {
            observer(end);
        }
    }

    pub(super) fn put_tenant(&mut self, tenant: Tenant, writes: &mut WriteBatch) {
        put_encoded(writes, tenant_key(&tenant.id), &tenant);
        self.tenants.insert(tenant.id.clone(), tenant);
    }

    /// Applies one decoded command. Every branch checks the current state again: the
    /// gateway validated against a snapshot that may be stale by now.
    /// Applies one command: each validates, then mutates (a refused command changes
    /// nothing), in its aggregate's file under `state/apply/`.
    pub fn apply_command(&mut self, command: Command, writes: &mut WriteBatch) -> CommandResult {
        let Command::V1(command) = command;
        match command {
            CommandV1::Bootstrap(command) => self.apply_bootstrap(command, writes),
            CommandV1::CreateTenant(command) => self.apply_create_tenant(command, writes),
            CommandV1::UpdateTenant(command) => self.apply_update_tenant(command, writes),
            CommandV1::DeleteTenant(command) => self.apply_delete_tenant(command, writes),
            CommandV1::Probe(command) => Ok(CommandOutcome::Probed {
                bytes: command.payload.len(),
            }),
            CommandV1::SetQuota(command) => self.apply_set_quota(command, writes),
            CommandV1::RequestBurst(command) => self.apply_request_burst(command, writes),
            CommandV1::ApproveBurst(command) => self.apply_approve_burst(command, writes),
            CommandV1::EndBurst(command) => self.apply_end_burst(command, writes),
            CommandV1::EnsureQueuesAndPools(command) => {
                self.apply_ensure_queues_and_pools(command, writes)
            }
            CommandV1::CreateQueue(command) => self.apply_create_queue(command, writes),
            CommandV1::UpdateQueue(command) => self.apply_update_queue(command, writes),
            CommandV1::DeleteQueue(command) => self.apply_delete_queue(command, writes),
            CommandV1::SubmitJobs(command) => self.apply_submit_jobs(command, writes),
            CommandV1::AssignJobs(command) => self.apply_assign_jobs(command, writes),
            CommandV1::JobStarted(command::JobStarted {
                job,
                attempt,
                worker,
                at_ms,
            }) => self.apply_job_started(&job, attempt, &worker, at_ms, writes),
            CommandV1::JobFinished(command) => self.apply_job_finished(command, writes),
            CommandV1::RunReports(command) => self.apply_run_reports(command, writes),
            CommandV1::CancelJob(command) => self.apply_cancel_job(command, writes),
            CommandV1::RegisterWorker(command) => self.apply_register_worker(command, writes),
            CommandV1::RegisterAgentWorker(command) => {
                self.apply_register_agent_worker(command, writes)
            }
            CommandV1::WorkerLost(command) => self.apply_worker_lost(command, writes),
            CommandV1::WorkerLostSince(command) => self.apply_worker_lost_since(command, writes),
            CommandV1::RunsVanished(command) => self.apply_runs_vanished(command, writes),
            CommandV1::WorkerLeft(command) => self.apply_worker_left(command, writes),
            CommandV1::RunOutput(command) => self.apply_run_output(command, writes),
            CommandV1::RecordSla(command) => self.apply_record_sla(command.changes, writes),
            CommandV1::CreatePool(command) => self.apply_create_pool(command, writes),
            CommandV1::UpdatePool(command) => self.apply_update_pool(command, writes),
            CommandV1::DeletePool(command) => self.apply_delete_pool(command, writes),
            CommandV1::PoolHealth(command) => self.apply_pool_health(command, writes),
            CommandV1::CountProvisioning(command) => self.apply_count_provisioning(command, writes),
            CommandV1::StopWorker(command) => self.apply_stop_worker(command, writes),
            CommandV1::ReleasePool(command) => self.apply_release_pool(command, writes),
            CommandV1::PoolLifecycle(command) => self.apply_pool_lifecycle(command, writes),
            CommandV1::ArchiveJobs(command) => self.apply_archive_jobs(command, writes),
            CommandV1::PurgeHistory(command) => self.apply_purge_history(command, writes),
            CommandV1::SetScaling(command) => self.apply_set_scaling(command, writes),
            CommandV1::ScalePool(command) => self.apply_scale_pool(command, writes),
            CommandV1::SettleScaling(command) => self.apply_settle_scaling(command, writes),
            CommandV1::SetPoolPricing(command) => self.apply_set_pool_pricing(command, writes),
            CommandV1::PurgeCostLedger(command) => self.apply_purge_cost_ledger(command, writes),
            CommandV1::SetCostSettings(command) => self.apply_set_cost_settings(command, writes),
            CommandV1::PutCostReport(command) => self.apply_put_cost_report(command, writes),
            CommandV1::DeleteCostReport(command) => self.apply_delete_cost_report(command, writes),
            CommandV1::RecordBudgetAlert(command) => {
                self.apply_record_budget_alert(command, writes)
            }
            CommandV1::IssueToken(command) => self.apply_issue_token(command, writes),
            CommandV1::RevokeToken(command) => self.apply_revoke_token(command, writes),
            CommandV1::IssueJoinToken(command) => self.apply_issue_join_token(command, writes),
            CommandV1::RevokeJoinToken(command) => self.apply_revoke_join_token(command, writes),
        }
    }
}

impl StateMachine for HodeiState {
    const COLD_PREFIX: &'static [u8] = crate::state::history::HISTORY_PREFIX.as_bytes();

    fn begin_batch(&mut self) {
        // The jobs archived by the batch before are in the keyspace now.
        if !self.recently_archived.is_empty() {
            self.recently_archived = Default::default();
        }
    }

    fn apply(&mut self, index: u64, command: &[u8], writes: &mut WriteBatch) -> Vec<u8> {
        self.applying_index = index;
        let result: CommandResult = match Command::decode(command) {
            Ok(command) => {
                let Command::V1(decoded) = &command;
                let watch = crate::state::audit::Watch::before(self, decoded);
                let result = self.apply_command(command, writes);
                watch.after(self, index);
                result
            }
            // A command this version cannot read is refused identically on every node.
            Err(error) => Err(DomainError::invalid(
                "command",
                format!("undecodable command: {error}"),
            )),
        };
        super::encode_result(&result)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        // Encoded from references: no copy of the state is made while the lock is held.
        let data = SnapshotView {
            tenants: self.tenants.values().collect(),
            bursts: self.bursts.values().flatten().collect(),
            jobs: self.jobs.values().map(|job| job.as_ref()).collect(),
            job_logs: &self.job_logs,
            queues: self.queues.values().collect(),
            pools: self.pools.values().collect(),
            workers: self.workers.values().collect(),
            violations: &self.violations,
            archived_tally: &self.archived_tally,
            archived_idempotency: &self.archived_idempotency,
            scaling: self.scaling.values().collect(),
            prices: self.prices.values().collect(),
            cost_ledger: self.cost_entries(),
            cost_book: self.book.entries(),
            access: self.access.entries(),
        };
        hodei_cluster::codec::encode(&data)
    }

    fn restore(&mut self, snapshot: &[u8], writes: &mut WriteBatch) -> Result<(), String> {
        let SnapshotData {
            base:
                WithBook {
                    base:
                        WithCost {
                            base:
                                WithHistory {
                                    base:
                                        WithViolations {
                                            entities: data,
                                            violations,
                                        },
                                    archived_tally,
                                    archived_idempotency,
                                },
                            scaling,
                            prices,
                            cost_ledger,
                        },
                    cost_book,
                },
            access,
        } = SnapshotData::decode(snapshot)?;
        self.tenants.clear();
        self.bursts.clear();
        self.jobs.clear();
        self.job_logs.clear();
        self.queues.clear();
        self.pools.clear();
        self.workers.clear();
        for tenant in data.tenants {
            self.put_tenant(tenant, writes);
        }
        for session in data.bursts {
            put_encoded(
                writes,
                crate::state::apply::limits::burst_key(&session),
                &session,
            );
            self.bursts
                .entry(session.tenant.clone())
                .or_default()
                .push(session);
        }
        for job in data.jobs {
            put_encoded(writes, jobs_key(JOB_PREFIX, &job.id), &job);
            self.jobs.insert(job.id.clone(), Box::new(job));
        }
        for (id, tail) in data.job_logs {
            writes.put(jobs_key(JOB_LOG_PREFIX, &id), tail.clone().into_bytes());
            self.job_logs.insert(id, tail);
        }
        for queue in data.queues {
            put_encoded(writes, jobs_key(QUEUE_PREFIX, &queue.id), &queue);
            self.queues.insert(queue.id.clone(), queue);
        }
        for pool in data.pools {
            put_encoded(writes, jobs_key(POOL_PREFIX, &pool.id), &pool);
            self.pools.insert(pool.id.clone(), pool);
        }
        for worker in data.workers {
            put_encoded(writes, jobs_key(WORKER_PREFIX, &worker.id), &worker);
            self.workers.insert(worker.id.clone(), worker);
        }
        self.scaling.clear();
        for pool_scaling in scaling {
            put_encoded(
                writes,
                jobs_key(crate::state::keys::SCALING_PREFIX, &pool_scaling.pool),
                &pool_scaling,
            );
            self.scaling.insert(pool_scaling.pool.clone(), pool_scaling);
        }
        self.prices.clear();
        for pool_prices in prices {
            put_encoded(
                writes,
                jobs_key(crate::state::keys::PRICES_PREFIX, &pool_prices.pool),
                &pool_prices,
            );
            self.prices.insert(pool_prices.pool.clone(), pool_prices);
        }
        self.cost_ledger.clear();
        for entry in cost_ledger {
            put_encoded(
                writes,
                crate::state::cost_ledger::storage_key(&entry.key),
                &entry,
            );
            self.insert_cost_entry(entry);
        }
        self.book = Default::default();
        for entry in cost_book {
            self.put_book_entry(entry, writes);
        }
        self.access = Default::default();
        for entry in access {
            self.put_access_entry(entry, writes);
        }
        self.rebuild_day_spend();
        self.put_violation_log(violations, writes);
        self.put_archived(archived_tally, archived_idempotency, writes);
        self.rebuild_job_indices();
        self.emit(DomainEvent::StateReplaced);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hodei_cluster::{SledStorage, Storage};

    use super::*;
    use hodei_domain::labels::Labels;
    use hodei_domain::tenant::{NewTenant, TenantPatch, Tier};

    /// A snapshot taken before violations were replicated still installs.
    #[test]
    fn a_snapshot_of_the_earlier_shape_installs_with_no_violations() {
        #[derive(Serialize)]
        struct Earlier<'a> {
            tenants: Vec<&'a Tenant>,
            bursts: Vec<BurstSession>,
            jobs: Vec<Job>,
            job_logs: BTreeMap<String, String>,
            queues: Vec<Queue>,
            pools: Vec<Pool>,
            workers: Vec<Worker>,
        }
        let tenant = tenant("acme");
        let earlier = hodei_cluster::codec::encode(&Earlier {
            tenants: vec![&tenant],
            bursts: Vec::new(),
            jobs: Vec::new(),
            job_logs: BTreeMap::new(),
            queues: Vec::new(),
            pools: Vec::new(),
            workers: Vec::new(),
        })
        .unwrap();
        let mut state = HodeiState::new(broadcast::channel(4).0);
        let mut writes = WriteBatch::new();
        state.restore(&earlier, &mut writes).unwrap();
        assert!(state.tenant(&tenant.id).is_some());
        assert!(state.recent_violations(None, 10).is_empty());
        // Bytes of a shape this version does not know (one with more after it) are
        // refused, not read as the earlier shape with the rest dropped.
        #[derive(Serialize)]
        struct Unknown<'a> {
            earlier: Earlier<'a>,
            more: Vec<u64>,
        }
        let unknown = hodei_cluster::codec::encode(&Unknown {
            earlier: Earlier {
                tenants: vec![&tenant],
                bursts: Vec::new(),
                jobs: Vec::new(),
                job_logs: BTreeMap::new(),
                queues: Vec::new(),
                pools: Vec::new(),
                workers: Vec::new(),
            },
            more: vec![7, 8, 9],
        })
        .unwrap();
        let mut fresh = HodeiState::new(broadcast::channel(4).0);
        assert!(fresh.restore(&unknown, &mut WriteBatch::new()).is_err());
        // Every shape this version writes reads back whole.
        let mut again = HodeiState::new(broadcast::channel(4).0);
        again
            .restore(&state.snapshot().unwrap(), &mut WriteBatch::new())
            .unwrap();
        assert!(again.tenant(&tenant.id).is_some());
    }

    fn state() -> HodeiState {
        HodeiState::new(broadcast::channel(16).0)
    }

    fn tenant(id: &str) -> Tenant {
        NewTenant {
            id: TenantId::parse(id).unwrap(),
            display_name: None,
            tier: Tier::Free,
            weight: None,
            labels: Labels::new(),
            quota: hodei_domain::quota::Quota::default(),
        }
        .into_tenant(1)
        .unwrap()
    }

    fn apply(
        state: &mut HodeiState,
        index: u64,
        command: CommandV1,
    ) -> (CommandResult, WriteBatch) {
        let mut writes = WriteBatch::new();
        let response =
            StateMachine::apply(state, index, &Command::V1(command).encode(), &mut writes);
        (crate::state::decode_result(&response).unwrap(), writes)
    }

    #[test]
    fn create_then_duplicate_is_refused() {
        let mut state = state();
        let (first, writes) = apply(
            &mut state,
            1,
            CommandV1::CreateTenant(command::CreateTenant {
                tenant: tenant("acme"),
            }),
        );
        assert!(matches!(first, Ok(CommandOutcome::Tenant(_))));
        assert_eq!(writes.len(), 1);
        let (second, writes) = apply(
            &mut state,
            2,
            CommandV1::CreateTenant(command::CreateTenant {
                tenant: tenant("acme"),
            }),
        );
        assert_eq!(second, Err(DomainError::already_exists("tenant", "acme")));
        assert!(writes.is_empty(), "a refused command writes nothing");
    }

    #[test]
    fn update_and_delete_unknown_tenant_are_not_found() {
        let mut state = state();
        let id = TenantId::parse("ghost").unwrap();
        let (update, _) = apply(
            &mut state,
            1,
            CommandV1::UpdateTenant(command::UpdateTenant {
                id: id.clone(),
                patch: TenantPatch::default(),
                at_ms: 2,
            }),
        );
        assert_eq!(update, Err(DomainError::not_found("tenant", "ghost")));
        let (delete, _) = apply(
            &mut state,
            2,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id,
                cascade: false,
                at_ms: 2,
            }),
        );
        assert_eq!(delete, Err(DomainError::not_found("tenant", "ghost")));
    }

    #[test]
    fn default_tenant_cannot_be_deleted() {
        let mut state = state();
        let _ = apply(
            &mut state,
            1,
            CommandV1::Bootstrap(command::Bootstrap {
                default_tenant: Tenant::default_tenant(0, Default::default()),
            }),
        );
        let (delete, _) = apply(
            &mut state,
            2,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id: TenantId::default_tenant(),
                cascade: true,
                at_ms: 3,
            }),
        );
        assert!(matches!(delete, Err(DomainError::Conflict(_))));
    }

    #[test]
    fn bootstrap_is_idempotent() {
        let mut state = state();
        let (first, _) = apply(
            &mut state,
            1,
            CommandV1::Bootstrap(command::Bootstrap {
                default_tenant: Tenant::default_tenant(0, Default::default()),
            }),
        );
        let (second, _) = apply(
            &mut state,
            2,
            CommandV1::Bootstrap(command::Bootstrap {
                default_tenant: Tenant::default_tenant(9, Default::default()),
            }),
        );
        assert_eq!(first, Ok(CommandOutcome::Bootstrapped { created: true }));
        assert_eq!(second, Ok(CommandOutcome::Bootstrapped { created: false }));
        assert_eq!(
            state
                .tenant(&TenantId::default_tenant())
                .unwrap()
                .created_at_ms,
            0
        );
    }

    #[test]
    fn undecodable_command_is_refused_not_panicking() {
        let mut state = state();
        let mut writes = WriteBatch::new();
        let response = StateMachine::apply(&mut state, 1, b"{\"V9\":{}}", &mut writes);
        let result: CommandResult = crate::state::decode_result(&response).unwrap();
        assert!(
            matches!(result, Err(DomainError::Invalid { ref field, .. }) if field == "command")
        );
    }

    #[test]
    fn stored_entities_load_back_and_snapshot_restores() {
        let storage = SledStorage::temporary().unwrap();
        let keyspace = storage.keyspace("state").unwrap();
        let mut state = state();
        for (index, id) in ["b", "a", "c"].iter().enumerate() {
            let (_, writes) = apply(
                &mut state,
                index as u64 + 1,
                CommandV1::CreateTenant(command::CreateTenant { tenant: tenant(id) }),
            );
            keyspace.write(writes).unwrap();
        }
        let (_, writes) = apply(
            &mut state,
            4,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id: TenantId::parse("b").unwrap(),
                cascade: false,
                at_ms: 5,
            }),
        );
        keyspace.write(writes).unwrap();

        let loaded = HodeiState::load(keyspace.as_ref(), broadcast::channel(1).0).unwrap();
        assert_eq!(loaded.tenant_ids(), state.tenant_ids());

        let snapshot = state.snapshot().unwrap();
        let mut restored = self::state();
        let mut writes = WriteBatch::new();
        restored.restore(&snapshot, &mut writes).unwrap();
        assert_eq!(restored.tenant_ids(), state.tenant_ids());
        assert_eq!(writes.len(), 2);
    }

    #[test]
    fn tenants_after_pages_in_id_order() {
        let mut state = state();
        for (index, id) in ["d", "b", "a", "c"].iter().enumerate() {
            let _ = apply(
                &mut state,
                index as u64 + 1,
                CommandV1::CreateTenant(command::CreateTenant { tenant: tenant(id) }),
            );
        }
        let first = state.tenants_after(None, 2);
        assert_eq!(
            first.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let second = state.tenants_after(Some(&first[1].id), 2);
        assert_eq!(
            second.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert!(state.tenants_after(Some(&second[1].id), 2).is_empty());
    }
}
