//! What a job costs: requested resources x the pool's prices x the run time (start to end
//! as the worker reported them), times the burst premium when the job was admitted under
//! a burst session. Prices are integer micro-dollars; a job's cost is integer
//! nano-dollars (a 2-second run of 100 m costs about 3 micro-dollars, so micro-dollars
//! would round away tens of percent), exact until the single rounding at the end: a sum
//! of job costs stays within a nano-dollar per job of the cost of their total time.

use serde::{Deserialize, Serialize};

use crate::resources::Resources;

const MS_PER_HOUR: u128 = 3_600_000;
const MILLICORES_PER_CORE: u128 = 1_000;
const MB_PER_GB: u128 = 1_024;

/// A pool's price list (DOMAIN.md's defaults: 0.05 USD per core-hour, 0.01 per GB-hour of
/// memory, 2.50 per GPU-hour, burst billed at 150%).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    pub cpu_core_hour_micros: u64,
    pub memory_gb_hour_micros: u64,
    pub gpu_hour_micros: u64,
    /// What a job admitted under burst pays, in percent of the base price.
    pub burst_premium_percent: u32,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            cpu_core_hour_micros: 50_000,
            memory_gb_hour_micros: 10_000,
            gpu_hour_micros: 2_500_000,
            burst_premium_percent: 150,
        }
    }
}

const NANOS_PER_MICRO: u128 = 1_000;

/// The most a price may be: a million dollars an hour per unit.
pub const MAX_PRICE_MICROS: u64 = 1_000_000_000_000;

impl Pricing {
    pub fn validate(&self) -> Result<(), crate::DomainError> {
        for (field, value) in [
            ("cpu_core_hour_usd", self.cpu_core_hour_micros),
            ("memory_gb_hour_usd", self.memory_gb_hour_micros),
            ("gpu_hour_usd", self.gpu_hour_micros),
        ] {
            if value > MAX_PRICE_MICROS {
                return Err(crate::DomainError::invalid(
                    field,
                    format!(
                        "must be at most 1000000 USD, got {} USD",
                        value as f64 / 1e6
                    ),
                ));
            }
        }
        if !(100..=1_000).contains(&self.burst_premium_percent) {
            return Err(crate::DomainError::invalid(
                "burst_premium_percent",
                format!(
                    "must be between 100 and 1000, got {}",
                    self.burst_premium_percent
                ),
            ));
        }
        Ok(())
    }
}

/// The prices a change sets; `None` keeps the committed one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingChanges {
    pub cpu_core_hour_micros: Option<u64>,
    pub memory_gb_hour_micros: Option<u64>,
    pub gpu_hour_micros: Option<u64>,
    pub burst_premium_percent: Option<u32>,
}

impl PricingChanges {
    pub fn is_empty(&self) -> bool {
        *self == PricingChanges::default()
    }

    /// `current` with these changes.
    pub fn over(&self, current: Pricing) -> Pricing {
        Pricing {
            cpu_core_hour_micros: self
                .cpu_core_hour_micros
                .unwrap_or(current.cpu_core_hour_micros),
            memory_gb_hour_micros: self
                .memory_gb_hour_micros
                .unwrap_or(current.memory_gb_hour_micros),
            gpu_hour_micros: self.gpu_hour_micros.unwrap_or(current.gpu_hour_micros),
            burst_premium_percent: self
                .burst_premium_percent
                .unwrap_or(current.burst_premium_percent),
        }
    }
}

/// What each tenant tier pays of a pool's prices, in percent (100: the list price).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPercents {
    pub free: u32,
    pub standard: u32,
    pub premium: u32,
    pub enterprise: u32,
}

impl Default for TierPercents {
    fn default() -> Self {
        Self {
            free: 100,
            standard: 100,
            premium: 100,
            enterprise: 100,
        }
    }
}

