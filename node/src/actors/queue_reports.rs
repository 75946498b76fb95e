//! Queue reports computed from the state: fair share over a window and queue status.

use std::collections::BTreeMap;

use crate::gateway::report_model::{CountView, FairShareView, QueueStatusView, TenantShareView};
use crate::state::HodeiState;
use hodei_domain::fairness::jain_index;
use hodei_domain::job::{JobState, Priority};
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

/// A tenant's counts in one fair-share report.
#[derive(Default)]
struct TenantWindow {
    resource_time: f64,
    backlogged: bool,
    pending: u64,
    running: u64,
}

/// The fair-share report of `queue` over the `window_ms` before `now_ms`, from the share
/// ledger apply keeps: a tenant's resource time is its dominant share of the window (DRF:
/// the largest, over resources, of the resource time it held over the pools' capacity),
/// so the report costs the same however many jobs ran.
pub fn fair_share(state: &HodeiState, queue: &Queue, now_ms: u64, window_ms: u64) -> FairShareView {
    let from_ms = now_ms.saturating_sub(window_ms);
    let capacity = pool_capacity(state, queue);
    let capacity_by_dimension = [capacity.cpu_m, capacity.memory_mb, capacity.gpu];
    let mut by_tenant: BTreeMap<TenantId, TenantWindow> = BTreeMap::new();
    for (tenant, lines) in state.share_window(&queue.id, &queue.pools, from_ms, now_ms) {
        let resource_time = lines
            .held
            .iter()
            .zip(capacity_by_dimension)
            .filter(|(_, total)| *total > 0)
            .map(|(held, total)| *held as f64 / total as f64)
            .fold(0.0, f64::max);
        by_tenant.insert(
            tenant,
            TenantWindow {
                resource_time,
                backlogged: lines.left_pending_ms.is_some_and(|at| at > from_ms),
                pending: 0,
                running: lines.running,
            },
        );
    }
    for ((queue_id, tenant, job_state), count) in state.job_tally() {
        if queue_id == &queue.id && *job_state == JobState::Pending && *count > 0 {
            let counts = by_tenant.entry(tenant.clone()).or_default();
            counts.pending = *count;
            counts.backlogged = true;
        }
    }
    // A tenant shows when it held resources, was backlogged or has jobs pending.
    by_tenant
        .retain(|_, counts| counts.resource_time > 0.0 || counts.backlogged || counts.pending > 0);
    let weight_of = |tenant: &TenantId| {
        state
            .tenant(tenant)
            .map(|found| found.weight)
            .unwrap_or(1.0)
    };
    let backlogged_weight: f64 = by_tenant
        .iter()
        .filter(|(_, counts)| counts.backlogged)
        .map(|(tenant, _)| weight_of(tenant))
        .sum();
    let total_time: f64 = by_tenant.values().map(|counts| counts.resource_time).sum();
    let mut normalized = Vec::new();
    let shares: Vec<TenantShareView> = by_tenant
        .iter()
        .map(|(tenant, counts)| {
            let weight = weight_of(tenant);
            let is_backlogged = counts.backlogged;
            let fair = if is_backlogged && backlogged_weight > 0.0 {
                weight / backlogged_weight
            } else {
                0.0
            };
            let actual = if total_time > 0.0 {
                counts.resource_time / total_time
            } else {
                0.0
            };
            let normalized_share = (is_backlogged && fair > 0.0).then(|| actual / fair);
            if let Some(value) = normalized_share {
                normalized.push(value);
            }
            TenantShareView {
                tenant: tenant.to_string(),
                weight,
                backlogged: counts.pending > 0,
                backlogged_in_window: is_backlogged,
                fair_share: fair,
                actual_share: actual,
                normalized_share,
                pending: counts.pending,
                running: counts.running,
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
