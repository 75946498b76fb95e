use serde::{Deserialize, Serialize};

/// Why a domain rule refused something. It travels inside Raft responses, so it is plain
/// data; the API layer maps each variant to one error code for both wires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DomainError {
    /// A value broke a rule; `field` is the request field it came from.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: String, id: String },
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: String, id: String },
    /// The request is valid but the current state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A limit on how much may wait is reached (a full backlog); retry later.
    #[error("{0}")]
    Exhausted(String),
    /// A burst request broke a governance rule.
    #[error("{0}")]
    BurstRefused(crate::burst::BurstRefusal),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }

    pub fn not_found(kind: &str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind: kind.to_string(),
            id: id.into(),
        }
    }

    pub fn already_exists(kind: &str, id: impl Into<String>) -> Self {
        Self::AlreadyExists {
            kind: kind.to_string(),
            id: id.into(),
        }
    }
}
