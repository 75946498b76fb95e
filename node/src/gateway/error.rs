//! The gateway's one error type. Every failure a caller can see has an [`ErrorCode`];
//! the adapters map each code to exactly one HTTP status and one gRPC code
//! (`crate::api::error`), so no handler picks them.

use hodei_domain::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed request: not JSON, bad syntax.
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The id is taken.
    AlreadyExists,
    /// The current state forbids the change.
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// Well-formed but a value breaks a rule (the field is named).
    Unprocessable,
    TooManyRequests,
    /// No leader or no quorum right now; retry later.
    Unavailable,
    Timeout,
    /// A write's outcome cannot be known (its reply was lost); retrying with the same
    /// request id is safe.
    OutcomeUnknown,
    Internal,
}

impl ErrorCode {
    /// The problem type's short title (RFC 9457 `title`).
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not found",
            ErrorCode::MethodNotAllowed => "method not allowed",
            ErrorCode::AlreadyExists => "already exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload too large",
            ErrorCode::UnsupportedMediaType => "unsupported media type",
            ErrorCode::Unprocessable => "invalid field",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::OutcomeUnknown => "outcome unknown",
            ErrorCode::Internal => "internal error",
        }
    }

    /// The problem type's identifier (RFC 9457 `type`).
    pub fn slug(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not-found",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::AlreadyExists => "already-exists",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload-too-large",
            ErrorCode::UnsupportedMediaType => "unsupported-media-type",
            ErrorCode::Unprocessable => "invalid-field",
            ErrorCode::TooManyRequests => "too-many-requests",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct GatewayError {
    pub code: ErrorCode,
    pub detail: String,
    /// The request field at fault, where there is one.
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after_s: Option<u64>,
    /// The governance rule that refused the request, where one did.
    pub rule: Option<String>,
    /// The request id to retry with, for an outcome that cannot be known.
    pub request_id: Option<String>,
}

impl GatewayError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field: None,
            retry_after_s: None,
            rule: None,
            request_id: None,
        }
    }

    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        let field = field.into();
        let rule = rule.into();
        Self {
            code: ErrorCode::Unprocessable,
            detail: format!("{field}: {rule}"),
            field: Some(field),
            retry_after_s: None,
            rule: None,
            request_id: None,
        }
    }

    /// The same error about a field of the object at `prefix` (`pricing` + `cpu_core_hour_usd`
    /// -> `pricing.cpu_core_hour_usd`).
    pub fn within(mut self, prefix: &str) -> Self {
        if let Some(field) = self.field.take() {
            let nested = format!("{prefix}.{field}");
            self.detail = self.detail.replacen(&field, &nested, 1);
            self.field = Some(nested);
        }
        self
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, detail)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(ErrorCode::Unavailable, detail)
        }
    }
}

impl From<DomainError> for GatewayError {
    fn from(error: DomainError) -> Self {
        match &error {
            DomainError::Invalid { field, rule } => {
                GatewayError::invalid(field.clone(), rule.clone())
            }
            DomainError::NotFound { .. } => {
                GatewayError::new(ErrorCode::NotFound, error.to_string())
            }
            DomainError::AlreadyExists { .. } => {
                GatewayError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            DomainError::Conflict(_) => GatewayError::new(ErrorCode::Conflict, error.to_string()),
            DomainError::Forbidden(_) => GatewayError::new(ErrorCode::Forbidden, error.to_string()),
            DomainError::Exhausted(_) => {
                GatewayError::new(ErrorCode::TooManyRequests, error.to_string())
            }
            DomainError::BurstRefused(refusal) => GatewayError {
                rule: Some(refusal.rule.as_str().to_string()),
                ..GatewayError::new(ErrorCode::Conflict, refusal.to_string())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_keep_their_field() {
        let error = GatewayError::from(DomainError::invalid(
            "weight",
            "must be between 0.1 and 100, got 0",
        ));
        assert_eq!(error.code, ErrorCode::Unprocessable);
        assert_eq!(error.field.as_deref(), Some("weight"));
        assert_eq!(error.detail, "weight: must be between 0.1 and 100, got 0");
    }
}
