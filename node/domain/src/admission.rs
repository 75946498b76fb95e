//! Quota admission: the one function the dispatcher and `POST /api/v1/quotas/enforce`
//! both call. Given a tenant's quota, usage, burst state and a job's request, it answers
//! `allow | allow_burst | queue | deny` with every reason and its numbers.
//!
//! - `deny`: the job can never run (larger than the tenant's ceiling — the quota, or the
//!   burst ceiling if the tenant may burst — than a pool limit or than any worker), or the
//!   backlog is full.
//! - `allow`: running usage plus the job fits the quota in every dimension.
//! - `allow_burst`: it does not, but a burst session is active and it fits the burst
//!   ceiling (quota x ceiling%) in every dimension.
//! - `queue`: otherwise; the reasons say which limits are in the way.

use serde::{Deserialize, Serialize};

use crate::quota::{Quota, Usage};
use crate::resources::{Dimension, Resources};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    AllowBurst,
    Queue,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::AllowBurst => "allow_burst",
            Verdict::Queue => "queue",
            Verdict::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Larger than the tenant could ever run at once (quota, or burst ceiling).
    ExceedsCeiling,
    /// Larger than the tenant's limit in the pool it asks for.
    ExceedsPoolLimit,
    /// Larger than the largest worker of any pool the job may use.
    ExceedsWorker,
    BacklogFull,
    TenantSuspended,
    /// Running usage plus the job is above the quota.
    Quota,
    /// Running usage plus the job is above the burst ceiling.
    BurstCeiling,
    /// Running usage in the pool plus the job is above the tenant's pool limit.
    PoolLimit,
    /// The job alone is larger than the quota (within the burst ceiling): it runs only
    /// while a burst session is active.
    NeedsBurst,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 9] = [
        ReasonCode::ExceedsCeiling,
        ReasonCode::ExceedsPoolLimit,
        ReasonCode::ExceedsWorker,
        ReasonCode::BacklogFull,
        ReasonCode::TenantSuspended,
        ReasonCode::Quota,
        ReasonCode::BurstCeiling,
        ReasonCode::PoolLimit,
        ReasonCode::NeedsBurst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::ExceedsCeiling => "exceeds_ceiling",
            ReasonCode::ExceedsPoolLimit => "exceeds_pool_limit",
            ReasonCode::ExceedsWorker => "exceeds_worker",
            ReasonCode::BacklogFull => "backlog_full",
            ReasonCode::TenantSuspended => "tenant_suspended",
            ReasonCode::Quota => "quota",
            ReasonCode::BurstCeiling => "burst_ceiling",
            ReasonCode::PoolLimit => "pool_limit",
            ReasonCode::NeedsBurst => "needs_burst",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub dimension: Option<Dimension>,
    /// In use now (running, or pending for the backlog).
    pub used: u64,
    /// What the job asks for in this dimension.
    pub requested: u64,
    pub limit: u64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
}

/// The job as admission sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub resources: Resources,
    /// The pool it would run in, if known.
    pub pool: Option<String>,
}

/// Everything the decision depends on; no clock, no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionInput<'a> {
    pub quota: &'a Quota,
    pub usage: &'a Usage,
    pub tenant_active: bool,
    /// The ceiling (percent of quota) of the tenant's active burst session, if any.
    pub active_burst_percent: Option<u64>,
    /// The highest ceiling a burst could give this tenant (`max_overage_percentage`), when
    /// bursting is enabled; a job above even that can never run.
    pub max_burst_percent: Option<u64>,
    /// The largest worker of any pool the job may use, when pools are known.
    pub largest_worker: Option<Resources>,
    pub request: &'a JobRequest,
}

fn reason(
    code: ReasonCode,
    dimension: Option<Dimension>,
    used: u64,
    requested: u64,
    limit: u64,
    message: String,
) -> Reason {
    Reason {
        code,
        dimension,
        used,
        requested,
        limit,
        message,
    }
}

