//! What a pool's controller does next, decided from the replicated state, the workers its
//! provider is starting and the time (a parameter): the pure half of the pool actor.
//! - a static pool with fewer healthy workers than its size reports itself degraded, and
//!   healthy again when they return (a simulated one starts its `desired_size`);
//! - a dynamic pool starts workers until it has `desired_size` (at most `max_provisioning`
//!   starting at once, except virtual ones; a start that does not register within `provision_timeout_s` is
//!   killed and replaced), stops idle workers beyond the desired size, and idle workers
//!   beyond `min_size` after `idle_timeout_s` (lowering the desired size with them);
//! - a draining pool, once no job runs in it, stops its workers and is decommissioned; at
//!   `drain_timeout_s` it re-queues what still runs first.

use std::collections::BTreeSet;

use crate::pool::{Pool, PoolProvider, PoolState, PoolType};
use crate::worker::{Worker, WorkerState};

/// A worker the pool's provider started that may not have registered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Starting {
    pub worker: String,
    pub started_at_ms: u64,
}

/// One round's decision. The controller turns it into commands in this order: release,
/// health, lower the desired size, stop workers, decommission.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SizingDecision {
    /// The drain timed out with jobs still running: re-queue them, for this reason.
    pub release: Option<String>,
    /// A static pool crossed its size: record this many healthy workers.
    pub report_healthy: Option<u32>,
    /// Lower the pool's desired size to this (idle workers beyond `min_size` go).
    pub lower_desired_to: Option<u32>,
    /// Workers to stop, each with its reason.
    pub stop: Vec<(String, String)>,
    /// The pool is drained: decommission it, for this reason.
    pub decommission: Option<String>,
    /// Worker processes to kill: stopped workers once their stop is committed, and
    /// starts that never registered at once.
    pub kill: Vec<String>,
    /// How many workers to start.
    pub start: u32,
}

fn idle_since_ms(worker: &Worker) -> Option<u64> {
    (worker.state == WorkerState::Idle).then_some(worker.state_changed_at_ms)
}

/// The pool's decision for this round.
pub fn decide(
    pool: &Pool,
    workers: &[Worker],
    starting: &[Starting],
    now_ms: u64,
) -> SizingDecision {
    let mut decision = SizingDecision::default();
    let live: Vec<&Worker> = workers.iter().filter(|worker| worker.is_live()).collect();
    let held: usize = workers.iter().map(|worker| worker.jobs.len()).sum();
    match pool.state {
        PoolState::Draining => drain(pool, &live, starting, held, now_ms, &mut decision),
        PoolState::Decommissioned => {
            decision
                .kill
                .extend(starting.iter().map(|start| start.worker.clone()));
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
                decision.report_healthy = Some(healthy);
            }
            match pool.pool_type {
                PoolType::Dynamic => scale(pool, &live, starting, now_ms, &mut decision),
                // Virtual workers of a static pool: the simulator keeps `desired_size`.
                PoolType::Static if pool.provider == PoolProvider::Simulated => {
                    let registering = starting
                        .iter()
                        .filter(|start| !live.iter().any(|worker| worker.id == start.worker))
                        .count() as u32;
                    decision.start = pool.desired_size.saturating_sub(healthy + registering);
                }
                PoolType::Static => {}
            }
        }
    }
    decision
}

fn drain(
    pool: &Pool,
    live: &[&Worker],
    starting: &[Starting],
    held: usize,
    now_ms: u64,
    decision: &mut SizingDecision,
) {
    let drain_started = pool
        .history
        .iter()
        .rev()
        .find(|step| step.to == PoolState::Draining)
        .map(|step| step.at_ms)
        .unwrap_or(now_ms);
    let timeout_s = pool.dynamic_settings.drain_timeout_s;
    let timed_out = now_ms.saturating_sub(drain_started) >= timeout_s.saturating_mul(1_000);
    if held > 0 && timed_out {
        decision.release = Some(format!("drain timeout of {timeout_s} s: re-queued"));
    } else if held == 0 {
        for worker in live {
            decision
                .stop
                .push((worker.id.clone(), "pool drained".to_string()));
            decision.kill.push(worker.id.clone());
        }
        decision
            .kill
            .extend(starting.iter().map(|start| start.worker.clone()));
        decision.decommission =
            Some("drained: no job runs in it and its workers are stopped".to_string());
    }
}

