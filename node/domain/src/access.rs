//! Access tokens: what a tenant's token lets its holder do, and the records the cluster
//! keeps of the tokens it issued. A record holds a digest of the secret, never the
//! secret: the caller is shown it once, when the token is issued.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::tenant::TenantId;

/// What a tenant token allows, on its own tenant's resources only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// See the tenant's jobs, usage, costs, burst sessions and its line in reports.
    Read,
    /// Submit and cancel the tenant's jobs.
    Submit,
    /// Manage the tenant: its tokens, burst requests and cost reports.
    AdminOfTenant,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Submit, Scope::AdminOfTenant];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::AdminOfTenant => "admin-of-tenant",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    "scopes",
                    format!("must each be `read`, `submit` or `admin-of-tenant`, got `{raw}`"),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A set of scopes (ordered, so that records and answers are stable).
pub type Scopes = BTreeSet<Scope>;

/// At most this many live tokens per tenant, and per pool (join tokens).
pub const MAX_TOKENS_PER_OWNER: usize = 100;
/// The longest lifetime a token may be given: a year.
pub const MAX_TOKEN_LIFETIME_MS: u64 = 366 * 24 * 3_600 * 1_000;
/// The longest name a token may be given.
pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// The digest of a token's secret (SHA-256), as stored.
pub type SecretDigest = [u8; 32];

/// A token issued to a tenant, or (`tenant: None`) the admin token the cluster issued
/// once at its first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    pub id: String,
    pub tenant: Option<TenantId>,
    pub name: String,
    pub scopes: Scopes,
    pub digest: SecretDigest,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    /// Who issued it (`admin` or `tenant:<id>`).
    pub created_by: String,
}

/// A token a worker presents to join one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub id: String,
    pub pool: String,
    pub name: String,
    pub digest: SecretDigest,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
}

/// Whether a token with this expiry is still valid at `now_ms`.
pub fn is_live(expires_at_ms: Option<u64>, now_ms: u64) -> bool {
    expires_at_ms.is_none_or(|expires| now_ms < expires)
}

/// Checks what a caller asked of a new token: a name, and a lifetime within bounds.
/// Returns the expiry time.
pub fn check_new_token(
    name: &str,
    expires_in_s: Option<u64>,
    now_ms: u64,
) -> Result<Option<u64>, DomainError> {
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_CHARS {
        return Err(DomainError::invalid(
            "name",
            format!("must be 1 to {MAX_TOKEN_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    let Some(seconds) = expires_in_s else {
        return Ok(None);
    };
    let lifetime_ms = seconds
        .checked_mul(1_000)
        .filter(|ms| (1_000..=MAX_TOKEN_LIFETIME_MS).contains(ms));
    let Some(lifetime_ms) = lifetime_ms else {
        return Err(DomainError::invalid(
            "expires_in_s",
            format!(
                "must be between 1 and {} seconds (a year), got {seconds}",
                MAX_TOKEN_LIFETIME_MS / 1_000
            ),
        ));
    };
    Ok(Some(now_ms.saturating_add(lifetime_ms)))
}

/// Checks the scopes of a new tenant token: at least one.
pub fn check_scopes(scopes: &Scopes) -> Result<(), DomainError> {
    if scopes.is_empty() {
        return Err(DomainError::invalid(
            "scopes",
            "must name at least one of `read`, `submit`, `admin-of-tenant`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_by_name_and_nothing_else() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
        }
        let error = Scope::parse("admin").unwrap_err();
        assert!(error.to_string().starts_with("scopes: "), "{error}");
    }

    #[test]
    fn lifetimes_are_bounded_and_checked_without_overflow() {
        assert_eq!(check_new_token("ci", None, 5).unwrap(), None);
        assert_eq!(check_new_token("ci", Some(60), 5).unwrap(), Some(60_005));
        for bad in [0, u64::MAX, u64::MAX / 1_000, 367 * 24 * 3_600] {
            let error = check_new_token("ci", Some(bad), 5).unwrap_err();
            assert!(error.to_string().starts_with("expires_in_s: "), "{bad}");
        }
        assert!(check_new_token("", None, 0).is_err());
        assert!(check_new_token(&"x".repeat(65), None, 0).is_err());
        assert!(check_new_token("a\nb", None, 0).is_err());
    }

    #[test]
    fn a_token_lives_until_its_expiry() {
        assert!(is_live(None, u64::MAX));
        assert!(is_live(Some(10), 9));
        assert!(!is_live(Some(10), 10));
    }
}
