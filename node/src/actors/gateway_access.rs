//! The gateway's token operations (issue 21): a tenant's access tokens and a pool's
//! join tokens, issued (the secret drawn here, its digest proposed), listed and revoked.

use tracing::info;

use crate::actors::gateway::{Handler, propose_for, read_barrier, require_access, unexpected};
use crate::actors::{NodeContext, now_ms};
use crate::gateway::access_model::{IssuedTokenView, TokenListView, TokenView};
use crate::gateway::credentials::{self, TokenKind};
use crate::gateway::operations::{
    IssueJoinToken, IssueTenantToken, ListJoinTokens, ListTenantTokens, RevokeAnyToken,
    RevokeJoinToken, RevokeTenantToken,
};
use crate::gateway::{ErrorCode, GatewayError, Principal, RequestContext};
use crate::state::{CommandOutcome, CommandV1, command};
use hodei_domain::DomainError;
use hodei_domain::access::{AccessToken, JoinToken, Scope, Scopes, check_new_token, check_scopes};
use hodei_domain::tenant::TenantId;

fn tenant_of(raw: &str, context: &RequestContext) -> Result<TenantId, GatewayError> {
    let tenant = TenantId::parse(raw)?;
    require_access(context, &tenant)?;
    Ok(tenant)
}

/// Proposes a revocation; the revoked token's id.
async fn revoke(
    node: &NodeContext,
    context: &RequestContext,
    command: CommandV1,
) -> Result<String, GatewayError> {
    match propose_for(node, context, command).await? {
        CommandOutcome::TokenRevoked { id } => {
            info!(token = %id, principal = %context.principal, "token revoked");
            Ok(id)
        }
        other => Err(unexpected(other)),
    }
}

/// A retried request whose first attempt was applied answers with that attempt's record,
/// whose secret was drawn then and is gone.
fn secret_lost(id: &str) -> GatewayError {
    GatewayError::new(
        ErrorCode::Conflict,
        format!(
            "this request was applied before as token `{id}`, whose secret was shown only to that attempt: revoke `{id}` and issue a new token"
        ),
    )
}

