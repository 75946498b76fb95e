//! One actor per pool on the leader. On a timer it brings the pool in line with its
//! settings, through commands (the state machine records every decision):
//! - static pool: fewer healthy workers than its size makes it `degraded`, and `active`
//!   again when they return;
//! - dynamic pool: starts workers through its provider until it has `desired_size`
//!   (at most `max_provisioning` starting at once; a start that does not register within
//!   `provision_timeout_s` is stopped, counted and retried with back-off), stops idle
//!   workers beyond the desired size, and idle workers beyond `min_size` after
//!   `idle_timeout_s` (lowering the desired size with them);
//! - draining pool: once no job runs in it (or at `drain_timeout_s`, re-queueing what
//!   still runs) its workers are stopped and it is `decommissioned`.
//!
//! Its decisions use the clock, so they live here, not in apply. The handler never awaits
//! Raft: proposals run in tasks, with one round in flight at a time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

use crate::actors::gateway::propose;
use crate::actors::{NodeContext, now_ms};
use crate::state::CommandV1;
use crate::state::pools::PoolPatch;
use hodei_domain::pool::{Pool, PoolAction, PoolProvider, PoolState, PoolType};
use hodei_domain::worker::{Worker, WorkerState};

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
    observable: PoolObservableState,
    in_flight: bool,
    /// No new start before this (back-off after failures).
    next_start: Instant,
    /// Workers this actor started that have registered (for the success count).
    seen_registered: BTreeSet<String>,
    /// Provisioning outcomes not yet recorded in the state: (succeeded, failed).
    unreported: (u64, u64),
}

/// What one round decided.
#[derive(Debug, Default)]
struct Round {
    commands: Vec<CommandV1>,
    /// Worker processes to stop once their stop is committed (or at once if not yet
    /// registered).
    kill: Vec<String>,
    start: u32,
}

fn idle_since_ms(worker: &Worker) -> Option<u64> {
    (worker.state == WorkerState::Idle).then_some(worker.state_changed_at_ms)
}

/// The pool's decision for this round, from the state and the provider's children.
fn decide(
    pool: &Pool,
    workers: &[Worker],
    provisioning: &[(String, Instant)],
    now_ms: u64,
    provision_timeout_expired: &dyn Fn(&Instant) -> bool,
) -> Round {
    let mut round = Round::default();
    let live: Vec<&Worker> = workers.iter().filter(|worker| worker.is_live()).collect();
    let held: usize = workers.iter().map(|worker| worker.jobs.len()).sum();
    match pool.state {
        PoolState::Draining => {
            let drain_started = pool
                .history
                .iter()
                .rev()
                .find(|step| step.to == PoolState::Draining)
                .map(|step| step.at_ms)
                .unwrap_or(now_ms);
            let timed_out = now_ms.saturating_sub(drain_started)
                >= pool.dynamic_settings.drain_timeout_s * 1_000;
            if held > 0 && timed_out {
                round.commands.push(CommandV1::ReleasePool {
                    pool: pool.id.clone(),
                    reason: format!(
                        "drain timeout of {} s: re-queued",
                        pool.dynamic_settings.drain_timeout_s
                    ),
                    at_ms: now_ms,
                });
            } else if held == 0 {
                for worker in &live {
                    round.commands.push(CommandV1::StopWorker {
                        worker: worker.id.clone(),
                        reason: "pool drained".to_string(),
                        at_ms: now_ms,
                    });
                    round.kill.push(worker.id.clone());
                }
                round
                    .kill
                    .extend(provisioning.iter().map(|(worker, _)| worker.clone()));
                round.commands.push(CommandV1::PoolLifecycle {
                    pool: pool.id.clone(),
                    action: PoolAction::Decommission,
                    by: "hodei".to_string(),
                    reason: "drained: no job runs in it and its workers are stopped".to_string(),
                    at_ms: now_ms,
                });
            }
        }
        PoolState::Decommissioned => {
            round
                .kill
                .extend(provisioning.iter().map(|(worker, _)| worker.clone()));
        }
        PoolState::Creating | PoolState::Suspended => {}
        PoolState::Active | PoolState::Degraded => {
            let size = match pool.pool_type {
                PoolType::Static => pool.static_settings.size,
                PoolType::Dynamic => pool.min_size,
            };
            let healthy = live.len() as u32;
            let unhealthy = pool.state == PoolState::Active && healthy < size;
            let recovered = pool.state == PoolState::Degraded && healthy >= size;
            if pool.pool_type == PoolType::Static && (unhealthy || recovered) {
                round.commands.push(CommandV1::PoolHealth {
                    pool: pool.id.clone(),
                    healthy,
                    at_ms: now_ms,
                });
            }
            if pool.pool_type == PoolType::Dynamic {
                scale(
                    pool,
                    &live,
                    provisioning,
                    now_ms,
                    provision_timeout_expired,
                    &mut round,
                );
            }
        }
    }
    round
}

