//! Cost recommendations (US-09.5.2): rules over what the cost ledger, the usage reports
//! and the scaling history say about a window. Each recommendation names its target,
//! shows the numbers it rests on, estimates what it saves a month, and says how sure it
//! is (a longer window and more runs make it surer).

use serde::{Deserialize, Serialize};

use crate::cost::DAY_MS;
use crate::usage::UsageStats;

/// A pool over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolWindow {
    pub pool: String,
    pub dynamic: bool,
    /// Workers now (live).
    pub workers: u32,
    pub min_size: u32,
    /// What its provisioned workers cost (list prices).
    pub cost_nanos: u64,
    /// What of that its jobs used (list prices).
    pub attributed_nanos: u64,
    /// The list price of one core-hour plus one GiB-hour, micro-dollars (to compare pools).
    pub unit_price_micros: u64,
}

/// A tenant over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantWindow {
    pub tenant: String,
    /// Its CPU quota, millicores (`None`: unlimited).
    pub quota_cpu_m: Option<u64>,
    /// What it was billed.
    pub billed_nanos: u64,
    /// Its runs that reported usage.
    pub usage: UsageStats,
    /// Its runs with each label (`key=value`): what they were billed and used.
    pub labels: Vec<(String, u64, UsageStats)>,
}

/// A pool's autoscaling over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingWindow {
    pub pool: String,
    /// Decisions that changed the size.
    pub changes: u32,
    /// Changes that undid the one before (up then down, or down then up).
    pub reversals: u32,
    pub scale_down_stabilization_s: u64,
}

/// A tenant's load in one pool of a queue that also has another pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementWindow {
    pub tenant: String,
    pub queue: String,
    pub pool: String,
    pub list_nanos: u64,
    pub unit_price_micros: u64,
    /// The queue's other pools that could take its jobs, with their unit prices.
    pub alternatives: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptimizationInput {
    pub window_ms: u64,
    pub pools: Vec<PoolWindow>,
    pub tenants: Vec<TenantWindow>,
    pub scaling: Vec<ScalingWindow>,
    pub placements: Vec<PlacementWindow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecommendationKind {
    RightSizePool,
    CutIdleCapacity,
    LowerQuota,
    RightSizeRequests,
    LengthenCooldown,
    MoveToCheaperPool,
}

impl RecommendationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecommendationKind::RightSizePool => "right_size_pool",
            RecommendationKind::CutIdleCapacity => "cut_idle_capacity",
            RecommendationKind::LowerQuota => "lower_quota",
            RecommendationKind::RightSizeRequests => "right_size_requests",
            RecommendationKind::LengthenCooldown => "lengthen_cooldown",
            RecommendationKind::MoveToCheaperPool => "move_to_cheaper_pool",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// One number a recommendation rests on (its unit is in its name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub name: String,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub kind: RecommendationKind,
    /// `pool/<id>` or `tenant/<id>` (and `queue/<id>` for a move).
    pub target: String,
    /// What to do, in a sentence.
    pub action: String,
    pub evidence: Vec<Evidence>,
    /// What it would have saved over the window.
    pub window_saving_nanos: u64,
    /// The same over 30 days.
    pub monthly_saving_nanos: u64,
    pub confidence: Confidence,
}

/// A pool below this utilization is oversized.
pub const RIGHT_SIZE_BELOW_PERCENT: u64 = 40;
/// A pool idle more than this is worth cutting.
pub const IDLE_ABOVE_PERCENT: u64 = 50;
/// Sizes aim at this utilization.
pub const TARGET_UTILIZATION_PERCENT: u64 = 70;
/// Requests whose p95 use is below this percent are oversized.
pub const REQUESTS_BELOW_PERCENT: u32 = 50;
/// Headroom over the p95 use a right-sized request keeps.
pub const REQUEST_HEADROOM_PERCENT: u64 = 120;
/// A quota the tenant held less than this percent of on average is unused.
pub const QUOTA_USED_BELOW_PERCENT: u64 = 10;
/// Reversals of the size in a window that make a pool flap.
pub const FLAPPING_REVERSALS: u32 = 4;
/// A pool cheaper by at least this percent is worth moving to.
pub const CHEAPER_BY_PERCENT: u64 = 10;

const MONTH_MS: u64 = 30 * DAY_MS;

fn evidence(name: &str, value: impl TryInto<i64>) -> Evidence {
    Evidence {
        name: name.to_string(),
        value: value.try_into().unwrap_or(i64::MAX),
    }
}

