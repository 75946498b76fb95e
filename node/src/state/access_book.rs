//! The tokens the cluster issued (issue 21): tenants' access tokens, the admin token of
//! the first start, and pools' join tokens. Each is kept as a digest of its secret, so
//! that any node can check a token and none can show one again. Apply keeps them; a
//! tenant's tokens go with the tenant, a pool's join tokens with the pool. Beside them, the
//! agent each worker id is bound to (a digest of the agent's instance id): a live worker's
//! id is not taken by another agent on any leader.

use std::collections::BTreeMap;

use hodei_cluster::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult};
use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::keys::ACCESS_PREFIX;
use hodei_domain::DomainError;
use hodei_domain::access::{AccessToken, JoinToken, MAX_TOKENS_PER_OWNER, is_live};
use hodei_domain::tenant::TenantId;

/// One stored record: each kind under its own key below `access/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccessEntry {
    Token(AccessToken),
    Join(JoinToken),
    /// The admin token of the first start was issued (never again, even once revoked).
    Bootstrapped,
    /// Worker `worker` registered from the agent whose instance id has this digest.
    WorkerAgent {
        worker: String,
        agent: String,
    },
    /// Worker `worker`'s last registration by an agent was proposed at this time (the
    /// leader's clock): a loss judged for an earlier one does not apply.
    WorkerSession {
        worker: String,
        registered_at_ms: u64,
    },
}

impl AccessEntry {
    fn storage_key(&self) -> Vec<u8> {
        match self {
            AccessEntry::Token(token) => token_key(&token.id),
            AccessEntry::Join(token) => join_key(&token.id),
            AccessEntry::Bootstrapped => format!("{ACCESS_PREFIX}bootstrapped").into_bytes(),
            AccessEntry::WorkerAgent { worker, .. } => agent_key(worker),
            AccessEntry::WorkerSession { worker, .. } => session_key(worker),
        }
    }
}

fn token_key(id: &str) -> Vec<u8> {
    format!("{ACCESS_PREFIX}token/{id}").into_bytes()
}

fn join_key(id: &str) -> Vec<u8> {
    format!("{ACCESS_PREFIX}join/{id}").into_bytes()
}

fn agent_key(worker: &str) -> Vec<u8> {
    format!("{ACCESS_PREFIX}agent/{worker}").into_bytes()
}

