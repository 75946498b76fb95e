//! The gateway's contract: what the REST and gRPC adapters send the gateway actor and
//! what it answers. Who is asking and how fresh a read must be (this module), the inputs
//! and views of every operation (`model`, `job_model`, `report_model`), and the one error
//! type (`error`). It knows the domain's types and nothing of the wires, Raft or the state
//! machine: the adapters above it map it to HTTP and gRPC, the actors below implement it.

pub mod access_model;
pub mod cost_model;
pub mod cost_operations;
pub mod credentials;
pub mod error;
pub mod job_model;
pub mod model;
pub mod observability_model;
pub mod operations;
pub mod policy;
pub mod pricing_model;
pub mod principal;
pub mod report_model;
pub mod scaling_model;
pub mod scaling_operations;
pub mod secrets;
pub mod trace;

pub use error::{ErrorCode, GatewayError};
pub use principal::Principal;
pub use trace::TraceId;

/// One operation of the contract: the struct is its input, `Reply` its answer.
pub trait Operation: Send + 'static {
    type Reply: Send + 'static;
    /// Its name in metrics and logs.
    const NAME: &'static str;
    /// Who may run it ([`policy::authorize`]).
    const ACCESS: policy::Access;
    /// Whether it changes the state (and so is written to the audit log).
    const CHANGES_STATE: bool = false;
}

/// The header (REST) and metadata key (gRPC) of a client's request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Who is asking, under which trace, and the request's id: what every gateway message
/// carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub principal: Principal,
    pub trace_id: TraceId,
    /// The client's `x-request-id`, or one the gateway drew. A write proposed with it
    /// applies at most once: a client told `outcome_unknown` retries with this id.
    pub request_id: String,
    /// What the caller's token allows on its tenant's resources (every scope for an
    /// admin, and without authentication).
    pub scopes: hodei_domain::access::Scopes,
    /// What the request named, for the audit log: its REST method and path, or its gRPC
    /// method.
    pub resource: String,
    /// When the caller's token expires (a token it issues may not outlive it).
    pub token_expires_at_ms: Option<u64>,
}

impl RequestContext {
    pub fn new(principal: Principal, trace_id: TraceId) -> Self {
        Self {
            principal,
            trace_id,
            request_id: uuid::Uuid::now_v7().simple().to_string(),
            scopes: hodei_domain::access::Scope::ALL.into_iter().collect(),
            resource: String::new(),
            token_expires_at_ms: None,
        }
    }

    /// Naming what the request named (the audit log's `resource`).
    pub fn with_resource(mut self, resource: String) -> Self {
        self.resource = resource;
        self
    }

    /// Limited to what a token allows.
    pub fn with_scopes(mut self, scopes: hodei_domain::access::Scopes) -> Self {
        self.scopes = scopes;
        self
    }

    /// With the client's request id, when it sent one.
    pub fn with_request_id(mut self, raw: Option<&str>) -> Result<Self, GatewayError> {
        if let Some(raw) = raw {
            self.request_id = parse_request_id(raw)?;
        }
        Ok(self)
    }

    /// The id the state machine remembers the write by: the principal's own, so that
    /// two callers choosing the same id never see each other's result.
    pub fn dedup_id(&self) -> String {
        format!("{}/{}", self.principal, self.request_id)
    }
}

/// A client's request id: 1 to 128 characters of letters, digits, `-`, `_`, `.`, `:`.
pub fn parse_request_id(raw: &str) -> Result<String, GatewayError> {
    let allowed = |character: char| {
        character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.' | ':')
    };
    if raw.is_empty() || raw.len() > 128 || !raw.chars().all(allowed) {
        return Err(GatewayError::invalid(
            REQUEST_ID_HEADER,
            format!(
                "must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`, got `{}`",
                raw.chars().take(140).collect::<String>()
            ),
        ));
    }
    Ok(raw.to_string())
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
    /// `linearizable` or `stale`; absent: linearizable. (gRPC's empty field is absent.)
    pub fn parse(raw: Option<&str>) -> Result<Self, GatewayError> {
        match raw.unwrap_or("linearizable") {
            "linearizable" => Ok(Consistency::Linearizable),
            "stale" => Ok(Consistency::Stale),
            other => Err(GatewayError::invalid(
                "consistency",
                format!("must be `linearizable` or `stale`, got `{other}`"),
            )),
        }
    }
}
