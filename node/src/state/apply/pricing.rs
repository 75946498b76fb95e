//! Apply of a pool's prices: a change applies from its time on (the runs before keep the
//! old price, kept in the pool's price history), and the tier percentages. Also the
//! cluster's cost settings, stored report definitions and budget warnings.

use hodei_cluster::WriteBatch;

use crate::state::command::{self, CommandOutcome, CommandResult};
use crate::state::cost_book::{BookEntry, MAX_REPORT_DEFINITIONS};
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

    pub(in crate::state) fn apply_set_cost_settings(
        &mut self,
        command::SetCostSettings { settings, at_ms }: command::SetCostSettings,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        self.change_cost_settings(settings, at_ms, writes);
        Ok(CommandOutcome::CostSettings(settings))
    }

    pub(in crate::state) fn apply_put_cost_report(
        &mut self,
        command::PutCostReport { definition }: command::PutCostReport,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if definition.name.trim().is_empty() || definition.name.len() > 200 {
            return Err(DomainError::invalid("name", "must be 1 to 200 characters"));
        }
        match self.report_definition(&definition.id) {
            Some(existing) if existing.tenant != definition.tenant => {
                return Err(DomainError::not_found("cost report", definition.id));
            }
            None if self.book.reports.len() >= MAX_REPORT_DEFINITIONS => {
                return Err(DomainError::Conflict(format!(
                    "{MAX_REPORT_DEFINITIONS} report definitions are stored: delete one first"
                )));
            }
            _ => {}
        }
        self.put_book_entry(BookEntry::Report(definition.clone()), writes);
        Ok(CommandOutcome::CostReport(Box::new(definition)))
    }

    pub(in crate::state) fn apply_delete_cost_report(
        &mut self,
        command::DeleteCostReport { id, tenant }: command::DeleteCostReport,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let visible = self
            .report_definition(&id)
            .is_some_and(|found| tenant.is_none() || found.tenant == tenant);
        let Some(definition) = self.book.reports.get(&id).filter(|_| visible).cloned() else {
            return Err(DomainError::not_found("cost report", id));
        };
        writes.delete(BookEntry::Report(definition).storage_key());
        self.book.reports.remove(&id);
        Ok(CommandOutcome::CostReportDeleted { id })
    }

    /// Records a budget warning once per level and day: a level at or below the one
    /// recorded that day changes nothing.
    pub(in crate::state) fn apply_record_budget_alert(
        &mut self,
        command::RecordBudgetAlert { alert }: command::RecordBudgetAlert,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if !hodei_domain::cost::BUDGET_LEVELS.contains(&alert.level_percent) {
            return Err(DomainError::invalid(
                "level_percent",
                format!("must be one of 80, 95, 100, got {}", alert.level_percent),
            ));
        }
        if self.tenant(&alert.tenant).is_none() {
            return Err(DomainError::not_found("tenant", alert.tenant.to_string()));
        }
        let recorded = self
            .book
            .budgets
            .get(&(alert.day_ms, alert.tenant.clone()))
            .is_some_and(|found| found.level_percent >= alert.level_percent);
        if recorded {
            return Ok(CommandOutcome::BudgetAlert { recorded: false });
        }
        tracing::warn!(
            tenant = %alert.tenant,
            level = alert.level_percent,
            spent_nanos = alert.spent_nanos,
            budget_nanos = alert.budget_nanos,
            "a tenant reached a level of its daily cost budget"
        );
        self.put_book_entry(BookEntry::Budget(alert), writes);
        Ok(CommandOutcome::BudgetAlert { recorded: true })
    }
}
