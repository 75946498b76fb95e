//! Read-only reports computed from the state: a pending job's position and every reason it
//! waits, a job's SLA, SLA compliance, pool metrics. Fair share and queue status are in
//! `queue_reports.rs`.

use std::collections::BTreeMap;

use crate::actors::queue_reports::pool_capacity;

use crate::actors::gateway::require_access;
use crate::gateway::job_model::JobView;
use crate::gateway::report_model::{
    JobSlaView, PendingReasonView, PredictionView, SlaChangeView, SlaSummaryItemView,
    SlaSummaryView,
};
use crate::gateway::{GatewayError, Principal, RequestContext};
use crate::state::HodeiState;
use crate::state::history::JobSource;
use crate::state::hodei_state::PendingShape;
use hodei_domain::DomainError;
use hodei_domain::admission::{AdmissionInput, JobRequest, ReasonCode, Verdict, admit};
use hodei_domain::dispatch::weighted_dominant_share;
use hodei_domain::job::{Job, JobState};
use hodei_domain::queue::{Queue, QueuePolicy};
use hodei_domain::resources::Resources;
use hodei_domain::sla::{SlaLevel, SlaStatus, evaluate};
use hodei_domain::tenant::{TenantId, TenantStatus};

fn reason(code: &str, message: String) -> PendingReasonView {
    PendingReasonView {
        code: code.to_string(),
        message,
    }
}

/// Every reason the pending job is not running yet, most fundamental first. The quota
/// check is the admission `/quotas/enforce` answers with (same burst ceiling), so the two
/// agree.
pub fn pending_reasons(
    state: &HodeiState,
    job: &Job,
    max_burst_percent: Option<u64>,
) -> Vec<PendingReasonView> {
    if job.state != JobState::Pending {
        return Vec::new();
    }
    let mut reasons = blocking_reasons(state, &PendingShape::of(job), max_burst_percent);
    if reasons
        .first()
        .is_some_and(|first| first.code == TENANT_DELETED)
    {
        // Nothing else matters: the job waits for nothing that will come.
        return reasons;
    }
    let Some(queue) = state.queue(&job.spec.queue) else {
        return reasons;
    };
    order_reasons(state, job, queue, &mut reasons);
    if reasons.is_empty() {
        reasons.push(reason(
            "dispatching",
            "a worker has room: the dispatcher places it on its next pass".to_string(),
        ));
    }
    reasons
}

/// The code pending jobs with nothing but their turn to wait for are counted under in
/// [`pending_reason_tally`] (the reasons `behind_smaller_share`, `behind_earlier_jobs`
/// and `dispatching` of one job).
pub const IN_LINE: &str = "in_line";

const TENANT_DELETED: &str = "tenant_deleted";

/// The most distinct pending shapes one tally checks (each costs a scan of the workers):
/// the jobs of shapes beyond it are counted under [`NOT_EXAMINED`].
const MAX_SHAPES: usize = 20_000;

/// The code of the pending jobs a tally did not examine (see [`MAX_SHAPES`]).
pub const NOT_EXAMINED: &str = "not_examined";

/// Pending jobs by queue and the first reason each waits for (the most fundamental one
/// [`pending_reasons`] gives), `in_line` for jobs held by nothing but their turn. Jobs
/// of the same tenant, queue, resources and pool selector wait for the same reasons, and
/// apply counts the pending jobs of each such shape: the reasons are worked out once per
/// shape, whatever the number of jobs (for at most [`MAX_SHAPES`] shapes: each costs a
/// scan of the workers, under the state's read lock).
pub fn pending_reason_tally(
    state: &HodeiState,
    max_burst_percent: Option<u64>,
) -> BTreeMap<(String, String), u64> {
    let mut tally = BTreeMap::new();
    for (examined, (shape, count)) in state.pending_shapes().enumerate() {
        let code = if examined < MAX_SHAPES {
            blocking_reasons(state, shape, max_burst_percent)
                .into_iter()
                .next()
                .map_or_else(|| IN_LINE.to_string(), |first| first.code)
        } else {
            NOT_EXAMINED.to_string()
        };
        *tally.entry((shape.queue.clone(), code)).or_insert(0) += count;
    }
    tally
}

