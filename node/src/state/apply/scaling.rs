//! Apply of autoscaling: a pool's rules and cooldown, the decisions of the leader's
//! scaling loop, and how each turned out. Each command validates first, then writes.

use hodei_cluster::WriteBatch;

use crate::state::command::{self, CommandOutcome, CommandResult, ScalingChange};
use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::keys::{POOL_PREFIX, SCALING_PREFIX, key};
use hodei_domain::DomainError;
use hodei_domain::autoscale::{MAX_RULES, PoolScaling, ScalingOutcome, require_dynamic};
use hodei_domain::pool::PoolState;

impl HodeiState {
    fn put_scaling(&mut self, scaling: PoolScaling, writes: &mut WriteBatch) {
        put_encoded(writes, key(SCALING_PREFIX, &scaling.pool), &scaling);
        self.scaling.insert(scaling.pool.clone(), scaling);
    }

    /// Forgets a deleted pool's autoscaling.
    pub(in crate::state) fn drop_scaling(&mut self, pool: &str, writes: &mut WriteBatch) {
        if self.scaling.remove(pool).is_some() {
            writes.delete(key(SCALING_PREFIX, pool));
        }
    }

    pub(in crate::state) fn apply_set_scaling(
        &mut self,
        command::SetScaling { pool, change }: command::SetScaling,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(found) = self.pools.get(&pool) else {
            return Err(DomainError::not_found("pool", pool));
        };
        require_dynamic(found)?;
        let mut scaling = self
            .scaling
            .get(&pool)
            .cloned()
            .unwrap_or_else(|| PoolScaling::new(&pool));
        match change {
            ScalingChange::PutPolicy(policy) => {
                policy.kind.validate("policy")?;
                let count = scaling.policies.len();
                match scaling
                    .policies
                    .iter_mut()
                    .find(|kept| kept.id == policy.id)
                {
                    Some(kept) => *kept = policy,
                    None if count >= MAX_RULES => {
                        return Err(DomainError::invalid(
                            "policy",
                            format!("a pool holds at most {MAX_RULES} policies"),
                        ));
                    }
                    None => scaling.policies.push(policy),
                }
            }
            ScalingChange::DeletePolicy(id) => {
                let before = scaling.policies.len();
                scaling.policies.retain(|kept| kept.id != id);
                if scaling.policies.len() == before {
                    return Err(DomainError::not_found("scaling policy", id));
                }
            }
            ScalingChange::PutTrigger(trigger) => {
                trigger.kind.validate("trigger")?;
                let count = scaling.triggers.len();
                match scaling
                    .triggers
                    .iter_mut()
                    .find(|kept| kept.id == trigger.id)
                {
                    Some(kept) => *kept = trigger,
                    None if count >= MAX_RULES => {
                        return Err(DomainError::invalid(
                            "trigger",
                            format!("a pool holds at most {MAX_RULES} triggers"),
                        ));
                    }
                    None => scaling.triggers.push(trigger),
                }
            }
            ScalingChange::DeleteTrigger(id) => {
                let before = scaling.triggers.len();
                scaling.triggers.retain(|kept| kept.id != id);
                if scaling.triggers.len() == before {
                    return Err(DomainError::not_found("scaling trigger", id));
                }
            }
            ScalingChange::Cooldown(cooldown) => {
                cooldown.validate()?;
                scaling.cooldown = cooldown;
            }
            ScalingChange::Enabled(enabled) => scaling.enabled = enabled,
            ScalingChange::Seed { policies, cooldown } => {
                if self.scaling.contains_key(&pool) {
                    return Err(DomainError::Conflict(format!(
                        "pool `{pool}` already has autoscaling: the config seeds a pool only once"
                    )));
                }
                if policies.len() > MAX_RULES {
                    return Err(DomainError::invalid(
                        "policies",
                        format!("a pool holds at most {MAX_RULES} policies"),
                    ));
                }
                for (index, policy) in policies.iter().enumerate() {
                    policy.kind.validate(&format!("policies[{index}]"))?;
                    if policies[..index]
                        .iter()
                        .any(|earlier| earlier.id == policy.id)
                    {
                        return Err(DomainError::invalid(
                            format!("policies[{index}].id"),
                            format!("{:?} is given twice", policy.id),
                        ));
                    }
                }
                if let Some(cooldown) = &cooldown {
                    cooldown.validate()?;
                }
                scaling.policies = policies;
                if let Some(cooldown) = cooldown {
                    scaling.cooldown = cooldown;
                }
            }
        }
        self.put_scaling(scaling.clone(), writes);
        Ok(CommandOutcome::Scaling(Box::new(scaling)))
    }

