//! The dispatch decision as one pure function: given a snapshot of a queue's pending jobs,
//! the workers of its pools and its tenants, which job goes to which worker now
//! (`../shared/docs/DOMAIN.md`, Queues and fair scheduling).
//!
//! Properties (each has a test):
//! - every assignment is admitted by [`crate::admission::admit`] against the
//!   tenant's usage *including the assignments already planned*, and fits the free
//!   capacity of its worker: a plan never oversubscribes a worker or exceeds a quota (the
//!   state machine re-checks each assignment anyway, because the snapshot may be stale);
//! - work conserving: a job that cannot be placed does not hold up the ones behind it
//!   (up to [`LOOKAHEAD`] jobs of the same tenant are tried), and a lone tenant may use
//!   the whole pool;
//! - `weighted_fair`: the next job comes from the tenant with the lowest weighted dominant
//!   share (DRF: max over resources of used / capacity, divided by the weight) of what runs
//!   in the queue's pools; ties go to the smaller virtual finish time (the share after the
//!   job), then to the older head job; starved tenants (`boosted`) go first. With
//!   backlogged tenants of weights w_i each one's share converges to w_i / sum(w);
//! - `strict_priority`, `fifo`, `edf`: one global order (priority then submit time; submit
//!   time; deadline then submit time);
//! - within a tenant (`weighted_fair`): priority, then SLA urgency, then deadline, then
//!   submit order.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use crate::admission::{AdmissionInput, JobRequest, Verdict, admit};
use crate::job::Priority;
use crate::queue::QueuePolicy;
use crate::quota::{Quota, Usage};
use crate::resources::Resources;
use crate::tenant::TenantId;

/// How many jobs of one tenant are tried when its first cannot be placed.
pub const LOOKAHEAD: usize = 16;

/// How pressing a pending job's SLA is, most pressing first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Urgency {
    /// 90% of its window is spent.
    Critical,
    /// 70% spent, or predicted to start late.
    AtRisk,
    #[default]
    OnTrack,
}

/// A pending job as dispatch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    pub id: String,
    pub tenant: TenantId,
    pub resources: Resources,
    pub submitted_at_ms: u64,
    /// Pools it may run in; empty means any.
    pub pools: Vec<String>,
    pub priority: Priority,
    pub urgency: Urgency,
    /// When it should have started (its SLA target), if it has one.
    pub deadline_ms: Option<u64>,
}

/// A worker and what is free on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSlot {
    pub id: String,
    pub pool: String,
    pub capacity: Resources,
    pub used: Resources,
    /// False while its pool is draining or suspended, or the worker itself drains.
    pub schedulable: bool,
}

/// What admission and fair sharing need of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSnapshot {
    pub quota: Quota,
    pub usage: Usage,
    pub active: bool,
    pub burst_percent: Option<u64>,
    /// Fair-share weight (> 0).
    pub weight: f64,
    /// What the tenant runs now in the queue's pools (the numerator of its share).
    pub running_in_pools: Resources,
    /// Below its fair share for longer than the starvation guard allows: served first.
    pub boosted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub job: String,
    pub worker: String,
    /// Admitted above quota under the tenant's burst session.
    pub burst: bool,
}

/// Everything one decision depends on; no clock, no I/O.
#[derive(Debug, Clone, Copy)]
pub struct DispatchProblem<'a> {
    pub policy: QueuePolicy,
    pub pending: &'a [PendingJob],
    pub workers: &'a [WorkerSlot],
    pub tenants: &'a BTreeMap<TenantId, TenantSnapshot>,
    /// The total capacity of the queue's pools: the denominator of dominant shares.
    pub capacity: Resources,
    /// At most this many assignments.
    pub limit: usize,
}

/// A tenant's dominant share of `capacity` when it runs `used`, divided by its weight.
pub fn weighted_dominant_share(used: Resources, capacity: Resources, weight: f64) -> f64 {
    dominant_share(used, capacity) / weight.max(f64::MIN_POSITIVE)
}

