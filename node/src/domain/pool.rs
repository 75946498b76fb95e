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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub id: String,
    pub provider: PoolProvider,
    /// The capacity of one worker of this pool (the largest a job in it may ask for).
    pub worker_shape: Resources,
    pub min_size: u32,
    pub max_size: u32,
    pub created_at_ms: u64,
}

impl Pool {
    /// The id of the `index`-th virtual worker of a simulated pool.
    pub fn simulated_worker_id(&self, index: u32) -> String {
        format!("{}-sim-{index}", self.id)
    }
}
