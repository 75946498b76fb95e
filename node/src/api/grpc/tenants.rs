//! `hodei.v1.TenantService`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::tenant_service_server::TenantService;

use crate::actors::gateway::{GatewayHandle, Handler};
use crate::gateway::operations::{
    CreateTenant, DeleteTenant, EnforceQuota, GetTenant, GetUsage, ListTenants, RequestBurst,
    SetQuota, UpdateTenant,
};
use tracing::Instrument;

use crate::api::grpc::{grpc_span, reply, request_context, with_trace_status};
use crate::gateway::model::{
    BurstInput, BurstView, CreateTenantInput, EnforceInput, PageInput, QuotaInput, QuotaView,
    ResourcesView, UpdateTenantInput,
};
use crate::gateway::{Consistency, Principal};
use hodei_domain::tenant::Tenant;

pub struct TenantGrpc {
    gateway: GatewayHandle,
    default_principal: Principal,
}

impl TenantGrpc {
    pub fn new(gateway: GatewayHandle, default_principal: Principal) -> Self {
        Self {
            gateway,
            default_principal,
        }
    }
}

pub fn tenant_message(tenant: &Tenant) -> pb::Tenant {
    pb::Tenant {
        id: tenant.id.to_string(),
        display_name: tenant.display_name.clone(),
        tier: tenant.tier.as_str().to_string(),
        weight: tenant.weight,
        labels: tenant.labels.clone().into_iter().collect(),
        status: tenant.status.as_str().to_string(),
        created_at_ms: tenant.created_at_ms as i64,
        updated_at_ms: tenant.updated_at_ms as i64,
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

type GrpcResult<T> = Result<tonic::Response<T>, tonic::Status>;

fn quota_message(view: QuotaView) -> pb::Quota {
    pb::Quota {
        tenant: view.tenant,
        cpu_m: view.cpu_m,
        memory_mb: view.memory_mb,
        gpu: view.gpu,
        max_concurrent_jobs: view.max_concurrent_jobs,
        max_pending_jobs: view.max_pending_jobs,
        pool_limits: view
            .pool_limits
            .into_iter()
            .map(|(pool, limit)| {
                let limit = pb::Resources {
                    cpu_m: limit.cpu_m,
                    memory_mb: limit.memory_mb,
                    gpu: limit.gpu,
                };
                (pool, limit)
            })
            .collect(),
        daily_cost_budget_usd: view.daily_cost_budget_usd,
        warnings: view.warnings,
    }
}

fn burst_message(view: BurstView) -> pb::BurstSession {
    pb::BurstSession {
        id: view.id,
        tenant: view.tenant,
        ceiling_percentage: view.ceiling_percentage,
        duration_ms: view.duration_ms,
        reason: view.reason,
        status: view.status,
        requested_by: view.requested_by,
        requested_at_ms: view.requested_at_ms,
        approved_by: view.approved_by,
        starts_at_ms: view.starts_at_ms,
        ends_at_ms: view.ends_at_ms,
        ended_at_ms: view.ended_at_ms,
        end_reason: view.end_reason,
    }
}

impl TenantGrpc {
    async fn limits<O: Handler>(
        &self,
        context: crate::gateway::RequestContext,
        operation: O,
    ) -> Result<O::Reply, crate::gateway::GatewayError> {
        let span = grpc_span(&context.trace_id);
        self.gateway.call(context, operation).instrument(span).await
    }
}

#[tonic::async_trait]
impl TenantService for TenantGrpc {
    async fn create_tenant(
        &self,
        request: tonic::Request<pb::CreateTenantRequest>,
    ) -> GrpcResult<pb::Tenant> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let input = CreateTenantInput {
            id: message.id,
            display_name: non_empty(message.display_name),
            tier: non_empty(message.tier),
            weight: message.weight,
            labels: message.labels.into_iter().collect(),
        };
        let result = self
            .gateway
            .call(context, CreateTenant { input })
            .instrument(grpc_span(&trace_id))
            .await;
        reply(result, &trace_id, |tenant| tenant_message(&tenant))
    }

    async fn get_tenant(
        &self,
        request: tonic::Request<pb::GetTenantRequest>,
    ) -> GrpcResult<pb::Tenant> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let id = message.id;
        let result = self
            .gateway
            .call(context, GetTenant { id, consistency })
            .instrument(grpc_span(&trace_id))
            .await;
        reply(result, &trace_id, |tenant| tenant_message(&tenant))
    }

    async fn list_tenants(
        &self,
        request: tonic::Request<pb::ListTenantsRequest>,
    ) -> GrpcResult<pb::ListTenantsResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let page = PageInput {
            limit: (message.page_size != 0).then_some(message.page_size),
            cursor: non_empty(message.cursor),
        };
        let result = self
            .gateway
            .call(context, ListTenants { page, consistency })
            .instrument(grpc_span(&trace_id))
            .await;
        reply(result, &trace_id, |page| pb::ListTenantsResponse {
            tenants: page.items.iter().map(tenant_message).collect(),
            next_cursor: page.next_cursor.unwrap_or_default(),
        })
    }

    async fn update_tenant(
        &self,
        request: tonic::Request<pb::UpdateTenantRequest>,
    ) -> GrpcResult<pb::Tenant> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let input = UpdateTenantInput {
            display_name: message.display_name,
            tier: message.tier,
            weight: message.weight,
            labels: message
                .labels
                .map(|labels| labels.entries.into_iter().collect()),
            status: message.status,
        };
        let id = message.id;
        let result = self
            .gateway
            .call(context, UpdateTenant { id, input })
            .instrument(grpc_span(&trace_id))
            .await;
        reply(result, &trace_id, |tenant| tenant_message(&tenant))
    }

    async fn set_quota(
        &self,
        request: tonic::Request<pb::SetQuotaRequest>,
    ) -> GrpcResult<pb::Quota> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let input = QuotaInput {
            cpu_m: message.cpu_m,
            memory_mb: message.memory_mb,
            gpu: message.gpu,
            max_concurrent_jobs: message.max_concurrent_jobs,
            max_pending_jobs: message.max_pending_jobs,
            pool_limits: (!message.pool_limits.is_empty()).then(|| {
                message
                    .pool_limits
                    .into_iter()
                    .map(|(pool, limit)| {
                        let limit = ResourcesView {
                            cpu_m: limit.cpu_m,
                            memory_mb: limit.memory_mb,
                            gpu: limit.gpu,
                        };
                        (pool, limit)
                    })
                    .collect()
            }),
            daily_cost_budget_usd: message.daily_cost_budget_usd,
        };
        let result = self
            .limits(
                context,
                SetQuota {
                    tenant: message.tenant,
                    input,
                },
            )
            .await;
        reply(result, &trace_id, quota_message)
    }

    async fn get_tenant_metrics(
        &self,
        request: tonic::Request<pb::GetTenantMetricsRequest>,
    ) -> GrpcResult<pb::TenantMetrics> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let result = self
            .limits(
                context,
                GetUsage {
                    tenant: message.tenant,
                    consistency,
                },
            )
            .await;
        reply(result, &trace_id, |view| pb::TenantMetrics {
            tenant: view.tenant,
            dimensions: view
                .dimensions
                .into_iter()
                .map(|dimension| pb::DimensionUsage {
                    dimension: dimension.dimension,
                    used: dimension.used,
                    quota: dimension.quota,
                    burst_ceiling: dimension.burst_ceiling,
                    available: dimension.available,
                })
                .collect(),
            pending_jobs: view.pending_jobs,
            max_pending_jobs: view.max_pending_jobs,
            burst: view.burst.map(burst_message),
        })
    }

    async fn enforce_quota(
        &self,
        request: tonic::Request<pb::EnforceQuotaRequest>,
    ) -> GrpcResult<pb::QuotaDecision> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let input = EnforceInput {
            tenant: non_empty(message.tenant),
            cpu_m: message.cpu_m,
            memory_mb: message.memory_mb,
            gpu: message.gpu,
            pool: message.pool,
        };
        let result = self.limits(context, EnforceQuota { input }).await;
        reply(result, &trace_id, |view| pb::QuotaDecision {
            tenant: view.tenant,
            verdict: view.verdict,
            reasons: view
                .reasons
                .into_iter()
                .map(|reason| pb::QuotaReason {
                    code: reason.code,
                    dimension: reason.dimension,
                    used: reason.used,
                    requested: reason.requested,
                    limit: reason.limit,
                    message: reason.message,
                })
                .collect(),
        })
    }

    async fn request_burst_capacity(
        &self,
        request: tonic::Request<pb::RequestBurstRequest>,
    ) -> GrpcResult<pb::BurstSession> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let input = BurstInput {
            ceiling_percentage: message.ceiling_percentage,
            duration_seconds: (message.duration_seconds != 0).then_some(message.duration_seconds),
            duration_minutes: None,
            reason: message.reason,
        };
        let result = self
            .limits(
                context,
                RequestBurst {
                    tenant: message.tenant,
                    input,
                },
            )
            .await;
        reply(result, &trace_id, burst_message)
    }

    async fn delete_tenant(
        &self,
        request: tonic::Request<pb::DeleteTenantRequest>,
    ) -> GrpcResult<pb::DeleteTenantResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let (id, cascade) = (message.id, message.cascade);
        let result = self
            .gateway
            .call(context, DeleteTenant { id, cascade })
            .instrument(grpc_span(&trace_id))
            .await;
        reply(result, &trace_id, |id| pb::DeleteTenantResponse {
            id: id.to_string(),
        })
    }
}
