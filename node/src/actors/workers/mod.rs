//! The leader's side of workers: the hub that holds each agent's stream and watches its
//! heartbeats, the `WorkerService` session an agent opens, the process provider that
//! starts agents for dynamic pools, and the simulated provider.

pub mod hub;
pub mod process_provider;
pub mod session;
pub mod simulated;