fn scale(
    pool: &Pool,
    live: &[&Worker],
    starting: &[Starting],
    now_ms: u64,
    decision: &mut SizingDecision,
) {
    let live_ids: BTreeSet<&str> = live.iter().map(|worker| worker.id.as_str()).collect();
    let provision_timeout_ms = pool
        .dynamic_settings
        .provision_timeout_s
        .saturating_mul(1_000);
    let mut still_starting = 0u32;
    for start in starting {
        if live_ids.contains(start.worker.as_str()) {
            continue;
        }
        if now_ms.saturating_sub(start.started_at_ms) >= provision_timeout_ms {
            decision.kill.push(start.worker.clone());
        } else {
            still_starting += 1;
        }
    }
    let desired = pool.desired_size.clamp(pool.min_size, pool.max_size);
    let count = live.len() as u32;
    if pool.provider != PoolProvider::Static && count + still_starting < desired {
        // A virtual worker starts in one commit: the cap on starts at once is for machines.
        let room = match pool.provider {
            PoolProvider::Simulated => u32::MAX,
            _ => pool
                .dynamic_settings
                .max_provisioning
                .saturating_sub(still_starting),
        };
        decision.start = (desired - count - still_starting).min(room);
    }
    // Idle workers, longest idle first.
    let mut idle: Vec<(&Worker, u64)> = live
        .iter()
        .filter_map(|worker| idle_since_ms(worker).map(|since| (*worker, since)))
        .collect();
    idle.sort_by_key(|(_, since)| *since);
    let mut stopping: Vec<&Worker> = Vec::new();
    // Above the desired size: stop idle workers now.
    let surplus = count.saturating_sub(desired) as usize;
    stopping.extend(idle.iter().take(surplus).map(|(worker, _)| *worker));
    // Idle beyond min for longer than the idle timeout: stop, and lower the desired size.
    let idle_timeout_ms = pool.dynamic_settings.idle_timeout_s.saturating_mul(1_000);
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
            decision.lower_desired_to = Some(desired_now);
        }
    }
    for worker in stopping {
        decision
            .stop
            .push((worker.id.clone(), "scale-down: idle".to_string()));
        decision.kill.push(worker.id.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet as Set;

    use super::*;
    use crate::labels::Labels;
    use crate::pool::PoolAction;
    use crate::resources::Resources;

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

    fn starting(worker: &str, started_at_ms: u64) -> Starting {
        Starting {
            worker: worker.to_string(),
            started_at_ms,
        }
    }

    fn stopped(decision: &SizingDecision) -> Vec<&str> {
        decision
            .stop
            .iter()
            .map(|(worker, _)| worker.as_str())
            .collect()
    }

    proptest::proptest! {
        /// However far the desired size falls (an autoscaling scale-down), the workers
        /// stopped are idle ones: a busy worker is never chosen.
        #[test]
        fn a_scale_down_never_stops_a_busy_worker(
            busy in proptest::collection::vec(proptest::bool::ANY, 0..20),
            desired in 0u32..20,
            idle_for_ms in 0u64..30_000,
        ) {
            let pool = dynamic(0, 20, desired);
            let workers: Vec<Worker> = busy
                .iter()
                .enumerate()
                .map(|(index, is_busy)| {
                    let (state, jobs) = if *is_busy { (WorkerState::Busy, 1) } else { (WorkerState::Idle, 0) };
                    worker(&format!("w{index}"), state, 0, jobs)
                })
                .collect();
            let decision = decide(&pool, &workers, &[], idle_for_ms);
            for (stopped, _) in &decision.stop {
                let found = workers.iter().find(|worker| &worker.id == stopped).unwrap();
                proptest::prop_assert!(found.jobs.is_empty() && found.state == WorkerState::Idle, "{stopped} is busy");
            }
            let idle = busy.iter().filter(|is_busy| !**is_busy).count();
            let surplus = busy.len().saturating_sub(desired as usize);
            proptest::prop_assert!(decision.stop.len() >= surplus.min(idle), "{decision:?}");
        }
    }

    #[test]
    fn grows_to_desired_with_at_most_max_provisioning_starting() {
        let pool = dynamic(2, 6, 6);
        let workers = [
            worker("a", WorkerState::Busy, 0, 1),
            worker("b", WorkerState::Busy, 0, 1),
        ];
        let decision = decide(&pool, &workers, &[], 1_000);
        assert_eq!(decision.start, 3, "4 missing, 3 at once");
        let two_starting = [starting("c", 1_000), starting("d", 1_000)];
        assert_eq!(decide(&pool, &workers, &two_starting, 1_000).start, 1);
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
        let decision = decide(&pool, &workers, &[], 10_000);
        assert_eq!(
            stopped(&decision),
            ["a", "b"],
            "c is idle for 1 s only; d is busy"
        );
        assert_eq!(decision.lower_desired_to, Some(2));
    }

    #[test]
    fn a_start_that_times_out_is_killed_and_replaced() {
        let pool = dynamic(1, 3, 1);
        let timeout_ms = pool.dynamic_settings.provision_timeout_s * 1_000;
        let slow = [starting("slow", 1_000)];
        let before = decide(&pool, &[], &slow, 1_000 + timeout_ms - 1);
        assert!(before.kill.is_empty());
        assert_eq!(before.start, 0, "one is still starting");
        let at_timeout = decide(&pool, &[], &slow, 1_000 + timeout_ms);
        assert_eq!(at_timeout.kill, ["slow"]);
        assert_eq!(at_timeout.start, 1);
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
        assert_eq!(decide(&pool, &busy, &[], 2_000), SizingDecision::default());
        let at_timeout = decide(&pool, &busy, &[], 1_000 + 60_000);
        assert!(at_timeout.release.is_some());
        assert!(at_timeout.stop.is_empty() && at_timeout.decommission.is_none());
        let idle = [
            worker("a", WorkerState::Idle, 0, 0),
            worker("b", WorkerState::Idle, 0, 0),
        ];
        let done = decide(&pool, &idle, &[], 3_000);
        assert_eq!(done.kill, ["a", "b"]);
        assert_eq!(stopped(&done), ["a", "b"]);
        assert!(done.decommission.is_some());
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
        assert_eq!(decide(&pool, &one, &[], 0).report_healthy, Some(1));
        pool.state = PoolState::Degraded;
        let two = [
            worker("a", WorkerState::Idle, 0, 0),
            worker("b", WorkerState::Idle, 0, 0),
        ];
        assert_eq!(decide(&pool, &two, &[], 0).report_healthy, Some(2));
        pool.state = PoolState::Active;
        assert_eq!(decide(&pool, &two, &[], 0), SizingDecision::default());
    }

    #[test]
    fn virtual_workers_start_all_at_once_and_a_static_pool_never_starts_any() {
        let mut pool = dynamic(2, 20, 20);
        pool.provider = PoolProvider::Simulated;
        let one = [worker("a", WorkerState::Idle, 0, 0)];
        assert_eq!(decide(&pool, &one, &[starting("b", 0)], 0).start, 18);
        pool.provider = PoolProvider::Static;
        assert_eq!(decide(&pool, &one, &[], 0).start, 0);
    }

    #[test]
    fn a_simulated_static_pool_keeps_its_desired_size_registered() {
        let mut pool = Pool::new(
            "p",
            PoolType::Static,
            PoolProvider::Simulated,
            Resources::new(1_000, 1_000, 0),
            3,
            3,
            0,
        );
        pool.desired_size = 3;
        let one = [worker("a", WorkerState::Idle, 0, 0)];
        let registering = [starting("a", 0), starting("b", 0)];
        assert_eq!(decide(&pool, &one, &registering, 0).start, 1);
        pool.state = PoolState::Suspended;
        assert_eq!(decide(&pool, &one, &[], 0).start, 0, "suspended");
    }
}