impl TierPercents {
    pub fn of(&self, tier: crate::tenant::Tier) -> u32 {
        match tier {
            crate::tenant::Tier::Free => self.free,
            crate::tenant::Tier::Standard => self.standard,
            crate::tenant::Tier::Premium => self.premium,
            crate::tenant::Tier::Enterprise => self.enterprise,
        }
    }

    pub fn validate(&self) -> Result<(), crate::DomainError> {
        for (tier, percent) in [
            ("free", self.free),
            ("standard", self.standard),
            ("premium", self.premium),
            ("enterprise", self.enterprise),
        ] {
            if percent > 1_000 {
                return Err(crate::DomainError::invalid(
                    format!("tier_percent.{tier}"),
                    format!("must be between 0 and 1000, got {percent}"),
                ));
            }
        }
        Ok(())
    }
}

/// What the cluster does when a tenant has spent its daily budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BudgetAction {
    /// Warn (at 80 % and 95 %, and when spent) and go on dispatching.
    #[default]
    Warn,
    /// Warn, and dispatch none of the tenant's jobs until the next day (UTC): they wait
    /// with the reason `budget_exhausted`.
    Queue,
}

impl BudgetAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetAction::Warn => "warn",
            BudgetAction::Queue => "queue",
        }
    }
}

/// The cluster's cost tracking (`cost_tracking.*`, committed by the leader from its
/// configuration so every replica records the same ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostSettings {
    /// Off: no run, worker or usage is recorded, jobs carry no cost, and the cost routes
    /// answer 409.
    pub enabled: bool,
    /// Off: the ledger keeps pools and queues but not tenants (reports by tenant, budgets
    /// and a tenant's own report are refused).
    pub track_by_tenant: bool,
    /// Off: jobs carry no `cost_nanos` and reports by job are refused.
    pub track_by_job: bool,
    pub budget_action: BudgetAction,
}

impl Default for CostSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            track_by_tenant: true,
            track_by_job: true,
            budget_action: BudgetAction::Warn,
        }
    }
}

/// The budget warning levels, in percent of a tenant's daily budget.
pub const BUDGET_LEVELS: [u32; 3] = [80, 95, 100];

/// The highest of [`BUDGET_LEVELS`] that `spent` reached of `budget` (both nano-dollars).
pub fn budget_level(spent_nanos: u64, budget_nanos: u64) -> Option<u32> {
    BUDGET_LEVELS.into_iter().rev().find(|level| {
        u128::from(spent_nanos) * 100 >= u128::from(budget_nanos) * u128::from(*level)
    })
}

pub const DAY_MS: u64 = 24 * HOUR_MS;

/// A pool's prices from a time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricePeriod {
    pub from_ms: u64,
    pub pricing: Pricing,
}

/// How many price changes a pool keeps (a run older than the oldest kept is billed at it).
pub const PRICE_PERIODS_KEPT: usize = 256;

/// A pool's price history and its tier percentages: a price change applies from its
/// time on, and a run is billed at each price for the part of it that price covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolPrices {
    pub pool: String,
    /// Oldest first; the first one covers everything before it too.
    pub periods: Vec<PricePeriod>,
    pub tiers: TierPercents,
}

impl PoolPrices {
    /// A pool's prices before any change: `pricing` from the start of time.
    pub fn new(pool: &str, pricing: Pricing) -> Self {
        Self {
            pool: pool.to_string(),
            periods: vec![PricePeriod {
                from_ms: 0,
                pricing,
            }],
            tiers: TierPercents::default(),
        }
    }

    /// The price list in force now (the newest).
    pub fn current(&self) -> Pricing {
        self.periods
            .last()
            .map(|period| period.pricing)
            .unwrap_or_default()
    }

    /// Prices from `from_ms` on. Changes apply in the order they commit: one stamped at
    /// or before the newest (another node's clock) starts a millisecond after it, so no
    /// price that was in force is ever lost from the history.
    pub fn change(&mut self, pricing: Pricing, from_ms: u64) {
        let from_ms = self
            .periods
            .last()
            .map_or(from_ms, |last| from_ms.max(last.from_ms.saturating_add(1)));
        self.periods.push(PricePeriod { from_ms, pricing });
        let excess = self.periods.len().saturating_sub(PRICE_PERIODS_KEPT);
        self.periods.drain(..excess);
    }

