//! `hodei.v1.TenantService`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::tenant_service_server::TenantService;

use crate::actors::gateway::{GatewayHandle, GatewayMsg};
use crate::api::grpc::{reply, request_context, with_trace_status};
use crate::api::model::{CreateTenantInput, PageInput, UpdateTenantInput};
use crate::api::{Consistency, Principal};
use crate::domain::tenant::Tenant;

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
            .ask(|reply| GatewayMsg::CreateTenant {
                context,
                input,
                reply,
            })
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
            .ask(|reply| GatewayMsg::GetTenant {
                context,
                id,
                consistency,
                reply,
            })
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
            .ask(|reply| GatewayMsg::ListTenants {
                context,
                page,
                consistency,
                reply,
            })
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
            .ask(|reply| GatewayMsg::UpdateTenant {
                context,
                id,
                input,
                reply,
            })
            .await;
        reply(result, &trace_id, |tenant| tenant_message(&tenant))
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
            .ask(|reply| GatewayMsg::DeleteTenant {
                context,
                id,
                cascade,
                reply,
            })
            .await;
        reply(result, &trace_id, |id| pb::DeleteTenantResponse {
            id: id.to_string(),
        })
    }
}
