//! Who a request comes from (issue 21). With `server.auth: token` every request presents
//! a bearer token: the configured admin token, the admin token of the cluster's first
//! start, or a tenant's token, checked against the digests in the replicated state (so
//! any node checks any token). With `server.auth: none` the caller names its principal in
//! `x-hodei-principal`, which only a loopback listener (or `--insecure`) allows.
//! Workers joining a pool are checked here too.

use std::sync::{Arc, PoisonError};

use crate::gateway::credentials::{self, TokenKind};
use crate::gateway::{ErrorCode, GatewayError, Principal, RequestContext, TraceId};
use crate::state::SharedState;
use hodei_domain::access::{SecretDigest, is_live};

/// How requests are authenticated (`server.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Principals are named by the caller (`x-hodei-principal`), or the default applies.
    None,
    /// Every request presents a bearer token.
    Token,
}

/// What a request presented.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The `authorization` header or metadata entry, as sent.
    pub authorization: Option<&'a str>,
    /// The `x-hodei-principal` header or metadata entry, as sent.
    pub principal: Option<&'a str>,
}

/// Checks credentials; cheap to clone (the adapters each hold one).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    mode: AuthMode,
    /// The digest of `server.admin_token`.
    admin: Option<SecretDigest>,
    default_principal: Principal,
    /// `cluster.secret`: the key of the join credentials of a node's own agents.
    cluster_secret: Option<String>,
    /// The credential members present to each other (derived from the secret, once).
    member: Option<String>,
    state: SharedState,
}

impl Authenticator {
    pub fn new(
        mode: AuthMode,
        admin_token: Option<&str>,
        default_principal: Principal,
        cluster_secret: Option<String>,
        state: SharedState,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                mode,
                admin: admin_token.map(credentials::digest),
                default_principal,
                member: cluster_secret
                    .as_deref()
                    .map(credentials::member_credential),
                cluster_secret,
                state,
            }),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.inner.mode
    }

    /// The context a request runs in: its principal and scopes, or 401 saying why none.
    pub fn context(
        &self,
        presented: Presented<'_>,
        trace_id: TraceId,
    ) -> Result<RequestContext, GatewayError> {
        if let Some(authorization) = presented.authorization {
            return self.bearer(authorization, trace_id);
        }
        match self.inner.mode {
            AuthMode::Token => Err(unauthenticated(
                "this node requires a token: send `authorization: Bearer <token>`",
            )),
            AuthMode::None => {
                let principal = match presented.principal {
                    Some(raw) => Principal::parse(raw)?,
                    None => self.inner.default_principal.clone(),
                };
                Ok(RequestContext::new(principal, trace_id))
            }
        }
    }

    fn bearer(
        &self,
        authorization: &str,
        trace_id: TraceId,
    ) -> Result<RequestContext, GatewayError> {
        let token = authorization
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthenticated("the authorization must read `Bearer <token>`"))?;
        if let Some(admin) = &self.inner.admin
            && credentials::matches(token, admin)
        {
            return Ok(RequestContext::new(Principal::Admin, trace_id));
        }
        if let Some(member) = &self.inner.member
            && token.starts_with("hodei_m_")
        {
            if credentials::same(token, member) {
                return Ok(RequestContext::new(Principal::Admin, trace_id));
            }
            return Err(unauthenticated(
                "the member credential is not this cluster's",
            ));
        }
        let (kind, id, secret) = credentials::parse(token)
            .filter(|(kind, _, _)| *kind != TokenKind::Join)
            .ok_or_else(|| unauthenticated("the token is not one this cluster issued"))?;
        let now = crate::clock::now_ms();
        let record = self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .access_token(id)
            .cloned()
            .filter(|record| credentials::matches(secret, &record.digest))
            .ok_or_else(|| unauthenticated("the token is unknown or was revoked"))?;
        if !is_live(record.expires_at_ms, now) {
            return Err(unauthenticated("the token has expired"));
        }
        match (kind, record.tenant) {
            (TokenKind::Admin, None) => Ok(RequestContext::new(Principal::Admin, trace_id)),
            (TokenKind::Tenant, Some(tenant)) => {
                let mut context = RequestContext::new(Principal::Tenant(tenant), trace_id)
                    .with_scopes(record.scopes);
                context.token_expires_at_ms = record.expires_at_ms;
                Ok(context)
            }
            _ => Err(unauthenticated("the token is unknown or was revoked")),
        }
    }

    /// Whether a worker may join `pool` with what it presented: anything without
    /// authentication; with it, a live join token of that pool, or the credential a
    /// member gives the agents of its own process pools.
    pub fn admit_worker(&self, join_token: Option<&str>, pool: &str) -> Result<(), GatewayError> {
        if self.inner.mode == AuthMode::None {
            return Ok(());
        }
        let Some(presented) = join_token.filter(|token| !token.is_empty()) else {
            return Err(unauthenticated(format!(
                "joining pool `{pool}` needs a join token (`hodei join-token create {pool}`)"
            )));
        };
        if let Some(secret) = &self.inner.cluster_secret
            && credentials::same(presented, &credentials::node_join_credential(secret, pool))
        {
            return Ok(());
        }
        let refused = || {
            unauthenticated(format!(
                "the join token does not admit workers to pool `{pool}`"
            ))
        };
        let (_, id, secret) = credentials::parse(presented)
            .filter(|(kind, _, _)| *kind == TokenKind::Join)
            .ok_or_else(refused)?;
        let record = self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .join_token(id)
            .cloned()
            .filter(|record| record.pool == pool && credentials::matches(secret, &record.digest))
            .ok_or_else(refused)?;
        if !is_live(record.expires_at_ms, crate::clock::now_ms()) {
            return Err(unauthenticated(format!(
                "the join token of pool `{pool}` has expired"
            )));
        }
        Ok(())
    }
}

fn unauthenticated(reason: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorCode::Unauthenticated, reason)
}