    /// What a run over [start_ms, end_ms] costs, each part at the price then in force,
    /// times the tenant tier's percentage; rounded once, to the nearest nano-dollar.
    pub fn run_cost_nanos(
        &self,
        resources: Resources,
        start_ms: u64,
        end_ms: u64,
        burst: bool,
        tier: crate::tenant::Tier,
    ) -> u64 {
        self.cost_at_percent(resources, start_ms, end_ms, burst, self.tiers.of(tier))
    }

    /// The run at the list prices: no tier percentage, no burst premium (what its pool's
    /// capacity cost it, for the pool's idle line).
    pub fn list_cost_nanos(&self, resources: Resources, start_ms: u64, end_ms: u64) -> u64 {
        self.cost_at_percent(resources, start_ms, end_ms, false, 100)
    }

    fn cost_at_percent(
        &self,
        resources: Resources,
        start_ms: u64,
        end_ms: u64,
        burst: bool,
        percent: u32,
    ) -> u64 {
        let mut numerator: u128 = 0;
        for (index, period) in self.periods.iter().enumerate() {
            let from = if index == 0 { 0 } else { period.from_ms };
            let until = self
                .periods
                .get(index + 1)
                .map_or(u64::MAX, |next| next.from_ms);
            let covered = end_ms.min(until).saturating_sub(start_ms.max(from));
            numerator = numerator.saturating_add(cost_numerator(
                resources,
                &period.pricing,
                covered,
                burst,
            ));
        }
        round_cost(
            numerator.saturating_mul(u128::from(percent)),
            COST_DENOMINATOR * 100,
        )
    }
}

/// One hour of a run's cost: what it billed, and what it would have without the burst
/// premium (their difference is the premium's line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourPart {
    /// The hour's start, ms since the epoch.
    pub hour_ms: u64,
    pub billed_nanos: u64,
    pub without_premium_nanos: u64,
    /// At the list prices: no tier percentage, no premium.
    pub list_nanos: u64,
}

pub const HOUR_MS: u64 = 3_600_000;

impl PoolPrices {
    /// A run's cost split over the hours it covers. Each hour's part is the cost of the
    /// run up to the hour's end less the cost up to its start, so the parts add up to
    /// [`PoolPrices::run_cost_nanos`] of the whole run exactly (and so do the parts
    /// without the premium).
    pub fn hourly_parts(
        &self,
        resources: Resources,
        start_ms: u64,
        end_ms: u64,
        burst: bool,
        tier: crate::tenant::Tier,
    ) -> Vec<HourPart> {
        let billed_until =
            |until: u64| self.run_cost_nanos(resources, start_ms, until, burst, tier);
        let base_until = |until: u64| self.run_cost_nanos(resources, start_ms, until, false, tier);
        let list_until = |until: u64| self.list_cost_nanos(resources, start_ms, until);
        let mut parts = Vec::new();
        let mut hour_ms = start_ms - start_ms % HOUR_MS;
        let (mut billed_before, mut base_before, mut list_before) = (0u64, 0u64, 0u64);
        loop {
            let until = end_ms.min(hour_ms.saturating_add(HOUR_MS));
            let (billed, base, list) = (billed_until(until), base_until(until), list_until(until));
            parts.push(HourPart {
                hour_ms,
                billed_nanos: billed.saturating_sub(billed_before),
                without_premium_nanos: base.saturating_sub(base_before),
                list_nanos: list.saturating_sub(list_before),
            });
            (billed_before, base_before, list_before) = (billed, base, list);
            if until >= end_ms {
                return parts;
            }
            hour_ms += HOUR_MS;
        }
    }
}