fn monthly(window_saving: u64, window_ms: u64) -> u64 {
    let scaled = u128::from(window_saving) * u128::from(MONTH_MS) / u128::from(window_ms.max(1));
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

fn window_confidence(window_ms: u64) -> Confidence {
    if window_ms >= 7 * DAY_MS {
        Confidence::High
    } else if window_ms >= DAY_MS {
        Confidence::Medium
    } else {
        Confidence::Low
    }
}

fn percent_of(part: u64, whole: u64) -> u64 {
    u64::try_from(u128::from(part) * 100 / u128::from(whole.max(1))).unwrap_or(u64::MAX)
}

/// Right-sized requests for runs whose p95 CPU use stayed under half of what they asked.
fn request_sizing(
    target: &str,
    who: &str,
    stats: &UsageStats,
    billed_nanos: u64,
    window_ms: u64,
) -> Option<Recommendation> {
    let p95 = stats.cpu_p95_percent()?;
    if stats.runs < 10 || p95 >= REQUESTS_BELOW_PERCENT {
        return None;
    }
    let mean_cpu_m = stats.mean_cpu_m();
    let p95_used_m = mean_cpu_m.saturating_mul(u64::from(p95)) / 100;
    let suggested = (p95_used_m.saturating_mul(REQUEST_HEADROOM_PERCENT) / 100).max(10);
    let kept_percent = percent_of(suggested, mean_cpu_m).min(100);
    let saving = u64::try_from(u128::from(billed_nanos) * u128::from(100 - kept_percent) / 100)
        .unwrap_or(u64::MAX);
    let confidence = if stats.runs >= 100 {
        window_confidence(window_ms)
    } else {
        window_confidence(window_ms).min(Confidence::Medium)
    };
    Some(Recommendation {
        kind: RecommendationKind::RightSizeRequests,
        target: target.to_string(),
        action: format!(
            "{who} request {mean_cpu_m} m CPU per job on average and 95 % of the runs used at most {p95} % of it ({p95_used_m} m): request {suggested} m"
        ),
        evidence: vec![
            evidence("window_s", window_ms / 1_000),
            evidence("runs", stats.runs),
            evidence("mean_requested_cpu_m", mean_cpu_m),
            evidence("p95_used_cpu_percent", p95),
            evidence("p95_used_cpu_m", p95_used_m),
            evidence("suggested_cpu_m", suggested),
            evidence("mean_requested_memory_mb", stats.mean_memory_mb()),
            evidence(
                "p95_used_memory_percent",
                stats.memory_p95_percent().unwrap_or_default(),
            ),
            evidence("billed_nanos", billed_nanos),
        ],
        window_saving_nanos: saving,
        monthly_saving_nanos: monthly(saving, window_ms),
        confidence,
    })
}

/// Every recommendation the window supports, largest monthly saving first.
pub fn recommend(input: &OptimizationInput) -> Vec<Recommendation> {
    let window_ms = input.window_ms.max(1);
    let mut found = Vec::new();
    for pool in input.pools.iter().filter(|pool| pool.cost_nanos > 0) {
        let idle = pool.cost_nanos.saturating_sub(pool.attributed_nanos);
        let utilization = percent_of(pool.attributed_nanos, pool.cost_nanos);
        let idle_percent = percent_of(idle, pool.cost_nanos);
        let common = vec![
            evidence("window_s", window_ms / 1_000),
            evidence("pool_cost_nanos", pool.cost_nanos),
            evidence("attributed_nanos", pool.attributed_nanos),
            evidence("idle_nanos", idle),
            evidence("utilization_percent", utilization),
            evidence("workers", pool.workers),
        ];
        if utilization < RIGHT_SIZE_BELOW_PERCENT {
            // Enough workers for the load at the target utilization, at least one.
            let needed = u64::from(pool.workers)
                .saturating_mul(utilization)
                .div_ceil(TARGET_UTILIZATION_PERCENT)
                .max(1);
            let mut evidence_list = common.clone();
            evidence_list.push(evidence("suggested_workers", needed));
            found.push(Recommendation {
                kind: RecommendationKind::RightSizePool,
                target: format!("pool/{}", pool.pool),
                action: format!(
                    "pool `{}` used {utilization} % of what it cost over the window: shrink it from {} to {needed} worker(s)",
                    pool.pool, pool.workers
                ),
                evidence: evidence_list,
                window_saving_nanos: idle,
                monthly_saving_nanos: monthly(idle, window_ms),
                confidence: window_confidence(window_ms),
            });
        } else if idle_percent > IDLE_ABOVE_PERCENT && pool.dynamic {
            found.push(Recommendation {
                kind: RecommendationKind::CutIdleCapacity,
                target: format!("pool/{}", pool.pool),
                action: format!(
                    "pool `{}` was idle {idle_percent} % of the window: lower its min_size ({}) or let autoscaling scale it down sooner",
                    pool.pool, pool.min_size
                ),
                evidence: common,
                window_saving_nanos: idle,
                monthly_saving_nanos: monthly(idle, window_ms),
                confidence: window_confidence(window_ms),
            });
        }
    }
    for tenant in &input.tenants {
        let stats = &tenant.usage;
        if let Some(quota) = tenant.quota_cpu_m.filter(|quota| *quota > 0) {
            let held_mean_m =
                u64::try_from(stats.requested_cpu_m_ms / u128::from(window_ms)).unwrap_or(u64::MAX);
            if percent_of(held_mean_m, quota) < QUOTA_USED_BELOW_PERCENT {
                let suggested = held_mean_m.saturating_mul(2).max(1_000).min(quota);
                found.push(Recommendation {
                    kind: RecommendationKind::LowerQuota,
                    target: format!("tenant/{}", tenant.tenant),
                    action: format!(
                        "tenant `{}` held {held_mean_m} m CPU on average of its {quota} m quota: lower it to {suggested} m so others can be promised the rest",
                        tenant.tenant
                    ),
                    evidence: vec![
                        evidence("window_s", window_ms / 1_000),
                        evidence("quota_cpu_m", quota),
                        evidence("mean_held_cpu_m", held_mean_m),
                        evidence("suggested_quota_cpu_m", suggested),
                    ],
                    // A quota is a promise, not a bill: lowering it frees capacity for
                    // others rather than saving money by itself.
                    window_saving_nanos: 0,
                    monthly_saving_nanos: 0,
                    confidence: window_confidence(window_ms).min(Confidence::Medium),
                });
            }
        }
        found.extend(request_sizing(
            &format!("tenant/{}", tenant.tenant),
            &format!("tenant `{}`'s jobs", tenant.tenant),
            stats,
            tenant.billed_nanos,
            window_ms,
        ));
        for (label, billed, usage) in &tenant.labels {
            found.extend(request_sizing(
                &format!("tenant/{}/label/{label}", tenant.tenant),
                &format!("tenant `{}`'s jobs labelled `{label}`", tenant.tenant),
                usage,
                *billed,
                window_ms,
            ));
        }
    }
    for scaling in input
        .scaling
        .iter()
        .filter(|scaling| scaling.reversals >= FLAPPING_REVERSALS)
    {
        let suggested = scaling
            .scale_down_stabilization_s
            .saturating_mul(2)
            .max(300);
        found.push(Recommendation {
            kind: RecommendationKind::LengthenCooldown,
            target: format!("pool/{}", scaling.pool),
            action: format!(
                "pool `{}` reversed its size {} times in {} changes: raise scale_down_stabilization_s from {} to {suggested}",
                scaling.pool, scaling.reversals, scaling.changes, scaling.scale_down_stabilization_s
            ),
            evidence: vec![
                evidence("window_s", window_ms / 1_000),
                evidence("changes", scaling.changes),
                evidence("reversals", scaling.reversals),
                evidence("scale_down_stabilization_s", scaling.scale_down_stabilization_s),
            ],
            // Each reversal starts a worker that is soon stopped again: its start-up
            // time is paid for and unused, which the ledger does not separate out.
            window_saving_nanos: 0,
            monthly_saving_nanos: 0,
            confidence: window_confidence(window_ms).min(Confidence::Medium),
        });
    }
    for placement in &input.placements {
        let Some((cheaper, price)) = placement
            .alternatives
            .iter()
            .min_by_key(|(_, price)| *price)
            .filter(|(_, price)| {
                u128::from(*price) * 100
                    <= u128::from(placement.unit_price_micros)
                        * u128::from(100 - CHEAPER_BY_PERCENT)
            })
        else {
            continue;
        };
        let saving = u64::try_from(
            u128::from(placement.list_nanos)
                * u128::from(placement.unit_price_micros.saturating_sub(*price))
                / u128::from(placement.unit_price_micros.max(1)),
        )
        .unwrap_or(u64::MAX);
        found.push(Recommendation {
            kind: RecommendationKind::MoveToCheaperPool,
            target: format!("tenant/{}", placement.tenant),
            action: format!(
                "tenant `{}` runs its queue `{}` jobs in pool `{}`; pool `{cheaper}` of the same queue costs {price} µ$ per core-hour plus GiB-hour against {}: select it (pool_selector)",
                placement.tenant, placement.queue, placement.pool, placement.unit_price_micros
            ),
            evidence: vec![
                evidence("window_s", window_ms / 1_000),
                evidence("list_nanos", placement.list_nanos),
                evidence("unit_price_micros", placement.unit_price_micros),
                evidence("cheaper_unit_price_micros", *price),
            ],
            window_saving_nanos: saving,
            monthly_saving_nanos: monthly(saving, window_ms),
            confidence: window_confidence(window_ms).min(Confidence::Medium),
        });
    }
    found.sort_by(|left, right| {
        right
            .monthly_saving_nanos
            .cmp(&left.monthly_saving_nanos)
            .then_with(|| left.target.cmp(&right.target))
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;
    use crate::usage::RunUsage;

    fn pool(cost: u64, attributed: u64, dynamic: bool) -> PoolWindow {
        PoolWindow {
            pool: "big".to_string(),
            dynamic,
            workers: 10,
            min_size: 8,
            cost_nanos: cost,
            attributed_nanos: attributed,
            unit_price_micros: 60_000,
        }
    }

    fn input(pools: Vec<PoolWindow>, tenants: Vec<TenantWindow>) -> OptimizationInput {
        OptimizationInput {
            window_ms: DAY_MS,
            pools,
            tenants,
            scaling: Vec::new(),
            placements: Vec::new(),
        }
    }

    #[test]
    fn an_oversized_pool_saves_its_idle_cost() {
        let found = recommend(&input(vec![pool(1_000, 100, false)], Vec::new()));
        assert_eq!(found.len(), 1);
        let right_size = &found[0];
        assert_eq!(right_size.kind, RecommendationKind::RightSizePool);
        assert_eq!(right_size.window_saving_nanos, 900);
        assert_eq!(right_size.monthly_saving_nanos, 27_000);
        assert!(
            right_size
                .evidence
                .contains(&evidence("suggested_workers", 2))
        );
        assert_eq!(right_size.confidence, Confidence::Medium);
        // Busy enough: nothing.
        assert!(recommend(&input(vec![pool(1_000, 800, false)], Vec::new())).is_empty());
        // Between: a dynamic pool idle over half the time is cut.
        let cut = recommend(&input(vec![pool(1_000, 450, true)], Vec::new()));
        assert_eq!(cut[0].kind, RecommendationKind::CutIdleCapacity);
        assert!(recommend(&input(vec![pool(1_000, 450, false)], Vec::new())).is_empty());
    }

    #[test]
    fn requests_far_above_use_are_right_sized_with_their_p95() {
        let mut usage = UsageStats::default();
        for _ in 0..20 {
            usage.record(
                Resources {
                    cpu_m: 4_000,
                    memory_mb: 1_024,
                    gpu: 0,
                },
                10_000,
                RunUsage {
                    cpu_ms: 2_000,
                    peak_rss_mb: 100,
                },
            );
        }
        let tenant = TenantWindow {
            tenant: "acme".to_string(),
            quota_cpu_m: None,
            billed_nanos: 1_000_000,
            usage: usage.clone(),
            labels: vec![("team=red".to_string(), 500_000, usage)],
        };
        let found = recommend(&input(Vec::new(), vec![tenant]));
        assert_eq!(found.len(), 2, "the tenant's and its label's");
        assert_eq!(found[1].target, "tenant/acme/label/team=red");
        assert_eq!(found[1].window_saving_nanos, 470_000);
        let sizing = &found[0];
        assert_eq!(sizing.kind, RecommendationKind::RightSizeRequests);
        assert!(
            sizing
                .evidence
                .contains(&evidence("p95_used_cpu_percent", 5))
        );
        assert!(sizing.evidence.contains(&evidence("p95_used_cpu_m", 200)));
        assert!(sizing.evidence.contains(&evidence("suggested_cpu_m", 240)));
        // 240 of 4000 kept: 94 % of the bill saved.
        assert_eq!(sizing.window_saving_nanos, 940_000);
    }

    #[test]
    fn a_flapping_pool_and_a_cheaper_pool_are_found() {
        let mut with = input(Vec::new(), Vec::new());
        with.scaling.push(ScalingWindow {
            pool: "burst".to_string(),
            changes: 9,
            reversals: 6,
            scale_down_stabilization_s: 120,
        });
        with.placements.push(PlacementWindow {
            tenant: "acme".to_string(),
            queue: "batch".to_string(),
            pool: "dear".to_string(),
            list_nanos: 1_000,
            unit_price_micros: 100,
            alternatives: vec![("cheap".to_string(), 50), ("same".to_string(), 95)],
        });
        let found = recommend(&with);
        let kinds: Vec<_> = found.iter().map(|found| found.kind).collect();
        assert_eq!(
            kinds,
            vec![
                RecommendationKind::MoveToCheaperPool,
                RecommendationKind::LengthenCooldown
            ]
        );
        assert_eq!(found[0].window_saving_nanos, 500);
        assert!(found[1].action.contains("300"));
    }
}
