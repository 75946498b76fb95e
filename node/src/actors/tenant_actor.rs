//! One actor per tenant on the leader. It holds the tenant as the state machine has it
//! and owns the clock of its burst sessions: it arms a timer for the active session's end
//! and, when it fires, proposes the expiry, which the state machine records once. A new
//! leader's actor re-arms from the replicated session, so expiry survives failover.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::{Command, CommandV1};
use hodei_domain::burst::EndReason;
use hodei_domain::tenant::{Tenant, TenantId};

/// How soon a failed expiry proposal is tried again.
const EXPIRY_RETRY: Duration = Duration::from_millis(200);

pub enum TenantMsg {
    /// The tenant or its burst sessions changed in the state machine: reload.
    Refresh,
    /// The active session `0` should have reached its end time.
    BurstDue(String),
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
    /// The session whose end a timer is armed for, and that end.
    pub armed_burst: Option<(String, u64)>,
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

/// Arms (or re-arms) the expiry timer for the tenant's active session.
fn arm_expiry(myself: &ActorRef<TenantMsg>, state: &mut TenantActorState) {
    let active = state.node.read(|hodei| {
        hodei
            .active_burst(&state.id)
            .and_then(|session| session.ends_at_ms.map(|end| (session.id.clone(), end)))
    });
    if active == state.observable.armed_burst {
        return;
    }
    state.observable.armed_burst = active.clone();
    if let Some((session_id, ends_at_ms)) = active {
        let delay = Duration::from_millis(ends_at_ms.saturating_sub(now_ms()));
        myself.send_after(delay, move || TenantMsg::BurstDue(session_id));
    }
}

fn expire(myself: &ActorRef<TenantMsg>, state: &mut TenantActorState, session_id: String) {
    let session = state
        .node
        .read(|hodei| hodei.burst_session(&state.id, &session_id).cloned());
    let Some(session) = session.filter(|session| session.ends_at_ms.is_some() && session.is_open())
    else {
        return;
    };
    let now = now_ms();
    if !session.is_due(now) {
        // Woken early (a re-armed timer, or a clock that moved): wait for the rest.
        let rest = Duration::from_millis(session.ends_at_ms.unwrap_or(now).saturating_sub(now));
        myself.send_after(rest, move || TenantMsg::BurstDue(session_id));
        return;
    }
    let node = state.node.clone();
    let tenant = state.id.clone();
    let retry = myself.clone();
    // Proposing waits for Raft: in a task, so the mailbox keeps moving.
    tokio::spawn(async move {
        let command = Command::V1(CommandV1::EndBurst(command::EndBurst {
            tenant: tenant.clone(),
            session_id: session_id.clone(),
            reason: EndReason::Expired,
            ended_by: format!("leader (node {})", node.raft.node_id()),
            at_ms: now_ms(),
        }));
        match node.raft.propose(command.encode(), None).await {
            Ok(_) => info!(tenant = %tenant, session = %session_id, "burst session expired"),
            Err(error) => {
                warn!(tenant = %tenant, session = %session_id, %error, "burst expiry not committed; retrying");
                retry.send_after(EXPIRY_RETRY, move || TenantMsg::BurstDue(session_id));
            }
        }
    });
}

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = TenantActorState;
    type Arguments = (TenantId, NodeContext);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (id, node): (TenantId, NodeContext),
    ) -> Result<TenantActorState, ActorProcessingErr> {
        let tenant = load(&node, &id)?;
        let mut state = TenantActorState {
            id,
            node,
            observable: TenantObservableState {
                tenant,
                reloads: 0,
                armed_burst: None,
            },
        };
        arm_expiry(&myself, &mut state);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: TenantMsg,
        state: &mut TenantActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TenantMsg::Refresh => {
                state.observable.tenant = load(&state.node, &state.id)?;
                state.observable.reloads += 1;
                arm_expiry(&myself, state);
            }
            TenantMsg::BurstDue(session_id) => expire(&myself, state, session_id),
            TenantMsg::GetObservableState(reply) => {
                let _ = reply.send(state.observable.clone());
            }
            #[cfg(test)]
            TenantMsg::Fail => return Err("injected failure".into()),
        }
        Ok(())
    }
}
