//! The leader's side of workers: the hub that holds each agent's stream and watches its
//! heartbeats, the `WorkerService` session an agent opens, and the providers a pool actor
//! starts and stops workers through (`provider.rs`: static, process, simulated).

pub mod hub;
pub mod process_provider;
pub mod provider;
pub mod session;
pub mod simulated;
