//! The root of a node's actor tree: starts the gateway and the control supervisor and
//! restarts either if it fails.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::error;

use crate::actors::NodeContext;
use crate::actors::control::{ControlMsg, ControlSupervisor};
use crate::actors::gateway::{GatewayActor, GatewayHandle};

pub enum RootMsg {
    Gateway(RpcReplyPort<GatewayHandle>),
    Control(RpcReplyPort<ActorRef<ControlMsg>>),
}

pub struct RootSupervisor;

pub struct RootState {
    node: NodeContext,
    gateway: GatewayHandle,
    control: ActorRef<ControlMsg>,
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
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
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
                let (gateway, _) =
                    Actor::spawn_linked(None, GatewayActor, state.node.clone(), myself.get_cell())
                        .await?;
                state.gateway.replace(gateway);
            } else if cell.get_id() == state.control.get_id() {
                error!(%failure, "control supervisor failed; restarting it");
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
