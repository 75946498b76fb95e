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
