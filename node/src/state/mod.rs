//! The replicated state machine: versioned commands, deterministic apply, and the read
//! view that the gateway and controllers query.

pub mod access_book;
mod apply;
mod audit;
pub mod command;
pub mod cost_book;
pub mod cost_ledger;
pub mod cost_report;
pub mod history;
pub mod hodei_state;
mod indexes;
pub mod jobs;
pub mod keys;
mod queries;
pub mod share_ledger;
pub mod violations;

#[cfg(test)]
mod cost_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
pub(crate) mod jobs_tests;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod scaling_tests;

pub use command::{Command, CommandOutcome, CommandResult, CommandV1};
pub use hodei_state::{DomainEvent, HodeiState, SharedState};

/// The state machine's response to a command, in the binary codec: decoded once, by the
/// node that proposed it.
pub fn encode_result(result: &CommandResult) -> Vec<u8> {
    match hodei_cluster::codec::encode(result) {
        Ok(bytes) => bytes,
        Err(error) => {
            // Every outcome is plain data; should one ever fail to encode, the caller
            // learns it from an error rather than every replica crashing on the entry.
            tracing::error!(%error, "a command's result could not be encoded");
            let refusal: CommandResult = Err(hodei_domain::DomainError::Conflict(format!(
                "the command's result could not be encoded: {error}"
            )));
            hodei_cluster::codec::encode(&refusal).unwrap_or_default()
        }
    }
}

pub fn decode_result(bytes: &[u8]) -> Result<CommandResult, String> {
    hodei_cluster::codec::decode(bytes)
}
