//! A run as its worker reports it: registration, how a run ended, the output kept.

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::resources::Resources;

/// The most output kept per job (the tail).
pub const OUTPUT_TAIL_BYTES: usize = 64 * 1024;

/// How a run ended, as its worker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Exited with code 0.
    Succeeded,
    /// Exited with another code, was killed by a signal, or could not start.
    Failed,
    /// Killed after its `timeout_s`.
    TimedOut,
    /// Killed because the job was cancelled (the report brings its output; the job is
    /// already cancelled).
    Cancelled,
}

/// A worker's report that a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub job: String,
    pub attempt: u32,
    pub worker: String,
    pub outcome: RunOutcome,
    pub exit_code: Option<i32>,
    pub output_tail: String,
    pub at_ms: u64,
    /// What the run used, when the worker measured it.
    #[serde(default)]
    pub usage: Option<crate::usage::RunUsage>,
}

/// What a worker declares when it (re-)registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRegistration {
    pub id: String,
    pub pool: String,
    pub capacity: Resources,
    pub labels: Labels,
    pub simulated: bool,
    /// The jobs it is running now (after a reconnect).
    pub running: Vec<String>,
}
