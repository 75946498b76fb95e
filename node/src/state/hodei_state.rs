//! [`HodeiState`]: the entities every node holds, changed only by applying commands.
//! Each entity is also written to the state keyspace under its own key so a restarted
//! node loads it back without replaying the whole log.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use hodei_cluster::{Keyspace, StateMachine, WriteBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::domain::DomainError;
use crate::domain::burst::BurstSession;
use crate::domain::quota::Usage;
use crate::domain::tenant::{DEFAULT_TENANT_ID, Tenant, TenantId};
use crate::state::command::{Command, CommandOutcome, CommandResult, CommandV1};

const TENANT_PREFIX: &str = "tenant/";
pub(super) const BURST_PREFIX: &str = "burst/";

/// What changed, for the controllers on the leader. Sent after apply; a lagging receiver
/// may miss some, so receivers reconcile against the state rather than count events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    TenantCreated(TenantId),
    TenantUpdated(TenantId),
    TenantDeleted(TenantId),
    /// A burst session of the tenant was requested, approved or ended.
    BurstChanged(TenantId),
    /// The whole state was replaced by a snapshot.
    StateReplaced,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct SnapshotData {
    tenants: Vec<Tenant>,
    #[serde(default)]
    bursts: Vec<BurstSession>,
}

pub struct HodeiState {
    pub(super) tenants: BTreeMap<TenantId, Tenant>,
    /// Every tenant's burst sessions, oldest first.
    pub(super) bursts: BTreeMap<TenantId, Vec<BurstSession>>,
    /// Running resources and job counts per tenant (maintained by the job commands).
    pub(super) usage: BTreeMap<TenantId, Usage>,
    events: broadcast::Sender<DomainEvent>,
}

pub type SharedState = Arc<RwLock<HodeiState>>;

fn tenant_key(id: &TenantId) -> Vec<u8> {
    format!("{TENANT_PREFIX}{id}").into_bytes()
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state entities always serialize")
}

impl HodeiState {
    pub fn new(events: broadcast::Sender<DomainEvent>) -> Self {
        Self {
            tenants: BTreeMap::new(),
            bursts: BTreeMap::new(),
            usage: BTreeMap::new(),
            events,
        }
    }