impl Handler for IssueTenantToken {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<IssuedTokenView, GatewayError> {
        let tenant = tenant_of(&self.tenant, &context)?;
        let now = now_ms();
        let expires_at_ms = check_new_token(&self.input.name, self.input.expires_in_s, now)?;
        let scopes = self
            .input
            .scopes
            .iter()
            .map(|raw| Scope::parse(raw))
            .collect::<Result<Scopes, DomainError>>()?;
        check_scopes(&scopes)?;
        // A tenant's token issues no token that can do more than itself.
        if let Some(beyond) = scopes.iter().find(|scope| !context.scopes.contains(scope)) {
            return Err(hodei_domain::DomainError::Forbidden(format!(
                "this token does not hold the `{beyond}` scope, so it cannot give it"
            ))
            .into());
        }
        // Nor one that outlives it.
        if let Some(limit) = context.token_expires_at_ms
            && expires_at_ms.is_none_or(|expires| expires > limit)
        {
            return Err(GatewayError::invalid(
                "expires_in_s",
                format!(
                    "this token expires at {limit} ms: a token it issues must expire by then (give expires_in_s)"
                ),
            ));
        }
        let drawn = credentials::draw(TokenKind::Tenant)?;
        let token = AccessToken {
            id: drawn.id.clone(),
            tenant: Some(tenant),
            name: self.input.name,
            scopes,
            digest: drawn.digest,
            created_at_ms: now,
            expires_at_ms,
            created_by: context.principal.to_string(),
        };
        let command = CommandV1::IssueToken(command::IssueToken {
            token,
            bootstrap: false,
        });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Token(token) if token.id == drawn.id => {
                info!(token = %token.id, tenant = ?token.tenant, principal = %context.principal, "token issued");
                Ok(IssuedTokenView {
                    token: drawn.token,
                    record: TokenView::of_access(&token),
                })
            }
            CommandOutcome::Token(token) => Err(secret_lost(&token.id)),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for ListTenantTokens {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<TokenListView, GatewayError> {
        let tenant = tenant_of(&self.tenant, &context)?;
        read_barrier(&node, self.consistency).await?;
        let (exists, tokens) = node.read(|state| {
            (
                state.tenant(&tenant).is_some(),
                state.tenant_tokens(&tenant),
            )
        });
        if !exists {
            return Err(DomainError::not_found("tenant", tenant.to_string()).into());
        }
        Ok(TokenListView {
            items: tokens.iter().map(TokenView::of_access).collect(),
        })
    }
}

impl Handler for RevokeTenantToken {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<String, GatewayError> {
        let tenant = tenant_of(&self.tenant, &context)?;
        let command = CommandV1::RevokeToken(command::RevokeToken {
            id: self.id,
            tenant: Some(tenant),
        });
        revoke(&node, &context, command).await
    }
}

impl Handler for RevokeAnyToken {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<String, GatewayError> {
        let command = CommandV1::RevokeToken(command::RevokeToken {
            id: self.id,
            tenant: None,
        });
        revoke(&node, &context, command).await
    }
}

impl Handler for IssueJoinToken {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<IssuedTokenView, GatewayError> {
        let now = now_ms();
        let expires_at_ms = check_new_token(&self.input.name, self.input.expires_in_s, now)?;
        let drawn = credentials::draw(TokenKind::Join)?;
        let token = JoinToken {
            id: drawn.id.clone(),
            pool: self.pool,
            name: self.input.name,
            digest: drawn.digest,
            created_at_ms: now,
            expires_at_ms,
        };
        let command = CommandV1::IssueJoinToken(command::IssueJoinToken { token });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::JoinToken(token) if token.id == drawn.id => {
                info!(token = %token.id, pool = %token.pool, "join token issued");
                Ok(IssuedTokenView {
                    token: drawn.token,
                    record: TokenView::of_join(&token),
                })
            }
            CommandOutcome::JoinToken(token) => Err(secret_lost(&token.id)),
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for ListJoinTokens {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<TokenListView, GatewayError> {
        read_barrier(&node, self.consistency).await?;
        let (exists, tokens) = node.read(|state| {
            (
                state.pool(&self.pool).is_some(),
                state.pool_join_tokens(&self.pool),
            )
        });
        if !exists {
            return Err(DomainError::not_found("pool", self.pool).into());
        }
        Ok(TokenListView {
            items: tokens.iter().map(TokenView::of_join).collect(),
        })
    }
}

impl Handler for RevokeJoinToken {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<String, GatewayError> {
        let command = CommandV1::RevokeJoinToken(command::RevokeJoinToken {
            pool: self.pool,
            id: self.id,
        });
        revoke(&node, &context, command).await
    }
}

/// Issues the admin token of the cluster's first start (`server.auth: token` without
/// `server.admin_token`), once in the cluster's life: the token, when this call issued it.
pub async fn issue_bootstrap_token(node: &NodeContext) -> Result<Option<String>, GatewayError> {
    let drawn = credentials::draw(TokenKind::Admin)?;
    let token = AccessToken {
        id: drawn.id.clone(),
        tenant: None,
        name: "first start".to_string(),
        scopes: Scopes::new(),
        digest: drawn.digest,
        created_at_ms: now_ms(),
        expires_at_ms: None,
        created_by: Principal::Admin.to_string(),
    };
    let context = RequestContext::new(Principal::Admin, crate::gateway::TraceId::generate());
    let command = CommandV1::IssueToken(command::IssueToken {
        token,
        bootstrap: true,
    });
    match propose_for(node, &context, command).await {
        Ok(CommandOutcome::Token(_)) => Ok(Some(drawn.token)),
        Ok(other) => Err(unexpected(other)),
        Err(error) if error.code == ErrorCode::Conflict => Ok(None),
        Err(error) => Err(error),
    }
}