    pub(in crate::state) fn apply_scale_pool(
        &mut self,
        command::ScalePool {
            pool: pool_id,
            record,
            fired_schedules,
        }: command::ScalePool,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        let Some(pool) = self.pools.get(&pool_id) else {
            return Err(DomainError::not_found("pool", pool_id));
        };
        require_dynamic(pool)?;
        if matches!(
            pool.state,
            PoolState::Draining | PoolState::Decommissioned | PoolState::Creating
        ) {
            return Err(DomainError::Conflict(format!(
                "pool `{pool_id}` is {}: it does not scale",
                pool.state.as_str()
            )));
        }
        if pool.desired_size != record.from {
            return Err(DomainError::Conflict(format!(
                "pool `{pool_id}`'s desired size is {}, not {}: it changed since the decision",
                pool.desired_size, record.from
            )));
        }
        let blocked = matches!(
            record.outcome,
            ScalingOutcome::BlockedByCooldown | ScalingOutcome::NoChange
        );
        if blocked && record.to != record.from {
            return Err(DomainError::invalid(
                "record.to",
                "a blocked decision changes nothing",
            ));
        }
        if !blocked && record.outcome != ScalingOutcome::InProgress {
            return Err(DomainError::invalid(
                "record.outcome",
                "a decision that changes the size starts in progress",
            ));
        }
        if !blocked && !(pool.min_size..=pool.max_size).contains(&record.to) {
            return Err(DomainError::invalid(
                "record.to",
                format!(
                    "must be within the pool's [min, max] = [{}, {}], got {}",
                    pool.min_size, pool.max_size, record.to
                ),
            ));
        }
        let mut scaling = self
            .scaling
            .get(&pool_id)
            .cloned()
            .unwrap_or_else(|| PoolScaling::new(&pool_id));
        // Switched off between the decision and its commit: only a person's trigger still
        // scales it.
        if !scaling.enabled && !record.source.starts_with("trigger:") {
            return Err(DomainError::Conflict(format!(
                "pool `{pool_id}`'s autoscaling is off: enable it first (or fire a manual trigger)"
            )));
        }
        for (trigger_id, at_ms) in &fired_schedules {
            if let Some(trigger) = scaling
                .triggers
                .iter_mut()
                .find(|trigger| &trigger.id == trigger_id)
            {
                trigger.last_fired_ms = Some(*at_ms);
            }
        }
        let at_ms = record.at_ms;
        let mut pool = pool.clone();
        if !blocked {
            // A decision still in progress is replaced by this one.
            for earlier in scaling.history.iter_mut() {
                if earlier.outcome == ScalingOutcome::InProgress {
                    earlier.outcome = ScalingOutcome::Cancelled;
                    earlier.error = Some("replaced by a later decision".to_string());
                    earlier.settled_at_ms = Some(at_ms);
                }
            }
            scaling.memory.record(record.from, record.to, at_ms);
            pool.desired_size = record.to;
            put_encoded(writes, key(POOL_PREFIX, &pool.id), &pool);
            self.pools.insert(pool.id.clone(), pool.clone());
        }
        let seq = scaling.record(record);
        self.put_scaling(scaling, writes);
        Ok(CommandOutcome::Scaled { seq, pool })
    }

    pub(in crate::state) fn apply_settle_scaling(
        &mut self,
        command::SettleScaling {
            pool,
            seq,
            outcome,
            error,
            reached_at_ms,
            at_ms,
        }: command::SettleScaling,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if !outcome.is_settled()
            || matches!(
                outcome,
                ScalingOutcome::BlockedByCooldown | ScalingOutcome::NoChange
            )
        {
            return Err(DomainError::invalid(
                "outcome",
                "must be succeeded, failed, partial or cancelled",
            ));
        }
        let Some(scaling) = self.scaling.get(&pool) else {
            return Err(DomainError::not_found(
                "scaling decision",
                format!("{pool}#{seq}"),
            ));
        };
        let Some(index) = scaling.history.iter().position(|record| record.seq == seq) else {
            return Err(DomainError::not_found(
                "scaling decision",
                format!("{pool}#{seq}"),
            ));
        };
        if scaling.history[index].outcome != ScalingOutcome::InProgress {
            return Err(DomainError::Conflict(format!(
                "scaling decision {pool}#{seq} is already {}",
                scaling.history[index].outcome.as_str()
            )));
        }
        let mut scaling = scaling.clone();
        let record = &mut scaling.history[index];
        record.outcome = outcome;
        record.error = error;
        record.reached_at_ms = reached_at_ms;
        record.settled_at_ms = Some(at_ms);
        self.put_scaling(scaling.clone(), writes);
        Ok(CommandOutcome::Scaling(Box::new(scaling)))
    }
}