/// max over resources of used / capacity (resources the pools do not have are ignored).
pub fn dominant_share(used: Resources, capacity: Resources) -> f64 {
    used.dimensions()
        .into_iter()
        .zip(capacity.dimensions())
        .filter(|(_, (_, total))| *total > 0)
        .map(|((_, amount), (_, total))| amount as f64 / total as f64)
        .fold(0.0, f64::max)
}

/// Free room per schedulable worker, and the planned usage per tenant.
struct Placement<'a> {
    workers: &'a [WorkerSlot],
    free: Vec<(usize, Resources)>,
    usage: BTreeMap<&'a TenantId, Usage>,
}

impl<'a> Placement<'a> {
    fn new(workers: &'a [WorkerSlot]) -> Self {
        Self {
            workers,
            free: workers
                .iter()
                .enumerate()
                .filter(|(_, worker)| worker.schedulable)
                .map(|(index, worker)| (index, worker.capacity.saturating_sub(worker.used)))
                .collect(),
            usage: BTreeMap::new(),
        }
    }

    fn exhausted(&self) -> bool {
        self.free.iter().all(|(_, room)| *room == Resources::ZERO)
    }

    /// Admits the job against its tenant and finds it a worker; on success books both.
    fn place(&mut self, job: &'a PendingJob, tenant: &'a TenantSnapshot) -> Option<Assignment> {
        let usage = self
            .usage
            .entry(&job.tenant)
            .or_insert_with(|| tenant.usage.clone());
        let request = JobRequest {
            resources: job.resources,
            pool: None,
        };
        let decision = admit(&AdmissionInput {
            quota: &tenant.quota,
            usage,
            tenant_active: tenant.active,
            active_burst_percent: tenant.burst_percent,
            max_burst_percent: None,
            largest_worker: None,
            request: &request,
        });
        let burst = match decision.verdict {
            Verdict::Allow => false,
            Verdict::AllowBurst => true,
            Verdict::Queue | Verdict::Deny => return None,
        };
        let workers = self.workers;
        // A tenant's cap in a pool is checked here as apply checks it, so a plan never
        // holds an assignment apply must refuse.
        let pool_limits = &tenant.quota.pool_limits;
        let (index, room) = self.free.iter_mut().find(|(index, room)| {
            let worker = &workers[*index];
            let within_pool_limit = pool_limits.get(&worker.pool).is_none_or(|limit| {
                usage
                    .running_by_pool
                    .get(&worker.pool)
                    .copied()
                    .unwrap_or_default()
                    .saturating_add(job.resources)
                    .fits_within(*limit)
            });
            (job.pools.is_empty() || job.pools.contains(&worker.pool))
                && job.resources.fits_within(*room)
                && within_pool_limit
        })?;
        *room = room.saturating_sub(job.resources);
        let in_pool = usage
            .running_by_pool
            .entry(workers[*index].pool.clone())
            .or_default();
        *in_pool = in_pool.saturating_add(job.resources);
        usage.running = usage.running.saturating_add(job.resources);
        usage.running_jobs = usage.running_jobs.saturating_add(1);
        usage.pending_jobs = usage.pending_jobs.saturating_sub(1);
        Some(Assignment {
            job: job.id.clone(),
            worker: workers[*index].id.clone(),
            burst,
        })
    }
}

/// The order of jobs within one tenant.
fn tenant_order(left: &&PendingJob, right: &&PendingJob) -> Ordering {
    (
        left.priority,
        left.urgency,
        left.deadline_ms.unwrap_or(u64::MAX),
        left.submitted_at_ms,
        &left.id,
    )
        .cmp(&(
            right.priority,
            right.urgency,
            right.deadline_ms.unwrap_or(u64::MAX),
            right.submitted_at_ms,
            &right.id,
        ))
}

/// The next assignments for the queue, at most `problem.limit`.
pub fn next_assignments(problem: &DispatchProblem<'_>) -> Vec<Assignment> {
    match problem.policy {
        QueuePolicy::WeightedFair => weighted_fair(problem),
        QueuePolicy::Fifo => in_global_order(problem, |left, right| {
            (left.submitted_at_ms, &left.id).cmp(&(right.submitted_at_ms, &right.id))
        }),
        QueuePolicy::StrictPriority => in_global_order(problem, |left, right| {
            (left.priority, left.submitted_at_ms, &left.id).cmp(&(
                right.priority,
                right.submitted_at_ms,
                &right.id,
            ))
        }),
        QueuePolicy::Edf => in_global_order(problem, |left, right| {
            (
                left.deadline_ms.unwrap_or(u64::MAX),
                left.submitted_at_ms,
                &left.id,
            )
                .cmp(&(
                    right.deadline_ms.unwrap_or(u64::MAX),
                    right.submitted_at_ms,
                    &right.id,
                ))
        }),
    }
}

