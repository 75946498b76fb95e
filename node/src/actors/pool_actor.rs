//! One actor per pool on the leader. On a timer it reads the pool and its workers, asks
//! the domain what to do (`hodei_domain::pool_sizing`: health, scaling, draining), starts
//! and stops worker processes through the provider, and records every decision through
//! commands (the state machine keeps them).
//!
//! Its decisions use the clock, so they live here, not in apply. The handler never awaits
//! Raft: proposals run in tasks, with one round in flight at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

use crate::actors::gateway::propose;
use crate::actors::workers::provider::{Providers, WorkerProvider};
use crate::actors::{NodeContext, now_ms};
use crate::state::CommandV1;
use crate::state::command;
use crate::state::command::PoolPatch;
use hodei_domain::pool::{Pool, PoolAction, PoolState};
use hodei_domain::pool_sizing::{SizingDecision, Starting, decide};
use hodei_domain::worker::Worker;

const TICK: Duration = Duration::from_millis(500);

pub enum PoolMsg {
    Tick,
    /// The commands of the last round are done.
    RoundDone,
    GetObservableState(RpcReplyPort<PoolObservableState>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolObservableState {
    pub pool: String,
    pub provisioning: usize,
    pub provision_failures: u64,
    pub provisioned: u64,
}

pub struct PoolActor;

pub struct PoolActorState {
    node: NodeContext,
    providers: Providers,
    observable: PoolObservableState,
    in_flight: bool,
    /// No new start before this (back-off after failures).
    next_start: Instant,
    /// Workers this actor started that have registered (for the success count).
    seen_registered: BTreeSet<String>,
    /// Provisioning outcomes not yet recorded in the state: (succeeded, failed).
    unreported: (u64, u64),
}

/// One round: the domain's decision as commands, in the order it gives.
#[derive(Debug, Default)]
struct Round {
    commands: Vec<CommandV1>,
    /// Worker processes to stop once their stop is committed (or at once if not yet
    /// registered).
    kill: Vec<String>,
    start: u32,
}

fn round_of(pool: &Pool, decision: SizingDecision, now_ms: u64) -> Round {
    let mut commands = Vec::new();
    if let Some(reason) = decision.release {
        commands.push(CommandV1::ReleasePool(command::ReleasePool {
            pool: pool.id.clone(),
            reason,
            at_ms: now_ms,
        }));
    }
    if let Some(healthy) = decision.report_healthy {
        commands.push(CommandV1::PoolHealth(command::PoolHealth {
            pool: pool.id.clone(),
            healthy,
            at_ms: now_ms,
        }));
    }
    if let Some(desired_size) = decision.lower_desired_to {
        commands.push(CommandV1::UpdatePool(command::UpdatePool {
            id: pool.id.clone(),
            patch: PoolPatch {
                desired_size: Some(desired_size),
                ..PoolPatch::default()
            },
        }));
    }
    for (worker, reason) in decision.stop {
        commands.push(CommandV1::StopWorker(command::StopWorker {
            worker,
            reason,
            at_ms: now_ms,
        }));
    }
    if let Some(reason) = decision.decommission {
        commands.push(CommandV1::PoolLifecycle(command::PoolLifecycle {
            pool: pool.id.clone(),
            action: PoolAction::Decommission,
            by: "hodei".to_string(),
            reason,
            at_ms: now_ms,
        }));
    }
    Round {
        commands,
        kill: decision.kill,
        start: decision.start,
    }
}

fn tick(myself: &ActorRef<PoolMsg>, state: &mut PoolActorState) {
    if state.in_flight {
        return;
    }
    let pool_id = state.observable.pool.clone();
    let Some((pool, workers)) = state.node.read(|hodei| {
        hodei.pool(&pool_id).cloned().map(|pool| {
            let workers: Vec<Worker> = hodei
                .workers()
                .filter(|worker| worker.pool == pool_id)
                .cloned()
                .collect();
            (pool, workers)
        })
    }) else {
        return;
    };
    let provider = state.providers.of(pool.provider);
    let provisioning = provider.running(&pool.id);
    for (worker, _) in &provisioning {
        let registered = workers
            .iter()
            .any(|found| &found.id == worker && found.is_live());
        if registered && state.seen_registered.insert(worker.clone()) {
            state.observable.provisioned += 1;
            state.unreported.0 += 1;
            state.node.metrics.pool_provisioning(&pool.id, "succeeded");
        }
    }
    let now = now_ms();
    let starting: Vec<Starting> = provisioning
        .iter()
        .map(|(worker, started)| Starting {
            worker: worker.clone(),
            started_at_ms: now.saturating_sub(started.elapsed().as_millis() as u64),
        })
        .collect();
    let round = round_of(&pool, decide(&pool, &workers, &starting, now), now);
    state.observable.provisioning = provisioning
        .iter()
        .filter(|(worker, _)| {
            !workers
                .iter()
                .any(|found| &found.id == worker && found.is_live())
        })
        .count();
    let live_ids: BTreeSet<String> = workers
        .iter()
        .filter(|worker| worker.is_live())
        .map(|worker| worker.id.clone())
        .collect();
    for worker in &round.kill {
        let never_registered = !live_ids.contains(worker)
            && provisioning.iter().any(|(started, _)| started == worker)
            && pool.state != PoolState::Draining
            && pool.state != PoolState::Decommissioned;
        if never_registered {
            warn!(pool = %pool.id, %worker, "a worker did not register within the provision timeout; replacing it");
            state.observable.provision_failures += 1;
            state.unreported.1 += 1;
            state.node.metrics.pool_provisioning(&pool.id, "timed_out");
            let backoff = Duration::from_secs(1 << state.observable.provision_failures.min(5));
            state.next_start = Instant::now() + backoff;
        }
    }
    // Children that never registered need no command: stop them now.
    for worker in round
        .kill
        .iter()
        .filter(|worker| !live_ids.contains(*worker))
    {
        provider.stop(worker);
    }
    if round.start > 0 && Instant::now() >= state.next_start {
        start_workers(state, provider.as_ref(), &pool, &live_ids, round.start);
    }
    let mut round = round;
    if state.unreported != (0, 0) {
        let (succeeded, failed) = std::mem::take(&mut state.unreported);
        round
            .commands
            .push(CommandV1::CountProvisioning(command::CountProvisioning {
                pool: pool.id.clone(),
                succeeded,
                failed,
            }));
    }
    if round.commands.is_empty() {
        return;
    }
    propose_round(myself, state, provider, round, &live_ids);
}

/// Starts `count` workers of `pool` (stops at the first failure, and backs off).
fn start_workers(
    state: &mut PoolActorState,
    provider: &dyn WorkerProvider,
    pool: &Pool,
    live: &BTreeSet<String>,
    count: u32,
) {
    // Workers speak to the members' public gRPC ports (the membership holds their
    // peer addresses).
    let servers: Vec<String> = state
        .node
        .raft
        .status()
        .members
        .into_iter()
        .filter_map(|member| member.api_addr)
        .collect();
    let mut live: Vec<String> = live.iter().cloned().collect();
    for _ in 0..count {
        match provider.start(pool, &live, &servers) {
            Ok(worker) => {
                info!(pool = %pool.id, %worker, "provisioning a worker");
                live.push(worker);
            }
            Err(error) => {
                warn!(pool = %pool.id, %error, "could not start a worker");
                state.observable.provision_failures += 1;
                state.unreported.1 += 1;
                state.node.metrics.pool_provisioning(&pool.id, "failed");
                state.next_start = Instant::now()
                    + Duration::from_secs(1 << state.observable.provision_failures.min(5));
                break;
            }
        }
    }
}

/// Proposes a round's commands in order, in a task (the handler never awaits Raft); a
/// stopped worker's process is killed once its stop is committed.
fn propose_round(
    myself: &ActorRef<PoolMsg>,
    state: &mut PoolActorState,
    provider: Arc<dyn WorkerProvider>,
    round: Round,
    live_ids: &BTreeSet<String>,
) {
    state.in_flight = true;
    let node = state.node.clone();
    let myself = myself.clone();
    let kill_after_stop: Vec<String> = round
        .kill
        .into_iter()
        .filter(|worker| live_ids.contains(worker))
        .collect();
    tokio::spawn(async move {
        for command in round.commands {
            let stopped = match &command {
                CommandV1::StopWorker(command::StopWorker { worker, .. }) => Some(worker.clone()),
                _ => None,
            };
            match propose(&node, command).await {
                Ok(_) => {
                    if let Some(worker) = stopped
                        && kill_after_stop.contains(&worker)
                    {
                        // The agent exits on the stop message; a child of ours is also
                        // killed, in case the message is lost.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        provider.stop(&worker);
                    }
                }
                Err(error) => {
                    warn!(%error, "pool decision not committed; the next round decides again");
                    break;
                }
            }
        }
        let _ = myself.cast(PoolMsg::RoundDone);
    });
}

impl Actor for PoolActor {
    type Msg = PoolMsg;
    type State = PoolActorState;
    type Arguments = (String, NodeContext);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (pool, node): (String, NodeContext),
    ) -> Result<PoolActorState, ActorProcessingErr> {
        myself.send_interval(TICK, || PoolMsg::Tick);
        Ok(PoolActorState {
            providers: Providers::new(node.clone()),
            node,
            observable: PoolObservableState {
                pool,
                provisioning: 0,
                provision_failures: 0,
                provisioned: 0,
            },
            in_flight: false,
            next_start: Instant::now(),
            seen_registered: BTreeSet::new(),
            unreported: (0, 0),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: PoolMsg,
        state: &mut PoolActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PoolMsg::Tick => tick(&myself, state),
            PoolMsg::RoundDone => state.in_flight = false,
            PoolMsg::GetObservableState(reply) => {
                let _ = reply.send(state.observable.clone());
            }
        }
        Ok(())
    }
}
