//! The starvation guard's clock: a backlogged tenant whose dominant share has stayed below
//! 90% of its fair share (its weight over the backlogged tenants' total weight) for the
//! guard period is boosted (served first) until it catches up. Time is a parameter.

use std::collections::{BTreeMap, BTreeSet};

use crate::dispatch::{TenantSnapshot, dominant_share};
use crate::resources::Resources;
use crate::tenant::TenantId;

/// Below this fraction of its fair share a tenant's clock runs.
const STARVING_FRACTION: f64 = 0.9;

/// When each backlogged tenant fell below its fair share.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StarvationClock {
    below_since_ms: BTreeMap<TenantId, u64>,
}

impl StarvationClock {
    /// Moves the clock to `now_ms` over the queue's backlogged `tenants` and returns the
    /// tenants to boost: those below their share for at least `guard_ms`.
    pub fn update(
        &mut self,
        tenants: &BTreeMap<TenantId, TenantSnapshot>,
        capacity: Resources,
        guard_ms: u64,
        now_ms: u64,
    ) -> BTreeSet<TenantId> {
        let total_weight: f64 = tenants.values().map(|tenant| tenant.weight).sum();
        self.below_since_ms
            .retain(|tenant, _| tenants.contains_key(tenant));
        let mut boosted = BTreeSet::new();
        for (id, tenant) in tenants {
            let fair = tenant.weight / total_weight.max(f64::MIN_POSITIVE);
            let actual = dominant_share(tenant.running_in_pools, capacity);
            if actual >= fair * STARVING_FRACTION {
                self.below_since_ms.remove(id);
                continue;
            }
            let since = *self.below_since_ms.entry(id.clone()).or_insert(now_ms);
            if now_ms.saturating_sub(since) >= guard_ms {
                boosted.insert(id.clone());
            }
        }
        boosted
    }

    /// No tenant's clock runs.
    pub fn is_idle(&self) -> bool {
        self.below_since_ms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Quota, Usage};

    fn tenant(weight: f64, running_cpu_m: u64) -> TenantSnapshot {
        TenantSnapshot {
            quota: Quota::default(),
            usage: Usage::default(),
            active: true,
            burst_percent: None,
            weight,
            running_in_pools: Resources::new(running_cpu_m, 0, 0),
            boosted: false,
        }
    }

    fn tenants(list: Vec<(&str, TenantSnapshot)>) -> BTreeMap<TenantId, TenantSnapshot> {
        list.into_iter()
            .map(|(id, snapshot)| (TenantId::parse(id).unwrap(), snapshot))
            .collect()
    }

    #[test]
    fn a_tenant_below_its_fair_share_for_the_guard_period_is_boosted_until_it_catches_up() {
        let capacity = Resources::new(10_000, 10_000, 0);
        let mut clock = StarvationClock::default();
        let starving = tenants(vec![
            ("rich", tenant(1.0, 9_000)),
            ("poor", tenant(1.0, 1_000)),
        ]);
        // Below its share (0.1 < 0.9 x 0.5), but not for long enough yet.
        assert!(clock.update(&starving, capacity, 60_000, 1_000).is_empty());
        assert!(clock.update(&starving, capacity, 60_000, 60_999).is_empty());
        // The guard period has passed: boosted; the other is not.
        let boosted = clock.update(&starving, capacity, 60_000, 61_000);
        assert_eq!(boosted, BTreeSet::from([TenantId::parse("poor").unwrap()]));
        // Once it has its share, the clock resets.
        let even = tenants(vec![
            ("rich", tenant(1.0, 5_000)),
            ("poor", tenant(1.0, 5_000)),
        ]);
        assert!(clock.update(&even, capacity, 0, 62_000).is_empty());
        assert!(clock.is_idle());
    }
}
