//! Integration tests against real `hodei` processes. One test binary for the crate.

mod cluster;
mod durability;
mod exactly_once;
mod foundation;
mod jobs;
mod limits;
mod metrics;
mod peers;
mod pools;
mod replication;
mod scheduling;

/// Tests that load the machine (thousands of jobs in batches, a disk filled up) take
/// this lock, so that at most one of them runs at a time beside the others.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
