//! Resource pools as dispatch needs them: the id, where workers come from and the shape
//! of one worker (`../shared/docs/DOMAIN.md`, Pools and workers).

use serde::{Deserialize, Serialize};

use crate::domain::resources::Resources;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolProvider {
    /// An operator starts the `hodei worker` agents.
    #[default]
    Static,
    /// Virtual workers inside the leader that "run" a job for its simulated duration.
    Simulated,
}

impl PoolProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolProvider::Static => "static",
            PoolProvider::Simulated => "simulated",
        }
    }
}

/// The lifecycle of a pool (`../shared/docs/DOMAIN.md`, Pools and workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    Creating,
    #[default]
    Active,
    /// No new dispatch; running jobs go on.
    Suspended,
    /// No new dispatch; running jobs finish (or are re-queued at the drain timeout).
    Draining,
    Decommissioned,
    /// Fewer healthy workers than its minimum.
    Degraded,
}

impl PoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Creating => "creating",
            PoolState::Active => "active",
            PoolState::Suspended => "suspended",
            PoolState::Draining => "draining",
            PoolState::Decommissioned => "decommissioned",
            PoolState::Degraded => "degraded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: String,
    pub provider: PoolProvider,
    /// The capacity of one worker of this pool (the largest a job in it may ask for).
    pub worker_shape: Resources,
    pub min_size: u32,
    pub max_size: u32,
    pub created_at_ms: u64,
    #[serde(default)]
    pub state: PoolState,
}

impl Pool {
    /// Whether new jobs may be dispatched to its workers.
    pub fn accepts_work(&self) -> bool {
        matches!(self.state, PoolState::Active | PoolState::Degraded)
    }

    /// The id of the `index`-th virtual worker of a simulated pool.
    pub fn simulated_worker_id(&self, index: u32) -> String {
        format!("{}-sim-{index}", self.id)
    }
}