    /// Rebuilds the state from the entities stored in `keyspace`.
    pub fn load(
        keyspace: &dyn Keyspace,
        events: broadcast::Sender<DomainEvent>,
    ) -> Result<Self, String> {
        let mut state = Self::new(events);
        let stored = keyspace
            .scan_prefix(TENANT_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (key, value) in stored {
            let tenant: Tenant = serde_json::from_slice(&value).map_err(|error| {
                format!("corrupt tenant {}: {error}", String::from_utf8_lossy(&key))
            })?;
            state.tenants.insert(tenant.id.clone(), tenant);
        }
        let stored = keyspace
            .scan_prefix(BURST_PREFIX.as_bytes())
            .map_err(|error| error.to_string())?;
        for (key, value) in stored {
            let session: BurstSession = serde_json::from_slice(&value).map_err(|error| {
                format!(
                    "corrupt burst session {}: {error}",
                    String::from_utf8_lossy(&key)
                )
            })?;
            state
                .bursts
                .entry(session.tenant.clone())
                .or_default()
                .push(session);
        }
        for sessions in state.bursts.values_mut() {
            sessions.sort_by(|left, right| {
                (left.requested_at_ms, &left.id).cmp(&(right.requested_at_ms, &right.id))
            });
        }
        Ok(state)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.events.subscribe()
    }

    pub fn tenant(&self, id: &TenantId) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    /// Up to `limit` tenants whose id sorts after `after`, in id order.
    pub fn tenants_after(&self, after: Option<&TenantId>, limit: usize) -> Vec<Tenant> {
        let range = match after {
            Some(after) => self.tenants.range((
                std::ops::Bound::Excluded(after.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => self.tenants.range(..),
        };
        range
            .take(limit)
            .map(|(_, tenant)| tenant.clone())
            .collect()
    }

    pub fn tenant_ids(&self) -> Vec<TenantId> {
        self.tenants.keys().cloned().collect()
    }

    pub(super) fn emit(&self, event: DomainEvent) {
        // No receiver is fine: followers run no controllers.
        let _ = self.events.send(event);
    }

    pub(super) fn put_tenant(&mut self, tenant: Tenant, writes: &mut WriteBatch) {
        writes.put(tenant_key(&tenant.id), encode(&tenant));
        self.tenants.insert(tenant.id.clone(), tenant);
    }

    /// Applies one decoded command. Every branch checks the current state again: the
    /// gateway validated against a snapshot that may be stale by now.
    pub fn apply_command(&mut self, command: Command, writes: &mut WriteBatch) -> CommandResult {
        let Command::V1(command) = command;
        match command {
            CommandV1::Bootstrap { default_tenant } => {
                if self.tenants.contains_key(&default_tenant.id) {
                    return Ok(CommandOutcome::Bootstrapped { created: false });
                }
                let id = default_tenant.id.clone();
                self.put_tenant(default_tenant, writes);
                self.emit(DomainEvent::TenantCreated(id));
                Ok(CommandOutcome::Bootstrapped { created: true })
            }
            CommandV1::CreateTenant { tenant } => {
                if self.tenants.contains_key(&tenant.id) {
                    return Err(DomainError::already_exists("tenant", tenant.id.to_string()));
                }
                let id = tenant.id.clone();
                self.put_tenant(tenant.clone(), writes);
                self.emit(DomainEvent::TenantCreated(id));
                Ok(CommandOutcome::Tenant(tenant))
            }
            CommandV1::UpdateTenant { id, patch, at_ms } => {
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
            CommandV1::Probe { payload } => Ok(CommandOutcome::Probed {
                bytes: payload.len(),
            }),
            CommandV1::SetQuota { id, quota, at_ms } => {
                self.apply_set_quota(id, quota, at_ms, writes)
            }
            CommandV1::RequestBurst {
                tenant,
                session_id,
                request,
                requested_by,
                policy,
                at_ms,
            } => self.apply_request_burst(
                tenant,
                session_id,
                request,
                requested_by,
                &policy,
                at_ms,
                writes,
            ),
            CommandV1::ApproveBurst {
                tenant,
                session_id,
                approved_by,
                policy,
                at_ms,
            } => {
                self.apply_approve_burst(&tenant, &session_id, approved_by, &policy, at_ms, writes)
            }
            CommandV1::EndBurst {
                tenant,
                session_id,
                reason,
                ended_by,
                at_ms,
            } => self.apply_end_burst(&tenant, &session_id, reason, ended_by, at_ms, writes),
            CommandV1::DeleteTenant {
                id,
                cascade: _,
                at_ms: _,
            } => {
                if !self.tenants.contains_key(&id) {
                    return Err(DomainError::not_found("tenant", id.to_string()));
                }
                if id.as_str() == DEFAULT_TENANT_ID {
                    return Err(DomainError::Conflict(
                        "the default tenant cannot be deleted: requests that name no tenant act for it".to_string(),
                    ));
                }
                // Jobs do not exist yet; when they do, pending or running jobs refuse the
                // delete unless `cascade` cancels them first.
                self.tenants.remove(&id);
                writes.delete(tenant_key(&id));
                for session in self.bursts.remove(&id).unwrap_or_default() {
                    writes.delete(super::tenant_limits::burst_key(&session));
                }
                self.usage.remove(&id);
                self.emit(DomainEvent::TenantDeleted(id.clone()));
                Ok(CommandOutcome::TenantDeleted { id })
            }
        }
    }
}

impl StateMachine for HodeiState {
    fn apply(&mut self, _index: u64, command: &str, writes: &mut WriteBatch) -> String {
        let result: CommandResult = match serde_json::from_str::<Command>(command) {
            Ok(command) => self.apply_command(command, writes),
            // A command this version cannot read is refused identically on every node.
            Err(error) => Err(DomainError::invalid(
                "command",
                format!("undecodable command: {error}"),
            )),
        };
        serde_json::to_string(&result).expect("results always serialize")
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        let data = SnapshotData {
            tenants: self.tenants.values().cloned().collect(),
            bursts: self.bursts.values().flatten().cloned().collect(),
        };
        serde_json::to_vec(&data).map_err(|error| error.to_string())
    }

    fn restore(&mut self, snapshot: &[u8], writes: &mut WriteBatch) -> Result<(), String> {
        let data: SnapshotData =
            serde_json::from_slice(snapshot).map_err(|error| error.to_string())?;
        self.tenants.clear();
        self.bursts.clear();
        for tenant in data.tenants {
            self.put_tenant(tenant, writes);
        }
        for session in data.bursts {
            writes.put(super::tenant_limits::burst_key(&session), encode(&session));
            self.bursts
                .entry(session.tenant.clone())
                .or_default()
                .push(session);
        }
        self.emit(DomainEvent::StateReplaced);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hodei_cluster::{SledStorage, Storage};

    use super::*;
    use crate::domain::labels::Labels;
    use crate::domain::tenant::{NewTenant, TenantPatch, Tier};

    fn state() -> HodeiState {
        HodeiState::new(broadcast::channel(16).0)
    }

    fn tenant(id: &str) -> Tenant {
        NewTenant {
            id: TenantId::parse(id).unwrap(),
            display_name: None,
            tier: Tier::Free,
            weight: None,
            labels: Labels::new(),
            quota: crate::domain::quota::Quota::default(),
        }
        .into_tenant(1)
        .unwrap()
    }

    fn apply(
        state: &mut HodeiState,
        index: u64,
        command: CommandV1,
    ) -> (CommandResult, WriteBatch) {
        let mut writes = WriteBatch::new();
        let response =
            StateMachine::apply(state, index, &Command::V1(command).encode(), &mut writes);
        (serde_json::from_str(&response).unwrap(), writes)
    }

    #[test]
    fn create_then_duplicate_is_refused() {
        let mut state = state();
        let (first, writes) = apply(
            &mut state,
            1,
            CommandV1::CreateTenant {
                tenant: tenant("acme"),
            },
        );
        assert!(matches!(first, Ok(CommandOutcome::Tenant(_))));
        assert_eq!(writes.len(), 1);
        let (second, writes) = apply(
            &mut state,
            2,
            CommandV1::CreateTenant {
                tenant: tenant("acme"),
            },
        );
        assert_eq!(second, Err(DomainError::already_exists("tenant", "acme")));
        assert!(writes.is_empty(), "a refused command writes nothing");
    }

    #[test]
    fn update_and_delete_unknown_tenant_are_not_found() {
        let mut state = state();
        let id = TenantId::parse("ghost").unwrap();
        let (update, _) = apply(
            &mut state,
            1,
            CommandV1::UpdateTenant {
                id: id.clone(),
                patch: TenantPatch::default(),
                at_ms: 2,
            },
        );
        assert_eq!(update, Err(DomainError::not_found("tenant", "ghost")));
        let (delete, _) = apply(
            &mut state,
            2,
            CommandV1::DeleteTenant {
                id,
                cascade: false,
                at_ms: 2,
            },
        );
        assert_eq!(delete, Err(DomainError::not_found("tenant", "ghost")));
    }

    #[test]
    fn default_tenant_cannot_be_deleted() {
        let mut state = state();
        let _ = apply(
            &mut state,
            1,
            CommandV1::Bootstrap {
                default_tenant: Tenant::default_tenant(0, Default::default()),
            },
        );
        let (delete, _) = apply(
            &mut state,
            2,
            CommandV1::DeleteTenant {
                id: TenantId::default_tenant(),
                cascade: true,
                at_ms: 3,
            },
        );
        assert!(matches!(delete, Err(DomainError::Conflict(_))));
    }

    #[test]
    fn bootstrap_is_idempotent() {
        let mut state = state();
        let (first, _) = apply(
            &mut state,
            1,
            CommandV1::Bootstrap {
                default_tenant: Tenant::default_tenant(0, Default::default()),
            },
        );
        let (second, _) = apply(
            &mut state,
            2,
            CommandV1::Bootstrap {
                default_tenant: Tenant::default_tenant(9, Default::default()),
            },
        );
        assert_eq!(first, Ok(CommandOutcome::Bootstrapped { created: true }));
        assert_eq!(second, Ok(CommandOutcome::Bootstrapped { created: false }));
        assert_eq!(
            state
                .tenant(&TenantId::default_tenant())
                .unwrap()
                .created_at_ms,
            0
        );
    }

    #[test]
    fn undecodable_command_is_refused_not_panicking() {
        let mut state = state();
        let mut writes = WriteBatch::new();
        let response = StateMachine::apply(&mut state, 1, "{\"V9\":{}}", &mut writes);
        let result: CommandResult = serde_json::from_str(&response).unwrap();
        assert!(
            matches!(result, Err(DomainError::Invalid { ref field, .. }) if field == "command")
        );
    }

    #[test]
    fn stored_entities_load_back_and_snapshot_restores() {
        let storage = SledStorage::temporary().unwrap();
        let keyspace = storage.keyspace("state").unwrap();
        let mut state = state();
        for (index, id) in ["b", "a", "c"].iter().enumerate() {
            let (_, writes) = apply(
                &mut state,
                index as u64 + 1,
                CommandV1::CreateTenant { tenant: tenant(id) },
            );
            keyspace.write(writes).unwrap();
        }
        let (_, writes) = apply(
            &mut state,
            4,
            CommandV1::DeleteTenant {
                id: TenantId::parse("b").unwrap(),
                cascade: false,
                at_ms: 5,
            },
        );
        keyspace.write(writes).unwrap();

        let loaded = HodeiState::load(keyspace.as_ref(), broadcast::channel(1).0).unwrap();
        assert_eq!(loaded.tenant_ids(), state.tenant_ids());

        let snapshot = state.snapshot().unwrap();
        let mut restored = self::state();
        let mut writes = WriteBatch::new();
        restored.restore(&snapshot, &mut writes).unwrap();
        assert_eq!(restored.tenant_ids(), state.tenant_ids());
        assert_eq!(writes.len(), 2);
    }

    #[test]
    fn tenants_after_pages_in_id_order() {
        let mut state = state();
        for (index, id) in ["d", "b", "a", "c"].iter().enumerate() {
            let _ = apply(
                &mut state,
                index as u64 + 1,
                CommandV1::CreateTenant { tenant: tenant(id) },
            );
        }
        let first = state.tenants_after(None, 2);
        assert_eq!(
            first.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let second = state.tenants_after(Some(&first[1].id), 2);
        assert_eq!(
            second.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert!(state.tenants_after(Some(&second[1].id), 2).is_empty());
    }
}
