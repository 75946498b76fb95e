//! The root of a node's actor tree: starts the gateway, the control supervisor and the
//! metrics actor, and restarts one that fails after a back-off. Past the restart intensity
//! (`restarts.rs`) the root fails itself, and the node exits non-zero for its process
//! supervisor to restart it.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::error;

use crate::actors::NodeContext;
use crate::actors::control::{ControlMsg, ControlSupervisor};
use crate::actors::gateway::{GatewayActor, GatewayHandle};
use crate::actors::metrics::{MetricsActor, MetricsHub, MetricsMsg};
use crate::actors::restarts::{Restart, RestartPolicy, Restarts};

pub enum RootMsg {
    Gateway(RpcReplyPort<GatewayHandle>),
    Control(RpcReplyPort<ActorRef<ControlMsg>>),
    /// Start the metrics actor under this supervisor with `hub`, and return it.
    StartMetrics(
        Box<MetricsHub>,
        RpcReplyPort<Result<ActorRef<MetricsMsg>, String>>,
    ),
    /// The metrics actor as it is now (it may have been restarted).
    Metrics(RpcReplyPort<Option<ActorRef<MetricsMsg>>>),
    /// Start a failed child again (its back-off has passed).
    Restart(RootChild),
}

pub struct RootSupervisor;

pub struct RootState {
    node: NodeContext,
    gateway: GatewayHandle,
    control: ActorRef<ControlMsg>,
    metrics: Option<(ActorRef<MetricsMsg>, MetricsHub)>,
    restarts: Restarts,
}

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        node: NodeContext,
    ) -> Result<RootState, ActorProcessingErr> {
        // Unnamed: ractor's name registry is process-wide and tests run several nodes.
        let (gateway, _) =
            Actor::spawn_linked(None, GatewayActor, node.clone(), myself.get_cell()).await?;
        let (control, _) =
            Actor::spawn_linked(None, ControlSupervisor, node.clone(), myself.get_cell()).await?;
        let rate_limit = node.limits.rate_limit;
        Ok(RootState {
            node,
            gateway: GatewayHandle::new(gateway, rate_limit),
            control,
            metrics: None,
            restarts: Restarts::new(RestartPolicy::default()),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RootMsg::Gateway(reply) => {
                let _ = reply.send(state.gateway.clone());
            }
            RootMsg::Control(reply) => {
                let _ = reply.send(state.control.clone());
            }
            RootMsg::StartMetrics(hub, reply) => {
                let hub = *hub;
                let started =
                    Actor::spawn_linked(None, MetricsActor, hub.clone(), myself.get_cell())
                        .await
                        .map(|(actor, _)| actor);
                if let Ok(actor) = &started {
                    state.metrics = Some((actor.clone(), hub));
                }
                let _ = reply.send(started.map_err(|error| error.to_string()));
            }
            RootMsg::Metrics(reply) => {
                let _ = reply.send(state.metrics.as_ref().map(|(actor, _)| actor.clone()));
            }
            RootMsg::Restart(child) => restart(&myself, state, child).await?,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, failure) = event else {
            return Ok(());
        };
        let child = if cell.get_id() == state.gateway.current().get_id() {
            RootChild::Gateway
        } else if state
            .metrics
            .as_ref()
            .is_some_and(|(metrics, _)| metrics.get_id() == cell.get_id())
        {
            RootChild::Metrics
        } else if cell.get_id() == state.control.get_id() {
            RootChild::Control
        } else {
            return Ok(());
        };
        state.node.metrics.actor_restarted(child.name());
        match state.restarts.failed(child.name(), std::time::Instant::now()) {
            Restart::After(backoff) => {
                error!(actor = child.name(), %failure, backoff_ms = backoff.as_millis() as u64, "actor failed; restarting it after a back-off");
                myself.send_after(backoff, move || RootMsg::Restart(child));
                Ok(())
            }
            Restart::GiveUp { restarts } => Err(format!(
                "{restarts} restarts within a minute (the last: {}, {failure}): the node's actors give up",
                child.name()
            )
            .into()),
        }
    }
}

/// The children the root restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootChild {
    Gateway,
    Metrics,
    Control,
}

impl RootChild {
    fn name(self) -> &'static str {
        match self {
            RootChild::Gateway => "gateway",
            RootChild::Metrics => "metrics",
            RootChild::Control => "control",
        }
    }
}

async fn restart(
    myself: &ActorRef<RootMsg>,
    state: &mut RootState,
    child: RootChild,
) -> Result<(), ActorProcessingErr> {
    match child {
        RootChild::Gateway => {
            let (gateway, _) =
                Actor::spawn_linked(None, GatewayActor, state.node.clone(), myself.get_cell())
                    .await?;
            state.gateway.replace(gateway);
        }
        RootChild::Metrics => {
            if let Some((_, hub)) = state.metrics.clone() {
                let (restarted, _) =
                    Actor::spawn_linked(None, MetricsActor, hub.clone(), myself.get_cell()).await?;
                state.metrics = Some((restarted, hub));
            }
        }
        RootChild::Control => {
            let (control, _) = Actor::spawn_linked(
                None,
                ControlSupervisor,
                state.node.clone(),
                myself.get_cell(),
            )
            .await?;
            state.control = control;
        }
    }
    Ok(())
}
