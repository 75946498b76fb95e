//! Integration tests that load the machine (thousands of jobs in batches, a disk filled
//! up): a test binary of their own, which cargo runs after the others rather than beside
//! them, and one test at a time within it.

#[ctor::ctor]
fn install_tls_provider() {
    hodei_tests::install_tls_provider();
}

mod durability;
mod replication;
mod schemathesis;

/// Held by each test here: one at a time.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
