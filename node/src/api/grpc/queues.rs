//! `hodei.v1.QueueService`: the same gateway operations as REST's `/api/v1/queues`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::queue_service_server::QueueService;

use crate::actors::gateway::GatewayHandle;
use crate::api::grpc::{GrpcGateway, GrpcResult, consistency, non_empty};
use crate::gateway::job_model::{CreateQueueInput, QueueView, UpdateQueueInput};
use crate::gateway::operations::{
    CreateQueue, DeleteQueue, GetFairShare, GetQueue, GetQueueStatus, ListQueueStatus, ListQueues,
    UpdateQueue,
};

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
    grpc: GrpcGateway,
}

impl QueueGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, authenticator),
        }
    }
}

#[tonic::async_trait]
impl QueueService for QueueGrpc {
    async fn create_queue(
        &self,
        request: tonic::Request<pb::CreateQueueRequest>,
    ) -> GrpcResult<pb::QueueInfo> {
        let operation = |message: pb::CreateQueueRequest| {
            let input = CreateQueueInput {
                id: message.id,
                pools: (!message.pools.is_empty()).then_some(message.pools),
                policy: non_empty(message.policy),
            };
            Ok(CreateQueue { input })
        };
        self.grpc.call(request, operation, queue_message).await
    }

    async fn get_queue(
        &self,
        request: tonic::Request<pb::GetQueueRequest>,
    ) -> GrpcResult<pb::QueueInfo> {
        let operation = |message: pb::GetQueueRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetQueue {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, queue_message).await
    }

    async fn list_queues(
        &self,
        request: tonic::Request<pb::ListQueuesRequest>,
    ) -> GrpcResult<pb::ListQueuesResponse> {
        let operation = |message: pb::ListQueuesRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(ListQueues { consistency })
        };
        self.grpc
            .call(request, operation, |queues| pb::ListQueuesResponse {
                items: queues.items.into_iter().map(queue_message).collect(),
            })
            .await
    }

    async fn update_queue(
        &self,
        request: tonic::Request<pb::UpdateQueueRequest>,
    ) -> GrpcResult<pb::QueueInfo> {
        let operation = |message: pb::UpdateQueueRequest| {
            let input = UpdateQueueInput {
                pools: (!message.pools.is_empty()).then_some(message.pools),
                policy: non_empty(message.policy),
            };
            Ok(UpdateQueue {
                id: message.id,
                input,
            })
        };
        self.grpc.call(request, operation, queue_message).await
    }

    async fn get_fair_share(
        &self,
        request: tonic::Request<pb::FairShareRequest>,
    ) -> GrpcResult<pb::FairShare> {
        let operation = |message: pb::FairShareRequest| {
            Ok(GetFairShare {
                consistency: consistency(&message.consistency)?,
                queue: message.queue,
                window_s: message.window_s,
            })
        };
        self.grpc.call(request, operation, fair_share_message).await
    }

    async fn get_queue_status(
        &self,
        request: tonic::Request<pb::GetQueueRequest>,
    ) -> GrpcResult<pb::QueueStatus> {
        let operation = |message: pb::GetQueueRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetQueueStatus {
                queue: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, status_message).await
    }

    async fn list_queue_status(
        &self,
        request: tonic::Request<pb::ListQueuesRequest>,
    ) -> GrpcResult<pb::ListQueueStatusResponse> {
        let operation = |message: pb::ListQueuesRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(ListQueueStatus { consistency })
        };
        self.grpc
            .call(request, operation, |list| pb::ListQueueStatusResponse {
                items: list.items.into_iter().map(status_message).collect(),
            })
            .await
    }

    async fn delete_queue(
        &self,
        request: tonic::Request<pb::GetQueueRequest>,
    ) -> GrpcResult<pb::DeleteQueueResponse> {
        let operation = |message: pb::GetQueueRequest| Ok(DeleteQueue { id: message.id });
        self.grpc
            .call(request, operation, |id| pb::DeleteQueueResponse { id })
            .await
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
                backlogged_in_window: share.backlogged_in_window,
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
