//! Commands carried in the Raft log. Ids and timestamps are chosen by the gateway before
//! proposing, so that apply stays deterministic. The enum is versioned: a new shape of a
//! command is a new variant or a new version, never a change to a logged one.

use serde::{Deserialize, Serialize};

use crate::domain::DomainError;
use crate::domain::burst::{BurstPolicy, BurstRequest, BurstSession, EndReason};
use crate::domain::quota::Quota;
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
    SetQuota {
        id: TenantId,
        quota: Quota,
        at_ms: u64,
    },
    /// Apply checks every governance rule against the replicated sessions; the policy
    /// (from config) travels in the command so every node decides alike.
    RequestBurst {
        tenant: TenantId,
        session_id: String,
        request: BurstRequest,
        requested_by: String,
        policy: BurstPolicy,
        at_ms: u64,
    },
    ApproveBurst {
        tenant: TenantId,
        session_id: String,
        approved_by: String,
        policy: BurstPolicy,
        at_ms: u64,
    },
    /// Ends an open session: at its end time (decided by the leader's tenant actor), early
    /// on request, or withdrawn before approval. Ending an ended session changes nothing.
    EndBurst {
        tenant: TenantId,
        session_id: String,
        reason: EndReason,
        ended_by: String,
        at_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Bootstrapped {
        created: bool,
    },
    Tenant(Tenant),
    TenantDeleted {
        id: TenantId,
    },
    Probed {
        bytes: usize,
    },
    QuotaSet {
        tenant: Tenant,
        warnings: Vec<String>,
    },
    Burst(BurstSession),
    /// The session had already ended; nothing changed.
    BurstAlreadyEnded(BurstSession),
}

pub type CommandResult = Result<CommandOutcome, DomainError>;

impl Command {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("commands always serialize")
    }
}
