//! A pool's prices as the API shows them: US dollars per unit-hour (stored as integer
//! micro-dollars), the burst premium, the tier percentages, and the price history.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::GatewayError;
use hodei_domain::cost::{PoolPrices, Pricing, PricingChanges, TierPercents};

/// What each tenant tier pays of the prices, in percent (100: the list price; 0 to 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierPercentView {
    pub free: u32,
    pub standard: u32,
    pub premium: u32,
    pub enterprise: u32,
}

impl From<TierPercents> for TierPercentView {
    fn from(tiers: TierPercents) -> Self {
        Self {
            free: tiers.free,
            standard: tiers.standard,
            premium: tiers.premium,
            enterprise: tiers.enterprise,
        }
    }
}

impl From<TierPercentView> for TierPercents {
    fn from(view: TierPercentView) -> Self {
        Self {
            free: view.free,
            standard: view.standard,
            premium: view.premium,
            enterprise: view.enterprise,
        }
    }
}

/// New prices (the fields given; the others keep their value). A change applies from
/// its commit on: runs before it keep the old prices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingInput {
    /// USD per CPU core-hour (default 0.05).
    #[serde(default)]
    pub cpu_core_hour_usd: Option<f64>,
    /// USD per GB-hour of memory (default 0.01).
    #[serde(default)]
    pub memory_gb_hour_usd: Option<f64>,
    /// USD per GPU-hour (default 2.50).
    #[serde(default)]
    pub gpu_hour_usd: Option<f64>,
    /// What a job admitted under burst pays, in percent of the price (100 to 1000;
    /// default `burst_capacity.premium_percentage`).
    #[serde(default)]
    pub burst_premium_percent: Option<u32>,
    /// What each tenant tier pays, in percent.
    #[serde(default)]
    pub tier_percent: Option<TierPercentView>,
}

fn micros(field: &str, usd: f64) -> Result<u64, GatewayError> {
    if !usd.is_finite() || !(0.0..=1_000_000.0).contains(&usd) {
        return Err(GatewayError::invalid(
            field,
            format!("must be between 0 and 1000000 USD, got {usd}"),
        ));
    }
    Ok((usd * 1_000_000.0).round() as u64)
}

impl PricingInput {
    /// Whether it changes the prices (not only the tier percentages).
    pub fn changes_prices(&self) -> bool {
        self.cpu_core_hour_usd.is_some()
            || self.memory_gb_hour_usd.is_some()
            || self.gpu_hour_usd.is_some()
            || self.burst_premium_percent.is_some()
    }

    /// The prices it changes, in micro-dollars; each wrong field named (apply merges them
    /// with the committed prices).
    pub fn changes(&self) -> Result<PricingChanges, GatewayError> {
        let changes = PricingChanges {
            cpu_core_hour_micros: self
                .cpu_core_hour_usd
                .map(|usd| micros("cpu_core_hour_usd", usd))
                .transpose()?,
            memory_gb_hour_micros: self
                .memory_gb_hour_usd
                .map(|usd| micros("memory_gb_hour_usd", usd))
                .transpose()?,
            gpu_hour_micros: self
                .gpu_hour_usd
                .map(|usd| micros("gpu_hour_usd", usd))
                .transpose()?,
            burst_premium_percent: self.burst_premium_percent,
        };
        if let Some(percent) = changes.burst_premium_percent
            && !(100..=1_000).contains(&percent)
        {
            return Err(GatewayError::invalid(
                "burst_premium_percent",
                format!("must be between 100 and 1000, got {percent}"),
            ));
        }
        Ok(changes)
    }

    /// The prices it gives over `current`; each wrong field named.
    pub fn over(&self, current: Pricing) -> Result<Pricing, GatewayError> {
        let pricing = Pricing {
            cpu_core_hour_micros: match self.cpu_core_hour_usd {
                Some(usd) => micros("cpu_core_hour_usd", usd)?,
                None => current.cpu_core_hour_micros,
            },
            memory_gb_hour_micros: match self.memory_gb_hour_usd {
                Some(usd) => micros("memory_gb_hour_usd", usd)?,
                None => current.memory_gb_hour_micros,
            },
            gpu_hour_micros: match self.gpu_hour_usd {
                Some(usd) => micros("gpu_hour_usd", usd)?,
                None => current.gpu_hour_micros,
            },
            burst_premium_percent: self
                .burst_premium_percent
                .unwrap_or(current.burst_premium_percent),
        };
        pricing.validate()?;
        Ok(pricing)
    }
}

/// Prices in force from a time on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PricePeriodView {
    /// From this time (ms since the epoch; 0: since the pool was created).
    pub from_ms: u64,
    pub cpu_core_hour_usd: f64,
    pub memory_gb_hour_usd: f64,
    pub gpu_hour_usd: f64,
    pub burst_premium_percent: u32,
}

/// A pool's prices now, its tier percentages, and every price change, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PricingView {
    pub pool: String,
    pub cpu_core_hour_usd: f64,
    pub memory_gb_hour_usd: f64,
    pub gpu_hour_usd: f64,
    pub burst_premium_percent: u32,
    pub tier_percent: TierPercentView,
    pub history: Vec<PricePeriodView>,
}

fn usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

impl From<&PoolPrices> for PricingView {
    fn from(prices: &PoolPrices) -> Self {
        let current = prices.current();
        PricingView {
            pool: prices.pool.clone(),
            cpu_core_hour_usd: usd(current.cpu_core_hour_micros),
            memory_gb_hour_usd: usd(current.memory_gb_hour_micros),
            gpu_hour_usd: usd(current.gpu_hour_micros),
            burst_premium_percent: current.burst_premium_percent,
            tier_percent: prices.tiers.into(),
            history: prices
                .periods
                .iter()
                .map(|period| PricePeriodView {
                    from_ms: period.from_ms,
                    cpu_core_hour_usd: usd(period.pricing.cpu_core_hour_micros),
                    memory_gb_hour_usd: usd(period.pricing.memory_gb_hour_micros),
                    gpu_hour_usd: usd(period.pricing.gpu_hour_micros),
                    burst_premium_percent: period.pricing.burst_premium_percent,
                })
                .collect(),
        }
    }
}
