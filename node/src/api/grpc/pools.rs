//! `hodei.v1.ResourcePoolService`: the same gateway messages as REST.

use hodei_proto::v1 as pb;
use hodei_proto::v1::resource_pool_service_server::ResourcePoolService;
use tracing::Instrument;

use crate::actors::gateway::{GatewayHandle, Handler};
use crate::api::grpc::{grpc_span, reply, request_context, with_trace_status};
use crate::gateway::job_model::{
    CreatePoolInput, PoolActionInput, PoolLifecycleView, PoolView, UpdatePoolInput,
};
use crate::gateway::model::ResourcesView;
use crate::gateway::operations::{
    ChangePoolLifecycle, CreatePool, DeletePool, GetPool, GetPoolLifecycle, GetPoolMetrics,
    ListPools, UpdatePool,
};
use crate::gateway::{Consistency, GatewayError, Principal, RequestContext};

type GrpcResult<T> = Result<tonic::Response<T>, tonic::Status>;

pub struct PoolGrpc {
    gateway: GatewayHandle,
    default_principal: Principal,
}

impl PoolGrpc {
    pub fn new(gateway: GatewayHandle, default_principal: Principal) -> Self {
        Self {
            gateway,
            default_principal,
        }
    }

    async fn ask<O: Handler>(
        &self,
        context: RequestContext,
        operation: O,
    ) -> Result<O::Reply, GatewayError> {
        let span = grpc_span(&context.trace_id);
        self.gateway.call(context, operation).instrument(span).await
    }
}

fn shape(view: ResourcesView) -> pb::PoolShape {
    pb::PoolShape {
        cpu_m: view.cpu_m,
        memory_mb: view.memory_mb,
        gpu: view.gpu,
    }
}

fn pool_message(view: PoolView) -> pb::Pool {
    pb::Pool {
        id: view.id,
        r#type: view.pool_type,
        provider: view.provider,
        state: view.state,
        worker_shape: Some(shape(view.worker_shape)),
        min_size: view.min_size,
        max_size: view.max_size,
        desired_size: view.desired_size,
        labels: view.labels.into_iter().collect(),
        workers: view.workers.into_iter().collect(),
        created_at_ms: view.created_at_ms,
    }
}

fn lifecycle_message(view: PoolLifecycleView) -> pb::PoolLifecycle {
    pb::PoolLifecycle {
        pool: view.pool,
        state: view.state,
        allowed_actions: view.allowed_actions,
        history: view
            .history
            .into_iter()
            .map(|step| pb::PoolTransition {
                from: step.from,
                to: step.to,
                action: step.action,
                by: step.by,
                reason: step.reason,
                at_ms: step.at_ms,
            })
            .collect(),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn into_resources(shape: pb::PoolShape) -> ResourcesView {
    ResourcesView {
        cpu_m: shape.cpu_m,
        memory_mb: shape.memory_mb,
        gpu: shape.gpu,
    }
}

#[tonic::async_trait]
impl ResourcePoolService for PoolGrpc {
    async fn create_pool(
        &self,
        request: tonic::Request<pb::CreatePoolRequest>,
    ) -> GrpcResult<pb::Pool> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let input = CreatePoolInput {
            id: message.id,
            pool_type: non_empty(message.r#type),
            provider: non_empty(message.provider),
            min_size: message.min_size,
            max_size: message.max_size,
            desired: message.desired,
            worker_shape: message.worker_shape.map(into_resources),
            labels: message.labels.into_iter().collect(),
            static_settings: None,
            dynamic: None,
        };
        let request = CreatePool {
            input: Box::new(input),
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, pool_message)
    }

    async fn get_pool(&self, request: tonic::Request<pb::GetPoolRequest>) -> GrpcResult<pb::Pool> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let request = GetPool {
            id: message.id,
            consistency,
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, pool_message)
    }

    async fn list_pools(
        &self,
        request: tonic::Request<pb::ListPoolsRequest>,
    ) -> GrpcResult<pb::ListPoolsResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let request = ListPools { consistency };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, |pools| pb::ListPoolsResponse {
            items: pools.items.into_iter().map(pool_message).collect(),
        })
    }

    async fn update_pool(
        &self,
        request: tonic::Request<pb::UpdatePoolRequest>,
    ) -> GrpcResult<pb::Pool> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let request = UpdatePool {
            id: message.id,
            input: UpdatePoolInput {
                min_size: message.min_size,
                max_size: message.max_size,
                worker_shape: message.worker_shape.map(into_resources),
                labels: None,
            },
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, pool_message)
    }

    async fn delete_pool(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::DeletePoolResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let request = DeletePool {
            id: request.into_inner().id,
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, |id| pb::DeletePoolResponse { id })
    }

    async fn apply_pool_action(
        &self,
        request: tonic::Request<pb::PoolActionRequest>,
    ) -> GrpcResult<pb::PoolLifecycle> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let request = ChangePoolLifecycle {
            id: message.id,
            input: PoolActionInput {
                action: message.action,
                reason: non_empty(message.reason),
            },
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, lifecycle_message)
    }

    async fn get_pool_metrics(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::PoolMetrics> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let request = GetPoolMetrics {
            id: message.id,
            consistency,
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, |metrics| pb::PoolMetrics {
            pool: metrics.pool,
            state: metrics.state,
            current_size: metrics.size.current,
            desired_size: metrics.size.desired,
            min_size: metrics.size.min,
            max_size: metrics.size.max,
            workers: metrics.workers.into_iter().collect(),
            cpu_utilization: metrics.utilization.cpu,
            memory_utilization: metrics.utilization.memory,
            gpu_utilization: metrics.utilization.gpu,
            jobs_queued: metrics.jobs.queued,
            jobs_running: metrics.jobs.running,
            jobs_finished: metrics.jobs.finished,
            allocation_latency_samples: metrics.allocation_latency.samples,
            allocation_latency_p50_ms: metrics.allocation_latency.p50_ms,
            allocation_latency_p95_ms: metrics.allocation_latency.p95_ms,
            allocation_latency_p99_ms: metrics.allocation_latency.p99_ms,
            provisioning_succeeded: metrics.provisioning.succeeded,
            provisioning_failed: metrics.provisioning.failed,
            provisioning_success_rate: metrics.provisioning.success_rate,
        })
    }

    async fn get_pool_lifecycle(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::PoolLifecycle> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let request = GetPoolLifecycle {
            id: message.id,
            consistency,
        };
        let result = self.ask(context, request).await;
        reply(result, &trace_id, lifecycle_message)
    }
}
