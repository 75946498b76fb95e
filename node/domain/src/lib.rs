//! Pure, deterministic rules: no async, no I/O, no clock (time is a parameter).

pub mod access;
pub mod admission;
pub mod autoscale;
pub mod burst;
pub mod cost;
pub mod dispatch;
pub mod error;
pub mod fairness;
pub mod job;
pub mod labels;
pub mod optimize;
pub mod pool;
pub mod pool_sizing;
pub mod queue;
pub mod quota;
pub mod resources;
pub mod run;
pub mod sla;
pub mod starvation;
pub mod tenant;
pub mod usage;
pub mod worker;

pub use error::DomainError;
