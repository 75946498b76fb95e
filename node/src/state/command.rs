//! Commands carried in the Raft log. Ids and timestamps are chosen by the gateway before
//! proposing, so that apply stays deterministic. The enum is versioned: a new shape of a
//! command is a new variant or a new version, never a change to a logged one.

use serde::{Deserialize, Serialize};

use crate::domain::DomainError;
use crate::domain::tenant::{Tenant, TenantId, TenantPatch};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    V1(CommandV1),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandV1 {
    /// Creates what a fresh cluster starts with (the default tenant) if it is missing.
    Bootstrap {
        default_tenant: Tenant,
    },
    CreateTenant {
        tenant: Tenant,
    },
    UpdateTenant {
        id: TenantId,
        patch: TenantPatch,
        at_ms: u64,
    },
    DeleteTenant {
        id: TenantId,
        cascade: bool,
        at_ms: u64,
    },
    /// Changes nothing but goes through the whole replication path: measures the Raft
    /// layer alone, and checks that writes are possible.
    Probe {
        payload: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Bootstrapped { created: bool },
    Tenant(Tenant),
    TenantDeleted { id: TenantId },
    Probed { bytes: usize },
}

pub type CommandResult = Result<CommandOutcome, DomainError>;

impl Command {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("commands always serialize")
    }
}
