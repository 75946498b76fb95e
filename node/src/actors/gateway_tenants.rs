//! The gateway's tenant and cluster-membership operations.

use tracing::info;

use crate::actors::{NodeContext, now_ms};
use crate::gateway::model::page_size;
use crate::gateway::model::{
    ClusterStatusView, CreateTenantInput, Page, PageInput, UpdateTenantInput,
};
use crate::gateway::operations::{
    ChangeCluster, ClusterOperation, CreateTenant, DeleteTenant, GetTenant, ListTenants,
    UpdateTenant,
};
use crate::gateway::{Consistency, ErrorCode, GatewayError, Principal, RequestContext};
use crate::state::command;
use crate::state::{CommandOutcome, CommandV1};
use hodei_domain::DomainError;
use hodei_domain::tenant::{NewTenant, Tenant, TenantId, TenantPatch, TenantStatus, Tier};

use crate::actors::gateway::{
    Handler, propose_for, read_barrier, require_access, status_view, unexpected,
};

fn parse_tenant_id(raw: &str) -> Result<TenantId, GatewayError> {
    TenantId::parse(raw).map_err(GatewayError::from)
}

async fn create_tenant(
    node: NodeContext,
    context: RequestContext,
    input: CreateTenantInput,
) -> Result<Tenant, GatewayError> {
    let tier = match input.tier.as_deref() {
        None | Some("") => Tier::default(),
        Some(raw) => Tier::parse("tier", raw)?,
    };
    let new_tenant = NewTenant {
        id: parse_tenant_id(&input.id)?,
        display_name: input.display_name.filter(|name| !name.is_empty()),
        tier,
        weight: input.weight,
        labels: input.labels,
        quota: node.limits.default_quota.clone(),
    };
    let tenant = new_tenant.into_tenant(now_ms())?;
    match propose_for(
        &node,
        &context,
        CommandV1::CreateTenant(command::CreateTenant { tenant }),
    )
    .await?
    {
        CommandOutcome::Tenant(tenant) => {
            info!(tenant = %tenant.id, principal = %context.principal, "tenant created");
            Ok(tenant)
        }
        other => Err(unexpected(other)),
    }
}

async fn get_tenant(
    node: NodeContext,
    context: RequestContext,
    id: String,
    consistency: Consistency,
) -> Result<Tenant, GatewayError> {
    let id = parse_tenant_id(&id)?;
    require_access(&context, &id)?;
    read_barrier(&node, consistency).await?;
    node.read(|state| state.tenant(&id).cloned())
        .ok_or_else(|| DomainError::not_found("tenant", id.to_string()).into())
}

async fn list_tenants(
    node: NodeContext,
    context: RequestContext,
    page: PageInput,
    consistency: Consistency,
) -> Result<Page<Tenant>, GatewayError> {
    let limit = page_size(page.limit)?;
    let after = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(
            TenantId::parse(cursor)
                .map_err(|_| GatewayError::invalid("cursor", "not a cursor this list returned"))?,
        ),
    };
    read_barrier(&node, consistency).await?;
    let mut items = match &context.principal {
        Principal::Admin => node.read(|state| state.tenants_after(after.as_ref(), limit + 1)),
        Principal::Tenant(own) => node.read(|state| {
            let visible = after.as_ref().is_none_or(|after| own > after);
            state
                .tenant(own)
                .filter(|_| visible)
                .cloned()
                .into_iter()
                .collect()
        }),
    };
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|tenant| tenant.id.to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

