//! One actor per queue on the leader: the dispatcher. It reads a snapshot of the queue's
//! pending jobs, the live workers of its pools and the tenants' quotas, weights and shares,
//! keeps the starvation guard's clock, asks the pure [`next_assignments`] for a plan, and proposes it as one `AssignJobs` command (apply
//! re-checks every part). One plan is in flight at a time; the proposal runs in its own
//! task so the mailbox never waits on Raft, and its end is a message.
//!
//! It also measures the dispatch latency: from the moment a run in one of its pools ends
//! while the queue is short of room (its last pass left jobs it could not place) to the
//! commit of the plan that fills that room. Freed rooms are matched to assignments first
//! in, first out; those left when a pass places every pending job are dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::warn;

use crate::actors::gateway::propose;
use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::command::SlaUpdate;
use crate::state::{CommandOutcome, CommandV1, HodeiState};
use hodei_domain::dispatch::{
    DispatchProblem, PendingJob, TenantSnapshot, Urgency, WorkerSlot, next_assignments,
};
use hodei_domain::resources::Resources;
use hodei_domain::sla::{SlaStatus, evaluate};
use hodei_domain::starvation::StarvationClock;
use hodei_domain::tenant::{TenantId, TenantStatus};

/// The most assignments in one plan (one Raft entry).
const MAX_PLAN: usize = 2_000;
/// The most pending jobs one pass looks at, oldest first.
const MAX_SCAN: usize = 20_000;
/// A pass runs at least this often, whatever the events say.
const SAFETY_TICK: Duration = Duration::from_secs(1);
/// Nudges within this window share one pass: a burst of submissions costs one snapshot.
const COALESCE: Duration = Duration::from_millis(5);
/// The most freed rooms waiting to be matched with an assignment (the oldest go first).
const MAX_FREED: usize = 100_000;

