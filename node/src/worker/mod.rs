//! Workers: the agent (`hodei worker`) that runs jobs as child processes, the leader's
//! side of its stream, and the simulated provider.

pub mod agent;
pub mod hub;
pub mod process;
pub mod process_provider;
pub mod service;
pub mod simulated;
