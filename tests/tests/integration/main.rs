//! Integration tests against real `hodei` processes (the heaviest are in `heavy`).

#[ctor::ctor]
fn install_tls_provider() {
    hodei_tests::install_tls_provider();
}

mod auth;
mod autoscaling;
mod cluster;
mod cockpit;
mod cost;
mod cost_ledger;
mod exactly_once;
mod foundation;
mod fuzz;
mod history;
mod jobs;
mod limits;
mod metrics;
mod observability;
mod peers;
mod pools;
mod scheduling;
mod security;
mod tls;
mod tour;

/// Tests that load the machine take this lock, so that at most one of them runs at a
/// time beside the others (the heaviest have a test binary of their own, `heavy`).
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
