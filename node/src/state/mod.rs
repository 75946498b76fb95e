//! The replicated state machine: versioned commands, deterministic apply, and the read
//! view that the gateway and controllers query.

pub mod command;
pub mod hodei_state;
pub mod jobs;
pub mod pools;
mod tenant_limits;

pub use command::{Command, CommandOutcome, CommandResult, CommandV1};
pub use hodei_state::{DomainEvent, HodeiState, SharedState};