fn session_key(worker: &str) -> Vec<u8> {
    format!("{ACCESS_PREFIX}session/{worker}").into_bytes()
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct AccessBook {
    tokens: BTreeMap<String, AccessToken>,
    joins: BTreeMap<String, JoinToken>,
    bootstrapped: bool,
    /// Worker id -> digest of its agent's instance id.
    agents: BTreeMap<String, String>,
    /// Worker id -> when its last registration by an agent was proposed.
    sessions: BTreeMap<String, u64>,
}

impl AccessBook {
    pub fn insert(&mut self, entry: AccessEntry) {
        match entry {
            AccessEntry::Token(token) => {
                self.tokens.insert(token.id.clone(), token);
            }
            AccessEntry::Join(token) => {
                self.joins.insert(token.id.clone(), token);
            }
            AccessEntry::Bootstrapped => self.bootstrapped = true,
            AccessEntry::WorkerAgent { worker, agent } => {
                self.agents.insert(worker, agent);
            }
            AccessEntry::WorkerSession {
                worker,
                registered_at_ms,
            } => {
                self.sessions.insert(worker, registered_at_ms);
            }
        }
    }

    pub fn entries(&self) -> Vec<AccessEntry> {
        let mut entries: Vec<AccessEntry> = self
            .tokens
            .values()
            .cloned()
            .map(AccessEntry::Token)
            .chain(self.joins.values().cloned().map(AccessEntry::Join))
            .chain(
                self.agents
                    .iter()
                    .map(|(worker, agent)| AccessEntry::WorkerAgent {
                        worker: worker.clone(),
                        agent: agent.clone(),
                    }),
            )
            .chain(self.sessions.iter().map(|(worker, registered_at_ms)| {
                AccessEntry::WorkerSession {
                    worker: worker.clone(),
                    registered_at_ms: *registered_at_ms,
                }
            }))
            .collect();
        if self.bootstrapped {
            entries.push(AccessEntry::Bootstrapped);
        }
        entries
    }
}

impl HodeiState {
    pub(super) fn put_access_entry(&mut self, entry: AccessEntry, writes: &mut WriteBatch) {
        put_encoded(writes, entry.storage_key(), &entry);
        self.access.insert(entry);
    }

    /// Whether the admin token of the first start was issued.
    pub fn admin_token_issued(&self) -> bool {
        self.access.bootstrapped
    }

    /// A token by id.
    pub fn access_token(&self, id: &str) -> Option<&AccessToken> {
        self.access.tokens.get(id)
    }

    /// A tenant's tokens, by id.
    pub fn tenant_tokens(&self, tenant: &TenantId) -> Vec<AccessToken> {
        self.access
            .tokens
            .values()
            .filter(|token| token.tenant.as_ref() == Some(tenant))
            .cloned()
            .collect()
    }

    /// The digest of the instance id of the agent worker `id` registered from, if an
    /// agent registered it.
    pub fn worker_agent(&self, id: &str) -> Option<&str> {
        self.access.agents.get(id).map(String::as_str)
    }

    /// When worker `id`'s last registration by an agent was proposed.
    pub fn worker_session(&self, id: &str) -> Option<u64> {
        self.access.sessions.get(id).copied()
    }

    /// Forgets the agent of a worker that left the state.
    pub(in crate::state) fn drop_worker_agent(&mut self, worker: &str, writes: &mut WriteBatch) {
        if self.access.agents.remove(worker).is_some() {
            writes.delete(agent_key(worker));
        }
        if self.access.sessions.remove(worker).is_some() {
            writes.delete(session_key(worker));
        }
    }

    /// A join token by id.
    pub fn join_token(&self, id: &str) -> Option<&JoinToken> {
        self.access.joins.get(id)
    }

    /// A pool's join tokens, by id.
    pub fn pool_join_tokens(&self, pool: &str) -> Vec<JoinToken> {
        self.access
            .joins
            .values()
            .filter(|token| token.pool == pool)
            .cloned()
            .collect()
    }

    pub(in crate::state) fn apply_issue_token(
        &mut self,
        command::IssueToken { token, bootstrap }: command::IssueToken,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if self.access.tokens.contains_key(&token.id) {
            return Err(DomainError::already_exists("token", token.id));
        }
        match &token.tenant {
            None if !bootstrap => {
                return Err(DomainError::invalid(
                    "tenant",
                    "only the first start issues an admin token",
                ));
            }
            None if self.access.bootstrapped => {
                return Err(DomainError::Conflict(
                    "the admin token of the first start was already issued".to_string(),
                ));
            }
            None => {}
            Some(tenant) => {
                if bootstrap {
                    return Err(DomainError::invalid(
                        "tenant",
                        "the first start's token is an admin's",
                    ));
                }
                if !self.tenants.contains_key(tenant) {
                    return Err(DomainError::not_found("tenant", tenant.to_string()));
                }
                hodei_domain::access::check_scopes(&token.scopes)?;
                let live = self
                    .access
                    .tokens
                    .values()
                    .filter(|held| {
                        held.tenant.as_ref() == Some(tenant)
                            && is_live(held.expires_at_ms, token.created_at_ms)
                    })
                    .count();
                if live >= MAX_TOKENS_PER_OWNER {
                    return Err(DomainError::Conflict(format!(
                        "tenant `{tenant}` holds {live} live tokens, the most there may be: revoke one first"
                    )));
                }
            }
        }
        if bootstrap {
            self.put_access_entry(AccessEntry::Bootstrapped, writes);
        }
        self.put_access_entry(AccessEntry::Token(token.clone()), writes);
        Ok(CommandOutcome::Token(Box::new(token)))
    }

    pub(in crate::state) fn apply_revoke_token(
        &mut self,
        command::RevokeToken { id, tenant }: command::RevokeToken,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let held = self
            .access
            .tokens
            .get(&id)
            .filter(|token| tenant.is_none() || token.tenant == tenant);
        if held.is_none() {
            return Err(DomainError::not_found("token", id));
        }
        self.access.tokens.remove(&id);
        writes.delete(token_key(&id));
        Ok(CommandOutcome::TokenRevoked { id })
    }

    pub(in crate::state) fn apply_issue_join_token(
        &mut self,
        command::IssueJoinToken { token }: command::IssueJoinToken,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if !self.pools.contains_key(&token.pool) {
            return Err(DomainError::not_found("pool", token.pool));
        }
        if self.access.joins.contains_key(&token.id) {
            return Err(DomainError::already_exists("join token", token.id));
        }
        let live = self
            .access
            .joins
            .values()
            .filter(|held| {
                held.pool == token.pool && is_live(held.expires_at_ms, token.created_at_ms)
            })
            .count();
        if live >= MAX_TOKENS_PER_OWNER {
            return Err(DomainError::Conflict(format!(
                "pool `{}` has {live} live join tokens, the most there may be: revoke one first",
                token.pool
            )));
        }
        self.put_access_entry(AccessEntry::Join(token.clone()), writes);
        Ok(CommandOutcome::JoinToken(Box::new(token)))
    }

    pub(in crate::state) fn apply_revoke_join_token(
        &mut self,
        command::RevokeJoinToken { pool, id }: command::RevokeJoinToken,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if self
            .access
            .joins
            .get(&id)
            .is_none_or(|token| token.pool != pool)
        {
            return Err(DomainError::not_found("join token", id));
        }
        self.access.joins.remove(&id);
        writes.delete(join_key(&id));
        Ok(CommandOutcome::TokenRevoked { id })
    }

    /// Drops a deleted tenant's tokens (a tenant created again under its id gets none).
    pub(in crate::state) fn drop_tenant_tokens(
        &mut self,
        tenant: &TenantId,
        writes: &mut WriteBatch,
    ) {
        let ids: Vec<String> = self
            .tenant_tokens(tenant)
            .into_iter()
            .map(|token| token.id)
            .collect();
        for id in ids {
            self.access.tokens.remove(&id);
            writes.delete(token_key(&id));
        }
    }

    /// Drops a deleted pool's join tokens.
    pub(in crate::state) fn drop_join_tokens(&mut self, pool: &str, writes: &mut WriteBatch) {
        let ids: Vec<String> = self
            .pool_join_tokens(pool)
            .into_iter()
            .map(|token| token.id)
            .collect();
        for id in ids {
            self.access.joins.remove(&id);
            writes.delete(join_key(&id));
        }
    }
}
