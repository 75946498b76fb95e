//! `hodei.v1.QueueService`: the same gateway operations as REST's `/api/v1/queues`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::queue_service_server::QueueService;

use crate::actors::gateway::{GatewayHandle, Handler};
use crate::api::grpc::{reply, request_context, with_trace_status};
use crate::gateway::job_model::{CreateQueueInput, QueueView, UpdateQueueInput};
use crate::gateway::operations::{
    CreateQueue, DeleteQueue, GetFairShare, GetQueue, GetQueueStatus, ListQueueStatus, ListQueues,
    UpdateQueue,
};
use crate::gateway::{Consistency, Principal, RequestContext};

use crate::api::grpc::jobs::{ask, non_empty};

type GrpcResult<T> = Result<tonic::Response<T>, tonic::Status>;

fn queue_message(view: QueueView) -> pb::QueueInfo {
    pb::QueueInfo {
        id: view.id,
        pools: view.pools,
        policy: view.policy,
        pending: view.pending,
        created_at_ms: view.created_at_ms,
        updated_at_ms: view.updated_at_ms,
    }
}

pub struct QueueGrpc {
    gateway: GatewayHandle,
    default_principal: Principal,
}

impl QueueGrpc {
    pub fn new(gateway: GatewayHandle, default_principal: Principal) -> Self {
        Self {
            gateway,
            default_principal,
        }
    }

    async fn queue_call<O: Handler<Reply = QueueView>>(
        &self,
        context: RequestContext,
        request: O,
    ) -> GrpcResult<pb::QueueInfo> {
        let trace_id = context.trace_id.clone();
        let result = ask(&self.gateway, context, request).await;
        reply(result, &trace_id, queue_message)
    }
}

#[tonic::async_trait]
impl QueueService for QueueGrpc {
    async fn create_queue(
        &self,
        request: tonic::Request<pb::CreateQueueRequest>,
    ) -> GrpcResult<pb::QueueInfo> {
        let context = request_context(&request, &self.default_principal)?;
        let message = request.into_inner();
        let input = CreateQueueInput {
            id: message.id,
            pools: (!message.pools.is_empty()).then_some(message.pools),
            policy: non_empty(message.policy),
        };
        self.queue_call(context, CreateQueue { input }).await
    }

    async fn get_queue(
        &self,
        request: tonic::Request<pb::GetQueueRequest>,
    ) -> GrpcResult<pb::QueueInfo> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        self.queue_call(
            context,
            GetQueue {
                id: message.id,
                consistency,
            },
        )
        .await
    }

    async fn list_queues(
        &self,
        request: tonic::Request<pb::ListQueuesRequest>,
    ) -> GrpcResult<pb::ListQueuesResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let consistency = Consistency::parse(Some(&request.get_ref().consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let result = ask(&self.gateway, context, ListQueues { consistency }).await;
        reply(result, &trace_id, |queues| pb::ListQueuesResponse {
            items: queues.items.into_iter().map(queue_message).collect(),
        })
    }

    async fn update_queue(
        &self,
        request: tonic::Request<pb::UpdateQueueRequest>,
    ) -> GrpcResult<pb::QueueInfo> {
        let context = request_context(&request, &self.default_principal)?;
        let message = request.into_inner();
        let input = UpdateQueueInput {
            pools: (!message.pools.is_empty()).then_some(message.pools),
            policy: non_empty(message.policy),
        };
        self.queue_call(
            context,
            UpdateQueue {
                id: message.id,
                input,
            },
        )
        .await
    }

    async fn get_fair_share(
        &self,
        request: tonic::Request<pb::FairShareRequest>,
    ) -> GrpcResult<pb::FairShare> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let fair_share = GetFairShare {
            queue: message.queue,
            window_s: message.window_s,
            consistency,
        };
        let result = ask(&self.gateway, context, fair_share).await;
        reply(result, &trace_id, fair_share_message)
    }

    async fn get_queue_status(
        &self,
        request: tonic::Request<pb::GetQueueRequest>,
    ) -> GrpcResult<pb::QueueStatus> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let status = GetQueueStatus {
            queue: message.id,
            consistency,
        };
        let result = ask(&self.gateway, context, status).await;
        reply(result, &trace_id, status_message)
    }

    async fn list_queue_status(
        &self,
        request: tonic::Request<pb::ListQueuesRequest>,
    ) -> GrpcResult<pb::ListQueueStatusResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let consistency = Consistency::parse(Some(&request.get_ref().consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let status = ListQueueStatus { consistency };
        let result = ask(&self.gateway, context, status).await;
        reply(result, &trace_id, |list| pb::ListQueueStatusResponse {
            items: list.items.into_iter().map(status_message).collect(),
        })
    }

    async fn delete_queue(
        &self,
        request: tonic::Request<pb::GetQueueRequest>,
    ) -> GrpcResult<pb::DeleteQueueResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let id = request.into_inner().id;
        let result = ask(&self.gateway, context, DeleteQueue { id }).await;
        reply(result, &trace_id, |id| pb::DeleteQueueResponse { id })
    }
}

fn fair_share_message(view: crate::gateway::report_model::FairShareView) -> pb::FairShare {
    pb::FairShare {
        queue: view.queue,
        policy: view.policy,
        window_s: view.window_s,
        capacity: Some(pb::JobResources {
            cpu_m: view.capacity.cpu_m,
            memory_mb: view.capacity.memory_mb,
            gpu: view.capacity.gpu,
        }),
        tenants: view
            .tenants
            .into_iter()
            .map(|share| pb::TenantShare {
                tenant: share.tenant,
                weight: share.weight,
                backlogged: share.backlogged,
                fair_share: share.fair_share,
                actual_share: share.actual_share,
                normalized_share: share.normalized_share,
                pending: share.pending,
                running: share.running,
            })
            .collect(),
        jain_index: view.jain_index,
    }
}

fn counts(views: Vec<crate::gateway::report_model::CountView>) -> Vec<pb::StatusCount> {
    views
        .into_iter()
        .map(|count| pb::StatusCount {
            key: count.key,
            pending: count.pending,
            running: count.running,
        })
        .collect()
}

fn status_message(view: crate::gateway::report_model::QueueStatusView) -> pb::QueueStatus {
    pb::QueueStatus {
        queue: view.queue,
        policy: view.policy,
        pools: view.pools,
        pending: view.pending,
        running: view.running,
        by_tenant: counts(view.by_tenant),
        by_priority: counts(view.by_priority),
        oldest_pending_age_s: view.oldest_pending_age_s,
        dispatch_rate_per_s: view.dispatch_rate_per_s,
        estimated_wait_s: view.estimated_wait_s,
    }
}
