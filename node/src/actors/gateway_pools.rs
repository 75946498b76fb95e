//! The gateway's pool and worker operations: create, read, change and delete pools, their
//! static and dynamic settings, lifecycle actions, metrics, and the worker list.

use tracing::info;

use crate::actors::gateway::{Handler, propose_for, read_barrier};
use crate::actors::gateway_jobs::unexpected;
use crate::actors::gateway_reports;
use crate::actors::{NodeContext, now_ms};
use crate::gateway::job_model::{
    CreatePoolInput, DynamicSettingsView, PoolLifecycleView, PoolListView, PoolView,
    StaticSettingsView, WorkerListView, WorkerView,
};
use crate::gateway::operations::{
    ChangePoolLifecycle, CreatePool, DeletePool, GetDynamicSettings, GetPool, GetPoolLifecycle,
    GetPoolMetrics, GetStaticSettings, ListPools, ListWorkers, SetDynamicSettings,
    SetStaticSettings, UpdatePool,
};
use crate::gateway::{ErrorCode, GatewayError, RequestContext};
use crate::state::command;
use crate::state::command::PoolPatch;
use crate::state::{CommandOutcome, CommandV1, HodeiState};
use hodei_domain::DomainError;
use hodei_domain::pool::{Pool, PoolAction, PoolProvider, PoolType, StaticSettings};
use hodei_domain::resources::Resources;
use hodei_domain::worker::validate_worker_id;

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
        let action = PoolAction::parse("action", &input.action)?;
        let command = CommandV1::PoolLifecycle(command::PoolLifecycle {
            pool: id,
            action,
            by: context.principal.to_string(),
            reason: input.reason.unwrap_or_default(),
            at_ms: now_ms(),
        });
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
        match propose_for(
            &node,
            &context,
            CommandV1::DeletePool(command::DeletePool { id }),
        )
        .await?
        {
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

impl Handler for ListWorkers {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<WorkerListView, GatewayError> {
        // Workers carry every tenant's running jobs: an admin's view.
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

pub(super) fn static_view(
    state: &HodeiState,
    id: &str,
) -> Result<StaticSettingsView, GatewayError> {
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

pub(super) fn dynamic_view(
    state: &HodeiState,
    id: &str,
) -> Result<DynamicSettingsView, GatewayError> {
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

pub(super) async fn update_pool(
    node: &NodeContext,
    context: &RequestContext,
    id: String,
    patch: PoolPatch,
) -> Result<PoolView, GatewayError> {
    match propose_for(
        node,
        context,
        CommandV1::UpdatePool(command::UpdatePool { id, patch }),
    )
    .await?
    {
        CommandOutcome::Pool(pool) => Ok(node.read(|state| pool_view(state, &pool))),
        other => Err(unexpected(other)),
    }
}

pub(super) async fn create_pool(
    node: &NodeContext,
    context: &RequestContext,
    input: CreatePoolInput,
) -> Result<PoolView, GatewayError> {
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
    pool.pricing = node.limits.default_pricing;
    if let Some(pricing) = &input.pricing {
        if pricing.tier_percent.is_some() {
            return Err(GatewayError::invalid(
                "pricing.tier_percent",
                "set tier percentages with PUT /api/v1/pools/{id}/pricing once the pool exists",
            ));
        }
        pool.pricing = pricing
            .over(pool.pricing)
            .map_err(|error| error.within("pricing"))?;
    }
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
    match propose_for(
        node,
        context,
        CommandV1::CreatePool(command::CreatePool { pool }),
    )
    .await?
    {
        CommandOutcome::Pool(pool) => {
            info!(pool = %pool.id, principal = %context.principal, "pool created");
            Ok(node.read(|state| pool_view(state, &pool)))
        }
        other => Err(unexpected(other)),
    }
}

pub(super) fn pool_view(state: &HodeiState, pool: &hodei_domain::pool::Pool) -> PoolView {
    let mut workers = std::collections::BTreeMap::new();
    for worker in state.workers().filter(|worker| worker.pool == pool.id) {
        *workers
            .entry(worker.state.as_str().to_string())
            .or_default() += 1;
    }
    PoolView::new(pool, workers)
}
