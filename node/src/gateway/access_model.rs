//! What the token operations take and answer (issue 21). A token's secret appears in one
//! answer only: the one that issued it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use hodei_domain::access::{AccessToken, JoinToken};

/// A new tenant token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// What the token is for (1 to 64 characters), shown when tokens are listed.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Any of `read`, `submit`, `admin-of-tenant`; at least one.
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
    /// Seconds until it expires (1 to 31,622,400); without it, it lives until revoked.
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub expires_in_s: Option<u64>,
}

/// A new join token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenInput {
    /// What the token is for (1 to 64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Seconds until it expires (1 to 31,622,400); without it, it lives until revoked.
    #[schema(minimum = 1, maximum = 31_622_400)]
    pub expires_in_s: Option<u64>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    /// The tenant it acts as; none for the admin token of the cluster's first start.
    pub tenant: Option<String>,
    /// The pool a join token admits workers to.
    pub pool: Option<String>,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub created_by: Option<String>,
}

impl TokenView {
    pub fn of_access(token: &AccessToken) -> Self {
        Self {
            id: token.id.clone(),
            tenant: token.tenant.as_ref().map(ToString::to_string),
            pool: None,
            name: token.name.clone(),
            scopes: token.scopes.iter().map(ToString::to_string).collect(),
            created_at_ms: token.created_at_ms,
            expires_at_ms: token.expires_at_ms,
            created_by: Some(token.created_by.clone()),
        }
    }

    pub fn of_join(token: &JoinToken) -> Self {
        Self {
            id: token.id.clone(),
            tenant: None,
            pool: Some(token.pool.clone()),
            name: token.name.clone(),
            scopes: Vec::new(),
            created_at_ms: token.created_at_ms,
            expires_at_ms: token.expires_at_ms,
            created_by: None,
        }
    }
}

/// A token just issued: `token` is its secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedTokenView {
    /// Present it as `authorization: Bearer <token>` (a join token: `hodei worker
    /// --join-token`). It is not stored and cannot be shown again.
    pub token: String,
    #[serde(flatten)]
    pub record: TokenView,
}

/// Tokens (at most 100 per tenant or pool, so one page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenListView {
    pub items: Vec<TokenView>,
}
