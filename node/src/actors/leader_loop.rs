//! A long-running loop (the worker hub, the simulator) hosted by an actor, so that it sits
//! in the supervision tree: if the loop ends or panics, the actor fails and its supervisor
//! restarts it with back-off; when the actor stops, the loop is aborted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::AbortHandle;

use crate::actors::NodeContext;

type LoopFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What to run: a name for logs and metrics, and how to start the loop.
#[derive(Clone)]
pub struct LoopSpec {
    pub name: &'static str,
    pub start: Arc<dyn Fn(NodeContext) -> LoopFuture + Send + Sync>,
}

impl LoopSpec {
    pub fn new<F, Fut>(name: &'static str, start: F) -> Self
    where
        F: Fn(NodeContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            start: Arc::new(move |node| Box::pin(start(node))),
        }
    }
}

pub enum LoopMsg {
    /// The loop ended (or panicked): the actor fails with this reason.
    Ended(String),
}

pub struct LeaderLoop;

impl Actor for LeaderLoop {
    type Msg = LoopMsg;
    type State = AbortHandle;
    type Arguments = (LoopSpec, NodeContext);

    async fn pre_start(
        &self,
        myself: ActorRef<LoopMsg>,
        (spec, node): (LoopSpec, NodeContext),
    ) -> Result<AbortHandle, ActorProcessingErr> {
        let running = tokio::spawn((spec.start)(node));
        let abort = running.abort_handle();
        let name = spec.name;
        tokio::spawn(async move {
            let reason = match running.await {
                Ok(()) => format!("the {name} loop ended"),
                Err(error) if error.is_cancelled() => return,
                Err(error) => format!("the {name} loop panicked: {error}"),
            };
            let _ = myself.cast(LoopMsg::Ended(reason));
        });
        Ok(abort)
    }

    async fn handle(
        &self,
        _myself: ActorRef<LoopMsg>,
        message: LoopMsg,
        _running: &mut AbortHandle,
    ) -> Result<(), ActorProcessingErr> {
        let LoopMsg::Ended(reason) = message;
        Err(reason.into())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LoopMsg>,
        running: &mut AbortHandle,
    ) -> Result<(), ActorProcessingErr> {
        running.abort();
        Ok(())
    }
}
