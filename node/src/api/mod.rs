//! The REST (axum) and gRPC (tonic) adapters. Each handler decodes, sends one message to
//! the gateway, and encodes the reply; neither API has logic the other lacks.

pub mod error;
pub mod grpc;
pub mod job_model;
pub mod model;
pub mod principal;
pub mod report_model;
pub mod rest;
pub mod trace;

pub use error::{ApiError, ErrorCode};
pub use principal::Principal;
pub use trace::TraceId;

/// Who is asking and under which trace: what every gateway message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub principal: Principal,
    pub trace_id: TraceId,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (Raft read-index).
    #[default]
    Linearizable,
    /// Served from this node's state as it is, possibly behind the leader.
    Stale,
}

impl Consistency {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.unwrap_or("") {
            "" | "linearizable" => Ok(Consistency::Linearizable),
            "stale" => Ok(Consistency::Stale),
            other => Err(ApiError::invalid(
                "consistency",
                format!("must be `linearizable` or `stale`, got `{other}`"),
            )),
        }
    }
}
