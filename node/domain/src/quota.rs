//! Tenant quotas: what a tenant may have *running*, and how large its backlog may grow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::resources::Resources;

/// Upper bounds that catch typos (a quota of 10^15 millicores is a mistake, not a plan).
pub const MAX_CPU_M: u64 = 100_000_000;
pub const MAX_MEMORY_MB: u64 = 1 << 34;
pub const MAX_GPU: u64 = 100_000;
pub const MAX_CONCURRENT_JOBS: u64 = 10_000_000;
pub const MAX_PENDING_JOBS: u64 = 100_000_000;
pub const MAX_DAILY_BUDGET_MICROS: u64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub cpu_m: u64,
    pub memory_mb: u64,
    pub gpu: u64,
    pub max_concurrent_jobs: u64,
    pub max_pending_jobs: u64,
    /// Per-pool caps on running resources, by pool id.
    #[serde(default)]
    pub pool_limits: BTreeMap<String, Resources>,
    /// Daily cost budget in micro-dollars; warnings at 80% and 95%.
    #[serde(default)]
    pub daily_cost_budget_micros: Option<u64>,
}

impl Default for Quota {
    /// The specification's default quota: 4000 m, 8192 MiB, 10 concurrent jobs.
    fn default() -> Self {
        Self {
            cpu_m: 4_000,
            memory_mb: 8_192,
            gpu: 0,
            max_concurrent_jobs: 10,
            max_pending_jobs: 10_000,
            pool_limits: BTreeMap::new(),
            daily_cost_budget_micros: None,
        }
    }
}

fn bounded(field: &str, value: u64, maximum: u64) -> Result<(), DomainError> {
    if value > maximum {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {maximum}, got {value}"),
        ));
    }
    Ok(())
}

impl Quota {
    pub fn resources(&self) -> Resources {
        Resources::new(self.cpu_m, self.memory_mb, self.gpu)
    }

    /// Checks every value against the sanity bounds; names the field at fault.
    pub fn validate(&self) -> Result<(), DomainError> {
        bounded("cpu_m", self.cpu_m, MAX_CPU_M)?;
        bounded("memory_mb", self.memory_mb, MAX_MEMORY_MB)?;
        bounded("gpu", self.gpu, MAX_GPU)?;
        bounded(
            "max_concurrent_jobs",
            self.max_concurrent_jobs,
            MAX_CONCURRENT_JOBS,
        )?;
        if self.max_pending_jobs == 0 {
            return Err(DomainError::invalid(
                "max_pending_jobs",
                "must be at least 1",
            ));
        }
        bounded("max_pending_jobs", self.max_pending_jobs, MAX_PENDING_JOBS)?;
        for (pool, limit) in &self.pool_limits {
            if !crate::tenant::is_slug(pool) {
                return Err(DomainError::invalid(
                    format!("pool_limits.{pool}"),
                    "pool ids match [a-z0-9][a-z0-9-]{0,62}",
                ));
            }
            bounded(&format!("pool_limits.{pool}.cpu_m"), limit.cpu_m, MAX_CPU_M)?;
            bounded(
                &format!("pool_limits.{pool}.memory_mb"),
                limit.memory_mb,
                MAX_MEMORY_MB,
            )?;
            bounded(&format!("pool_limits.{pool}.gpu"), limit.gpu, MAX_GPU)?;
        }
        if let Some(budget) = self.daily_cost_budget_micros {
            bounded("daily_cost_budget", budget, MAX_DAILY_BUDGET_MICROS)?;
            if budget == 0 {
                return Err(DomainError::invalid(
                    "daily_cost_budget",
                    "must be more than 0 (leave it out for no budget)",
                ));
            }
        }
        Ok(())
    }
}

/// What a tenant has now: running resources and job counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub running: Resources,
    pub running_jobs: u64,
    pub pending_jobs: u64,
    /// Running resources per pool.
    #[serde(default)]
    pub running_by_pool: BTreeMap<String, Resources>,
}

/// The dimensions in which running usage exceeds a (new) quota: setting a quota below what
/// runs is allowed (running jobs are never killed for it), but the caller is told.
pub fn exceeded_by_usage(quota: &Quota, usage: &Usage) -> Vec<String> {
    let mut warnings = Vec::new();
    for ((dimension, used), (_, limit)) in usage
        .running
        .dimensions()
        .into_iter()
        .zip(quota.resources().dimensions())
    {
        if used > limit {
            warnings.push(format!(
                "running jobs use {used}{unit} of {dimension}, above the new quota of {limit}{unit}",
                unit = dimension.unit()
            ));
        }
    }
    if usage.running_jobs > quota.max_concurrent_jobs {
        warnings.push(format!(
            "{} jobs are running, above the new max_concurrent_jobs of {}",
            usage.running_jobs, quota.max_concurrent_jobs
        ));
    }
    if usage.pending_jobs > quota.max_pending_jobs {
        warnings.push(format!(
            "{} jobs are pending, above the new max_pending_jobs of {}; they stay queued",
            usage.pending_jobs, quota.max_pending_jobs
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_seeds() {
        let quota = Quota::default();
        assert_eq!(
            (quota.cpu_m, quota.memory_mb, quota.max_concurrent_jobs),
            (4000, 8192, 10)
        );
        assert!(quota.validate().is_ok());
    }

    #[test]
    fn absurd_values_name_their_field() {
        let cases = [
            (
                Quota {
                    cpu_m: MAX_CPU_M + 1,
                    ..Quota::default()
                },
                "cpu_m",
            ),
            (
                Quota {
                    memory_mb: u64::MAX,
                    ..Quota::default()
                },
                "memory_mb",
            ),
            (
                Quota {
                    gpu: MAX_GPU + 1,
                    ..Quota::default()
                },
                "gpu",
            ),
            (
                Quota {
                    max_pending_jobs: 0,
                    ..Quota::default()
                },
                "max_pending_jobs",
            ),
            (
                Quota {
                    pool_limits: BTreeMap::from([("Bad Pool".to_string(), Resources::ZERO)]),
                    ..Quota::default()
                },
                "pool_limits.Bad Pool",
            ),
        ];
        for (quota, field) in cases {
            let error = quota.validate().unwrap_err();
            assert!(
                matches!(error, DomainError::Invalid { field: ref named, .. } if named == field),
                "{error:?}"
            );
        }
    }

    #[test]
    fn usage_above_a_lowered_quota_is_reported_per_dimension() {
        let usage = Usage {
            running: Resources::new(3_800, 1_000, 0),
            running_jobs: 4,
            pending_jobs: 0,
            running_by_pool: BTreeMap::new(),
        };
        let lowered = Quota {
            cpu_m: 2_000,
            max_concurrent_jobs: 3,
            ..Quota::default()
        };
        let warnings = exceeded_by_usage(&lowered, &usage);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("3800 m of cpu"), "{warnings:?}");
        assert!(exceeded_by_usage(&Quota::default(), &usage).is_empty());
    }
}
