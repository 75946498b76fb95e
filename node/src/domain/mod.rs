//! Pure, deterministic rules: no async, no I/O, no clock (time is a parameter).

pub mod error;
pub mod labels;
pub mod tenant;

pub use error::DomainError;
