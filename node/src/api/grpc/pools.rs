//! `hodei.v1.ResourcePoolService`: the same gateway messages as REST.

use hodei_proto::v1 as pb;
use hodei_proto::v1::resource_pool_service_server::ResourcePoolService;

use crate::actors::gateway::GatewayHandle;
use crate::api::grpc::scaling;
use crate::api::grpc::{GrpcGateway, GrpcResult, consistency, non_empty};
use crate::gateway::job_model::{
    CreatePoolInput, PoolActionInput, PoolLifecycleView, PoolView, UpdatePoolInput,
};
use crate::gateway::model::ResourcesView;
use crate::gateway::operations::{
    ChangePoolLifecycle, CreatePool, DeletePool, GetPool, GetPoolLifecycle, GetPoolMetrics,
    ListPools, UpdatePool,
};
use crate::gateway::pricing_model::{PricingInput, TierPercentView};
use crate::gateway::scaling_model::PolicyListView;
use crate::gateway::scaling_operations::{
    DeleteScalingPolicy, EvaluateScaling, GetPoolPricing, GetScalingHistory, ListScalingPolicies,
    PutScalingPolicy, SetPoolPricing,
};

pub struct PoolGrpc {
    grpc: GrpcGateway,
}

impl PoolGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, authenticator),
        }
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
        let operation = |message: pb::CreatePoolRequest| {
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
                pricing: Some(PricingInput {
                    cpu_core_hour_usd: message.cpu_core_hour_usd,
                    memory_gb_hour_usd: message.memory_gb_hour_usd,
                    gpu_hour_usd: message.gpu_hour_usd,
                    burst_premium_percent: message.burst_premium_percent,
                    tier_percent: None,
                }),
            };
            Ok(CreatePool {
                input: Box::new(input),
            })
        };
        self.grpc.call(request, operation, pool_message).await
    }

    async fn get_pool(&self, request: tonic::Request<pb::GetPoolRequest>) -> GrpcResult<pb::Pool> {
        let operation = |message: pb::GetPoolRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetPool {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, pool_message).await
    }

    async fn list_pools(
        &self,
        request: tonic::Request<pb::ListPoolsRequest>,
    ) -> GrpcResult<pb::ListPoolsResponse> {
        let operation = |message: pb::ListPoolsRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(ListPools { consistency })
        };
        self.grpc
            .call(request, operation, |pools| pb::ListPoolsResponse {
                items: pools.items.into_iter().map(pool_message).collect(),
            })
            .await
    }

    async fn update_pool(
        &self,
        request: tonic::Request<pb::UpdatePoolRequest>,
    ) -> GrpcResult<pb::Pool> {
        let operation = |message: pb::UpdatePoolRequest| {
            let input = UpdatePoolInput {
                min_size: message.min_size,
                max_size: message.max_size,
                worker_shape: message.worker_shape.map(into_resources),
                labels: None,
            };
            Ok(UpdatePool {
                id: message.id,
                input,
            })
        };
        self.grpc.call(request, operation, pool_message).await
    }

    async fn delete_pool(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::DeletePoolResponse> {
        let operation = |message: pb::GetPoolRequest| Ok(DeletePool { id: message.id });
        self.grpc
            .call(request, operation, |id| pb::DeletePoolResponse { id })
            .await
    }

    async fn apply_pool_action(
        &self,
        request: tonic::Request<pb::PoolActionRequest>,
    ) -> GrpcResult<pb::PoolLifecycle> {
        let operation = |message: pb::PoolActionRequest| {
            let input = PoolActionInput {
                action: message.action,
                reason: non_empty(message.reason),
            };
            Ok(ChangePoolLifecycle {
                id: message.id,
                input,
            })
        };
        self.grpc.call(request, operation, lifecycle_message).await
    }

    async fn get_pool_metrics(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::PoolMetrics> {
        let operation = |message: pb::GetPoolRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetPoolMetrics {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, metrics_message).await
    }

    async fn configure_scaling_policy(
        &self,
        request: tonic::Request<pb::ConfigureScalingPolicyRequest>,
    ) -> GrpcResult<pb::ScalingPolicy> {
        let operation = |message: pb::ConfigureScalingPolicyRequest| {
            let policy = message.policy.unwrap_or_default();
            let id = non_empty(policy.id.clone());
            Ok(PutScalingPolicy {
                pool: message.pool_id,
                create: id.is_none(),
                id,
                input: scaling::policy_input(policy, message.enabled),
            })
        };
        self.grpc
            .call(request, operation, scaling::policy_message)
            .await
    }

    async fn list_scaling_policies(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::ListScalingPoliciesResponse> {
        let operation = |message: pb::GetPoolRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(ListScalingPolicies {
                pool: message.id,
                consistency,
            })
        };
        self.grpc
            .call(request, operation, |list: PolicyListView| {
                pb::ListScalingPoliciesResponse {
                    policies: list
                        .items
                        .into_iter()
                        .map(scaling::policy_message)
                        .collect(),
                }
            })
            .await
    }

    async fn delete_scaling_policy(
        &self,
        request: tonic::Request<pb::ScalingPolicyRef>,
    ) -> GrpcResult<pb::DeleteScalingPolicyResponse> {
        let reference = request.get_ref().clone();
        let operation = |message: pb::ScalingPolicyRef| {
            Ok(DeleteScalingPolicy {
                pool: message.pool_id,
                id: message.policy_id,
            })
        };
        self.grpc
            .call(request, operation, move |()| {
                pb::DeleteScalingPolicyResponse {
                    pool_id: reference.pool_id,
                    policy_id: reference.policy_id,
                }
            })
            .await
    }

    async fn get_scaling_history(
        &self,
        request: tonic::Request<pb::ScalingHistoryRequest>,
    ) -> GrpcResult<pb::ScalingHistory> {
        let operation = |message: pb::ScalingHistoryRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetScalingHistory {
                pool: message.pool_id,
                from_ms: message.from_ms,
                to_ms: message.to_ms,
                limit: message.limit.map(|limit| limit as usize),
                cursor: non_empty(message.cursor),
                consistency,
            })
        };
        self.grpc
            .call(request, operation, scaling::history_message)
            .await
    }

    async fn evaluate_scaling(
        &self,
        request: tonic::Request<pb::EvaluateScalingRequest>,
    ) -> GrpcResult<pb::ScalingEvaluation> {
        let operation = |message: pb::EvaluateScalingRequest| {
            Ok(EvaluateScaling {
                pool: message.pool_id,
                dry_run: message.dry_run,
            })
        };
        self.grpc
            .call(request, operation, scaling::evaluation_message)
            .await
    }

    async fn get_pool_pricing(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::PoolPricing> {
        let operation = |message: pb::GetPoolRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetPoolPricing {
                pool: message.id,
                consistency,
            })
        };
        self.grpc
            .call(request, operation, scaling::pricing_message)
            .await
    }

    async fn set_pool_pricing(
        &self,
        request: tonic::Request<pb::SetPoolPricingRequest>,
    ) -> GrpcResult<pb::PoolPricing> {
        let operation = |message: pb::SetPoolPricingRequest| {
            Ok(SetPoolPricing {
                pool: message.pool_id,
                input: PricingInput {
                    cpu_core_hour_usd: message.cpu_core_hour_usd,
                    memory_gb_hour_usd: message.memory_gb_hour_usd,
                    gpu_hour_usd: message.gpu_hour_usd,
                    burst_premium_percent: message.burst_premium_percent,
                    tier_percent: message.tier_percent.map(|tiers| TierPercentView {
                        free: tiers.free,
                        standard: tiers.standard,
                        premium: tiers.premium,
                        enterprise: tiers.enterprise,
                    }),
                },
            })
        };
        self.grpc
            .call(request, operation, scaling::pricing_message)
            .await
    }

    async fn get_pool_lifecycle(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::PoolLifecycle> {
        let operation = |message: pb::GetPoolRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetPoolLifecycle {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, lifecycle_message).await
    }

    async fn issue_join_token(
        &self,
        request: tonic::Request<pb::IssueJoinTokenRequest>,
    ) -> GrpcResult<pb::IssuedToken> {
        let operation = |message: pb::IssueJoinTokenRequest| {
            Ok(crate::gateway::operations::IssueJoinToken {
                pool: message.pool,
                input: crate::gateway::access_model::JoinTokenInput {
                    name: message.name,
                    expires_in_s: message.expires_in_s,
                },
            })
        };
        self.grpc
            .call(request, operation, crate::api::grpc::tenants::issued_token)
            .await
    }

    async fn list_join_tokens(
        &self,
        request: tonic::Request<pb::GetPoolRequest>,
    ) -> GrpcResult<pb::ListTokensResponse> {
        let operation = |message: pb::GetPoolRequest| {
            Ok(crate::gateway::operations::ListJoinTokens {
                pool: message.id,
                consistency: consistency(&message.consistency)?,
            })
        };
        self.grpc
            .call(request, operation, crate::api::grpc::tenants::token_list)
            .await
    }

    async fn revoke_join_token(
        &self,
        request: tonic::Request<pb::RevokeJoinTokenRequest>,
    ) -> GrpcResult<pb::RevokeTokenResponse> {
        let operation = |message: pb::RevokeJoinTokenRequest| {
            Ok(crate::gateway::operations::RevokeJoinToken {
                pool: message.pool,
                id: message.id,
            })
        };
        self.grpc
            .call(request, operation, |id| pb::RevokeTokenResponse { id })
            .await
    }
}

fn metrics_message(metrics: Box<crate::gateway::report_model::PoolMetricsView>) -> pb::PoolMetrics {
    pb::PoolMetrics {
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
    }
}