/// Everything over the common denominator ms/hour x millicores/core x MB/GB x 100%.
const COST_DENOMINATOR: u128 = MS_PER_HOUR * MILLICORES_PER_CORE * MB_PER_GB * 100;

fn cost_numerator(resources: Resources, pricing: &Pricing, run_ms: u64, burst: bool) -> u128 {
    let term = |amount: u64, price: u64, scale: u128| {
        u128::from(amount)
            .saturating_mul(u128::from(price))
            .saturating_mul(scale)
    };
    let per_hour = term(resources.cpu_m, pricing.cpu_core_hour_micros, MB_PER_GB)
        .saturating_add(term(
            resources.memory_mb,
            pricing.memory_gb_hour_micros,
            MILLICORES_PER_CORE,
        ))
        .saturating_add(term(
            resources.gpu,
            pricing.gpu_hour_micros,
            MILLICORES_PER_CORE * MB_PER_GB,
        ));
    let percent = if burst {
        u128::from(pricing.burst_premium_percent)
    } else {
        100
    };
    per_hour
        .saturating_mul(u128::from(run_ms))
        .saturating_mul(percent)
        .saturating_mul(NANOS_PER_MICRO)
}

fn round_cost(numerator: u128, denominator: u128) -> u64 {
    let nanos = numerator / denominator + u128::from(numerator % denominator >= denominator / 2);
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// The cost of one run in nano-dollars, rounded to the nearest (saturating at `u64::MAX`).
pub fn run_cost_nanos(resources: Resources, pricing: &Pricing, run_ms: u64, burst: bool) -> u64 {
    round_cost(
        cost_numerator(resources, pricing, run_ms, burst),
        COST_DENOMINATOR,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Tier;

    #[test]
    fn a_budget_warns_at_80_then_95_then_100_percent() {
        let budget = 1_000;
        assert_eq!(budget_level(799, budget), None);
        assert_eq!(budget_level(800, budget), Some(80));
        assert_eq!(budget_level(949, budget), Some(80));
        assert_eq!(budget_level(950, budget), Some(95));
        assert_eq!(budget_level(1_000, budget), Some(100));
        assert_eq!(budget_level(u64::MAX, u64::MAX), Some(100), "no overflow");
    }

    #[test]
    fn an_hour_of_each_resource_costs_its_price() {
        let pricing = Pricing::default();
        let hour = 3_600_000;
        assert_eq!(
            run_cost_nanos(Resources::new(1_000, 0, 0), &pricing, hour, false),
            50_000_000
        );
        assert_eq!(
            run_cost_nanos(Resources::new(0, 1_024, 0), &pricing, hour, false),
            10_000_000
        );
        assert_eq!(
            run_cost_nanos(Resources::new(0, 0, 1), &pricing, hour, false),
            2_500_000_000
        );
        // 4 cores, 8 GB, one GPU for 90 minutes: (0.20 + 0.08 + 2.50) x 1.5 = 4.17 USD.
        assert_eq!(
            run_cost_nanos(
                Resources::new(4_000, 8_192, 1),
                &pricing,
                hour * 3 / 2,
                false
            ),
            4_170_000_000
        );
        // The same under burst pays the premium.
        assert_eq!(
            run_cost_nanos(
                Resources::new(4_000, 8_192, 1),
                &pricing,
                hour * 3 / 2,
                true
            ),
            6_255_000_000
        );
        assert_eq!(
            run_cost_nanos(Resources::new(4_000, 8_192, 1), &pricing, 0, true),
            0
        );
    }

    #[test]
    fn many_short_runs_add_up_to_the_cost_of_their_total_time() {
        // 100,000 runs of 1.7 s at 250 m and 300 MB (about 7 micro-dollars each): each
        // rounded on its own, the sum stays far within 1% (the seed's accuracy bar) of the
        // cost of the total time.
        let pricing = Pricing::default();
        let resources = Resources::new(250, 300, 0);
        let each: u64 = (0..100_000)
            .map(|_| run_cost_nanos(resources, &pricing, 1_700, false))
            .sum();
        let whole = run_cost_nanos(resources, &pricing, 170_000_000, false);
        let error = (each as f64 - whole as f64).abs() / whole as f64;
        assert!(error < 0.0001, "{each} against {whole}");
    }

    #[test]
    fn a_price_change_applies_from_its_time_and_a_tier_pays_its_percentage() {
        let hour = 3_600_000;
        let cores = Resources::new(1_000, 0, 0);
        let mut prices = PoolPrices::new("p", Pricing::default());
        // Twice the CPU price from the second hour on.
        prices.change(
            Pricing {
                cpu_core_hour_micros: 100_000,
                ..Pricing::default()
            },
            10 * hour,
        );
        // A run over the change: an hour at 0.05, an hour at 0.10.
        let across = prices.run_cost_nanos(cores, 9 * hour, 11 * hour, false, Tier::Standard);
        assert_eq!(across, 150_000_000);
        // Before and after it: one price each.
        assert_eq!(
            prices.run_cost_nanos(cores, 0, hour, false, Tier::Standard),
            50_000_000
        );
        assert_eq!(
            prices.run_cost_nanos(cores, 20 * hour, 21 * hour, false, Tier::Standard),
            100_000_000
        );
        prices.tiers.premium = 90;
        assert_eq!(
            prices.run_cost_nanos(cores, 9 * hour, 11 * hour, false, Tier::Premium),
            135_000_000
        );
        // A change stamped before the newest one (another clock) starts just after it.
        prices.change(Pricing::default(), 5 * hour);
        assert_eq!(prices.periods.len(), 3);
        assert_eq!(prices.periods[2].from_ms, 10 * hour + 1);
        assert_eq!(prices.current(), Pricing::default());
        // The single price of the old function is the same as one period.
        let single = PoolPrices::new("p", Pricing::default());
        assert_eq!(
            single.run_cost_nanos(
                Resources::new(4_000, 8_192, 1),
                7,
                7 + hour * 3 / 2,
                true,
                Tier::Standard
            ),
            run_cost_nanos(
                Resources::new(4_000, 8_192, 1),
                &Pricing::default(),
                hour * 3 / 2,
                true
            )
        );
    }

    #[test]
    fn a_run_split_over_hours_adds_up_to_its_cost_to_the_nano_dollar() {
        let mut prices = PoolPrices::new("p", Pricing::default());
        prices.change(
            Pricing {
                cpu_core_hour_micros: 73_000,
                ..Pricing::default()
            },
            5 * HOUR_MS + 1_234_567,
        );
        let resources = Resources::new(1_733, 777, 0);
        for (start, end) in [
            (HOUR_MS * 3 + 999, HOUR_MS * 7 + 17),
            (HOUR_MS * 2, HOUR_MS * 3),
            (12, 13),
            (HOUR_MS - 1, HOUR_MS + 1),
        ] {
            let parts = prices.hourly_parts(resources, start, end, true, Tier::Standard);
            let billed: u64 = parts.iter().map(|part| part.billed_nanos).sum();
            assert_eq!(
                billed,
                prices.run_cost_nanos(resources, start, end, true, Tier::Standard)
            );
            let list: u64 = parts.iter().map(|part| part.list_nanos).sum();
            assert_eq!(list, prices.list_cost_nanos(resources, start, end));
            let base: u64 = parts.iter().map(|part| part.without_premium_nanos).sum();
            assert_eq!(
                base,
                prices.run_cost_nanos(resources, start, end, false, Tier::Standard)
            );
            assert!(parts.iter().all(|part| part.hour_ms % HOUR_MS == 0));
            assert_eq!(parts[0].hour_ms, start - start % HOUR_MS);
        }
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let pricing = Pricing {
            cpu_core_hour_micros: u64::MAX,
            ..Pricing::default()
        };
        assert_eq!(
            run_cost_nanos(Resources::new(u64::MAX, 0, 0), &pricing, u64::MAX, true),
            u64::MAX
        );
    }
}
