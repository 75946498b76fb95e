//! The `hodei` node: domain rules, the replicated state machine, the actor tree, the
//! REST and gRPC adapters, and the command line.

pub mod actors;
pub mod api;
pub mod cli;
pub mod clock;
pub mod gateway;
pub mod server;
pub mod state;
pub mod worker;