/// Per-dimension checks of `used + requested <= limit`, one reason per breach.
fn breaches(
    code: ReasonCode,
    label: &str,
    used: Resources,
    requested: Resources,
    limit: Resources,
) -> Vec<Reason> {
    used.dimensions()
        .into_iter()
        .zip(requested.dimensions())
        .zip(limit.dimensions())
        .filter(|(((_, used), (_, requested)), (_, limit))| used.saturating_add(*requested) > *limit)
        .map(|(((dimension, used), (_, requested)), (_, limit))| {
            let unit = dimension.unit();
            reason(
                code,
                Some(dimension),
                used,
                requested,
                limit,
                format!("{label}: {dimension} {used}/{limit}{unit} in use, the job needs {requested}{unit}"),
            )
        })
        .collect()
}

/// `found` with its message replaced by `describe(found, dimension)`. Every reason from
/// [`breaches`] names its dimension; one that did not would keep its message rather than
/// panic (admission runs inside apply, where a panic would stop every replica).
fn reworded(mut found: Reason, describe: impl Fn(&Reason, Dimension) -> String) -> Reason {
    if let Some(dimension) = found.dimension {
        found.message = describe(&found, dimension);
    }
    found
}

pub fn admit(input: &AdmissionInput<'_>) -> Decision {
    let quota = input.quota;
    let usage = input.usage;
    let requested = input.request.resources;

    // Can it ever run?
    let ceiling_percent = input.max_burst_percent.unwrap_or(100).max(100);
    let ceiling = quota.resources().scaled_percent(ceiling_percent);
    let ceiling_label = if ceiling_percent > 100 {
        "burst ceiling"
    } else {
        "quota"
    };
    let mut deny: Vec<Reason> = breaches(ReasonCode::ExceedsCeiling, "", Resources::ZERO, requested, ceiling)
        .into_iter()
        .map(|found| {
            reworded(found, |found, dimension| {
                format!(
                    "the job needs {}{unit} of {dimension}, more than the tenant's {ceiling_label} of {}{unit}: it could never run",
                    found.requested,
                    found.limit,
                    unit = dimension.unit()
                )
            })
        })
        .collect();
    let concurrency_ceiling = quota.max_concurrent_jobs.saturating_mul(ceiling_percent) / 100;
    if concurrency_ceiling == 0 {
        deny.push(reason(
            ReasonCode::ExceedsCeiling,
            Some(Dimension::ConcurrentJobs),
            usage.running_jobs,
            1,
            0,
            "the tenant's max_concurrent_jobs is 0: no job of it can run".to_string(),
        ));
    }
    let pool_limit = input
        .request
        .pool
        .as_ref()
        .and_then(|pool| quota.pool_limits.get(pool).map(|limit| (pool, *limit)));
    if let Some((pool, limit)) = pool_limit {
        for found in breaches(
            ReasonCode::ExceedsPoolLimit,
            "",
            Resources::ZERO,
            requested,
            limit,
        ) {
            deny.push(reworded(found, |found, dimension| {
                format!(
                    "the job needs {}{unit} of {dimension}, more than the tenant's limit of {}{unit} in pool {pool}",
                    found.requested,
                    found.limit,
                    unit = dimension.unit()
                )
            }));
        }
    }
    if let Some(worker) = input.largest_worker {
        for found in breaches(
            ReasonCode::ExceedsWorker,
            "",
            Resources::ZERO,
            requested,
            worker,
        ) {
            deny.push(reworded(found, |found, dimension| {
                format!(
                    "the job needs {}{unit} of {dimension}, more than the largest worker has ({}{unit})",
                    found.requested,
                    found.limit,
                    unit = dimension.unit()
                )
            }));
        }
    }
    if usage.pending_jobs >= quota.max_pending_jobs {
        deny.push(reason(
            ReasonCode::BacklogFull,
            Some(Dimension::PendingJobs),
            usage.pending_jobs,
            1,
            quota.max_pending_jobs,
            format!(
                "backlog full: {}/{} jobs pending",
                usage.pending_jobs, quota.max_pending_jobs
            ),
        ));
    }
    if !deny.is_empty() {
        return Decision {
            verdict: Verdict::Deny,
            reasons: deny,
        };
    }

    if !input.tenant_active {
        return Decision {
            verdict: Verdict::Queue,
            reasons: vec![reason(
                ReasonCode::TenantSuspended,
                None,
                0,
                0,
                0,
                "tenant suspended: nothing new of it is admitted until it is active again"
                    .to_string(),
            )],
        };
    }

    // Pool limits are hard caps: bursting does not lift them.
    let mut pool_reasons = Vec::new();
    if let Some((pool, limit)) = pool_limit {
        let used = usage.running_by_pool.get(pool).copied().unwrap_or_default();
        pool_reasons = breaches(
            ReasonCode::PoolLimit,
            &format!("pool limit in {pool}"),
            used,
            requested,
            limit,
        );
    }

    let mut quota_reasons = breaches(
        ReasonCode::Quota,
        "quota",
        usage.running,
        requested,
        quota.resources(),
    );
    if usage.running_jobs.saturating_add(1) > quota.max_concurrent_jobs {
        quota_reasons.push(reason(
            ReasonCode::Quota,
            Some(Dimension::ConcurrentJobs),
            usage.running_jobs,
            1,
            quota.max_concurrent_jobs,
            format!(
                "quota: {}/{} jobs running",
                usage.running_jobs, quota.max_concurrent_jobs
            ),
        ));
    }
    if quota_reasons.is_empty() && pool_reasons.is_empty() {
        return Decision {
            verdict: Verdict::Allow,
            reasons: Vec::new(),
        };
    }

    if let Some(percent) = input
        .active_burst_percent
        .filter(|_| pool_reasons.is_empty())
    {
        let burst_limit = quota.resources().scaled_percent(percent);
        let mut burst_reasons = breaches(
            ReasonCode::BurstCeiling,
            "burst ceiling",
            usage.running,
            requested,
            burst_limit,
        );
        let burst_jobs = quota.max_concurrent_jobs.saturating_mul(percent) / 100;
        if usage.running_jobs.saturating_add(1) > burst_jobs {
            burst_reasons.push(reason(
                ReasonCode::BurstCeiling,
                Some(Dimension::ConcurrentJobs),
                usage.running_jobs,
                1,
                burst_jobs,
                format!(
                    "burst ceiling: {}/{burst_jobs} jobs running",
                    usage.running_jobs
                ),
            ));
        }
        if burst_reasons.is_empty() {
            // Above quota, within the burst ceiling: admitted as burst, and the quota
            // breaches say why it is burst.
            return Decision {
                verdict: Verdict::AllowBurst,
                reasons: quota_reasons,
            };
        }
        quota_reasons.extend(burst_reasons);
    }
    if input.active_burst_percent.is_none() && !requested.fits_within(quota.resources()) {
        // No wait ends this one: only a burst session lets a job above the quota run.
        quota_reasons = breaches(
            ReasonCode::NeedsBurst,
            "",
            Resources::ZERO,
            requested,
            quota.resources(),
        )
        .into_iter()
        .map(|found| {
            reworded(found, |found, dimension| {
                format!(
                    "the job needs {}{unit} of {dimension}, more than the tenant's quota of {}{unit}: it runs only while a burst session is active (`hodei burst request`)",
                    found.requested,
                    found.limit,
                    unit = dimension.unit()
                )
            })
        })
        .collect();
    }
    quota_reasons.extend(pool_reasons);
    Decision {
        verdict: Verdict::Queue,
        reasons: quota_reasons,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn quota() -> Quota {
        Quota::default()
    }

    fn usage(cpu_m: u64, memory_mb: u64, running_jobs: u64) -> Usage {
        Usage {
            running: Resources::new(cpu_m, memory_mb, 0),
            running_jobs,
            pending_jobs: 0,
            running_by_pool: BTreeMap::new(),
        }
    }

    fn job(cpu_m: u64, memory_mb: u64) -> JobRequest {
        JobRequest {
            resources: Resources::new(cpu_m, memory_mb, 0),
            pool: None,
        }
    }

    fn decide(quota: &Quota, usage: &Usage, burst: Option<u64>, request: &JobRequest) -> Decision {
        admit(&AdmissionInput {
            quota,
            usage,
            tenant_active: true,
            active_burst_percent: burst,
            max_burst_percent: Some(150),
            largest_worker: None,
            request,
        })
    }

    #[test]
    fn fits_quota_is_allowed() {
        let decision = decide(&quota(), &usage(3_000, 4_000, 3), None, &job(1_000, 4_192));
        assert_eq!(decision.verdict, Verdict::Allow);
        assert!(decision.reasons.is_empty());
    }

    #[test]
    fn over_quota_queues_with_the_numbers() {
        let decision = decide(&quota(), &usage(3_800, 0, 1), None, &job(500, 100));
        assert_eq!(decision.verdict, Verdict::Queue);
        assert_eq!(decision.reasons.len(), 1);
        let found = &decision.reasons[0];
        assert_eq!(
            (found.code, found.dimension),
            (ReasonCode::Quota, Some(Dimension::Cpu))
        );
        assert_eq!(
            (found.used, found.requested, found.limit),
            (3_800, 500, 4_000)
        );
        assert_eq!(
            found.message,
            "quota: cpu 3800/4000 m in use, the job needs 500 m"
        );
    }

    #[test]
    fn concurrency_is_a_quota_dimension() {
        let decision = decide(&quota(), &usage(0, 0, 10), None, &job(1, 1));
        assert_eq!(decision.verdict, Verdict::Queue);
        assert_eq!(
            decision.reasons[0].dimension,
            Some(Dimension::ConcurrentJobs)
        );
    }

    #[test]
    fn burst_admits_above_quota_up_to_the_ceiling() {
        let over = decide(&quota(), &usage(3_800, 0, 1), Some(150), &job(1_000, 100));
        assert_eq!(over.verdict, Verdict::AllowBurst);
        assert_eq!(over.reasons[0].code, ReasonCode::Quota);
        let beyond = decide(&quota(), &usage(5_500, 0, 1), Some(150), &job(1_000, 100));
        assert_eq!(beyond.verdict, Verdict::Queue);
        assert!(
            beyond
                .reasons
                .iter()
                .any(|found| found.code == ReasonCode::BurstCeiling)
        );
    }

    #[test]
    fn a_job_larger_than_any_ceiling_is_denied() {
        let without_burst = admit(&AdmissionInput {
            quota: &quota(),
            usage: &usage(0, 0, 0),
            tenant_active: true,
            active_burst_percent: None,
            max_burst_percent: None,
            largest_worker: None,
            request: &job(5_000, 100),
        });
        assert_eq!(without_burst.verdict, Verdict::Deny);
        assert!(
            without_burst.reasons[0].message.contains("quota of 4000 m"),
            "{:?}",
            without_burst.reasons
        );
        // With bursting possible, the ceiling is 150%: 5000 m could run one day.
        assert_eq!(
            decide(&quota(), &usage(0, 0, 0), None, &job(5_000, 100)).verdict,
            Verdict::Queue
        );
        assert_eq!(
            decide(&quota(), &usage(0, 0, 0), None, &job(6_001, 100)).verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn larger_than_any_worker_is_denied() {
        let decision = admit(&AdmissionInput {
            quota: &quota(),
            usage: &usage(0, 0, 0),
            tenant_active: true,
            active_burst_percent: None,
            max_burst_percent: None,
            largest_worker: Some(Resources::new(2_000, 4_096, 0)),
            request: &job(3_000, 100),
        });
        assert_eq!(decision.verdict, Verdict::Deny);
        assert_eq!(decision.reasons[0].code, ReasonCode::ExceedsWorker);
    }

    #[test]
    fn full_backlog_is_denied() {
        let mut full = usage(0, 0, 0);
        full.pending_jobs = 10_000;
        let decision = decide(&quota(), &full, None, &job(1, 1));
        assert_eq!(decision.verdict, Verdict::Deny);
        assert_eq!(decision.reasons[0].code, ReasonCode::BacklogFull);
    }

    #[test]
    fn suspended_tenant_queues() {
        let decision = admit(&AdmissionInput {
            quota: &quota(),
            usage: &usage(0, 0, 0),
            tenant_active: false,
            active_burst_percent: None,
            max_burst_percent: None,
            largest_worker: None,
            request: &job(1, 1),
        });
        assert_eq!(decision.verdict, Verdict::Queue);
        assert_eq!(decision.reasons[0].code, ReasonCode::TenantSuspended);
    }

    #[test]
    fn pool_limits_are_hard_caps_even_in_a_burst() {
        let limited = Quota {
            pool_limits: BTreeMap::from([(
                "gpu-pool".to_string(),
                Resources::new(1_000, 8_192, 0),
            )]),
            ..quota()
        };
        let mut in_pool = usage(900, 0, 1);
        in_pool
            .running_by_pool
            .insert("gpu-pool".to_string(), Resources::new(900, 0, 0));
        let request = JobRequest {
            resources: Resources::new(200, 0, 0),
            pool: Some("gpu-pool".to_string()),
        };
        let decision = decide(&limited, &in_pool, Some(150), &request);
        assert_eq!(decision.verdict, Verdict::Queue);
        assert_eq!(decision.reasons[0].code, ReasonCode::PoolLimit);
        let too_big = JobRequest {
            resources: Resources::new(2_000, 0, 0),
            pool: Some("gpu-pool".to_string()),
        };
        assert_eq!(
            decide(&limited, &usage(0, 0, 0), None, &too_big).verdict,
            Verdict::Deny
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Submit { cpu_m: u64, memory_mb: u64 },
        Finish(usize),
        StartBurst(u64),
        EndBurst,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..3_000, 1u64..6_000).prop_map(|(cpu_m, memory_mb)| Step::Submit { cpu_m, memory_mb }),
            3 => (0usize..32).prop_map(Step::Finish),
            1 => (101u64..=150).prop_map(Step::StartBurst),
            1 => Just(Step::EndBurst),
        ]
    }

    proptest! {
        /// For any sequence of admissions and completions, what runs never exceeds the
        /// quota, nor the burst ceiling while a session is active; jobs admitted under a
        /// burst may keep running after it ends (they are not preempted), but nothing new
        /// is admitted above quota then.
        #[test]
        fn running_usage_never_exceeds_quota_or_burst_ceiling(steps in proptest::collection::vec(step(), 1..200)) {
            let quota = Quota::default();
            let mut running: Vec<Resources> = Vec::new();
            let mut burst: Option<u64> = None;
            for step in steps {
                match step {
                    Step::Submit { cpu_m, memory_mb } => {
                        let current = Usage {
                            running: running.iter().fold(Resources::ZERO, |total, job| total.saturating_add(*job)),
                            running_jobs: running.len() as u64,
                            pending_jobs: 0,
                            running_by_pool: BTreeMap::new(),
                        };
                        let request = JobRequest { resources: Resources::new(cpu_m, memory_mb, 0), pool: None };
                        let decision = decide(&quota, &current, burst, &request);
                        let after = current.running.saturating_add(request.resources);
                        match decision.verdict {
                            Verdict::Allow => {
                                prop_assert!(after.fits_within(quota.resources()));
                                prop_assert!(current.running_jobs < quota.max_concurrent_jobs);
                                running.push(request.resources);
                            }
                            Verdict::AllowBurst => {
                                let percent = burst.expect("allow_burst only with an active session");
                                prop_assert!(after.fits_within(quota.resources().scaled_percent(percent)));
                                prop_assert!(!after.fits_within(quota.resources()) || current.running_jobs >= quota.max_concurrent_jobs);
                                running.push(request.resources);
                            }
                            Verdict::Queue | Verdict::Deny => prop_assert!(!decision.reasons.is_empty()),
                        }
                    }
                    Step::Finish(index) => {
                        if !running.is_empty() {
                            running.remove(index % running.len());
                        }
                    }
                    Step::StartBurst(percent) => burst = Some(percent),
                    Step::EndBurst => burst = None,
                }
            }
        }
    }
}