/// The reasons that hold the job back whatever its place in the queue: its tenant, budget
/// and quota, and its pools.
fn blocking_reasons(
    state: &HodeiState,
    job: &PendingShape,
    max_burst_percent: Option<u64>,
) -> Vec<PendingReasonView> {
    let mut reasons = Vec::new();
    let Some(tenant) = state.tenant(&job.tenant) else {
        return vec![reason(
            TENANT_DELETED,
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
    if state.budget_exhausted(&tenant.id, crate::actors::now_ms()) {
        reasons.push(reason(
            "budget_exhausted",
            format!(
                "tenant `{}` spent its daily cost budget (cost_tracking.budget_action: queue): its jobs wait until the next day (UTC)",
                tenant.id
            ),
        ));
    }
    reasons.extend(quota_reasons(
        state,
        &job.tenant,
        job.resources,
        tenant,
        max_burst_percent,
    ));
    let Some(queue) = state.queue(&job.queue) else {
        reasons.push(reason("no_queue", "its queue was deleted".to_string()));
        return reasons;
    };
    placement_reasons(state, job, queue, &mut reasons);
    reasons
}

/// Why the tenant's quota holds the job back now: the admission `/quotas/enforce` answers
/// (over quota, waiting for running jobs to end; or larger than the quota: `needs_burst`).
pub fn quota_reasons(
    state: &HodeiState,
    tenant_id: &TenantId,
    resources: Resources,
    tenant: &hodei_domain::tenant::Tenant,
    max_burst_percent: Option<u64>,
) -> Vec<PendingReasonView> {
    let mut reasons = Vec::new();
    let usage = state.usage(tenant_id);
    let decision = admit(&AdmissionInput {
        quota: &tenant.quota,
        usage: &usage,
        tenant_active: true,
        active_burst_percent: state
            .active_burst(tenant_id)
            .map(|session| session.ceiling_percentage),
        max_burst_percent,
        largest_worker: None,
        request: &JobRequest {
            resources,
            pool: None,
        },
    });
    if matches!(decision.verdict, Verdict::Queue | Verdict::Deny) {
        // A full backlog holds back new submits, not a job already in it.
        for found in decision
            .reasons
            .iter()
            .filter(|found| found.code != ReasonCode::BacklogFull)
        {
            let code = match found.code {
                ReasonCode::NeedsBurst => "needs_burst",
                ReasonCode::ExceedsCeiling => "exceeds_ceiling",
                _ => "quota",
            };
            reasons.push(reason(code, found.message.clone()));
        }
    }
    reasons
}

/// Why the job's pools cannot take it now: unavailable pools, no live worker that can
/// hold it, or every such worker full.
fn placement_reasons(
    state: &HodeiState,
    job: &PendingShape,
    queue: &Queue,
    reasons: &mut Vec<PendingReasonView>,
) {
    let pools: Vec<&String> = queue
        .pools
        .iter()
        .filter(|pool| job.pool_selector.is_empty() || job.pool_selector.contains(pool))
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
                && job.resources.fits_within(worker.capacity)
        })
        .collect();
    if fitting.is_empty() {
        let names: Vec<&str> = pools.iter().map(|pool| pool.as_str()).collect();
        reasons.push(reason(
            "no_matching_pool",
            format!(
                "no live worker of pool(s) {} can hold {} m CPU and {} MiB",
                names.join(", "),
                job.resources.cpu_m,
                job.resources.memory_mb
            ),
        ));
    } else if !fitting
        .iter()
        .any(|worker| job.resources.fits_within(worker.free()))
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

/// Compliance by tenant and level, from every job with an SLA (its last recorded status),
/// those in the history included: read from the tally apply keeps, not from the jobs.
pub fn sla_summary(
    state: &HodeiState,
    principal: &Principal,
    tenant: Option<&TenantId>,
    level: Option<SlaLevel>,
) -> SlaSummaryView {
    let mut counts: BTreeMap<(String, SlaLevel), [u64; 5]> = BTreeMap::new();
    for ((job_tenant, job_level, status), count) in state.sla_tally() {
        if *count == 0
            || !principal.may_access(job_tenant)
            || tenant.is_some_and(|wanted| job_tenant != wanted)
            || level.is_some_and(|wanted| *job_level != wanted)
        {
            continue;
        }
        let slot = SlaStatus::ALL
            .iter()
            .position(|candidate| candidate == status)
            .unwrap_or(0);
        counts
            .entry((job_tenant.to_string(), *job_level))
            .or_default()[slot] += count;
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
) -> Result<(std::borrow::Cow<'a, Job>, JobSource), GatewayError> {
    let (job, source) = state
        .find_job(id)
        .ok_or_else(|| GatewayError::from(DomainError::not_found("job", id)))?;
    if require_access(context, &job.spec.tenant).is_err() {
        return Err(DomainError::not_found("job", id).into());
    }
    Ok((job, source))
}

/// The first pending reason, for the job view.
pub fn first_pending_reason(
    state: &HodeiState,
    job: &Job,
    max_burst_percent: Option<u64>,
) -> Option<String> {
    pending_reasons(state, job, max_burst_percent)
        .into_iter()
        .next()
        .map(|found| format!("{}: {}", found.code, found.message))
}

/// The job as a reader of one job sees it: with its queue position and why it waits.
/// The position costs a walk of the queue ahead of it, so lists and submit answers use
/// `job_summary_view` instead.
pub fn full_job_view(state: &HodeiState, job: &Job, max_burst_percent: Option<u64>) -> JobView {
    let mut view = JobView::new(
        job,
        state.queue_position(job).map(|position| position as u64),
        first_pending_reason(state, job, max_burst_percent),
    );
    view.running_cost_nanos = state.running_cost(job, crate::actors::now_ms());
    view
}

pub(crate) fn percentile(sorted: &[u64], fraction: f64) -> Option<u64> {
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
    // Both from what apply keeps: the count of final jobs per pool (history included) and
    // the pool's last waits from pending to assigned.
    let finished: u64 = state
        .pool_tally()
        .iter()
        .filter(|((counted_pool, job_state), _)| counted_pool == &pool.id && job_state.is_final())
        .map(|(_, count)| *count)
        .sum();
    let mut sorted = state.pool_waits(&pool.id);
    sorted.sort_unstable();
    PoolMetricsView {
        pool: pool.id.clone(),
        state: pool.state.as_str().to_string(),
        size: {
            let (min, max, desired) = pool.shown_sizes();
            PoolSizeView {
                current: state.live_workers_of(&pool.id) as u64,
                desired,
                min,
                max,
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::jobs_tests::{apply, assign, job, setup, submit};
    use crate::state::{CommandV1, command};
    use hodei_domain::quota::Quota;

    fn tally(state: &HodeiState) -> Vec<(String, u64)> {
        pending_reason_tally(state, None)
            .into_iter()
            .map(|((queue, code), count)| {
                assert_eq!(queue, "q");
                (code, count)
            })
            .collect()
    }

    #[test]
    fn pending_jobs_count_once_under_their_first_reason() {
        // One worker of 1,000 m; three 300 m jobs and one of 900 m.
        let mut state = setup(Quota::default(), 1);
        submit(
            &mut state,
            vec![
                job("a", 300, 1),
                job("b", 300, 1),
                job("c", 300, 1),
                job("d", 900, 1),
            ],
        );
        assert_eq!(tally(&state), vec![(IN_LINE.to_string(), 4)]);
        // The 300 m jobs fill the worker: the 900 m one waits for room.
        assign(&mut state, &[("a", "w0"), ("b", "w0"), ("c", "w0")]);
        assert_eq!(tally(&state), vec![("no_capacity".to_string(), 1)]);
        let first = pending_reasons(&state, state.job("d").unwrap(), None);
        assert_eq!(
            first[0].code, "no_capacity",
            "the tally counts the first reason"
        );
        // The worker is lost: its jobs come back, and no live worker can take any.
        apply(
            &mut state,
            CommandV1::WorkerLost(command::WorkerLost {
                worker: "w0".into(),
                reason: "test".into(),
                at_ms: 5,
            }),
        )
        .unwrap();
        assert_eq!(tally(&state), vec![("no_matching_pool".to_string(), 4)]);
        // A suspended tenant comes first, whatever else holds its jobs.
        let acme = hodei_domain::tenant::TenantId::parse("acme").unwrap();
        apply(
            &mut state,
            CommandV1::UpdateTenant(command::UpdateTenant {
                id: acme,
                patch: hodei_domain::tenant::TenantPatch {
                    status: Some(hodei_domain::tenant::TenantStatus::Suspended),
                    ..Default::default()
                },
                at_ms: 6,
            }),
        )
        .unwrap();
        assert_eq!(tally(&state), vec![("tenant_suspended".to_string(), 4)]);
    }
}
