//! One actor per tenant on the leader. Today it holds the tenant as the state machine
//! has it; quota usage, burst sessions and their expiry timers will live here.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::actors::NodeContext;
use crate::domain::tenant::{Tenant, TenantId};

pub enum TenantMsg {
    /// The tenant changed in the state machine: reload it.
    Refresh,
    GetObservableState(RpcReplyPort<TenantObservableState>),
    /// Fault injection for supervision tests: fail as if the state were inconsistent.
    #[cfg(test)]
    Fail,
}

/// What the actor holds, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantObservableState {
    pub tenant: Tenant,
    pub reloads: u64,
}

pub struct TenantActor;

pub struct TenantActorState {
    id: TenantId,
    node: NodeContext,
    observable: TenantObservableState,
}

fn load(node: &NodeContext, id: &TenantId) -> Result<Tenant, ActorProcessingErr> {
    node.read(|state| state.tenant(id).cloned())
        .ok_or_else(|| format!("tenant {id} is not in the state machine").into())
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantActorState;
    type Arguments = (TenantId, NodeContext);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (id, node): (TenantId, NodeContext),
    ) -> Result<TenantActorState, ActorProcessingErr> {
        let tenant = load(&node, &id)?;
        Ok(TenantActorState {
            id,
            node,
            observable: TenantObservableState { tenant, reloads: 0 },
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: TenantMsg,
        state: &mut TenantActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TenantMsg::Refresh => {
                state.observable.tenant = load(&state.node, &state.id)?;
                state.observable.reloads += 1;
            }
            TenantMsg::GetObservableState(reply) => {
                let _ = reply.send(state.observable.clone());
            }
            #[cfg(test)]
            TenantMsg::Fail => return Err("injected failure".into()),
        }
        Ok(())
    }
}
