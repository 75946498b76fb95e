//! Request and response bodies of jobs, queues and workers, shared by REST and gRPC.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::model::ResourcesView;
use hodei_domain::job::Job;
use hodei_domain::labels::Labels;
use hodei_domain::queue::Queue;
use hodei_domain::worker::Worker;

/// The most jobs in one batch submit.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandInput {
    /// The program and its arguments; not run through a shell.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secret (at most 8 KiB each): stored sealed, given to
    /// the job in its environment, and shown as `<redacted>` in every answer. Needs
    /// `cluster.secret`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Relative paths are taken from the worker's work directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Killed (with everything it started) after this many seconds.
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationInput {
    pub duration_ms: u64,
    #[serde(default)]
    pub exit_code: i32,
    /// What the run reports it used, in percent of its request, CPU and memory (default
    /// 100; at most 1000).
    #[serde(default)]
    pub used_percent: Option<u32>,
}

/// A job's service level: a level (its time-to-start target) or explicit times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaInput {
    /// critical (5 min) | high (15 min) | medium (1 h) | low (4 h) | best_effort (24 h).
    /// May be left out when `start_by_ms` or `finish_by_ms` is given (it is then
    /// `best_effort`, the level its compliance is counted under).
    #[serde(default)]
    pub level: Option<String>,
    /// Start by this time (ms since the epoch) instead of the level's target.
    #[serde(default)]
    pub start_by_ms: Option<u64>,
    #[serde(default)]
    pub finish_by_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJobInput {
    /// Defaults to the caller's tenant (`default` for an admin).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Defaults to `default`.
    #[serde(default)]
    pub queue: Option<String>,
    /// critical | high | normal (default) | low | batch
    #[serde(default)]
    pub priority: Option<String>,
    /// Defaults to 1000 m CPU and 512 MiB.
    #[serde(default)]
    pub resources: Option<ResourcesView>,
    /// Required unless `simulate` is given.
    #[serde(default)]
    pub command: Option<CommandInput>,
    /// For simulated pools: how long the job "runs" and its exit code.
    #[serde(default)]
    pub simulate: Option<SimulationInput>,
    #[serde(default)]
    pub labels: Labels,
    /// Attempts after a lost worker before the job fails (default 0).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// A repeat with the same key (per tenant) returns the first job.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Pool ids of the queue the job may run in (default: any of them).
    #[serde(default)]
    pub pool_selector: Vec<String>,
    /// Its service level (default: none tracked).
    #[serde(default)]
    pub sla: Option<SlaInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSubmitInput {
    pub jobs: Vec<SubmitJobInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransitionView {
    pub state: String,
    pub at_ms: u64,
    pub reason: Option<String>,
}

/// What a run used: CPU time and peak memory, and each against the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunUsageView {
    pub cpu_ms: u64,
    pub peak_rss_mb: u64,
    /// CPU time over (requested cores x run time), percent.
    pub cpu_efficiency_percent: Option<u32>,
    /// Peak memory over requested memory, percent.
    pub memory_efficiency_percent: Option<u32>,
}

impl RunUsageView {
    pub fn new(job: &Job, usage: hodei_domain::usage::RunUsage) -> Self {
        let efficiency = job.final_run_ms().and_then(|(start, end)| {
            usage.efficiency(job.spec.resources, end.saturating_sub(start))
        });
        Self {
            cpu_ms: usage.cpu_ms,
            peak_rss_mb: usage.peak_rss_mb,
            cpu_efficiency_percent: efficiency.map(|found| found.cpu_percent),
            memory_efficiency_percent: efficiency.map(|found| found.memory_percent),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub tenant: String,
    pub queue: String,
    pub priority: String,
    pub resources: ResourcesView,
    pub command: CommandInput,
    pub simulate: Option<SimulationInput>,
    pub labels: Labels,
    pub max_retries: u32,
    pub idempotency_key: Option<String>,
    pub pool_selector: Vec<String>,
    pub sla: Option<SlaInput>,
    /// The last recorded SLA status: on_track | at_risk | critical | violated | met.
    pub sla_status: Option<String>,
    /// pending | assigned | running | succeeded | failed | timed_out | cancelled
    pub state: String,
    pub attempt: u32,
    pub worker: Option<String>,
    pub pool: Option<String>,
    /// Admitted above quota under a burst session.
    pub burst: bool,
    pub exit_code: Option<i32>,
    /// What its last run cost, in nano-dollars (resources x the pool's prices x run time,
    /// x the burst premium when admitted under burst), once it ended.
    pub cost_nanos: Option<u64>,
    /// While it runs: what the run has cost so far (on `GET` of one job).
    pub running_cost_nanos: Option<u64>,
    /// What its last run used, as its worker measured it, against its request.
    pub usage: Option<RunUsageView>,
    pub submitted_at_ms: u64,
    pub transitions: Vec<TransitionView>,
    /// While pending: how many jobs of its queue are ahead of it (on `GET` of one job).
    pub queue_position: Option<u64>,
    /// While pending: why it is not running yet (on `GET` of one job).
    pub pending_reason: Option<String>,
    /// Where it was read from: `active` (in memory: not final, or final for less than
    /// `retention.finished_in_memory_s`) or `history` (the job history on disk).
    pub source: String,
}

impl JobView {
    pub fn new(job: &Job, queue_position: Option<u64>, pending_reason: Option<String>) -> Self {
        let spec = &job.spec;
        Self {
            id: job.id.clone(),
            tenant: spec.tenant.to_string(),
            queue: spec.queue.clone(),
            priority: spec.priority.as_str().to_string(),
            resources: spec.resources.into(),
            command: CommandInput {
                argv: spec.command.argv.clone(),
                env: spec
                    .command
                    .env
                    .iter()
                    .filter(|(_, value)| !crate::gateway::secrets::is_sealed(value))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
                secret_env: spec
                    .command
                    .env
                    .iter()
                    .filter(|(_, value)| crate::gateway::secrets::is_sealed(value))
                    .map(|(name, _)| (name.clone(), crate::gateway::secrets::REDACTED.to_string()))
                    .collect(),
                working_dir: spec.command.working_dir.clone(),
                timeout_s: spec.command.timeout_s,
            },
            simulate: spec.simulate.map(|simulation| SimulationInput {
                duration_ms: simulation.duration_ms,
                exit_code: simulation.exit_code,
                used_percent: simulation.used_percent,
            }),
            labels: spec.labels.clone(),
            max_retries: spec.max_retries,
            idempotency_key: spec.idempotency_key.clone(),
            pool_selector: spec.pool_selector.clone(),
            sla: spec.sla.map(|sla| SlaInput {
                level: Some(sla.level.as_str().to_string()),
                start_by_ms: sla.start_by_ms,
                finish_by_ms: sla.finish_by_ms,
            }),
            sla_status: job.sla_status().map(|status| status.as_str().to_string()),
            state: job.state.as_str().to_string(),
            attempt: job.attempt,
            worker: job.worker.clone(),
            pool: job.pool.clone(),
            burst: job.burst,
            exit_code: job.exit_code,
            cost_nanos: job.cost_nanos,
            running_cost_nanos: None,
            usage: job.usage.map(|usage| RunUsageView::new(job, usage)),
            submitted_at_ms: job.submitted_at_ms,
            transitions: job
                .transitions
                .iter()
                .map(|step| TransitionView {
                    state: step.state.as_str().to_string(),
                    at_ms: step.at_ms,
                    reason: step.reason.clone(),
                })
                .collect(),
            queue_position,
            pending_reason,
            source: "active".to_string(),
        }
    }

    /// The view of a job read from `source`.
    pub fn from_source(mut self, source: &str) -> Self {
        self.source = source.to_string();
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubmittedJobView {
    pub job: JobView,
    /// An earlier job had the same idempotency key; it is returned and nothing was created.
    pub duplicate: bool,
}

/// One job of a batch: accepted (with the job) or refused (with why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItemView {
    pub index: usize,
    pub job: Option<JobView>,
    pub duplicate: bool,
    /// The refusal's HTTP status, when refused.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    pub accepted: usize,
    pub refused: usize,
    pub results: Vec<BatchItemView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobPageView {
    pub items: Vec<JobView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLogsView {
    pub id: String,
    pub state: String,
    /// Which output: `all` (stdout and stderr interleaved), `stdout` or `stderr`.
    pub stream: String,
    /// Its last 64 KiB: while the job runs, as its worker last reported it (every few
    /// seconds); after, all of it up to its end.
    pub output_tail: String,
}

/// Filters of the job list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub tenant: Option<String>,
    pub queue: Option<String>,
    pub state: Option<String>,
    /// `key=value`
    pub label: Option<String>,
    /// `oldest` (default: submit order) or `newest` first.
    pub order: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueueInput {
    /// `[a-z0-9][a-z0-9-]{0,62}`
    pub id: String,
    /// Pool ids, in preference order (default: `pool-default`).
    #[serde(default)]
    pub pools: Option<Vec<String>>,
    /// weighted_fair (default) | strict_priority | fifo | edf
    #[serde(default)]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateQueueInput {
    #[serde(default)]
    pub pools: Option<Vec<String>>,
    #[serde(default)]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    pub id: String,
    pub pools: Vec<String>,
    pub policy: String,
    /// Jobs pending in it now.
    pub pending: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl QueueView {
    pub fn new(queue: &Queue, pending: u64) -> Self {
        Self {
            id: queue.id.clone(),
            pools: queue.pools.clone(),
            policy: queue.policy.as_str().to_string(),
            pending,
            created_at_ms: queue.created_at_ms,
            updated_at_ms: queue.updated_at_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueListView {
    pub items: Vec<QueueView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub pool: String,
    /// idle | busy | lost
    pub state: String,
    pub capacity: ResourcesView,
    pub used: ResourcesView,
    pub jobs: Vec<String>,
    pub labels: Labels,
    pub simulated: bool,
    pub registered_at_ms: u64,
    pub state_changed_at_ms: u64,
}

impl From<&Worker> for WorkerView {
    fn from(worker: &Worker) -> Self {
        Self {
            id: worker.id.clone(),
            pool: worker.pool.clone(),
            state: worker.state.as_str().to_string(),
            capacity: worker.capacity.into(),
            used: worker.used.into(),
            jobs: worker.jobs.iter().cloned().collect(),
            labels: worker.labels.clone(),
            simulated: worker.simulated,
            registered_at_ms: worker.registered_at_ms,
            state_changed_at_ms: worker.state_changed_at_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkerListView {
    pub items: Vec<WorkerView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StaticSettingsView {
    /// Fewer healthy workers than this and the pool is degraded.
    pub size: u32,
    pub expected_workers: Vec<String>,
    pub health_check_interval_s: u64,
    /// Live workers now.
    pub healthy_workers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DynamicSettingsView {
    pub provider: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired: u32,
    pub worker_shape: ResourcesView,
    pub idle_timeout_s: u64,
    pub provision_timeout_s: u64,
    pub max_provisioning: u32,
    pub drain_timeout_s: u64,
    pub prewarm: bool,
    /// Live workers now.
    pub current: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolView {
    pub id: String,
    /// static | dynamic
    #[serde(rename = "type")]
    pub pool_type: String,
    /// static | simulated | process
    pub provider: String,
    /// creating | active | suspended | draining | decommissioned | degraded
    pub state: String,
    pub worker_shape: ResourcesView,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_size: u32,
    pub labels: Labels,
    /// Registered workers by state.
    pub workers: BTreeMap<String, u64>,
    pub created_at_ms: u64,
}

impl PoolView {
    /// Sizes as [`hodei_domain::pool::Pool::shown_sizes`] gives them.
    pub fn new(pool: &hodei_domain::pool::Pool, workers: BTreeMap<String, u64>) -> Self {
        let (min_size, max_size, desired_size) = pool.shown_sizes();
        Self {
            id: pool.id.clone(),
            pool_type: pool.pool_type.as_str().to_string(),
            provider: pool.provider.as_str().to_string(),
            state: pool.state.as_str().to_string(),
            worker_shape: pool.worker_shape.into(),
            min_size,
            max_size,
            desired_size,
            labels: pool.labels.clone(),
            workers,
            created_at_ms: pool.created_at_ms,
        }
    }
}

/// A new pool. Defaults: a static pool of the static provider; min 0, max 100 and the
/// desired size at min for a dynamic one; workers of 4000 m / 8192 MiB.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePoolInput {
    pub id: String,
    /// static | dynamic (default: dynamic when the provider starts workers, else static)
    #[serde(default, rename = "type")]
    pub pool_type: Option<String>,
    /// static (default) | simulated | process
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub min_size: Option<u32>,
    #[serde(default)]
    pub max_size: Option<u32>,
    #[serde(default)]
    pub desired: Option<u32>,
    #[serde(default)]
    pub worker_shape: Option<ResourcesView>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default, rename = "static")]
    pub static_settings: Option<StaticInput>,
    #[serde(default)]
    pub dynamic: Option<DynamicInput>,
    /// Its prices (the defaults for what is absent; tier percentages through
    /// `PUT /api/v1/pools/{id}/pricing`).
    #[serde(default)]
    pub pricing: Option<crate::gateway::pricing_model::PricingInput>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePoolInput {
    #[serde(default)]
    pub min_size: Option<u32>,
    #[serde(default)]
    pub max_size: Option<u32>,
    #[serde(default)]
    pub worker_shape: Option<ResourcesView>,
    #[serde(default)]
    pub labels: Option<Labels>,
}

/// A static pool's settings (PUT replaces them; omitted fields take their defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticInput {
    #[serde(default)]
    pub size: Option<u32>,
    #[serde(default)]
    pub expected_workers: Option<Vec<String>>,
    #[serde(default)]
    pub health_check_interval_s: Option<u64>,
}

/// A dynamic pool's settings (PUT changes the fields given; `desired` resizes now).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamicInput {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub min_size: Option<u32>,
    #[serde(default)]
    pub max_size: Option<u32>,
    #[serde(default)]
    pub desired: Option<u32>,
    #[serde(default)]
    pub worker_shape: Option<ResourcesView>,
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
    #[serde(default)]
    pub provision_timeout_s: Option<u64>,
    #[serde(default)]
    pub max_provisioning: Option<u32>,
    #[serde(default)]
    pub drain_timeout_s: Option<u64>,
    #[serde(default)]
    pub prewarm: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolListView {
    pub items: Vec<PoolView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolTransitionView {
    pub from: String,
    pub to: String,
    pub action: Option<String>,
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolLifecycleView {
    pub pool: String,
    pub state: String,
    /// The actions allowed from the current state.
    pub allowed_actions: Vec<String>,
    pub history: Vec<PoolTransitionView>,
}

impl From<&hodei_domain::pool::Pool> for PoolLifecycleView {
    fn from(pool: &hodei_domain::pool::Pool) -> Self {
        Self {
            pool: pool.id.clone(),
            state: pool.state.as_str().to_string(),
            allowed_actions: pool
                .state
                .allowed_actions()
                .into_iter()
                .map(|action| action.as_str().to_string())
                .collect(),
            history: pool
                .history
                .iter()
                .map(|step| PoolTransitionView {
                    from: step.from.as_str().to_string(),
                    to: step.to.as_str().to_string(),
                    action: step.action.map(|action| action.as_str().to_string()),
                    by: step.by.clone(),
                    reason: step.reason.clone(),
                    at_ms: step.at_ms,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolActionInput {
    /// activate | suspend | resume | drain | decommission
    pub action: String,
    /// Why, for the history.
    #[serde(default)]
    pub reason: Option<String>,
}
