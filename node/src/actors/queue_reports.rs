//! Queue reports computed from the state: fair share over a window and queue status.

use std::collections::BTreeMap;

use crate::gateway::report_model::{CountView, FairShareView, QueueStatusView, TenantShareView};
use crate::state::HodeiState;
use hodei_domain::dispatch::dominant_share;
use hodei_domain::fairness::jain_index;
use hodei_domain::job::{Job, JobState, Priority};
use hodei_domain::queue::Queue;
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantId;

/// The capacity of the live workers of the queue's pools.
pub(super) fn pool_capacity(state: &HodeiState, queue: &Queue) -> Resources {
    state
        .workers()
        .filter(|worker| worker.is_live() && queue.pools.contains(&worker.pool))
        .map(|worker| worker.capacity)
        .fold(Resources::ZERO, Resources::saturating_add)
}

/// The time a job held resources within [from, to]: from its assignment to its end.
fn held_within(job: &Job, from_ms: u64, to_ms: u64) -> u64 {
    let mut total = 0;
    let mut held_since: Option<u64> = None;
    for step in &job.transitions {
        match step.state {
            JobState::Assigned => held_since = Some(step.at_ms),
            JobState::Running => {}
            _ => {
                if let Some(since) = held_since.take() {
                    total += overlap(since, step.at_ms, from_ms, to_ms);
                }
            }
        }
    }
    if let Some(since) = held_since {
        total += overlap(since, to_ms, from_ms, to_ms);
    }
    total
}

fn overlap(start: u64, end: u64, from: u64, to: u64) -> u64 {
    end.min(to).saturating_sub(start.max(from))
}

/// Whether the job was pending at some time within [from, to].
fn pending_within(job: &Job, from_ms: u64, to_ms: u64) -> bool {
    let mut pending_since: Option<u64> = None;
    for step in &job.transitions {
        if step.state == JobState::Pending {
            pending_since = Some(step.at_ms);
        } else if let Some(since) = pending_since.take()
            && overlap(since, step.at_ms, from_ms, to_ms) > 0
        {
            return true;
        }
    }
    pending_since.is_some_and(|since| since < to_ms)
}

