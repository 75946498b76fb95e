//! The `hodei` node: the replicated state machine, the actor tree, the gateway's contract,
//! the REST and gRPC adapters, the worker agent and the command line. The layers and
//! their import rules are in `ARCHITECTURE.md` (checked by `layering_tests`).

pub mod actors;
pub mod api;
pub mod cli;
pub mod clock;
pub mod defects;
pub mod gateway;
pub mod observability;
pub mod server;
pub mod state;
pub mod worker;

#[cfg(test)]
mod layering_tests;
