//! One error type for both wires. Every failure a caller can see has an [`ErrorCode`]
//! that maps to exactly one HTTP status and one gRPC code, so no handler picks them.

use hodei_cluster::ClusterError;

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
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::AlreadyExists | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout | ErrorCode::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorCode::BadRequest | ErrorCode::Unprocessable => Code::InvalidArgument,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::Forbidden => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::MethodNotAllowed | ErrorCode::UnsupportedMediaType => Code::Unimplemented,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::Conflict => Code::FailedPrecondition,
            ErrorCode::PayloadTooLarge => Code::OutOfRange,
            ErrorCode::TooManyRequests => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Timeout => Code::DeadlineExceeded,
            ErrorCode::OutcomeUnknown => Code::Unknown,
            ErrorCode::Internal => Code::Internal,
        }
    }

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
pub struct ApiError {
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

impl ApiError {
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

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, detail)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(ErrorCode::Unavailable, detail)
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        let mut message = self.detail.clone();
        if let Some(request_id) = &self.request_id {
            message.push_str(&format!(" (request id {request_id})"));
        }
        if let Some(retry_after_s) = self.retry_after_s {
            message.push_str(&format!(" (retry after {retry_after_s} s)"));
        }
        tonic::Status::new(self.code.grpc_code(), message)
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match &error {
            DomainError::Invalid { field, rule } => ApiError::invalid(field.clone(), rule.clone()),
            DomainError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, error.to_string()),
            DomainError::AlreadyExists { .. } => {
                ApiError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            DomainError::Conflict(_) => ApiError::new(ErrorCode::Conflict, error.to_string()),
            DomainError::Forbidden(_) => ApiError::new(ErrorCode::Forbidden, error.to_string()),
            DomainError::Exhausted(_) => {
                ApiError::new(ErrorCode::TooManyRequests, error.to_string())
            }
            DomainError::BurstRefused(refusal) => ApiError {
                rule: Some(refusal.rule.as_str().to_string()),
                ..ApiError::new(ErrorCode::Conflict, refusal.to_string())
            },
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match &error {
            ClusterError::NotLeader { .. } | ClusterError::Unavailable(_) => {
                ApiError::unavailable(error.to_string(), 1)
            }
            ClusterError::NotInitialized => ApiError::unavailable(error.to_string(), 5),
            ClusterError::AlreadyMember(_) => {
                ApiError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            ClusterError::NotMember(_) => ApiError::new(ErrorCode::NotFound, error.to_string()),
            ClusterError::Refused(_) => ApiError::new(ErrorCode::Conflict, error.to_string()),
            ClusterError::Invalid(_) => ApiError::new(ErrorCode::Unprocessable, error.to_string()),
            ClusterError::Storage(_) | ClusterError::Fatal(_) => {
                ApiError::internal(error.to_string())
            }
            ClusterError::OutcomeUnknown { request_id, .. } => ApiError {
                request_id: request_id
                    .as_deref()
                    .map(|id| id.split_once('/').map_or(id, |(_, own)| own).to_string()),
                ..ApiError::new(ErrorCode::OutcomeUnknown, error.to_string())
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_an_error_status_on_both_wires() {
        let codes = [
            ErrorCode::BadRequest,
            ErrorCode::Unauthenticated,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::AlreadyExists,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unprocessable,
            ErrorCode::TooManyRequests,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::OutcomeUnknown,
            ErrorCode::Internal,
        ];
        for code in codes {
            assert!(code.http_status().as_u16() >= 400, "{code:?}");
            assert_ne!(code.grpc_code(), tonic::Code::Ok, "{code:?}");
        }
        assert_eq!(ErrorCode::Unprocessable.http_status().as_u16(), 422);
        assert_eq!(ErrorCode::Conflict.http_status().as_u16(), 409);
    }

    #[test]
    fn domain_errors_keep_their_field() {
        let error = ApiError::from(DomainError::invalid(
            "weight",
            "must be between 0.1 and 100, got 0",
        ));
        assert_eq!(error.code, ErrorCode::Unprocessable);
        assert_eq!(error.field.as_deref(), Some("weight"));
        assert_eq!(error.detail, "weight: must be between 0.1 and 100, got 0");
    }

    #[test]
    fn not_leader_is_retryable_unavailable() {
        let error = ApiError::from(ClusterError::NotLeader {
            leader_id: None,
            leader_addr: None,
        });
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.retry_after_s, Some(1));
    }
}
