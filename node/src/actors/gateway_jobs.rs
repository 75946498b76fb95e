//! The gateway's job, queue and worker operations: submit (one or a batch, one Raft entry
//! either way), read, list, cancel, logs and watch; queue CRUD; the worker list.

use tokio::sync::{broadcast, mpsc};
use tracing::info;

use crate::actors::gateway::{Handler, propose_for, read_barrier, require_access, require_admin};
use crate::actors::gateway_reports;
use crate::actors::{NodeContext, now_ms};
use crate::gateway::job_model::{
    BatchItemView, BatchView, CreatePoolInput, CreateQueueInput, DynamicSettingsView, JobFilter,
    JobLogsView, JobPageView, JobView, MAX_BATCH, PoolLifecycleView, PoolListView, PoolView,
    QueueListView, QueueView, StaticSettingsView, SubmitJobInput, SubmittedJobView, WorkerListView,
    WorkerView,
};
use crate::gateway::model::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageInput};
use crate::gateway::operations::{
    CancelJob, ChangePoolLifecycle, CreatePool, CreateQueue, DeletePool, DeleteQueue,
    GetDynamicSettings, GetFairShare, GetJob, GetJobLogs, GetJobPosition, GetJobSla, GetPool,
    GetPoolLifecycle, GetPoolMetrics, GetQueue, GetQueueStatus, GetSlaSummary, GetStaticSettings,
    ListJobs, ListPools, ListQueueStatus, ListQueues, ListWorkers, SetDynamicSettings,
    SetStaticSettings, SubmitJob, SubmitJobs, UpdatePool, UpdateQueue, WatchJob,
};
use crate::gateway::report_model::{
    FairShareView, JobPositionView, JobSlaView, QueueStatusListView, QueueStatusView,
    SlaSummaryView,
};
use crate::gateway::{Consistency, ErrorCode, GatewayError, Principal, RequestContext};
use crate::state::command::PoolPatch;
use crate::state::jobs::SubmittedJob;
use crate::state::{CommandOutcome, CommandV1, DomainEvent, HodeiState};
use hodei_domain::DomainError;
use hodei_domain::job::{CommandSpec, Job, JobSpec, JobState, Priority, Simulation, SlaChange};
use hodei_domain::pool::{Pool, PoolAction, PoolProvider, PoolType, StaticSettings};
use hodei_domain::queue::{DEFAULT_QUEUE_ID, Queue, QueuePolicy};
use hodei_domain::resources::Resources;
use hodei_domain::sla::{SlaLevel, SlaSpec, SlaStatus};
use hodei_domain::tenant::TenantId;
use hodei_domain::worker::validate_worker_id;

/// What a job asks for when it names no resources.
pub const DEFAULT_JOB_RESOURCES: Resources = Resources {
    cpu_m: 1_000,
    memory_mb: 512,
    gpu: 0,
};

impl Handler for SubmitJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<SubmittedJobView, GatewayError> {
        let SubmitJob { input } = self;
        submit(&node, &context, *input).await
    }
}

impl Handler for SubmitJobs {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<BatchView, GatewayError> {
        let SubmitJobs { inputs } = self;
        submit_batch(&node, &context, inputs).await
    }
}

impl Handler for GetJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobView, GatewayError> {
        let GetJob { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        let view = node.read(|state| {
            gateway_reports::visible_job(state, &context, &id)
                .map(|job| gateway_reports::full_job_view(state, job))
        })?;
        Ok(view)
    }
}

impl Handler for ListJobs {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobPageView, GatewayError> {
        let ListJobs {
            filter,
            page,
            consistency,
        } = self;
        list_jobs(&node, &context, filter, page, consistency).await
    }
}

