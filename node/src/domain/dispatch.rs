//! The dispatch decision as one pure function: given a snapshot of pending jobs, workers
//! and tenants, which job goes to which worker now. FIFO by submit order here; the fair
//! scheduler (weighted DRF, priorities, SLA) replaces the ordering, not the checks.
//!
//! Every assignment is admitted by [`crate::domain::admission::admit`] against the tenant's
//! usage *including the assignments already planned*, and fits the free capacity of its
//! worker: a plan can never oversubscribe a worker or exceed a quota. The state machine
//! re-checks each assignment when the plan is applied, because the snapshot may be stale.

use std::collections::BTreeMap;

use crate::domain::admission::{AdmissionInput, JobRequest, Verdict, admit};
use crate::domain::quota::{Quota, Usage};
use crate::domain::resources::Resources;
use crate::domain::tenant::TenantId;

/// A pending job as dispatch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    pub id: String,
    pub tenant: TenantId,
    pub resources: Resources,
    pub submitted_at_ms: u64,
    /// Pools it may run in; empty means any.
    pub pools: Vec<String>,
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

/// What admission needs of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSnapshot {
    pub quota: Quota,
    pub usage: Usage,
    pub active: bool,
    pub burst_percent: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    pub job: String,
    pub worker: String,
    /// Admitted above quota under the tenant's burst session.
    pub burst: bool,
}

/// At most `limit` assignments, oldest pending jobs first.
pub fn next_assignments(
    pending: &[PendingJob],
    workers: &[WorkerSlot],
    tenants: &BTreeMap<TenantId, TenantSnapshot>,
    limit: usize,
) -> Vec<Assignment> {
    let mut order: Vec<&PendingJob> = pending.iter().collect();
    order.sort_by(|left, right| {
        (left.submitted_at_ms, &left.id).cmp(&(right.submitted_at_ms, &right.id))
    });
    let mut free: Vec<(usize, Resources)> = workers
        .iter()
        .enumerate()
        .filter(|(_, worker)| worker.schedulable)
        .map(|(index, worker)| (index, worker.capacity.saturating_sub(worker.used)))
        .collect();
    let mut planned_usage: BTreeMap<&TenantId, Usage> = BTreeMap::new();
    let mut plan = Vec::new();
    for job in order {
        if plan.len() >= limit {
            break;
        }
        let Some(tenant) = tenants.get(&job.tenant) else {
            continue;
        };
        let usage = planned_usage
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
            Verdict::Queue | Verdict::Deny => continue,
        };
        let slot = free.iter_mut().find(|(index, available)| {
            let worker = &workers[*index];
            (job.pools.is_empty() || job.pools.contains(&worker.pool))
                && job.resources.fits_within(*available)
        });
        let Some((index, available)) = slot else {
            continue;
        };
        *available = available.saturating_sub(job.resources);
        usage.running = usage.running.saturating_add(job.resources);
        usage.running_jobs += 1;
        usage.pending_jobs = usage.pending_jobs.saturating_sub(1);
        plan.push(Assignment {
            job: job.id.clone(),
            worker: workers[*index].id.clone(),
            burst,
        });
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
        }
    }

    fn snapshot(quota_cpu_m: u64) -> TenantSnapshot {
        TenantSnapshot {
            quota: Quota {
                cpu_m: quota_cpu_m,
                ..Quota::default()
            },
            usage: Usage::default(),
            active: true,
            burst_percent: None,
        }
    }

    #[test]
    fn oldest_first_within_capacity_and_quota() {
        let tenants = BTreeMap::from([(tenant("a"), snapshot(4_000))]);
        let pending = [
            job("late", "a", 1_000, 5),
            job("early", "a", 1_000, 1),
            job("big", "a", 3_500, 3),
        ];
        let plan = next_assignments(&pending, &[worker("w1", 4_000)], &tenants, 10);
        let jobs: Vec<&str> = plan
            .iter()
            .map(|assignment| assignment.job.as_str())
            .collect();
        // big does not fit what early leaves on the worker; late, behind it, does: a job that
        // cannot be placed does not hold up the ones behind it (work conserving).
        assert_eq!(jobs, ["early", "late"]);
    }

    #[test]
    fn unschedulable_workers_and_foreign_pools_get_nothing() {
        let tenants = BTreeMap::from([(tenant("a"), snapshot(4_000))]);
        let mut draining = worker("w1", 4_000);
        draining.schedulable = false;
        let mut pinned = job("j", "a", 100, 1);
        pinned.pools = vec!["gpu".to_string()];
        assert!(next_assignments(&[job("k", "a", 100, 1)], &[draining], &tenants, 10).is_empty());
        assert!(next_assignments(&[pinned], &[worker("w2", 4_000)], &tenants, 10).is_empty());
    }

    #[test]
    fn burst_is_marked() {
        let mut bursting = snapshot(1_000);
        bursting.burst_percent = Some(150);
        let tenants = BTreeMap::from([(tenant("a"), bursting)]);
        let plan = next_assignments(
            &[job("j1", "a", 1_000, 1), job("j2", "a", 400, 2)],
            &[worker("w", 8_000)],
            &tenants,
            10,
        );
        assert_eq!(
            plan.iter()
                .map(|assignment| assignment.burst)
                .collect::<Vec<_>>(),
            [false, true]
        );
    }

    proptest! {
        /// A plan never oversubscribes a worker, never exceeds a quota (or the burst ceiling),
        /// and assigns each job at most once.
        #[test]
        fn plans_respect_capacity_and_quota(
            jobs in proptest::collection::vec((0usize..3, 1u64..3_000, 0u64..100), 0..60),
            capacities in proptest::collection::vec(1_000u64..8_000, 1..6),
            quotas in proptest::collection::vec(500u64..6_000, 3),
            burst in proptest::option::of(101u64..=150),
        ) {
            let names = ["a", "b", "c"];
            let tenants: BTreeMap<TenantId, TenantSnapshot> = names
                .iter()
                .zip(&quotas)
                .map(|(name, quota)| {
                    let mut snapshot = snapshot(*quota);
                    snapshot.burst_percent = burst;
                    (tenant(name), snapshot)
                })
                .collect();
            let pending: Vec<PendingJob> = jobs
                .iter()
                .enumerate()
                .map(|(index, (owner, cpu_m, at))| job(&format!("j{index}"), names[*owner], *cpu_m, *at))
                .collect();
            let workers: Vec<WorkerSlot> = capacities.iter().enumerate().map(|(index, cpu)| worker(&format!("w{index}"), *cpu)).collect();
            let plan = next_assignments(&pending, &workers, &tenants, usize::MAX);

            let mut per_worker: BTreeMap<&str, u64> = BTreeMap::new();
            let mut per_tenant: BTreeMap<&str, u64> = BTreeMap::new();
            let mut seen = std::collections::BTreeSet::new();
            for assignment in &plan {
                prop_assert!(seen.insert(assignment.job.clone()), "assigned twice");
                let job = pending.iter().find(|job| job.id == assignment.job).unwrap();
                *per_worker.entry(assignment.worker.as_str()).or_default() += job.resources.cpu_m;
                *per_tenant.entry(job.tenant.as_str()).or_default() += job.resources.cpu_m;
            }
            for worker in &workers {
                prop_assert!(per_worker.get(worker.id.as_str()).copied().unwrap_or(0) <= worker.capacity.cpu_m);
            }
            for (name, quota) in names.iter().zip(&quotas) {
                let ceiling = quota * burst.unwrap_or(100) / 100;
                prop_assert!(per_tenant.get(name).copied().unwrap_or(0) <= ceiling);
            }
        }
    }
}
