//! Apply of a pool's prices: a change applies from its time on (the runs before keep the
//! old price, kept in the pool's price history), and the tier percentages.

use hodei_cluster::WriteBatch;

use crate::state::command::{self, CommandOutcome, CommandResult};
use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::keys::{POOL_PREFIX, PRICES_PREFIX, key};
use hodei_domain::DomainError;
use hodei_domain::cost::PoolPrices;

impl HodeiState {
    /// New prices from `at_ms` on and/or tier percentages: validated, then the pool's
    /// current price and its history written together.
    pub(in crate::state) fn apply_set_pool_pricing(
        &mut self,
        command::SetPoolPricing {
            pool: pool_id,
            changes,
            tiers,
            at_ms,
        }: command::SetPoolPricing,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(pool) = self.pools.get(&pool_id) else {
            return Err(DomainError::not_found("pool", pool_id));
        };
        if changes.is_empty() && tiers.is_none() {
            return Err(DomainError::invalid(
                "pricing",
                "give new prices or tier percentages",
            ));
        }
        let mut prices = self
            .prices
            .get(&pool_id)
            .cloned()
            .unwrap_or_else(|| PoolPrices::new(&pool_id, pool.pricing));
        // Merged with the committed prices here, then checked whole.
        let pricing = (!changes.is_empty()).then(|| changes.over(prices.current()));
        if let Some(pricing) = &pricing {
            pricing.validate()?;
        }
        if let Some(tiers) = &tiers {
            tiers.validate()?;
        }
        if let Some(pricing) = pricing {
            prices.change(pricing, at_ms);
        }
        if let Some(tiers) = tiers {
            prices.tiers = tiers;
        }
        let mut pool = pool.clone();
        pool.pricing = prices.current();
        put_encoded(writes, key(POOL_PREFIX, &pool.id), &pool);
        self.pools.insert(pool.id.clone(), pool);
        put_encoded(writes, key(PRICES_PREFIX, &pool_id), &prices);
        self.prices.insert(pool_id, prices.clone());
        Ok(CommandOutcome::Prices(Box::new(prices)))
    }

    /// Forgets a deleted pool's prices.
    pub(in crate::state) fn drop_prices(&mut self, pool: &str, writes: &mut WriteBatch) {
        if self.prices.remove(pool).is_some() {
            writes.delete(key(PRICES_PREFIX, pool));
        }
    }
}