impl Handler for CancelJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobView, GatewayError> {
        let CancelJob { id } = self;
        node.read(|state| gateway_reports::visible_job(state, &context, &id).map(|_| ()))?;
        let command = CommandV1::CancelJob {
            id,
            cancelled_by: context.principal.to_string(),
            at_ms: now_ms(),
        };
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Job(job) => {
                info!(job = %job.id, principal = %context.principal, "job cancelled");
                Ok(job_summary_view(&job))
            }
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for GetJobLogs {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobLogsView, GatewayError> {
        let GetJobLogs { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        let view = node.read(|state| {
            gateway_reports::visible_job(state, &context, &id).map(|job| JobLogsView {
                id: job.id.clone(),
                state: job.state.as_str().to_string(),
                output_tail: state.job_output(&job.id).unwrap_or_default().to_string(),
            })
        })?;
        Ok(view)
    }
}

impl Handler for WatchJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<mpsc::Receiver<JobView>, GatewayError> {
        let WatchJob { id } = self;
        watch(&node, &context, id)
    }
}

impl Handler for CreateQueue {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QueueView, GatewayError> {
        let CreateQueue { input } = self;
        create_queue(&node, &context, input).await
    }
}

impl Handler for GetQueue {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<QueueView, GatewayError> {
        let GetQueue { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            state
                .queue(&id)
                .map(|queue| queue_view(state, queue))
                .ok_or_else(|| DomainError::not_found("queue", id.clone()).into())
        })
    }
}

impl Handler for ListQueues {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<QueueListView, GatewayError> {
        let ListQueues { consistency } = self;
        read_barrier(&node, consistency).await?;
        Ok(node.read(|state| QueueListView {
            items: state
                .queues()
                .map(|queue| queue_view(state, queue))
                .collect(),
        }))
    }
}

