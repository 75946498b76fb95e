//! Read-only reports computed from the state: fair share over a window, queue status,
//! a pending job's position and every reason it waits, a job's SLA, and SLA compliance.

use std::collections::BTreeMap;

use crate::actors::gateway::require_access;
use crate::gateway::job_model::JobView;
use crate::gateway::report_model::{
    CountView, FairShareView, JobSlaView, PendingReasonView, PredictionView, QueueStatusView,
    SlaChangeView, SlaSummaryItemView, SlaSummaryView, TenantShareView,
};
use crate::gateway::{GatewayError, Principal, RequestContext};
use crate::state::HodeiState;
use hodei_domain::DomainError;
use hodei_domain::admission::{AdmissionInput, JobRequest, Verdict, admit};
use hodei_domain::dispatch::{dominant_share, weighted_dominant_share};
use hodei_domain::fairness::jain_index;
use hodei_domain::job::{Job, JobState, Priority};
use hodei_domain::queue::{Queue, QueuePolicy};
use hodei_domain::resources::Resources;
use hodei_domain::sla::{SlaLevel, SlaStatus, evaluate};
use hodei_domain::tenant::{TenantId, TenantStatus};

/// The capacity of the live workers of the queue's pools.
fn pool_capacity(state: &HodeiState, queue: &Queue) -> Resources {
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
    for job in state.jobs_after(None, usize::MAX, |job| {
        job.spec.queue == queue.id
            || job
                .pool
                .as_ref()
                .is_some_and(|pool| queue.pools.contains(pool))
    }) {
        let tenant = job.spec.tenant.clone();
        if job.spec.queue == queue.id && pending_within(&job, from_ms, now_ms) {
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
        let held_ms = held_within(&job, from_ms, now_ms);
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
            TenantShareView {
                tenant: tenant.to_string(),
                weight,
                backlogged: is_backlogged,
                fair_share: fair,
                actual_share: actual,
                normalized_share,
                pending: pending.get(tenant).copied().unwrap_or(0),
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

fn reason(code: &str, message: String) -> PendingReasonView {
    PendingReasonView {
        code: code.to_string(),
        message,
    }
}

/// Every reason the pending job is not running yet, most fundamental first.
pub fn pending_reasons(state: &HodeiState, job: &Job) -> Vec<PendingReasonView> {
    if job.state != JobState::Pending {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    let Some(tenant) = state.tenant(&job.spec.tenant) else {
        return vec![reason(
            "tenant_deleted",
            "its tenant no longer exists".to_string(),
        )];
    };
    if tenant.status != TenantStatus::Active {
        reasons.push(reason(
            "tenant_suspended",
            format!(
                "tenant `{}` is suspended: nothing of it is dispatched",
                tenant.id
            ),
        ));
    }
    let usage = state.usage(&job.spec.tenant);
    let decision = admit(&AdmissionInput {
        quota: &tenant.quota,
        usage: &usage,
        tenant_active: true,
        active_burst_percent: state
            .active_burst(&job.spec.tenant)
            .map(|session| session.ceiling_percentage),
        max_burst_percent: None,
        largest_worker: None,
        request: &JobRequest {
            resources: job.spec.resources,
            pool: None,
        },
    });
    if decision.verdict == Verdict::Queue {
        for found in &decision.reasons {
            reasons.push(reason("quota", found.message.clone()));
        }
    }
    let Some(queue) = state.queue(&job.spec.queue) else {
        reasons.push(reason("no_queue", "its queue was deleted".to_string()));
        return reasons;
    };
    placement_reasons(state, job, queue, &mut reasons);
    order_reasons(state, job, queue, &mut reasons);
    if reasons.is_empty() {
        reasons.push(reason(
            "dispatching",
            "a worker has room: the dispatcher places it on its next pass".to_string(),
        ));
    }
    reasons
}

/// Why the job's pools cannot take it now: unavailable pools, no live worker that can
/// hold it, or every such worker full.
fn placement_reasons(
    state: &HodeiState,
    job: &Job,
    queue: &Queue,
    reasons: &mut Vec<PendingReasonView>,
) {
    let pools: Vec<&String> = queue
        .pools
        .iter()
        .filter(|pool| job.spec.pool_selector.is_empty() || job.spec.pool_selector.contains(pool))
        .collect();
    let unavailable: Vec<&String> = pools
        .iter()
        .filter(|pool| state.pool(pool).is_some_and(|found| !found.accepts_work()))
        .copied()
        .collect();
    for pool in &unavailable {
        let pool_state = state
            .pool(pool)
            .map(|found| found.state.as_str())
            .unwrap_or("unknown");
        reasons.push(reason(
            "pool_unavailable",
            format!("pool `{pool}` is {pool_state}: no new job is dispatched to it"),
        ));
    }
    let fitting: Vec<_> = state
        .workers()
        .filter(|worker| {
            worker.is_live()
                && pools.contains(&&worker.pool)
                && !unavailable.contains(&&worker.pool)
                && job.spec.resources.fits_within(worker.capacity)
        })
        .collect();
    if fitting.is_empty() {
        let names: Vec<&str> = pools.iter().map(|pool| pool.as_str()).collect();
        reasons.push(reason(
            "no_matching_pool",
            format!(
                "no live worker of pool(s) {} can hold {} m CPU and {} MiB",
                names.join(", "),
                job.spec.resources.cpu_m,
                job.spec.resources.memory_mb
            ),
        ));
    } else if !fitting
        .iter()
        .any(|worker| job.spec.resources.fits_within(worker.free()))
    {
        reasons.push(reason(
            "no_capacity",
            format!(
                "every one of the {} worker(s) that can hold it is full now",
                fitting.len()
            ),
        ));
    }
}

/// The jobs ahead of it in its queue: of tenants with a smaller weighted share, or earlier.
fn order_reasons(
    state: &HodeiState,
    job: &Job,
    queue: &Queue,
    reasons: &mut Vec<PendingReasonView>,
) {
    let ahead = ahead_of(state, queue, job);
    if ahead.total > 0 {
        if queue.policy == QueuePolicy::WeightedFair && ahead.smaller_share > 0 {
            reasons.push(reason(
                "behind_smaller_share",
                format!(
                    "behind {} pending job(s) of tenants with a smaller weighted share than `{}`",
                    ahead.smaller_share, job.spec.tenant
                ),
            ));
        }
        if ahead.total > ahead.smaller_share {
            reasons.push(reason(
                "behind_earlier_jobs",
                format!(
                    "behind {} earlier pending job(s) of its queue",
                    ahead.total - ahead.smaller_share
                ),
            ));
        }
    }
}

struct Ahead {
    total: u64,
    smaller_share: u64,
}

/// The pending jobs of the queue submitted before `job`, and how many of them belong to
/// tenants whose weighted share of the queue's pools is smaller than its tenant's.
fn ahead_of(state: &HodeiState, queue: &Queue, job: &Job) -> Ahead {
    let capacity = pool_capacity(state, queue);
    let mut running: BTreeMap<&TenantId, Resources> = BTreeMap::new();
    for worker in state
        .workers()
        .filter(|worker| queue.pools.contains(&worker.pool))
    {
        for held in state.jobs_of_worker(&worker.id) {
            let entry = running.entry(&held.spec.tenant).or_default();
            *entry = entry.saturating_add(held.spec.resources);
        }
    }
    let share_of = |tenant: &TenantId| {
        let weight = state
            .tenant(tenant)
            .map(|found| found.weight)
            .unwrap_or(1.0);
        weighted_dominant_share(
            running.get(tenant).copied().unwrap_or_default(),
            capacity,
            weight,
        )
    };
    let own = share_of(&job.spec.tenant);
    let mut ahead = Ahead {
        total: 0,
        smaller_share: 0,
    };
    let mut shares: BTreeMap<TenantId, f64> = BTreeMap::new();
    for earlier in state.pending_in(&queue.id) {
        if earlier.id >= job.id {
            break;
        }
        ahead.total += 1;
        let share = *shares
            .entry(earlier.spec.tenant.clone())
            .or_insert_with(|| share_of(&earlier.spec.tenant));
        if earlier.spec.tenant != job.spec.tenant && share < own {
            ahead.smaller_share += 1;
        }
    }
    ahead
}

pub fn job_sla(state: &HodeiState, job: &Job, now_ms: u64, window_ms: u64) -> Option<JobSlaView> {
    let sla = job.spec.sla?;
    let target = job.sla_target_start_ms?;
    let (predicted, prediction) = if job.state == JobState::Pending {
        let position = state.queue_position(job).unwrap_or(0) as u64;
        let rate = state.dispatch_rate(&job.spec.queue, now_ms, window_ms);
        let predicted = (rate > 0.0).then(|| now_ms + (position as f64 / rate * 1_000.0) as u64);
        (
            predicted,
            Some(PredictionView {
                position,
                dispatch_rate_per_s: rate,
                method: format!(
                    "now + position / the queue's dispatch rate over the last {} s",
                    window_ms / 1_000
                ),
            }),
        )
    } else {
        (None, None)
    };
    let clock = job.sla_clock(now_ms, predicted)?;
    Some(JobSlaView {
        id: job.id.clone(),
        level: sla.level.as_str().to_string(),
        target_start_ms: target,
        finish_by_ms: sla.finish_by_ms,
        status: evaluate(&clock).as_str().to_string(),
        predicted_start_ms: predicted,
        prediction,
        history: job
            .sla_history
            .iter()
            .map(|change| SlaChangeView {
                status: change.status.as_str().to_string(),
                at_ms: change.at_ms,
            })
            .collect(),
    })
}

/// Compliance by tenant and level, from every job with an SLA (its last recorded status).
pub fn sla_summary(
    state: &HodeiState,
    principal: &Principal,
    tenant: Option<&TenantId>,
    level: Option<SlaLevel>,
) -> SlaSummaryView {
    let mut counts: BTreeMap<(String, SlaLevel), [u64; 5]> = BTreeMap::new();
    for job in state.jobs_after(None, usize::MAX, |job| {
        job.spec.sla.is_some()
            && principal.may_access(&job.spec.tenant)
            && tenant.is_none_or(|wanted| &job.spec.tenant == wanted)
            && level.is_none_or(|wanted| job.spec.sla.is_some_and(|sla| sla.level == wanted))
    }) {
        let Some(sla) = job.spec.sla else {
            continue;
        };
        let Some(status) = job.sla_status() else {
            continue;
        };
        let slot = SlaStatus::ALL
            .iter()
            .position(|candidate| *candidate == status)
            .unwrap_or(0);
        counts
            .entry((job.spec.tenant.to_string(), sla.level))
            .or_default()[slot] += 1;
    }
    let items = counts
        .into_iter()
        .map(|((tenant, level), by_status)| {
            let [on_track, at_risk, critical, violated, met] = by_status;
            SlaSummaryItemView {
                tenant,
                level: level.as_str().to_string(),
                jobs: by_status.iter().sum(),
                met,
                violated,
                on_track,
                at_risk,
                critical,
                compliance_ratio: (met + violated > 0)
                    .then(|| met as f64 / (met + violated) as f64),
            }
        })
        .collect();
    SlaSummaryView { items }
}

/// Reads a job the caller may see; another tenant's job is reported missing, not
/// forbidden, so that job ids of other tenants are not leaked.
pub fn visible_job<'a>(
    state: &'a HodeiState,
    context: &RequestContext,
    id: &str,
) -> Result<&'a Job, GatewayError> {
    let job = state
        .job(id)
        .ok_or_else(|| GatewayError::from(DomainError::not_found("job", id)))?;
    if require_access(context, &job.spec.tenant).is_err() {
        return Err(DomainError::not_found("job", id).into());
    }
    Ok(job)
}

/// The first pending reason, for the job view.
pub fn first_pending_reason(state: &HodeiState, job: &Job) -> Option<String> {
    pending_reasons(state, job)
        .into_iter()
        .next()
        .map(|found| format!("{}: {}", found.code, found.message))
}

/// The job as a reader of one job sees it: with its queue position and why it waits.
/// The position costs a walk of the queue ahead of it, so lists and submit answers use
/// `job_summary_view` instead.
pub fn full_job_view(state: &HodeiState, job: &Job) -> JobView {
    JobView::new(
        job,
        state.queue_position(job).map(|position| position as u64),
        first_pending_reason(state, job),
    )
}

/// How many recent assignments the allocation-latency percentiles cover.
const LATENCY_SAMPLES: usize = 1_000;

fn percentile(sorted: &[u64], fraction: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

pub fn pool_metrics(
    state: &HodeiState,
    pool: &hodei_domain::pool::Pool,
) -> crate::gateway::report_model::PoolMetricsView {
    use crate::gateway::report_model::{
        LatencyView, PoolJobsView, PoolMetricsView, PoolSizeView, ProvisioningView, UtilizationView,
    };
    let mut workers: BTreeMap<String, u64> = BTreeMap::new();
    let mut capacity = Resources::ZERO;
    let mut used = Resources::ZERO;
    let mut running = 0u64;
    for worker in state.workers().filter(|worker| worker.pool == pool.id) {
        *workers
            .entry(worker.state.as_str().to_string())
            .or_default() += 1;
        if worker.is_live() {
            capacity = capacity.saturating_add(worker.capacity);
            used = used.saturating_add(worker.used);
            running += worker.jobs.len() as u64;
        }
    }
    let ratio = |used: u64, total: u64| (total > 0).then(|| used as f64 / total as f64);
    let queued = state
        .queues()
        .filter(|queue| queue.pools.contains(&pool.id))
        .flat_map(|queue| state.pending_in(&queue.id))
        .filter(|job| {
            job.spec.pool_selector.is_empty() || job.spec.pool_selector.contains(&pool.id)
        })
        .count() as u64;
    let mut finished = 0u64;
    let mut latencies: Vec<(u64, u64)> = Vec::new();
    for job in state.jobs_after(None, usize::MAX, |job| {
        job.pool.as_deref() == Some(pool.id.as_str())
    }) {
        if job.state.is_final() {
            finished += 1;
        }
        // The last wait: from the last pending transition to the assignment after it.
        let mut pending_since = None;
        for step in &job.transitions {
            match step.state {
                JobState::Pending => pending_since = Some(step.at_ms),
                JobState::Assigned => {
                    if let Some(since) = pending_since.take() {
                        latencies.push((step.at_ms, step.at_ms.saturating_sub(since)));
                    }
                }
                _ => {}
            }
        }
    }
    latencies.sort_unstable();
    let recent: Vec<u64> = latencies
        .iter()
        .rev()
        .take(LATENCY_SAMPLES)
        .map(|(_, latency)| *latency)
        .collect();
    let mut sorted = recent;
    sorted.sort_unstable();
    PoolMetricsView {
        pool: pool.id.clone(),
        state: pool.state.as_str().to_string(),
        size: PoolSizeView {
            current: state.live_workers_of(&pool.id) as u64,
            desired: pool.desired_size,
            min: pool.min_size,
            max: pool.max_size,
        },
        workers,
        utilization: UtilizationView {
            cpu: ratio(used.cpu_m, capacity.cpu_m),
            memory: ratio(used.memory_mb, capacity.memory_mb),
            gpu: ratio(used.gpu, capacity.gpu),
        },
        jobs: PoolJobsView {
            queued,
            running,
            finished,
        },
        allocation_latency: LatencyView {
            samples: sorted.len() as u64,
            p50_ms: percentile(&sorted, 0.50),
            p95_ms: percentile(&sorted, 0.95),
            p99_ms: percentile(&sorted, 0.99),
        },
        provisioning: ProvisioningView {
            succeeded: pool.provisioning.succeeded,
            failed: pool.provisioning.failed,
            success_rate: pool.provisioning.success_rate(),
        },
    }
}
