//! `hodei.v1.TenantService`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::tenant_service_server::TenantService;

use crate::actors::gateway::GatewayHandle;
use crate::gateway::operations::{
    CreateTenant, DeleteTenant, EnforceQuota, GetTenant, GetUsage, ListTenants, RequestBurst,
    SetQuota, UpdateTenant,
};

use crate::api::grpc::{GrpcGateway, GrpcResult, consistency, non_empty};
use crate::gateway::model::{
    BurstInput, BurstView, CreateTenantInput, EnforceInput, PageInput, QuotaInput, QuotaView,
    ResourcesView, UpdateTenantInput,
};
use hodei_domain::tenant::Tenant;

pub struct TenantGrpc {
    grpc: GrpcGateway,
}

impl TenantGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, authenticator),
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

#[tonic::async_trait]
impl TenantService for TenantGrpc {
    async fn create_tenant(
        &self,
        request: tonic::Request<pb::CreateTenantRequest>,
    ) -> GrpcResult<pb::Tenant> {
        let operation = |message: pb::CreateTenantRequest| {
            let input = CreateTenantInput {
                id: message.id,
                display_name: non_empty(message.display_name),
                tier: non_empty(message.tier),
                weight: message.weight,
                labels: message.labels.into_iter().collect(),
            };
            Ok(CreateTenant { input })
        };
        self.grpc
            .call(request, operation, |tenant| tenant_message(&tenant))
            .await
    }