impl Handler for UpdateQueue {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<QueueView, GatewayError> {
        let UpdateQueue { id, input } = self;
        require_admin(&context, "changing a queue")?;
        let policy = input
            .policy
            .as_deref()
            .map(|raw| QueuePolicy::parse("policy", raw))
            .transpose()?;
        if input.pools.is_none() && policy.is_none() {
            return Err(GatewayError::new(
                ErrorCode::Unprocessable,
                "the update sets no field: give pools or policy",
            ));
        }
        let command = CommandV1::UpdateQueue {
            id,
            pools: input.pools,
            policy,
            at_ms: now_ms(),
        };
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Queue(queue) => Ok(node.read(|state| queue_view(state, &queue))),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for DeleteQueue {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<String, GatewayError> {
        let DeleteQueue { id } = self;
        require_admin(&context, "deleting a queue")?;
        match propose_for(&node, &context, CommandV1::DeleteQueue { id }).await? {
            CommandOutcome::QueueDeleted { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for ListPools {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<PoolListView, GatewayError> {
        let ListPools { consistency } = self;
        read_barrier(&node, consistency).await?;
        Ok(node.read(|state| PoolListView {
            items: state.pools().map(|pool| pool_view(state, pool)).collect(),
        }))
    }
}

impl Handler for GetPool {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<PoolView, GatewayError> {
        let GetPool { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            state
                .pool(&id)
                .map(|pool| pool_view(state, pool))
                .ok_or_else(|| DomainError::not_found("pool", id.clone()).into())
        })
    }
}

impl Handler for GetPoolLifecycle {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<PoolLifecycleView, GatewayError> {
        let GetPoolLifecycle { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            state
                .pool(&id)
                .map(PoolLifecycleView::from)
                .ok_or_else(|| DomainError::not_found("pool", id.clone()).into())
        })
    }
}

impl Handler for ChangePoolLifecycle {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<PoolLifecycleView, GatewayError> {
        let ChangePoolLifecycle { id, input } = self;
        require_admin(&context, "changing a pool's lifecycle")?;
        let action = PoolAction::parse("action", &input.action)?;
        let command = CommandV1::PoolLifecycle {
            pool: id,
            action,
            by: context.principal.to_string(),
            reason: input.reason.unwrap_or_default(),
            at_ms: now_ms(),
        };
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Pool(pool) => {
                info!(pool = %pool.id, action = action.as_str(), state = pool.state.as_str(), principal = %context.principal, "pool lifecycle changed");
                Ok(PoolLifecycleView::from(&pool))
            }
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for CreatePool {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<PoolView, GatewayError> {
        let CreatePool { input } = self;
        create_pool(&node, &context, *input).await
    }
}

impl Handler for GetPoolMetrics {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<Box<crate::gateway::report_model::PoolMetricsView>, GatewayError> {
        let GetPoolMetrics { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            state
                .pool(&id)
                .map(|pool| Box::new(gateway_reports::pool_metrics(state, pool)))
                .ok_or_else(|| DomainError::not_found("pool", id.clone()).into())
        })
    }
}

impl Handler for UpdatePool {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<PoolView, GatewayError> {
        let UpdatePool { id, input } = self;
        require_admin(&context, "changing a pool")?;
        let patch = PoolPatch {
            min_size: input.min_size,
            max_size: input.max_size,
            worker_shape: input.worker_shape.map(Resources::from),
            labels: input.labels,
            ..PoolPatch::default()
        };
        if patch.is_empty() {
            return Err(GatewayError::new(
                ErrorCode::Unprocessable,
                "the update sets no field: give min_size, max_size, worker_shape or labels",
            ));
        }
        update_pool(&node, &context, id, patch).await
    }
}

impl Handler for DeletePool {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<String, GatewayError> {
        let DeletePool { id } = self;
        require_admin(&context, "deleting a pool")?;
        match propose_for(&node, &context, CommandV1::DeletePool { id }).await? {
            CommandOutcome::PoolDeleted { id } => {
                info!(pool = %id, principal = %context.principal, "pool deleted");
                Ok(id)
            }
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for SetStaticSettings {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<StaticSettingsView, GatewayError> {
        let SetStaticSettings { id, input } = self;
        require_admin(&context, "changing a pool")?;
        let defaults = StaticSettings::default();
        let settings = StaticSettings {
            size: input.size.unwrap_or(defaults.size),
            expected_workers: input.expected_workers.unwrap_or_default(),
            health_check_interval_s: input
                .health_check_interval_s
                .unwrap_or(defaults.health_check_interval_s),
        };
        for (index, worker) in settings.expected_workers.iter().enumerate() {
            validate_worker_id(worker).map_err(|_| {
                GatewayError::invalid(
                    format!("expected_workers[{index}]"),
                    "1-128 characters of [A-Za-z0-9._-]",
                )
            })?;
        }
        let patch = PoolPatch {
            static_settings: Some(settings),
            ..PoolPatch::default()
        };
        update_pool(&node, &context, id.clone(), patch).await?;
        node.read(|state| static_view(state, &id))
    }
}

impl Handler for SetDynamicSettings {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<DynamicSettingsView, GatewayError> {
        let SetDynamicSettings { id, input } = self;
        require_admin(&context, "changing a pool")?;
        let current = node
            .read(|state| state.pool(&id).cloned())
            .ok_or_else(|| GatewayError::from(DomainError::not_found("pool", id.clone())))?;
        let mut settings = current.dynamic_settings.clone();
        settings.idle_timeout_s = input.idle_timeout_s.unwrap_or(settings.idle_timeout_s);
        settings.provision_timeout_s = input
            .provision_timeout_s
            .unwrap_or(settings.provision_timeout_s);
        settings.max_provisioning = input.max_provisioning.unwrap_or(settings.max_provisioning);
        settings.drain_timeout_s = input.drain_timeout_s.unwrap_or(settings.drain_timeout_s);
        settings.prewarm = input.prewarm.unwrap_or(settings.prewarm);
        let provider = input
            .provider
            .as_deref()
            .map(|raw| PoolProvider::parse("provider", raw))
            .transpose()?;
        if provider == Some(PoolProvider::Static) {
            return Err(GatewayError::invalid(
                "provider",
                "a dynamic pool needs a provider that starts workers: process or simulated",
            ));
        }
        let patch = PoolPatch {
            min_size: input.min_size,
            max_size: input.max_size,
            worker_shape: input.worker_shape.map(Resources::from),
            provider,
            desired_size: input.desired,
            dynamic_settings: Some(settings),
            ..PoolPatch::default()
        };
        update_pool(&node, &context, id.clone(), patch).await?;
        node.read(|state| dynamic_view(state, &id))
    }
}

impl Handler for GetStaticSettings {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<StaticSettingsView, GatewayError> {
        let GetStaticSettings { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| static_view(state, &id))
    }
}

impl Handler for GetDynamicSettings {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<DynamicSettingsView, GatewayError> {
        let GetDynamicSettings { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| dynamic_view(state, &id))
    }
}

impl Handler for GetFairShare {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<FairShareView, GatewayError> {
        let GetFairShare {
            queue,
            window_s,
            consistency,
        } = self;
        let window_ms = match window_s {
            None => node.limits.fair_share_window.as_millis() as u64,
            Some(seconds) if (1..=86_400).contains(&seconds) => seconds * 1_000,
            Some(seconds) => {
                return Err(GatewayError::invalid(
                    "window_s",
                    format!("must be between 1 and 86400, got {seconds}"),
                ));
            }
        };
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            let found = state.queue(&queue).ok_or_else(|| {
                GatewayError::from(DomainError::not_found("queue", queue.clone()))
            })?;
            Ok(gateway_reports::fair_share(
                state,
                found,
                now_ms(),
                window_ms,
            ))
        })
    }
}

impl Handler for GetQueueStatus {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<QueueStatusView, GatewayError> {
        let mut list = queue_status(&node, Some(self.queue.clone()), self.consistency).await?;
        list.items
            .pop()
            .ok_or_else(|| DomainError::not_found("queue", self.queue).into())
    }
}

impl Handler for ListQueueStatus {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<QueueStatusListView, GatewayError> {
        queue_status(&node, None, self.consistency).await
    }
}

/// The status of one queue (which must exist), or of every queue.
async fn queue_status(
    node: &NodeContext,
    queue: Option<String>,
    consistency: Consistency,
) -> Result<QueueStatusListView, GatewayError> {
    read_barrier(node, consistency).await?;
    let window_ms = node.limits.fair_share_window.as_millis() as u64;
    node.read(|state| {
        let queues: Vec<&Queue> =
            match &queue {
                Some(id) => vec![state.queue(id).ok_or_else(|| {
                    GatewayError::from(DomainError::not_found("queue", id.clone()))
                })?],
                None => state.queues().collect(),
            };
        let now = now_ms();
        Ok(QueueStatusListView {
            items: queues
                .into_iter()
                .map(|found| gateway_reports::queue_status(state, found, now, window_ms))
                .collect(),
        })
    })
}

impl Handler for GetJobPosition {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobPositionView, GatewayError> {
        let GetJobPosition { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        node.read(|state| {
            let job = gateway_reports::visible_job(state, &context, &id)?;
            Ok(JobPositionView {
                id: job.id.clone(),
                state: job.state.as_str().to_string(),
                queue: job.spec.queue.clone(),
                position: state.queue_position(job).map(|position| position as u64),
                reasons: gateway_reports::pending_reasons(state, job),
            })
        })
    }
}

impl Handler for GetJobSla {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobSlaView, GatewayError> {
        let GetJobSla { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        let window_ms = node.limits.fair_share_window.as_millis() as u64;
        node.read(|state| {
            let job = gateway_reports::visible_job(state, &context, &id)?;
            gateway_reports::job_sla(state, job, now_ms(), window_ms).ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::NotFound,
                    format!("job `{id}` has no SLA: give `sla` when submitting it"),
                )
            })
        })
    }
}

impl Handler for GetSlaSummary {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<SlaSummaryView, GatewayError> {
        let GetSlaSummary {
            tenant,
            level,
            consistency,
        } = self;
        let tenant = tenant
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(TenantId::parse)
            .transpose()?;
        if let Some(tenant) = &tenant {
            require_access(&context, tenant)?;
        }
        let level = level
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(|raw| SlaLevel::parse("level", raw))
            .transpose()?;
        read_barrier(&node, consistency).await?;
        Ok(node.read(|state| {
            gateway_reports::sla_summary(state, &context.principal, tenant.as_ref(), level)
        }))
    }
}

impl Handler for ListWorkers {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<WorkerListView, GatewayError> {
        let ListWorkers { pool, consistency } = self;
        read_barrier(&node, consistency).await?;
        if let Some(pool) = &pool
            && node.read(|state| state.pool(pool).is_none())
        {
            return Err(DomainError::not_found("pool", pool.clone()).into());
        }
        Ok(node.read(|state| WorkerListView {
            items: state
                .workers()
                .filter(|worker| pool.as_ref().is_none_or(|pool| &worker.pool == pool))
                .map(WorkerView::from)
                .collect(),
        }))
    }
}

fn unexpected(outcome: CommandOutcome) -> GatewayError {
    GatewayError::internal(format!("unexpected state machine outcome: {outcome:?}"))
}

/// The job without the costly position; lists and submit answers.
pub fn job_summary_view(job: &Job) -> JobView {
    JobView::new(job, None, None)
}

fn static_view(state: &HodeiState, id: &str) -> Result<StaticSettingsView, GatewayError> {
    let pool = state
        .pool(id)
        .ok_or_else(|| GatewayError::from(DomainError::not_found("pool", id)))?;
    if pool.pool_type != PoolType::Static {
        return Err(DomainError::Conflict(format!(
            "pool `{id}` is dynamic: it has no static settings"
        ))
        .into());
    }
    Ok(StaticSettingsView {
        size: pool.static_settings.size,
        expected_workers: pool.static_settings.expected_workers.clone(),
        health_check_interval_s: pool.static_settings.health_check_interval_s,
        healthy_workers: state.live_workers_of(id) as u64,
    })
}

fn dynamic_view(state: &HodeiState, id: &str) -> Result<DynamicSettingsView, GatewayError> {
    let pool = state
        .pool(id)
        .ok_or_else(|| GatewayError::from(DomainError::not_found("pool", id)))?;
    if pool.pool_type != PoolType::Dynamic {
        return Err(DomainError::Conflict(format!(
            "pool `{id}` is static: it has no dynamic settings"
        ))
        .into());
    }
    let settings = &pool.dynamic_settings;
    Ok(DynamicSettingsView {
        provider: pool.provider.as_str().to_string(),
        min_size: pool.min_size,
        max_size: pool.max_size,
        desired: pool.desired_size,
        worker_shape: pool.worker_shape.into(),
        idle_timeout_s: settings.idle_timeout_s,
        provision_timeout_s: settings.provision_timeout_s,
        max_provisioning: settings.max_provisioning,
        drain_timeout_s: settings.drain_timeout_s,
        prewarm: settings.prewarm,
        current: state.live_workers_of(id) as u64,
    })
}

async fn update_pool(
    node: &NodeContext,
    context: &RequestContext,
    id: String,
    patch: PoolPatch,
) -> Result<PoolView, GatewayError> {
    match propose_for(node, context, CommandV1::UpdatePool { id, patch }).await? {
        CommandOutcome::Pool(pool) => Ok(node.read(|state| pool_view(state, &pool))),
        other => Err(unexpected(other)),
    }
}

async fn create_pool(
    node: &NodeContext,
    context: &RequestContext,
    input: CreatePoolInput,
) -> Result<PoolView, GatewayError> {
    require_admin(context, "creating a pool")?;
    let provider = match input.provider.as_deref() {
        None | Some("") => PoolProvider::Static,
        Some(raw) => PoolProvider::parse("provider", raw)?,
    };
    let pool_type = match input.pool_type.as_deref() {
        None | Some("") if provider == PoolProvider::Static => PoolType::Static,
        None | Some("") => PoolType::Dynamic,
        Some(raw) => PoolType::parse("type", raw)?,
    };
    let (default_min, default_max) = match pool_type {
        PoolType::Static => (0, 20),
        PoolType::Dynamic => (0, 100),
    };
    let min_size = input.min_size.unwrap_or(default_min);
    let mut pool = Pool::new(
        &input.id,
        pool_type,
        provider,
        input
            .worker_shape
            .map(Resources::from)
            .unwrap_or(Resources::new(4_000, 8_192, 0)),
        min_size,
        input.max_size.unwrap_or(default_max.max(min_size)),
        now_ms(),
    );
    pool.labels = input.labels;
    pool.desired_size = input.desired.unwrap_or(min_size);
    if let Some(settings) = input.static_settings {
        pool.static_settings.size = settings.size.unwrap_or(pool.static_settings.size);
        pool.static_settings.expected_workers = settings.expected_workers.unwrap_or_default();
        pool.static_settings.health_check_interval_s = settings
            .health_check_interval_s
            .unwrap_or(pool.static_settings.health_check_interval_s);
    }
    if let Some(settings) = input.dynamic {
        let dynamic = &mut pool.dynamic_settings;
        dynamic.idle_timeout_s = settings.idle_timeout_s.unwrap_or(dynamic.idle_timeout_s);
        dynamic.provision_timeout_s = settings
            .provision_timeout_s
            .unwrap_or(dynamic.provision_timeout_s);
        dynamic.max_provisioning = settings
            .max_provisioning
            .unwrap_or(dynamic.max_provisioning);
        dynamic.drain_timeout_s = settings.drain_timeout_s.unwrap_or(dynamic.drain_timeout_s);
        dynamic.prewarm = settings.prewarm.unwrap_or(dynamic.prewarm);
    }
    pool.validate()?;
    match propose_for(node, context, CommandV1::CreatePool { pool }).await? {
        CommandOutcome::Pool(pool) => {
            info!(pool = %pool.id, principal = %context.principal, "pool created");
            Ok(node.read(|state| pool_view(state, &pool)))
        }
        other => Err(unexpected(other)),
    }
}

fn pool_view(state: &HodeiState, pool: &hodei_domain::pool::Pool) -> PoolView {
    let mut workers = std::collections::BTreeMap::new();
    for worker in state.workers().filter(|worker| worker.pool == pool.id) {
        *workers
            .entry(worker.state.as_str().to_string())
            .or_default() += 1;
    }
    PoolView::new(pool, workers)
}

fn queue_view(state: &HodeiState, queue: &Queue) -> QueueView {
    QueueView::new(queue, state.pending_in(&queue.id).count() as u64)
}

/// Turns an input into a job: defaults, the tenant the principal may use, validation.
fn build_job(
    node: &NodeContext,
    context: &RequestContext,
    input: SubmitJobInput,
) -> Result<Job, GatewayError> {
    let tenant = match (input.tenant.as_deref(), &context.principal) {
        (Some(raw), _) if !raw.is_empty() => TenantId::parse(raw).map_err(GatewayError::from)?,
        (_, Principal::Tenant(own)) => own.clone(),
        (_, Principal::Admin) => TenantId::default_tenant(),
    };
    require_access(context, &tenant)?;
    let priority = match input.priority.as_deref() {
        None | Some("") => Priority::default(),
        Some(raw) => Priority::parse(raw)?,
    };
    let command = input.command.unwrap_or_default();
    let spec = JobSpec {
        tenant,
        queue: input
            .queue
            .filter(|queue| !queue.is_empty())
            .unwrap_or_else(|| DEFAULT_QUEUE_ID.to_string()),
        priority,
        resources: input
            .resources
            .map(Resources::from)
            .unwrap_or(DEFAULT_JOB_RESOURCES),
        command: CommandSpec {
            argv: command.argv,
            env: command.env,
            working_dir: command.working_dir,
            timeout_s: command.timeout_s,
        },
        simulate: input.simulate.map(|simulation| Simulation {
            duration_ms: simulation.duration_ms,
            exit_code: simulation.exit_code,
        }),
        labels: input.labels,
        max_retries: input.max_retries.unwrap_or(0),
        idempotency_key: input.idempotency_key,
        pool_selector: input.pool_selector,
        sla: input
            .sla
            .map(|sla| -> Result<SlaSpec, GatewayError> {
                Ok(SlaSpec {
                    level: SlaLevel::parse("sla.level", &sla.level)?,
                    start_by_ms: sla.start_by_ms,
                    finish_by_ms: sla.finish_by_ms,
                })
            })
            .transpose()?,
    };
    spec.validate()?;
    let submitted_at_ms = now_ms();
    if let Some(sla) = &spec.sla {
        sla.validate(submitted_at_ms)?;
    }
    let max_burst = max_burst_percent(node);
    node.read(|state| {
        state.check_placement(&spec)?;
        state.check_tenant_admits(&spec, max_burst)
    })?;
    let targets = node.limits.sla_targets;
    let mut job = Job::new(uuid::Uuid::now_v7().to_string(), spec, submitted_at_ms);
    if let Some(sla) = job.spec.sla {
        job.sla_target_start_ms = Some(sla.start_target_ms(submitted_at_ms, &targets));
        job.sla_history.push(SlaChange {
            status: SlaStatus::OnTrack,
            at_ms: submitted_at_ms,
        });
    }
    Ok(job)
}

fn max_burst_percent(node: &NodeContext) -> Option<u64> {
    node.limits
        .burst
        .enabled
        .then_some(node.limits.burst.max_overage_percentage)
}

/// The job a caller gets back: the one it submitted, or the earlier one its idempotency
/// key repeats.
fn submitted_view(sent: &Job, submitted: &SubmittedJob) -> SubmittedJobView {
    SubmittedJobView {
        job: job_summary_view(submitted.earlier.as_deref().unwrap_or(sent)),
        duplicate: submitted.is_duplicate(),
    }
}

/// The job a submission stored. It is the one sent, unless the answer came from the
/// recent request ids (this call repeats one whose reply was lost): then the first
/// attempt's job, read here once this node has applied it.
async fn stored_job(
    node: &NodeContext,
    sent: &Job,
    submitted: &SubmittedJob,
) -> Result<Job, GatewayError> {
    if submitted.earlier.is_some() || submitted.id == sent.id {
        return Ok(sent.clone());
    }
    read_barrier(node, Consistency::Linearizable).await?;
    node.read(|state| state.job(&submitted.id).cloned())
        .ok_or_else(|| GatewayError::from(DomainError::not_found("job", submitted.id.clone())))
}

async fn submit(
    node: &NodeContext,
    context: &RequestContext,
    input: SubmitJobInput,
) -> Result<SubmittedJobView, GatewayError> {
    let job = build_job(node, context, input)?;
    let command = CommandV1::SubmitJobs {
        jobs: vec![job.clone()],
        max_burst_percent: max_burst_percent(node),
    };
    match propose_for(node, context, command).await? {
        CommandOutcome::JobsSubmitted(mut results) if results.len() == 1 => {
            let submitted = results.remove(0)?;
            let stored = stored_job(node, &job, &submitted).await?;
            Ok(submitted_view(&stored, &submitted))
        }
        other => Err(unexpected(other)),
    }
}

async fn submit_batch(
    node: &NodeContext,
    context: &RequestContext,
    inputs: Vec<SubmitJobInput>,
) -> Result<BatchView, GatewayError> {
    if inputs.len() > MAX_BATCH {
        return Err(GatewayError {
            field: Some("jobs".to_string()),
            ..GatewayError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "jobs: at most {MAX_BATCH} jobs in one batch, got {}",
                    inputs.len()
                ),
            )
        });
    }
    if inputs.is_empty() {
        return Err(GatewayError::invalid("jobs", "must hold at least one job"));
    }
    let mut results: Vec<Option<Result<SubmittedJobView, GatewayError>>> = Vec::new();
    let mut jobs = Vec::new();
    for input in inputs {
        match build_job(node, context, input) {
            Ok(job) => {
                jobs.push(job);
                results.push(None);
            }
            Err(error) => results.push(Some(Err(error))),
        }
    }
    if !jobs.is_empty() {
        let command = CommandV1::SubmitJobs {
            jobs: jobs.clone(),
            max_burst_percent: max_burst_percent(node),
        };
        let CommandOutcome::JobsSubmitted(applied) = propose_for(node, context, command).await?
        else {
            return Err(GatewayError::internal("unexpected state machine outcome"));
        };
        let mut applied = applied.into_iter().zip(&jobs);
        for slot in results.iter_mut().filter(|slot| slot.is_none()) {
            let Some((result, sent)) = applied.next() else {
                break;
            };
            *slot = Some(match result {
                Ok(submitted) => stored_job(node, sent, &submitted)
                    .await
                    .map(|stored| submitted_view(&stored, &submitted)),
                Err(error) => Err(GatewayError::from(error)),
            });
        }
    }
    let mut view = BatchView {
        accepted: 0,
        refused: 0,
        results: Vec::with_capacity(results.len()),
    };
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(Ok(submitted)) => {
                view.accepted += 1;
                view.results.push(BatchItemView {
                    index,
                    job: Some(submitted.job),
                    duplicate: submitted.duplicate,
                    status: None,
                    error: None,
                    field: None,
                });
            }
            Some(Err(error)) => {
                view.refused += 1;
                view.results.push(BatchItemView {
                    index,
                    job: None,
                    duplicate: false,
                    status: Some(error.code.http_status().as_u16()),
                    error: Some(error.detail.clone()),
                    field: error.field.clone(),
                });
            }
            None => return Err(GatewayError::internal("a batch result is missing")),
        }
    }
    info!(accepted = view.accepted, refused = view.refused, principal = %context.principal, "job batch submitted");
    Ok(view)
}

async fn list_jobs(
    node: &NodeContext,
    context: &RequestContext,
    filter: JobFilter,
    page: PageInput,
    consistency: Consistency,
) -> Result<JobPageView, GatewayError> {
    let limit = match page.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => limit,
        Some(limit) => {
            return Err(GatewayError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}, got {limit}"),
            ));
        }
    } as usize;
    let tenant = filter
        .tenant
        .as_deref()
        .filter(|raw| !raw.is_empty())
        .map(TenantId::parse)
        .transpose()?;
    let tenant = match (&context.principal, tenant) {
        (Principal::Tenant(own), Some(asked)) if own != &asked => {
            return Err(DomainError::Forbidden(format!(
                "{} may not list the jobs of tenant `{asked}`",
                context.principal
            ))
            .into());
        }
        (Principal::Tenant(own), _) => Some(own.clone()),
        (Principal::Admin, asked) => asked,
    };
    let state_filter = match filter.state.as_deref().filter(|raw| !raw.is_empty()) {
        None => None,
        Some(raw) => Some(
            [
                JobState::Pending,
                JobState::Assigned,
                JobState::Running,
                JobState::Succeeded,
                JobState::Failed,
                JobState::TimedOut,
                JobState::Cancelled,
            ]
            .into_iter()
            .find(|state| state.as_str() == raw)
            .ok_or_else(|| {
                GatewayError::invalid(
                    "state",
                    format!("must be one of pending, assigned, running, succeeded, failed, timed_out, cancelled, got `{raw}`"),
                )
            })?,
        ),
    };
    let label = match filter.label.as_deref().filter(|raw| !raw.is_empty()) {
        None => None,
        Some(raw) => Some(
            raw.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| GatewayError::invalid("label", "must be `key=value`"))?,
        ),
    };
    let queue = filter.queue.filter(|queue| !queue.is_empty());
    let cursor = page.cursor.filter(|cursor| !cursor.is_empty());
    if let Some(cursor) = &cursor
        && uuid::Uuid::parse_str(cursor).is_err()
    {
        return Err(GatewayError::invalid(
            "cursor",
            "not a cursor this list returned",
        ));
    }
    read_barrier(node, consistency).await?;
    let (items, more) = node.read(|state| {
        let mut found = state.jobs_after(cursor.as_deref(), limit + 1, |job| {
            tenant
                .as_ref()
                .is_none_or(|tenant| &job.spec.tenant == tenant)
                && queue.as_ref().is_none_or(|queue| &job.spec.queue == queue)
                && state_filter.is_none_or(|wanted| job.state == wanted)
                && label.as_ref().is_none_or(|(key, value)| {
                    job.spec.labels.get(key).is_some_and(|found| found == value)
                })
        });
        let more = found.len() > limit;
        found.truncate(limit);
        let views: Vec<JobView> = found.iter().map(job_summary_view).collect();
        (views, more)
    });
    let next_cursor = more
        .then(|| items.last().map(|job| job.id.clone()))
        .flatten();
    Ok(JobPageView { items, next_cursor })
}