pub fn fair_share(state: &HodeiState, queue: &Queue, now_ms: u64, window_ms: u64) -> FairShareView {
    let from_ms = now_ms.saturating_sub(window_ms);
    let capacity = pool_capacity(state, queue);
    let mut resource_time: BTreeMap<TenantId, f64> = BTreeMap::new();
    let mut backlogged: BTreeMap<TenantId, bool> = BTreeMap::new();
    let mut pending: BTreeMap<TenantId, u64> = BTreeMap::new();
    let mut running: BTreeMap<TenantId, u64> = BTreeMap::new();
    // Only jobs not final or ended within the window can count in it (older ones ended
    // before it began): no walk over every job.
    for job in state.live_and_recent_jobs(from_ms).filter(|job| {
        job.spec.queue == queue.id
            || job
                .pool
                .as_ref()
                .is_some_and(|pool| queue.pools.contains(pool))
    }) {
        let tenant = job.spec.tenant.clone();
        if job.spec.queue == queue.id && pending_within(job, from_ms, now_ms) {
            backlogged.insert(tenant.clone(), true);
        }
        if job.spec.queue == queue.id && job.state == JobState::Pending {
            *pending.entry(tenant.clone()).or_default() += 1;
        }
        let in_pools = job
            .transitions
            .iter()
            .any(|step| step.state == JobState::Assigned);
        if !in_pools {
            continue;
        }
        if matches!(job.state, JobState::Assigned | JobState::Running)
            && job
                .pool
                .as_ref()
                .is_some_and(|pool| queue.pools.contains(pool))
        {
            *running.entry(tenant.clone()).or_default() += 1;
        }
        let held_ms = held_within(job, from_ms, now_ms);
        if held_ms > 0 {
            *resource_time.entry(tenant).or_default() +=
                dominant_share(job.spec.resources, capacity) * held_ms as f64;
        }
    }
    let tenants: Vec<TenantId> = resource_time
        .keys()
        .chain(backlogged.keys())
        .chain(pending.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let weight_of = |tenant: &TenantId| {
        state
            .tenant(tenant)
            .map(|found| found.weight)
            .unwrap_or(1.0)
    };
    let backlogged_weight: f64 = backlogged.keys().map(weight_of).sum();
    let total_time: f64 = resource_time.values().sum();
    let mut normalized = Vec::new();
    let shares: Vec<TenantShareView> = tenants
        .iter()
        .map(|tenant| {
            let weight = weight_of(tenant);
            let is_backlogged = backlogged.contains_key(tenant);
            let fair = if is_backlogged && backlogged_weight > 0.0 {
                weight / backlogged_weight
            } else {
                0.0
            };
            let actual = if total_time > 0.0 {
                resource_time.get(tenant).copied().unwrap_or(0.0) / total_time
            } else {
                0.0
            };
            let normalized_share = (is_backlogged && fair > 0.0).then(|| actual / fair);
            if let Some(value) = normalized_share {
                normalized.push(value);
            }
            let pending_now = pending.get(tenant).copied().unwrap_or(0);
            TenantShareView {
                tenant: tenant.to_string(),
                weight,
                backlogged: pending_now > 0,
                backlogged_in_window: is_backlogged,
                fair_share: fair,
                actual_share: actual,
                normalized_share,
                pending: pending_now,
                running: running.get(tenant).copied().unwrap_or(0),
            }
        })
        .collect();
    FairShareView {
        queue: queue.id.clone(),
        policy: queue.policy.as_str().to_string(),
        window_s: window_ms / 1_000,
        capacity: capacity.into(),
        tenants: shares,
        jain_index: jain_index(&normalized),
    }
}

pub fn queue_status(
    state: &HodeiState,
    queue: &Queue,
    now_ms: u64,
    window_ms: u64,
) -> QueueStatusView {
    let mut by_tenant: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut by_priority: BTreeMap<Priority, (u64, u64)> = BTreeMap::new();
    let mut pending = 0;
    let mut running = 0;
    for ((queue_id, tenant, job_state), count) in state.job_tally() {
        if queue_id != &queue.id || *count == 0 {
            continue;
        }
        let entry = by_tenant.entry(tenant.to_string()).or_default();
        match job_state {
            JobState::Pending => {
                entry.0 += count;
                pending += count;
            }
            JobState::Assigned | JobState::Running => {
                entry.1 += count;
                running += count;
            }
            _ => {}
        }
    }
    for ((queue_id, priority, job_state), count) in state.priority_tally() {
        if queue_id != &queue.id || *count == 0 {
            continue;
        }
        let entry = by_priority.entry(*priority).or_default();
        match job_state {
            JobState::Pending => entry.0 += count,
            JobState::Assigned | JobState::Running => entry.1 += count,
            _ => {}
        }
    }
    // Pending ids are uuid v7s made at submission: the first is the oldest.
    let oldest = state
        .pending_in(&queue.id)
        .next()
        .map(|job| job.submitted_at_ms);
    let rate = state.dispatch_rate(&queue.id, now_ms, window_ms);
    QueueStatusView {
        queue: queue.id.clone(),
        policy: queue.policy.as_str().to_string(),
        pools: queue.pools.clone(),
        pending,
        running,
        by_tenant: by_tenant
            .into_iter()
            .filter(|(_, (pending, running))| pending + running > 0)
            .map(|(key, (pending, running))| CountView {
                key,
                pending,
                running,
            })
            .collect(),
        by_priority: by_priority
            .into_iter()
            .map(|(priority, (pending, running))| CountView {
                key: priority.as_str().to_string(),
                pending,
                running,
            })
            .collect(),
        oldest_pending_age_s: oldest.map(|at| now_ms.saturating_sub(at) as f64 / 1_000.0),
        dispatch_rate_per_s: rate,
        estimated_wait_s: (rate > 0.0).then(|| pending as f64 / rate),
    }
}