fn in_global_order(
    problem: &DispatchProblem<'_>,
    order: impl Fn(&PendingJob, &PendingJob) -> Ordering,
) -> Vec<Assignment> {
    let mut jobs: Vec<&PendingJob> = problem.pending.iter().collect();
    jobs.sort_by(|left, right| order(left, right));
    let mut placement = Placement::new(problem.workers);
    let mut plan = Vec::new();
    for job in jobs {
        if plan.len() >= problem.limit || placement.exhausted() {
            break;
        }
        let Some(tenant) = problem.tenants.get(&job.tenant) else {
            continue;
        };
        if let Some(assignment) = placement.place(job, tenant) {
            plan.push(assignment);
        }
    }
    plan
}

/// A tenant waiting in the fair-share heap; the smallest key is served first.
struct Turn {
    boosted: bool,
    share: f64,
    finish: f64,
    head_submitted_at_ms: u64,
    slot: usize,
}

impl Turn {
    fn key(&self) -> (bool, f64, f64, u64, usize) {
        (
            !self.boosted,
            self.share,
            self.finish,
            self.head_submitted_at_ms,
            self.slot,
        )
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Turn {}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Turn {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the smallest key.
    fn cmp(&self, other: &Self) -> Ordering {
        let (boosted, share, finish, submitted, slot) = self.key();
        let (other_boosted, other_share, other_finish, other_submitted, other_slot) = other.key();
        boosted
            .cmp(&other_boosted)
            .then(share.total_cmp(&other_share))
            .then(finish.total_cmp(&other_finish))
            .then(submitted.cmp(&other_submitted))
            .then(slot.cmp(&other_slot))
            .reverse()
    }
}

struct Backlog<'a> {
    tenant: &'a TenantSnapshot,
    jobs: VecDeque<&'a PendingJob>,
    running: Resources,
}

impl Backlog<'_> {
    fn turn(&self, slot: usize, capacity: Resources) -> Option<Turn> {
        let head = self.jobs.front()?;
        let weight = self.tenant.weight;
        Some(Turn {
            boosted: self.tenant.boosted,
            share: weighted_dominant_share(self.running, capacity, weight),
            finish: weighted_dominant_share(
                self.running.saturating_add(head.resources),
                capacity,
                weight,
            ),
            head_submitted_at_ms: head.submitted_at_ms,
            slot,
        })
    }
}