fn watch(
    node: &NodeContext,
    context: &RequestContext,
    id: String,
) -> Result<mpsc::Receiver<JobView>, GatewayError> {
    // Subscribe before reading, so no change between the two is missed.
    let mut events = node.read(|state| state.subscribe());
    let first = node.read(|state| {
        gateway_reports::visible_job(state, context, &id)
            .map(|job| gateway_reports::full_job_view(state, job))
    })?;
    let (sender, receiver) = mpsc::channel(64);
    let node = node.clone();
    tokio::spawn(async move {
        let mut last = first;
        if sender.send(last.clone()).await.is_err() {
            return;
        }
        while !matches!(
            last.state.as_str(),
            "succeeded" | "failed" | "timed_out" | "cancelled"
        ) {
            match events.recv().await {
                Ok(DomainEvent::JobChanged(changed)) if changed == id => {}
                Ok(DomainEvent::StateReplaced) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
            let Some(now) = node.read(|state| {
                state
                    .job(&id)
                    .map(|job| gateway_reports::full_job_view(state, job))
            }) else {
                return;
            };
            if now.transitions.len() != last.transitions.len() {
                if sender.send(now.clone()).await.is_err() {
                    return;
                }
                last = now;
            }
        }
    });
    Ok(receiver)
}

async fn create_queue(
    node: &NodeContext,
    context: &RequestContext,
    input: CreateQueueInput,
) -> Result<QueueView, GatewayError> {
    require_admin(context, "creating a queue")?;
    let policy = match input.policy.as_deref() {
        None | Some("") => QueuePolicy::default(),
        Some(raw) => QueuePolicy::parse("policy", raw)?,
    };
    let at_ms = now_ms();
    let queue = Queue {
        id: input.id,
        pools: input
            .pools
            .unwrap_or_else(|| vec!["pool-default".to_string()]),
        policy,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
    };
    queue.validate()?;
    match propose_for(node, context, CommandV1::CreateQueue { queue }).await? {
        CommandOutcome::Queue(queue) => {
            info!(queue = %queue.id, principal = %context.principal, "queue created");
            Ok(node.read(|state| queue_view(state, &queue)))
        }
        other => Err(unexpected(other)),
    }
}