async fn update_tenant(
    node: NodeContext,
    context: RequestContext,
    id: String,
    input: UpdateTenantInput,
) -> Result<Tenant, GatewayError> {
    let id = parse_tenant_id(&id)?;
    let patch = TenantPatch {
        display_name: input.display_name,
        tier: input
            .tier
            .as_deref()
            .map(|raw| Tier::parse("tier", raw))
            .transpose()?,
        weight: input.weight,
        labels: input.labels,
        status: input
            .status
            .as_deref()
            .map(|raw| TenantStatus::parse("status", raw))
            .transpose()?,
    };
    if patch.is_empty() {
        return Err(GatewayError::new(
            ErrorCode::Unprocessable,
            "the update sets no field: give at least one of display_name, tier, weight, labels, status",
        ));
    }
    patch.validate()?;
    match propose_for(
        &node,
        &context,
        CommandV1::UpdateTenant(command::UpdateTenant {
            id,
            patch,
            at_ms: now_ms(),
        }),
    )
    .await?
    {
        CommandOutcome::Tenant(tenant) => {
            info!(tenant = %tenant.id, principal = %context.principal, "tenant updated");
            Ok(tenant)
        }
        other => Err(unexpected(other)),
    }
}

async fn delete_tenant(
    node: NodeContext,
    context: RequestContext,
    id: String,
    cascade: bool,
) -> Result<TenantId, GatewayError> {
    let id = parse_tenant_id(&id)?;
    match propose_for(
        &node,
        &context,
        CommandV1::DeleteTenant(command::DeleteTenant {
            id,
            cascade,
            at_ms: now_ms(),
        }),
    )
    .await?
    {
        CommandOutcome::TenantDeleted { id } => {
            info!(tenant = %id, principal = %context.principal, cascade, "tenant deleted");
            Ok(id)
        }
        other => Err(unexpected(other)),
    }
}

async fn cluster_admin(
    node: NodeContext,
    context: RequestContext,
    operation: ClusterOperation,
) -> Result<ClusterStatusView, GatewayError> {
    match operation {
        ClusterOperation::Init => {
            let cluster_id = uuid::Uuid::now_v7().to_string();
            node.raft.initialize_single(&cluster_id).await?;
            node.raft.wait_for_leader(node.leader_wait).await?;
        }
        ClusterOperation::AddMember { node_id, addr } => {
            info!(node_id, %addr, principal = %context.principal, "adding a cluster member");
            if node_id == 0 {
                return Err(GatewayError::invalid("node_id", "must be >= 1"));
            }
            hodei_config::parse_peer(&format!("{node_id}@{addr}"))
                .map_err(|rule| GatewayError::invalid("addr", rule))?;
            node.raft.add_member(node_id, addr).await?;
        }
        ClusterOperation::RemoveMember { node_id } => {
            info!(node_id, principal = %context.principal, "removing a cluster member");
            node.raft.remove_member(node_id).await?;
            // The change is committed; the answer shows the membership after it, once this
            // node has applied it (a bounded wait: it may be the node removed).
            let deadline = tokio::time::Instant::now() + node.leader_wait;
            while node
                .raft
                .status()
                .members
                .iter()
                .any(|member| member.node_id == node_id)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        ClusterOperation::TransferLeader { node_id } => {
            info!(node_id, principal = %context.principal, "transferring leadership");
            node.raft.transfer_leader(node_id).await?;
        }
    }
    Ok(status_view(&node.raft.status()))
}

impl Handler for CreateTenant {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<Tenant, GatewayError> {
        create_tenant(node, context, self.input).await
    }
}

impl Handler for GetTenant {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<Tenant, GatewayError> {
        get_tenant(node, context, self.id, self.consistency).await
    }
}

impl Handler for ListTenants {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<Page<Tenant>, GatewayError> {
        list_tenants(node, context, self.page, self.consistency).await
    }
}

impl Handler for UpdateTenant {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<Tenant, GatewayError> {
        update_tenant(node, context, self.id, self.input).await
    }
}

impl Handler for DeleteTenant {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<TenantId, GatewayError> {
        delete_tenant(node, context, self.id, self.cascade).await
    }
}

impl Handler for ChangeCluster {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<ClusterStatusView, GatewayError> {
        cluster_admin(node, context, self.operation).await
    }
}
