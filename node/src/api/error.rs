//! The gateway's errors on the wires: each [`ErrorCode`] maps to exactly one HTTP status
//! and one gRPC code.

use crate::gateway::{ErrorCode, GatewayError};

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
}

impl GatewayError {
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
}
