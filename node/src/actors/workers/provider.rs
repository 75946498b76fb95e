//! How a pool's workers come and go. The pool actor decides (`hodei_domain::pool_sizing`)
//! and its pool's provider acts: `static` (an operator starts the agents), `process`
//! (`hodei worker` children of this node, [`ProcessProvider`]) or `simulated` (virtual
//! workers registered by the leader, [`SimulatedProvider`]).

use std::sync::Arc;
use std::time::Instant;

use crate::actors::NodeContext;
use crate::actors::workers::simulated::SimulatedProvider;
use hodei_domain::pool::{Pool, PoolProvider};

/// Starts and stops the workers of the pools of one provider kind.
pub trait WorkerProvider: Send + Sync {
    /// Starts one worker of `pool` (one that is not among `live`), which registers with one
    /// of `servers`; returns its id.
    fn start(&self, pool: &Pool, live: &[String], servers: &[String]) -> Result<String, String>;

    /// Stops `worker` if this provider started it (its stop command is already committed,
    /// or it never registered).
    fn stop(&self, worker: &str);

    /// The workers of `pool` this provider started and still runs, with when each started
    /// (registered or not yet).
    fn running(&self, pool: &str) -> Vec<(String, Instant)>;
}

/// Agents an operator starts: nothing to start or stop from here (a stopped worker is told
/// through its stream).
pub struct StaticProvider;

impl WorkerProvider for StaticProvider {
    fn start(&self, pool: &Pool, _live: &[String], _servers: &[String]) -> Result<String, String> {
        Err(format!(
            "pool {} is static: its agents are started by an operator",
            pool.id
        ))
    }

    fn stop(&self, _worker: &str) {}

    fn running(&self, _pool: &str) -> Vec<(String, Instant)> {
        Vec::new()
    }
}

/// The providers a pool actor uses: the node's process children are shared by every pool;
/// each pool actor keeps its own simulated registrations.
pub struct Providers {
    node: NodeContext,
    simulated: Option<Arc<SimulatedProvider>>,
}

impl Providers {
    pub fn new(node: NodeContext) -> Self {
        Self {
            node,
            simulated: None,
        }
    }

    /// The provider of `kind` (a pool's provider may change with an update).
    pub fn of(&mut self, kind: PoolProvider) -> Arc<dyn WorkerProvider> {
        match kind {
            PoolProvider::Static => Arc::new(StaticProvider),
            PoolProvider::Process => Arc::new(self.node.processes.clone()),
            PoolProvider::Simulated => self
                .simulated
                .get_or_insert_with(|| Arc::new(SimulatedProvider::new(self.node.clone())))
                .clone(),
        }
    }
}