pub enum QueueMsg {
    /// Something changed that may allow dispatch: plan soon (or after the plan in flight).
    Nudge,
    /// A run ended in `pool` at `at`, freeing its room: a nudge, and the start of a
    /// dispatch latency if the room is one of this queue's and jobs wait.
    RunEnded {
        pool: String,
        at: Instant,
    },
    /// The coalescing window of the nudges has passed: plan now.
    Plan,
    /// The plan in flight was applied (or failed).
    PlanDone {
        assigned: usize,
        /// The plan placed every pending job it saw.
        placed_all: bool,
    },
    GetObservableState(RpcReplyPort<QueueObservableState>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueObservableState {
    pub queue: String,
    pub plans: u64,
    pub assigned: u64,
    pub in_flight: bool,
}

pub struct QueueActor;

pub struct QueueActorState {
    node: NodeContext,
    observable: QueueObservableState,
    /// A nudge arrived while a plan was in flight.
    dirty: bool,
    /// A `Plan` message is on its way.
    scheduled: bool,
    /// Since when each backlogged tenant has been below its fair share.
    starvation_clock: StarvationClock,
    /// Tenants the starvation guard serves first.
    boosted: BTreeSet<TenantId>,
    /// How long below its fair share before a tenant is boosted.
    starvation: Duration,
    /// When SLA status changes were last proposed.
    last_sla_record: Option<std::time::Instant>,
    freed: FreedRooms,
}

/// The dispatch latency's clock: rooms freed while the queue was short of room, oldest
/// first, each waiting for the assignment that fills it.
#[derive(Debug, Default)]
struct FreedRooms {
    at: VecDeque<Instant>,
    /// The last pass left pending jobs it could not place.
    short_of_room: bool,
}

impl FreedRooms {
    /// A room was freed `at`; it counts only while the queue is short of room.
    fn freed(&mut self, at: Instant) {
        if !self.short_of_room {
            return;
        }
        if self.at.len() == MAX_FREED {
            self.at.pop_front();
        }
        self.at.push_back(at);
    }

    /// A plan filled `assigned` rooms at `now`: the latency of each, oldest room first.
    fn filled(&mut self, assigned: usize, now: Instant) -> Vec<Duration> {
        let filled = assigned.min(self.at.len());
        self.at
            .drain(..filled)
            .map(|at| now.duration_since(at))
            .collect()
    }

    /// What a pass found: with every pending job placed (or none left), rooms still
    /// counted waited for no one.
    fn pass_ended(&mut self, short_of_room: bool) {
        self.short_of_room = short_of_room;
        if !short_of_room {
            self.at.clear();
        }
    }
}

impl QueueActorState {
    fn room_freed(&mut self, pool: &str, at: Instant) {
        if !self.freed.short_of_room {
            return;
        }
        let queue = &self.observable.queue;
        let ours = self.node.read(|state| {
            state
                .queue(queue)
                .is_some_and(|found| found.pools.iter().any(|id| id == pool))
        });
        if ours {
            self.freed.freed(at);
        }
    }

    /// `assigned` rooms were filled now: each is a dispatch latency sample.
    fn rooms_filled(&mut self, assigned: usize) {
        for latency in self.freed.filled(assigned, Instant::now()) {
            self.node
                .metrics
                .dispatch_latency(&self.observable.queue, latency.as_secs_f64());
        }
    }
}

struct Snapshot {
    /// SLA statuses that changed since they were last recorded.
    sla_changes: Vec<SlaUpdate>,
    policy: hodei_domain::queue::QueuePolicy,
    pending: Vec<PendingJob>,
    workers: Vec<WorkerSlot>,
    tenants: BTreeMap<TenantId, TenantSnapshot>,
    capacity: Resources,
}

/// The SLA statuses of the queue's pending jobs now, with the predicted start: the job's
/// position in the queue divided by the observed dispatch rate. Changes from the last
/// recorded status are returned for the leader to commit.
fn sla_statuses(
    state: &HodeiState,
    queue_id: &str,
    now_ms: u64,
    window: Duration,
) -> (BTreeMap<String, SlaStatus>, Vec<SlaUpdate>) {
    let rate = state.dispatch_rate(queue_id, now_ms, window.as_millis() as u64);
    let mut statuses = BTreeMap::new();
    let mut changes = Vec::new();
    for (position, job) in state.pending_in(queue_id).take(MAX_SCAN).enumerate() {
        let predicted = (rate > 0.0).then(|| now_ms + (position as f64 / rate * 1_000.0) as u64);
        let Some(clock) = job.sla_clock(now_ms, predicted) else {
            continue;
        };
        let status = evaluate(&clock);
        statuses.insert(job.id.clone(), status);
        if job.sla_status() != Some(status) {
            changes.push(SlaUpdate {
                job: job.id.clone(),
                status,
                at_ms: now_ms,
            });
        }
    }
    (statuses, changes)
}

fn snapshot(
    state: &HodeiState,
    queue_id: &str,
    boosted: &BTreeSet<TenantId>,
    window: Duration,
    sla_due: bool,
) -> Option<Snapshot> {
    let queue = state.queue(queue_id)?;
    // Cheap checks first: nothing to plan without a pending job.
    state.pending_in(queue_id).next()?;
    let accepts = |pool: &str| state.pool(pool).is_none_or(|found| found.accepts_work());
    let has_room = state.workers().any(|worker| {
        worker.is_live()
            && queue.pools.contains(&worker.pool)
            && accepts(&worker.pool)
            && worker.free() != Resources::ZERO
    });
    if !has_room && !sla_due {
        return None;
    }
    // The SLA statuses walk the pending jobs: only when planning, or when they are due.
    let now = now_ms();
    let (statuses, sla_changes) = sla_statuses(state, queue_id, now, window);
    if !has_room {
        return Some(Snapshot {
            sla_changes,
            policy: queue.policy,
            pending: Vec::new(),
            workers: Vec::new(),
            tenants: BTreeMap::new(),
            capacity: Resources::ZERO,
        });
    }
    let pending: Vec<PendingJob> = state
        .pending_in(queue_id)
        .take(MAX_SCAN)
        .map(|job| PendingJob {
            id: job.id.clone(),
            tenant: job.spec.tenant.clone(),
            resources: job.spec.resources,
            submitted_at_ms: job.submitted_at_ms,
            pools: if job.spec.pool_selector.is_empty() {
                queue.pools.clone()
            } else {
                job.spec.pool_selector.clone()
            },
            priority: job.spec.priority,
            urgency: statuses
                .get(&job.id)
                .map(|status| status.urgency())
                .unwrap_or(Urgency::OnTrack),
            deadline_ms: job.sla_target_start_ms,
        })
        .collect();
    let mut workers = Vec::new();
    let mut capacity = Resources::ZERO;
    for worker in state
        .workers()
        .filter(|worker| worker.is_live() && queue.pools.contains(&worker.pool))
    {
        capacity = capacity.saturating_add(worker.capacity);
        workers.push(WorkerSlot {
            id: worker.id.clone(),
            pool: worker.pool.clone(),
            capacity: worker.capacity,
            used: worker.used,
            schedulable: accepts(&worker.pool),
        });
    }
    let mut tenants = BTreeMap::new();
    for job in &pending {
        if tenants.contains_key(&job.tenant) {
            continue;
        }
        let Some(tenant) = state.tenant(&job.tenant) else {
            continue;
        };
        let usage = state.usage(&job.tenant);
        // What the tenant runs in the queue's pools, from its usage per pool.
        let running_in_pools = queue
            .pools
            .iter()
            .filter_map(|pool| usage.running_by_pool.get(pool))
            .fold(Resources::ZERO, |total, running| {
                total.saturating_add(*running)
            });
        tenants.insert(
            job.tenant.clone(),
            TenantSnapshot {
                quota: tenant.quota.clone(),
                usage,
                // A tenant whose daily budget is spent (`budget_action: queue`) waits
                // like a suspended one until the next day.
                active: tenant.status == TenantStatus::Active
                    && !state.budget_exhausted(&job.tenant, now),
                burst_percent: state
                    .active_burst_at(&job.tenant, now)
                    .map(|session| session.ceiling_percentage),
                weight: tenant.weight,
                running_in_pools,
                boosted: boosted.contains(&job.tenant),
            },
        );
    }
    Some(Snapshot {
        sla_changes,
        policy: queue.policy,
        pending,
        workers,
        tenants,
        capacity,
    })
}

/// Commits the SLA status changes a due pass saw (at most one a second: a status moves in
/// steps of seconds or more).
fn record_sla_changes(state: &QueueActorState, changes: Vec<SlaUpdate>, due: bool) {
    if changes.is_empty() || !due {
        return;
    }
    let node = state.node.clone();
    let queue = state.observable.queue.clone();
    tokio::spawn(async move {
        if let Err(error) =
            propose(&node, CommandV1::RecordSla(command::RecordSla { changes })).await
        {
            warn!(%queue, %error, "SLA status changes not committed; the next pass retries");
        }
    });
}

fn plan(myself: &ActorRef<QueueMsg>, state: &mut QueueActorState) {
    if state.observable.in_flight {
        state.dirty = true;
        return;
    }
    state.dirty = false;
    let queue_id = state.observable.queue.clone();
    let deciding = std::time::Instant::now();
    let boosted = state.boosted.clone();
    let window = state.node.limits.fair_share_window;
    let sla_due = state
        .last_sla_record
        .is_none_or(|last| last.elapsed() >= Duration::from_secs(1));
    if sla_due {
        state.last_sla_record = Some(std::time::Instant::now());
    }
    let Some(mut found) = state
        .node
        .read(|hodei| snapshot(hodei, &queue_id, &boosted, window, sla_due))
    else {
        // Rooms freed with nothing waiting any more are no one's latency.
        if state
            .node
            .read(|hodei| hodei.pending_in(&queue_id).next().is_none())
        {
            state.freed.pass_ended(false);
        }
        return;
    };
    let sla_changes = std::mem::take(&mut found.sla_changes);
    if found.pending.is_empty() {
        // No worker has room: nothing to plan (and the starvation clocks keep running).
        state.freed.pass_ended(true);
        record_sla_changes(state, sla_changes, sla_due);
        return;
    }
    state.boosted = state.starvation_clock.update(
        &found.tenants,
        found.capacity,
        state.starvation.as_millis() as u64,
        now_ms(),
    );
    for (id, tenant) in found.tenants.iter_mut() {
        tenant.boosted = state.boosted.contains(id);
    }
    let assignments = next_assignments(&DispatchProblem {
        policy: found.policy,
        pending: &found.pending,
        workers: &found.workers,
        tenants: &found.tenants,
        capacity: found.capacity,
        limit: MAX_PLAN,
    });
    if assignments.is_empty() {
        state.freed.pass_ended(true);
        record_sla_changes(state, sla_changes, sla_due);
        return;
    }
    let placed_all = assignments.len() >= found.pending.len();
    state
        .node
        .metrics
        .dispatch_plan(&queue_id, deciding.elapsed().as_secs_f64());
    state.observable.in_flight = true;
    state.observable.plans += 1;
    let node = state.node.clone();
    let myself = myself.clone();
    tokio::spawn(async move {
        let command = CommandV1::AssignJobs(command::AssignJobs {
            assignments,
            at_ms: now_ms(),
            sla_changes,
        });
        let assigned = match propose(&node, command).await {
            Ok(CommandOutcome::JobsAssigned { assigned, rejected }) => {
                node.metrics.dispatch_outcome(&queue_id, assigned, rejected);
                assigned
            }
            Ok(_) => 0,
            Err(error) => {
                warn!(queue = %queue_id, %error, "dispatch plan not committed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                0
            }
        };
        let _ = myself.cast(QueueMsg::PlanDone {
            assigned,
            placed_all,
        });
    });
}

impl Actor for QueueActor {
    type Msg = QueueMsg;
    type State = QueueActorState;
    type Arguments = (String, NodeContext);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (queue, node): (String, NodeContext),
    ) -> Result<QueueActorState, ActorProcessingErr> {
        let node_starvation = node.limits.starvation_guard;
        myself.send_interval(SAFETY_TICK, || QueueMsg::Nudge);
        myself.cast(QueueMsg::Nudge)?;
        Ok(QueueActorState {
            node,
            observable: QueueObservableState {
                queue,
                plans: 0,
                assigned: 0,
                in_flight: false,
            },
            dirty: false,
            scheduled: false,
            starvation_clock: StarvationClock::default(),
            boosted: BTreeSet::new(),
            starvation: node_starvation,
            last_sla_record: None,
            freed: FreedRooms::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: QueueMsg,
        state: &mut QueueActorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            QueueMsg::Nudge => {
                if !state.scheduled {
                    state.scheduled = true;
                    myself.send_after(COALESCE, || QueueMsg::Plan);
                }
            }
            QueueMsg::RunEnded { pool, at } => {
                state.room_freed(&pool, at);
                if !state.scheduled {
                    state.scheduled = true;
                    myself.send_after(COALESCE, || QueueMsg::Plan);
                }
            }
            QueueMsg::Plan => {
                state.scheduled = false;
                plan(&myself, state);
            }
            QueueMsg::PlanDone {
                assigned,
                placed_all,
            } => {
                state.observable.in_flight = false;
                state.observable.assigned += assigned as u64;
                state.rooms_filled(assigned);
                state.freed.pass_ended(!placed_all);
                // A full plan may have left more to place; a nudge may have come meanwhile.
                if assigned > 0 || state.dirty {
                    plan(&myself, state);
                }
            }
            QueueMsg::GetObservableState(reply) => {
                let _ = reply.send(state.observable.clone());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_latency_counts_rooms_freed_while_short_of_room_oldest_first() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut rooms = FreedRooms::default();
        // Room freed while nothing waited for it: not a latency.
        rooms.freed(at(0));
        assert!(rooms.filled(1, at(5)).is_empty());
        // Short of room: three rooms freed, a plan fills two (the oldest), then one.
        rooms.pass_ended(true);
        rooms.freed(at(10));
        rooms.freed(at(20));
        rooms.freed(at(30));
        assert_eq!(
            rooms.filled(2, at(40)),
            vec![Duration::from_millis(30), Duration::from_millis(20)]
        );
        assert_eq!(rooms.filled(5, at(45)), vec![Duration::from_millis(15)]);
        // A pass that places everything drops what is left over.
        rooms.freed(at(50));
        rooms.pass_ended(false);
        assert!(rooms.filled(1, at(60)).is_empty());
        rooms.freed(at(70));
        assert!(
            rooms.filled(1, at(80)).is_empty(),
            "no longer short of room"
        );
    }
}
