//! The root of a node's actor tree: starts the gateway and the control supervisor and
//! restarts either if it fails.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::error;

use crate::actors::NodeContext;
use crate::actors::control::{ControlMsg, ControlSupervisor};
use crate::actors::gateway::{GatewayActor, GatewayHandle};
use crate::actors::metrics::{MetricsActor, MetricsHub, MetricsMsg};

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
}

pub struct RootSupervisor;

pub struct RootState {
    node: NodeContext,
    gateway: GatewayHandle,
    control: ActorRef<ControlMsg>,
    metrics: Option<(ActorRef<MetricsMsg>, MetricsHub)>,
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
        Ok(RootState {
            node,
            gateway: GatewayHandle::new(gateway),
            control,
            metrics: None,
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
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, failure) = event {
            if cell.get_id() == state.gateway.current().get_id() {
                error!(%failure, "gateway failed; restarting it");
                state.node.metrics.actor_restarted("gateway");
                let (gateway, _) =
                    Actor::spawn_linked(None, GatewayActor, state.node.clone(), myself.get_cell())
                        .await?;
                state.gateway.replace(gateway);
            } else if let Some((metrics, hub)) = state
                .metrics
                .as_ref()
                .filter(|(metrics, _)| metrics.get_id() == cell.get_id())
                .map(|(metrics, hub)| (metrics.clone(), hub.clone()))
            {
                error!(%failure, actor = %metrics.get_id(), "metrics actor failed; restarting it");
                state.node.metrics.actor_restarted("metrics");
                let (restarted, _) =
                    Actor::spawn_linked(None, MetricsActor, hub.clone(), myself.get_cell()).await?;
                state.metrics = Some((restarted, hub));
            } else if cell.get_id() == state.control.get_id() {
                error!(%failure, "control supervisor failed; restarting it");
                state.node.metrics.actor_restarted("control");
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
}