    async fn get_tenant(
        &self,
        request: tonic::Request<pb::GetTenantRequest>,
    ) -> GrpcResult<pb::Tenant> {
        let operation = |message: pb::GetTenantRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetTenant {
                id: message.id,
                consistency,
            })
        };
        self.grpc
            .call(request, operation, |tenant| tenant_message(&tenant))
            .await
    }

    async fn list_tenants(
        &self,
        request: tonic::Request<pb::ListTenantsRequest>,
    ) -> GrpcResult<pb::ListTenantsResponse> {
        let operation = |message: pb::ListTenantsRequest| {
            let consistency = consistency(&message.consistency)?;
            let page = PageInput {
                limit: (message.page_size != 0).then_some(message.page_size),
                cursor: non_empty(message.cursor),
            };
            Ok(ListTenants { page, consistency })
        };
        self.grpc
            .call(request, operation, |page| pb::ListTenantsResponse {
                tenants: page.items.iter().map(tenant_message).collect(),
                next_cursor: page.next_cursor.unwrap_or_default(),
            })
            .await
    }

    async fn update_tenant(
        &self,
        request: tonic::Request<pb::UpdateTenantRequest>,
    ) -> GrpcResult<pb::Tenant> {
        let operation = |message: pb::UpdateTenantRequest| {
            let input = UpdateTenantInput {
                display_name: message.display_name,
                tier: message.tier,
                weight: message.weight,
                labels: message
                    .labels
                    .map(|labels| labels.entries.into_iter().collect()),
                status: message.status,
            };
            Ok(UpdateTenant {
                id: message.id,
                input,
            })
        };
        self.grpc
            .call(request, operation, |tenant| tenant_message(&tenant))
            .await
    }

    async fn set_quota(
        &self,
        request: tonic::Request<pb::SetQuotaRequest>,
    ) -> GrpcResult<pb::Quota> {
        let operation = |message: pb::SetQuotaRequest| {
            let pool_limits = (!message.pool_limits.is_empty()).then(|| {
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
            });
            let input = QuotaInput {
                cpu_m: message.cpu_m,
                memory_mb: message.memory_mb,
                gpu: message.gpu,
                max_concurrent_jobs: message.max_concurrent_jobs,
                max_pending_jobs: message.max_pending_jobs,
                pool_limits,
                daily_cost_budget_usd: message.daily_cost_budget_usd,
            };
            Ok(SetQuota {
                tenant: message.tenant,
                input,
            })
        };
        self.grpc.call(request, operation, quota_message).await
    }

    async fn get_tenant_metrics(
        &self,
        request: tonic::Request<pb::GetTenantMetricsRequest>,
    ) -> GrpcResult<pb::TenantMetrics> {
        let operation = |message: pb::GetTenantMetricsRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetUsage {
                tenant: message.tenant,
                consistency,
            })
        };
        self.grpc
            .call(request, operation, |view| pb::TenantMetrics {
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
                budget: view.budget.map(|budget| pb::TenantBudget {
                    daily_budget_nanos: budget.daily_budget_nanos,
                    spent_today_nanos: budget.spent_today_nanos,
                    used_ratio: budget.used_ratio,
                    level_percent: budget.level_percent,
                    warned_percent: budget.warned_percent,
                    warned_at_ms: budget.warned_at_ms,
                    action: budget.action,
                    exhausted: budget.exhausted,
                }),
            })
            .await
    }

    async fn enforce_quota(
        &self,
        request: tonic::Request<pb::EnforceQuotaRequest>,
    ) -> GrpcResult<pb::QuotaDecision> {
        let operation = |message: pb::EnforceQuotaRequest| {
            let input = EnforceInput {
                tenant: non_empty(message.tenant),
                cpu_m: message.cpu_m,
                memory_mb: message.memory_mb,
                gpu: message.gpu,
                pool: message.pool,
            };
            Ok(EnforceQuota { input })
        };
        self.grpc
            .call(request, operation, |view| pb::QuotaDecision {
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
            .await
    }

    async fn request_burst_capacity(
        &self,
        request: tonic::Request<pb::RequestBurstRequest>,
    ) -> GrpcResult<pb::BurstSession> {
        let operation = |message: pb::RequestBurstRequest| {
            let input = BurstInput {
                ceiling_percentage: message.ceiling_percentage,
                duration_seconds: (message.duration_seconds != 0)
                    .then_some(message.duration_seconds),
                duration_minutes: None,
                reason: message.reason,
            };
            Ok(RequestBurst {
                tenant: message.tenant,
                input,
            })
        };
        self.grpc.call(request, operation, burst_message).await
    }

    async fn delete_tenant(
        &self,
        request: tonic::Request<pb::DeleteTenantRequest>,
    ) -> GrpcResult<pb::DeleteTenantResponse> {
        let operation = |message: pb::DeleteTenantRequest| {
            Ok(DeleteTenant {
                id: message.id,
                cascade: message.cascade,
            })
        };
        self.grpc
            .call(request, operation, |id| pb::DeleteTenantResponse {
                id: id.to_string(),
            })
            .await
    }
    async fn issue_token(
        &self,
        request: tonic::Request<pb::IssueTokenRequest>,
    ) -> GrpcResult<pb::IssuedToken> {
        let operation = |message: pb::IssueTokenRequest| {
            Ok(crate::gateway::operations::IssueTenantToken {
                tenant: message.tenant,
                input: crate::gateway::access_model::TokenInput {
                    name: message.name,
                    scopes: message.scopes,
                    expires_in_s: message.expires_in_s,
                },
            })
        };
        self.grpc.call(request, operation, issued_token).await
    }

    async fn list_tokens(
        &self,
        request: tonic::Request<pb::ListTokensRequest>,
    ) -> GrpcResult<pb::ListTokensResponse> {
        let operation = |message: pb::ListTokensRequest| {
            Ok(crate::gateway::operations::ListTenantTokens {
                tenant: message.tenant,
                consistency: consistency(&message.consistency)?,
            })
        };
        self.grpc.call(request, operation, token_list).await
    }

    async fn revoke_token(
        &self,
        request: tonic::Request<pb::RevokeTokenRequest>,
    ) -> GrpcResult<pb::RevokeTokenResponse> {
        // Without a tenant: any token (an admin's revocation).
        if request.get_ref().tenant.is_empty() {
            let operation = |message: pb::RevokeTokenRequest| {
                Ok(crate::gateway::operations::RevokeAnyToken { id: message.id })
            };
            return self
                .grpc
                .call(request, operation, |id| pb::RevokeTokenResponse { id })
                .await;
        }
        let operation = |message: pb::RevokeTokenRequest| {
            Ok(crate::gateway::operations::RevokeTenantToken {
                tenant: message.tenant,
                id: message.id,
            })
        };
        self.grpc
            .call(request, operation, |id| pb::RevokeTokenResponse { id })
            .await
    }
}

/// A token's record on the wire.
pub fn token_record(view: crate::gateway::access_model::TokenView) -> pb::TokenRecord {
    pb::TokenRecord {
        id: view.id,
        tenant: view.tenant.unwrap_or_default(),
        pool: view.pool.unwrap_or_default(),
        name: view.name,
        scopes: view.scopes,
        created_at_ms: view.created_at_ms,
        expires_at_ms: view.expires_at_ms,
        created_by: view.created_by.unwrap_or_default(),
    }
}

pub fn issued_token(view: crate::gateway::access_model::IssuedTokenView) -> pb::IssuedToken {
    pb::IssuedToken {
        token: view.token,
        record: Some(token_record(view.record)),
    }
}

pub fn token_list(view: crate::gateway::access_model::TokenListView) -> pb::ListTokensResponse {
    pb::ListTokensResponse {
        tokens: view.items.into_iter().map(token_record).collect(),
    }
}
