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

/// The cost of one run in nano-dollars, rounded to the nearest (saturating at `u64::MAX`).
pub fn run_cost_nanos(resources: Resources, pricing: &Pricing, run_ms: u64, burst: bool) -> u64 {
    // Everything over the common denominator ms/hour x millicores/core x MB/GB x 100%.
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
    let numerator = per_hour
        .saturating_mul(u128::from(run_ms))
        .saturating_mul(percent)
        .saturating_mul(NANOS_PER_MICRO);
    let denominator = MS_PER_HOUR * MILLICORES_PER_CORE * MB_PER_GB * 100;
    let nanos = numerator / denominator + u128::from(numerator % denominator >= denominator / 2);
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