fn scale(
    pool: &Pool,
    live: &[&Worker],
    provisioning: &[(String, Instant)],
    now_ms: u64,
    provision_timeout_expired: &dyn Fn(&Instant) -> bool,
    round: &mut Round,
) {
    let live_ids: BTreeSet<&str> = live.iter().map(|worker| worker.id.as_str()).collect();
    let mut starting = 0u32;
    for (worker, started) in provisioning {
        if live_ids.contains(worker.as_str()) {
            continue;
        }
        if provision_timeout_expired(started) {
            round.kill.push(worker.clone());
        } else {
            starting += 1;
        }
    }
    let desired = pool.desired_size.clamp(pool.min_size, pool.max_size);
    let count = live.len() as u32;
    if pool.provider == PoolProvider::Process && count + starting < desired {
        let room = pool
            .dynamic_settings
            .max_provisioning
            .saturating_sub(starting);
        round.start = (desired - count - starting).min(room);
    }
    // Idle workers, longest idle first.
    let mut idle: Vec<(&Worker, u64)> = live
        .iter()
        .filter_map(|worker| idle_since_ms(worker).map(|since| (*worker, since)))
        .collect();
    idle.sort_by_key(|(_, since)| *since);
    let mut stopping = Vec::new();
    // Above the desired size: stop idle workers now.
    let surplus = count.saturating_sub(desired) as usize;
    stopping.extend(idle.iter().take(surplus).map(|(worker, _)| *worker));
    // Idle beyond min for longer than the idle timeout: stop, and lower the desired size.
    let idle_timeout_ms = pool.dynamic_settings.idle_timeout_s * 1_000;
    let mut lowered = 0u32;
    for (worker, since) in idle.iter().skip(surplus) {
        let remaining = count - stopping.len() as u32;
        if remaining <= pool.min_size {
            break;
        }
        if now_ms.saturating_sub(*since) >= idle_timeout_ms {
            stopping.push(worker);
            lowered += 1;
        }
    }
    // The desired size is lowered first, so that nothing starts a replacement.
    if lowered > 0 {
        let desired_now = desired.saturating_sub(lowered).max(pool.min_size);
        if desired_now != pool.desired_size {
            round.commands.push(CommandV1::UpdatePool {
                id: pool.id.clone(),
                patch: PoolPatch {
                    desired_size: Some(desired_now),
                    ..PoolPatch::default()
                },
            });
        }
    }
    for worker in stopping {
        round.commands.push(CommandV1::StopWorker {
            worker: worker.id.clone(),
            reason: "scale-down: idle".to_string(),
            at_ms: now_ms,
        });
        round.kill.push(worker.id.clone());
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
    let processes = state.node.processes.clone();
    let provisioning = if pool.provider == PoolProvider::Process {
        processes.running(&pool.id)
    } else {
        Vec::new()
    };
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
    let timeout = Duration::from_secs(pool.dynamic_settings.provision_timeout_s);
    let expired = |started: &Instant| started.elapsed() >= timeout;
    let round = decide(&pool, &workers, &provisioning, now_ms(), &expired);
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
        processes.stop(worker);
    }
    if round.start > 0 && Instant::now() >= state.next_start {
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
        for _ in 0..round.start {
            match processes.spawn(&pool, &servers) {
                Ok(worker) => info!(pool = %pool.id, %worker, "provisioning a worker"),
                Err(error) => {
                    warn!(pool = %pool.id, %error, "could not start a worker process");
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
    let mut round = round;
    if state.unreported != (0, 0) {
        let (succeeded, failed) = std::mem::take(&mut state.unreported);
        round.commands.push(CommandV1::CountProvisioning {
            pool: pool.id.clone(),
            succeeded,
            failed,
        });
    }
    if round.commands.is_empty() {
        return;
    }
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
                CommandV1::StopWorker { worker, .. } => Some(worker.clone()),
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
                        node.processes.stop(&worker);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet as Set;

    use super::*;
    use hodei_domain::labels::Labels;
    use hodei_domain::resources::Resources;

    fn worker(id: &str, state: WorkerState, since_ms: u64, jobs: usize) -> Worker {
        Worker {
            id: id.to_string(),
            pool: "p".into(),
            capacity: Resources::new(1_000, 1_000, 0),
            labels: Labels::new(),
            state,
            simulated: false,
            used: Resources::ZERO,
            jobs: (0..jobs)
                .map(|index| format!("{id}-job{index}"))
                .collect::<Set<_>>(),
            registered_at_ms: 0,
            state_changed_at_ms: since_ms,
        }
    }

    fn dynamic(min: u32, max: u32, desired: u32) -> Pool {
        let mut pool = Pool::new(
            "p",
            PoolType::Dynamic,
            PoolProvider::Process,
            Resources::new(1_000, 1_000, 0),
            min,
            max,
            0,
        );
        pool.desired_size = desired;
        pool.dynamic_settings.idle_timeout_s = 10;
        pool.dynamic_settings.max_provisioning = 3;
        pool
    }

    fn never(_: &Instant) -> bool {
        false
    }

    #[test]
    fn grows_to_desired_with_at_most_max_provisioning_starting() {
        let pool = dynamic(2, 6, 6);
        let workers = [
            worker("a", WorkerState::Busy, 0, 1),
            worker("b", WorkerState::Busy, 0, 1),
        ];
        let round = decide(&pool, &workers, &[], 1_000, &never);
        assert_eq!(round.start, 3, "4 missing, 3 at once");
        let starting = [
            ("c".to_string(), Instant::now()),
            ("d".to_string(), Instant::now()),
        ];
        assert_eq!(decide(&pool, &workers, &starting, 1_000, &never).start, 1);
    }

    #[test]
    fn idle_workers_beyond_min_stop_after_the_idle_timeout_and_desired_follows() {
        let pool = dynamic(2, 6, 4);
        let workers = [
            worker("a", WorkerState::Idle, 0, 0),
            worker("b", WorkerState::Idle, 0, 0),
            worker("c", WorkerState::Idle, 9_000, 0),
            worker("d", WorkerState::Busy, 0, 1),
        ];
        let round = decide(&pool, &workers, &[], 10_000, &never);
        let stopped: Vec<&str> = round
            .commands
            .iter()
            .filter_map(|command| match command {
                CommandV1::StopWorker { worker, .. } => Some(worker.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(stopped, ["a", "b"], "c is idle for 1 s only; d is busy");
        assert!(round.commands.iter().any(|command| matches!(
            command,
            CommandV1::UpdatePool { patch, .. } if patch.desired_size == Some(2)
        )));
    }

    #[test]
    fn a_start_that_times_out_is_killed_and_replaced() {
        let pool = dynamic(1, 3, 1);
        let always = |_: &Instant| true;
        let round = decide(
            &pool,
            &[],
            &[("slow".to_string(), Instant::now())],
            0,
            &always,
        );
        assert_eq!(round.kill, ["slow"]);
        assert_eq!(round.start, 1);
    }

    #[test]
    fn a_drain_waits_for_running_jobs_then_stops_workers_and_decommissions() {
        let mut pool = dynamic(0, 3, 2);
        pool.apply_action(PoolAction::Drain, "admin", "retire", 1_000)
            .unwrap();
        let busy = [
            worker("a", WorkerState::Busy, 0, 1),
            worker("b", WorkerState::Idle, 0, 0),
        ];
        assert!(decide(&pool, &busy, &[], 2_000, &never).commands.is_empty());
        let at_timeout = decide(&pool, &busy, &[], 1_000 + 60_000, &never);
        assert!(matches!(
            at_timeout.commands[..],
            [CommandV1::ReleasePool { .. }]
        ));
        let idle = [
            worker("a", WorkerState::Idle, 0, 0),
            worker("b", WorkerState::Idle, 0, 0),
        ];
        let done = decide(&pool, &idle, &[], 3_000, &never);
        assert_eq!(done.kill, ["a", "b"]);
        assert!(matches!(
            done.commands.last(),
            Some(CommandV1::PoolLifecycle {
                action: PoolAction::Decommission,
                ..
            })
        ));
    }

    #[test]
    fn a_static_pool_below_its_size_is_degraded_and_recovers() {
        let mut pool = Pool::new(
            "p",
            PoolType::Static,
            PoolProvider::Static,
            Resources::new(1_000, 1_000, 0),
            2,
            2,
            0,
        );
        let one = [
            worker("a", WorkerState::Idle, 0, 0),
            worker("b", WorkerState::Lost, 0, 0),
        ];
        assert!(matches!(
            decide(&pool, &one, &[], 0, &never).commands[..],
            [CommandV1::PoolHealth { healthy: 1, .. }]
        ));
        pool.state = PoolState::Degraded;
        let two = [
            worker("a", WorkerState::Idle, 0, 0),
            worker("b", WorkerState::Idle, 0, 0),
        ];
        assert!(matches!(
            decide(&pool, &two, &[], 0, &never).commands[..],
            [CommandV1::PoolHealth { healthy: 2, .. }]
        ));
    }
}