fn weighted_fair(problem: &DispatchProblem<'_>) -> Vec<Assignment> {
    let mut by_tenant: BTreeMap<&TenantId, Vec<&PendingJob>> = BTreeMap::new();
    for job in problem.pending {
        if problem.tenants.contains_key(&job.tenant) {
            by_tenant.entry(&job.tenant).or_default().push(job);
        }
    }
    let mut backlogs: Vec<Backlog<'_>> = by_tenant
        .into_iter()
        .map(|(tenant, mut jobs)| {
            jobs.sort_by(tenant_order);
            let snapshot = &problem.tenants[tenant];
            Backlog {
                tenant: snapshot,
                jobs: jobs.into(),
                running: snapshot.running_in_pools,
            }
        })
        .collect();
    let mut turns: BinaryHeap<Turn> = backlogs
        .iter()
        .enumerate()
        .filter_map(|(slot, backlog)| backlog.turn(slot, problem.capacity))
        .collect();
    let mut placement = Placement::new(problem.workers);
    let mut plan = Vec::new();
    while let Some(turn) = turns.pop() {
        if plan.len() >= problem.limit || placement.exhausted() {
            break;
        }
        let backlog = &mut backlogs[turn.slot];
        let tried = backlog.jobs.len().min(LOOKAHEAD);
        let placed = (0..tried).find_map(|position| {
            let job = backlog.jobs[position];
            placement
                .place(job, backlog.tenant)
                .map(|assignment| (position, job, assignment))
        });
        // A tenant none of whose next jobs can be placed is done for this decision.
        let Some((position, job, assignment)) = placed else {
            continue;
        };
        backlog.jobs.remove(position);
        backlog.running = backlog.running.saturating_add(job.resources);
        plan.push(assignment);
        if let Some(next) = backlog.turn(turn.slot, problem.capacity) {
            turns.push(next);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn worker(id: &str, cpu_m: u64) -> WorkerSlot {
        WorkerSlot {
            id: id.to_string(),
            pool: "pool-default".to_string(),
            capacity: Resources::new(cpu_m, 8_192, 0),
            used: Resources::ZERO,
            schedulable: true,
        }
    }

    fn job(id: &str, owner: &str, cpu_m: u64, at: u64) -> PendingJob {
        PendingJob {
            id: id.to_string(),
            tenant: tenant(owner),
            resources: Resources::new(cpu_m, 100, 0),
            submitted_at_ms: at,
            pools: Vec::new(),
            priority: Priority::Normal,
            urgency: Urgency::OnTrack,
            deadline_ms: None,
        }
    }

    fn snapshot(quota_cpu_m: u64) -> TenantSnapshot {
        TenantSnapshot {
            quota: Quota {
                cpu_m: quota_cpu_m,
                memory_mb: 1 << 30,
                max_concurrent_jobs: 1_000_000,
                ..Quota::default()
            },
            usage: Usage::default(),
            active: true,
            burst_percent: None,
            weight: 1.0,
            running_in_pools: Resources::ZERO,
            boosted: false,
        }
    }

    fn decide(
        policy: QueuePolicy,
        pending: &[PendingJob],
        workers: &[WorkerSlot],
        tenants: &BTreeMap<TenantId, TenantSnapshot>,
    ) -> Vec<String> {
        let capacity = workers
            .iter()
            .map(|worker| worker.capacity)
            .fold(Resources::ZERO, Resources::saturating_add);
        next_assignments(&DispatchProblem {
            policy,
            pending,
            workers,
            tenants,
            capacity,
            limit: usize::MAX,
        })
        .into_iter()
        .map(|assignment| assignment.job)
        .collect()
    }

    #[test]
    fn fifo_is_oldest_first_and_work_conserving() {
        let tenants = BTreeMap::from([(tenant("a"), snapshot(4_000))]);
        let pending = [
            job("late", "a", 1_000, 5),
            job("early", "a", 1_000, 1),
            job("big", "a", 3_500, 3),
        ];
        // big does not fit what early leaves on the worker; late, behind it, does.
        assert_eq!(
            decide(
                QueuePolicy::Fifo,
                &pending,
                &[worker("w1", 4_000)],
                &tenants
            ),
            ["early", "late"]
        );
    }

    #[test]
    fn a_tenants_cap_in_a_pool_holds_back_what_would_exceed_it() {
        let mut capped = snapshot(100_000);
        capped.quota.pool_limits = BTreeMap::from([(
            "pool-default".to_string(),
            Resources::new(1_500, 1 << 30, 0),
        )]);
        capped.usage.running_by_pool =
            BTreeMap::from([("pool-default".to_string(), Resources::new(500, 0, 0))]);
        let tenants = BTreeMap::from([(tenant("a"), capped)]);
        let pending = [job("first", "a", 1_000, 1), job("second", "a", 1_000, 2)];
        // 500 m run there already: the first fits the 1,500 m cap, the second would not.
        assert_eq!(
            decide(
                QueuePolicy::Fifo,
                &pending,
                &[worker("w1", 8_000)],
                &tenants
            ),
            ["first"]
        );
    }

    #[test]
    fn strict_priority_and_edf_orders() {
        let tenants = BTreeMap::from([
            (tenant("a"), snapshot(100_000)),
            (tenant("b"), snapshot(100_000)),
        ]);
        let mut urgent = job("urgent", "b", 1_000, 9);
        urgent.priority = Priority::Critical;
        let mut due = job("due", "b", 1_000, 8);
        due.deadline_ms = Some(50);
        let pending = [job("old", "a", 1_000, 1), urgent, due];
        let one_slot = [worker("w", 1_000)];
        assert_eq!(
            decide(QueuePolicy::StrictPriority, &pending, &one_slot, &tenants),
            ["urgent"]
        );
        assert_eq!(
            decide(QueuePolicy::Edf, &pending, &one_slot, &tenants),
            ["due"]
        );
        assert_eq!(
            decide(QueuePolicy::Fifo, &pending, &one_slot, &tenants),
            ["old"]
        );
    }

    #[test]
    fn within_a_tenant_priority_then_urgency_then_submit_order() {
        let tenants = BTreeMap::from([(tenant("a"), snapshot(100_000))]);
        let mut at_risk = job("at-risk", "a", 1_000, 5);
        at_risk.urgency = Urgency::AtRisk;
        let mut high = job("high", "a", 1_000, 9);
        high.priority = Priority::High;
        let pending = [job("first", "a", 1_000, 1), at_risk, high];
        assert_eq!(
            decide(
                QueuePolicy::WeightedFair,
                &pending,
                &[worker("w", 3_000)],
                &tenants
            ),
            ["high", "at-risk", "first"]
        );
    }

    #[test]
    fn the_tenant_with_the_lowest_weighted_share_goes_next_and_boost_overrides() {
        let mut heavy = snapshot(100_000);
        heavy.running_in_pools = Resources::new(4_000, 0, 0);
        heavy.weight = 2.0;
        let mut light = snapshot(100_000);
        light.running_in_pools = Resources::new(3_000, 0, 0);
        let tenants = BTreeMap::from([(tenant("heavy"), heavy.clone()), (tenant("light"), light)]);
        let pending = [job("h", "heavy", 1_000, 1), job("l", "light", 1_000, 0)];
        // heavy: 4000/10000/2 = 0.2 < light: 0.3.
        let workers = [worker("w", 1_000), worker("full", 9_000)];
        let mut busy = workers.clone();
        busy[1].used = Resources::new(9_000, 0, 0);
        assert_eq!(
            decide(QueuePolicy::WeightedFair, &pending, &busy, &tenants),
            ["h"]
        );
        let mut starved = tenants.clone();
        starved.get_mut(&tenant("light")).unwrap().boosted = true;
        assert_eq!(
            decide(QueuePolicy::WeightedFair, &pending, &busy, &starved),
            ["l"]
        );
    }

    #[test]
    fn unschedulable_workers_and_foreign_pools_get_nothing() {
        let tenants = BTreeMap::from([(tenant("a"), snapshot(4_000))]);
        let mut draining = worker("w1", 4_000);
        draining.schedulable = false;
        let mut pinned = job("j", "a", 100, 1);
        pinned.pools = vec!["gpu".to_string()];
        for policy in QueuePolicy::ALL {
            assert!(
                decide(
                    policy,
                    &[job("k", "a", 100, 1)],
                    &[draining.clone()],
                    &tenants
                )
                .is_empty()
            );
            assert!(decide(policy, &[pinned.clone()], &[worker("w2", 4_000)], &tenants).is_empty());
        }
    }

    #[test]
    fn burst_is_marked() {
        let mut bursting = snapshot(1_000);
        bursting.burst_percent = Some(150);
        let tenants = BTreeMap::from([(tenant("a"), bursting)]);
        let plan = next_assignments(&DispatchProblem {
            policy: QueuePolicy::WeightedFair,
            pending: &[job("j1", "a", 1_000, 1), job("j2", "a", 400, 2)],
            workers: &[worker("w", 8_000)],
            tenants: &tenants,
            capacity: Resources::new(8_000, 8_192, 0),
            limit: 10,
        });
        assert_eq!(
            plan.iter()
                .map(|assignment| assignment.burst)
                .collect::<Vec<_>>(),
            [false, true]
        );
    }

    /// Runs the decision in a loop over simulated time: every job takes `duration` ticks;
    /// returns each tenant's resource-time from tick `from` on, with the backlogs given
    /// per tenant (`None` = endless) and the tick at which each tenant starts submitting.
    fn simulate(
        weights: &[f64],
        backlog: &[Option<usize>],
        joins_at: &[u64],
        slots: usize,
        durations: &[u64],
        ticks: u64,
        from: u64,
    ) -> Vec<f64> {
        let names: Vec<String> = (0..weights.len())
            .map(|index| format!("t{index}"))
            .collect();
        let workers: Vec<WorkerSlot> = (0..slots)
            .map(|index| worker(&format!("w{index}"), 1_000))
            .collect();
        let capacity = Resources::new(1_000 * slots as u64, 8_192 * slots as u64, 0);
        let mut running: Vec<(usize, usize, u64)> = Vec::new(); // (tenant, worker, ends at)
        let mut submitted = vec![0usize; weights.len()];
        let mut resource_time = vec![0.0; weights.len()];
        let mut next_id = 0u64;
        for tick in 0..ticks {
            running.retain(|(_, _, ends)| *ends > tick);
            let mut pending = Vec::new();
            for (index, name) in names.iter().enumerate() {
                if tick < joins_at[index] {
                    continue;
                }
                let left = backlog[index]
                    .map(|total| total.saturating_sub(submitted[index]))
                    .unwrap_or(usize::MAX);
                for _ in 0..left.min(slots) {
                    pending.push(job(&format!("{name}-{next_id}"), name, 1_000, tick));
                    next_id += 1;
                }
            }
            let tenants: BTreeMap<TenantId, TenantSnapshot> = names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    let count = running
                        .iter()
                        .filter(|(owner, _, _)| *owner == index)
                        .count() as u64;
                    let mut tenant_snapshot = snapshot(u64::MAX / 4);
                    tenant_snapshot.weight = weights[index];
                    tenant_snapshot.running_in_pools =
                        Resources::new(1_000 * count, 100 * count, 0);
                    (tenant(name), tenant_snapshot)
                })
                .collect();
            let mut slots_now = workers.clone();
            for (_, worker_index, _) in &running {
                slots_now[*worker_index].used = Resources::new(1_000, 100, 0);
            }
            let plan = next_assignments(&DispatchProblem {
                policy: QueuePolicy::WeightedFair,
                pending: &pending,
                workers: &slots_now,
                tenants: &tenants,
                capacity,
                limit: usize::MAX,
            });
            for assignment in plan {
                let owner = names
                    .iter()
                    .position(|name| assignment.job.starts_with(&format!("{name}-")))
                    .unwrap();
                let worker_index: usize = assignment.worker[1..].parse().unwrap();
                let duration = durations[next_id as usize % durations.len()];
                next_id += 1;
                running.push((owner, worker_index, tick + duration));
                submitted[owner] += 1;
            }
            if tick >= from {
                for (owner, _, _) in &running {
                    resource_time[*owner] += 1.0;
                }
            }
        }
        resource_time
    }

    fn shares(resource_time: &[f64]) -> Vec<f64> {
        let total: f64 = resource_time.iter().sum();
        resource_time.iter().map(|time| time / total).collect()
    }

    #[test]
    fn a_lone_tenant_uses_the_whole_pool() {
        let time = simulate(&[1.0, 5.0], &[None, Some(0)], &[0, 0], 20, &[3, 5], 200, 20);
        assert_eq!(time[1], 0.0);
        assert_eq!(time[0], 20.0 * 180.0, "every slot busy every tick");
    }

    #[test]
    fn weights_one_two_three_share_sixty_slots_one_two_three() {
        let time = simulate(
            &[1.0, 2.0, 3.0],
            &[None, None, None],
            &[0, 0, 0],
            60,
            &[4, 7, 5],
            400,
            50,
        );
        let got = shares(&time);
        for (share, expected) in got.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((share - expected).abs() < 0.05, "{got:?}");
        }
    }

    #[test]
    fn a_newly_backlogged_tenant_reaches_its_share_while_others_are_still_backlogged() {
        // t1 joins at tick 100 while t0 has an endless backlog; measured from tick 120.
        let time = simulate(&[1.0, 1.0], &[None, None], &[0, 100], 40, &[6, 9], 300, 120);
        let got = shares(&time);
        assert!((got[1] - 0.5).abs() < 0.05, "{got:?}");
    }

    proptest! {
        /// A plan never oversubscribes a worker, never exceeds a quota (or the burst
        /// ceiling), and assigns each job at most once, whatever the policy.
        #[test]
        fn plans_respect_capacity_and_quota(
            jobs in proptest::collection::vec((0usize..3, 1u64..3_000, 0u64..100, 0usize..5), 0..60),
            capacities in proptest::collection::vec(1_000u64..8_000, 1..6),
            quotas in proptest::collection::vec(500u64..6_000, 3),
            weights in proptest::collection::vec(0.1f64..10.0, 3),
            burst in proptest::option::of(101u64..=150),
            policy in prop_oneof![Just(QueuePolicy::WeightedFair), Just(QueuePolicy::Fifo), Just(QueuePolicy::StrictPriority), Just(QueuePolicy::Edf)],
        ) {
            let names = ["a", "b", "c"];
            let tenants: BTreeMap<TenantId, TenantSnapshot> = names
                .iter()
                .zip(quotas.iter().zip(&weights))
                .map(|(name, (quota, weight))| {
                    let mut tenant_snapshot = snapshot(*quota);
                    tenant_snapshot.burst_percent = burst;
                    tenant_snapshot.weight = *weight;
                    tenant_snapshot.quota.max_concurrent_jobs = 10;
                    (tenant(name), tenant_snapshot)
                })
                .collect();
            let pending: Vec<PendingJob> = jobs
                .iter()
                .enumerate()
                .map(|(index, (owner, cpu_m, at, priority))| {
                    let mut pending_job = job(&format!("j{index}"), names[*owner], *cpu_m, *at);
                    pending_job.priority = Priority::ALL[*priority];
                    pending_job.deadline_ms = (index % 2 == 0).then_some(*at * 7 % 100);
                    pending_job
                })
                .collect();
            let workers: Vec<WorkerSlot> = capacities.iter().enumerate().map(|(index, cpu)| worker(&format!("w{index}"), *cpu)).collect();
            let capacity = workers.iter().map(|worker| worker.capacity).fold(Resources::ZERO, Resources::saturating_add);
            let plan = next_assignments(&DispatchProblem { policy, pending: &pending, workers: &workers, tenants: &tenants, capacity, limit: usize::MAX });

            let mut per_worker: BTreeMap<&str, u64> = BTreeMap::new();
            let mut per_tenant: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            let mut seen = std::collections::BTreeSet::new();
            for assignment in &plan {
                prop_assert!(seen.insert(assignment.job.clone()), "assigned twice");
                let job = pending.iter().find(|job| job.id == assignment.job).unwrap();
                *per_worker.entry(assignment.worker.as_str()).or_default() += job.resources.cpu_m;
                let entry = per_tenant.entry(job.tenant.as_str()).or_default();
                entry.0 += job.resources.cpu_m;
                entry.1 += 1;
            }
            for worker in &workers {
                prop_assert!(per_worker.get(worker.id.as_str()).copied().unwrap_or(0) <= worker.capacity.cpu_m);
            }
            for (name, quota) in names.iter().zip(&quotas) {
                let percent = burst.unwrap_or(100);
                let (cpu_m, count) = per_tenant.get(name).copied().unwrap_or((0, 0));
                prop_assert!(cpu_m <= quota * percent / 100);
                prop_assert!(count <= 10 * percent / 100);
            }
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// With backlogged tenants of weights w_i and equal job sizes, each one's share of
        /// the resource-time stays within 5% of w_i / sum(w) after the warm-up.
        #[test]
        fn shares_converge_to_the_weights(
            weights in proptest::collection::vec(1u32..=6, 2..5),
            durations in proptest::collection::vec(2u64..9, 1..4),
        ) {
            let weights: Vec<f64> = weights.into_iter().map(f64::from).collect();
            let tenants = weights.len();
            let time = simulate(&weights, &vec![None; tenants], &vec![0; tenants], 80, &durations, 300, 60);
            let got = shares(&time);
            let total: f64 = weights.iter().sum();
            for (share, weight) in got.iter().zip(&weights) {
                prop_assert!((share - weight / total).abs() < 0.05, "{:?} for weights {:?}", got, weights);
            }
        }
    }
}
