//! Apply for tenants: the bootstrap of the default tenant, create, update, delete (with
//! `cascade`, its jobs are cancelled first, all or nothing).

use hodei_cluster::WriteBatch;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use hodei_domain::DomainError;
use hodei_domain::tenant::DEFAULT_TENANT_ID;

use crate::state::hodei_state::{DomainEvent, HodeiState, tenant_key};
use crate::state::jobs::Release;

impl HodeiState {
    pub(in crate::state) fn apply_bootstrap(
        &mut self,
        command::Bootstrap { default_tenant }: command::Bootstrap,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if self.tenants.contains_key(&default_tenant.id) {
            return Ok(CommandOutcome::Bootstrapped { created: false });
        }
        let id = default_tenant.id.clone();
        self.put_tenant(default_tenant, writes);
        self.emit(DomainEvent::TenantCreated(id));
        Ok(CommandOutcome::Bootstrapped { created: true })
    }

    pub(in crate::state) fn apply_create_tenant(
        &mut self,
        command::CreateTenant { tenant }: command::CreateTenant,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        // The gateway validated it, but a forwarded or raw command may not have
        // passed the gateway: the same rules are checked again here.
        tenant.validate()?;
        if self.tenants.contains_key(&tenant.id) {
            return Err(DomainError::already_exists("tenant", tenant.id.to_string()));
        }
        use crate::defects::{Defect, active};
        let id = tenant.id.clone();
        if active(Defect::DropAcknowledgedTenant) && id.as_str().ends_with(['3', '7']) {
            return Ok(CommandOutcome::Tenant(tenant));
        }
        self.put_tenant(tenant.clone(), writes);
        self.emit(DomainEvent::TenantCreated(id.clone()));
        if active(Defect::ApplyRefusedTenant) && id.as_str().ends_with('5') {
            return Err(DomainError::already_exists("tenant", id.to_string()));
        }
        Ok(CommandOutcome::Tenant(tenant))
    }

    pub(in crate::state) fn apply_update_tenant(
        &mut self,
        command::UpdateTenant { id, patch, at_ms }: command::UpdateTenant,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(current) = self.tenants.get(&id) else {
            return Err(DomainError::not_found("tenant", id.to_string()));
        };
        patch.validate()?;
        let mut updated = current.clone();
        updated.apply_patch(&patch, at_ms);
        self.put_tenant(updated.clone(), writes);
        self.emit(DomainEvent::TenantUpdated(id));
        Ok(CommandOutcome::Tenant(updated))
    }

    /// Deletes a tenant; with `cascade`, its pending and running jobs are cancelled first.
    /// All or nothing: every cancel is checked (and its release computed) before the first
    /// is applied, so a job that cannot be cancelled leaves every other one as it was.
    pub(in crate::state) fn apply_delete_tenant(
        &mut self,
        command::DeleteTenant { id, cascade, at_ms }: command::DeleteTenant,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if !self.tenants.contains_key(&id) {
            return Err(DomainError::not_found("tenant", id.to_string()));
        }
        if id.as_str() == DEFAULT_TENANT_ID {
            return Err(DomainError::Conflict(
                "the default tenant cannot be deleted: requests that name no tenant act for it"
                    .to_string(),
            ));
        }
        let live: Vec<&str> = self
            .jobs
            .values()
            .filter(|job| job.spec.tenant == id && !job.state.is_final())
            .map(|job| job.id.as_str())
            .collect();
        if !live.is_empty() && !cascade {
            return Err(DomainError::Conflict(format!(
                "tenant `{id}` still has {} pending or running job(s); cancel them first, or delete with cascade=cancel",
                live.len()
            )));
        }
        let mut release = Release::default();
        let mut cancels = Vec::with_capacity(live.len());
        for job in live {
            cancels.push(self.plan_cancel(
                &mut release,
                job,
                "the deletion of its tenant",
                at_ms,
            )?);
        }
        // Everything is checked: from here on nothing refuses.
        self.commit_release(release, writes);
        for cancel in cancels {
            self.commit_cancel(cancel, writes);
        }
        self.tenants.remove(&id);
        writes.delete(tenant_key(&id));
        for session in self.bursts.remove(&id).unwrap_or_default() {
            writes.delete(crate::state::apply::limits::burst_key(&session));
        }
        self.usage.remove(&id);
        self.drop_tenant_tokens(&id, writes);
        self.emit(DomainEvent::TenantDeleted(id.clone()));
        Ok(CommandOutcome::TenantDeleted { id })
    }
}
