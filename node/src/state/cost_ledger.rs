//! The cost ledger (issue 19): what the jobs billed, per hour, tenant, pool and queue,
//! kept by apply. When a run ends (or a running job is cancelled), its cost is split over
//! the hours it covered, each part at the prices then in force, so that the parts add up
//! to the job's `cost_nanos` to the nano-dollar. The ledger is stored and replicated (a
//! job leaves memory for the history; its cost stays here), and entries older than
//! `cost_tracking.retention_days` are purged by a leader-proposed command.

use std::borrow::Cow;

use hodei_cluster::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::state::command::{self, CommandOutcome, CommandResult};
use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::keys::COST_PREFIX;
use hodei_domain::DomainError;
use hodei_domain::cost::PoolPrices;
use hodei_domain::job::Job;
use hodei_domain::tenant::TenantId;

/// (hour start ms, tenant, pool, queue).
pub type LedgerKey = (u64, TenantId, String, String);

/// What the runs of one (hour, tenant, pool, queue) billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostLine {
    pub billed_nanos: u64,
    /// The same without the burst premium (their difference is the premium's line).
    pub without_premium_nanos: u64,
    /// At the pool's list prices (no tier percentage, no premium): what the runs used of
    /// what the pool cost, for its idle line.
    pub list_nanos: u64,
    /// Runs that ended in this hour.
    pub runs: u64,
}

impl CostLine {
    pub fn add(&mut self, other: &CostLine) {
        self.billed_nanos = self.billed_nanos.saturating_add(other.billed_nanos);
        self.without_premium_nanos = self
            .without_premium_nanos
            .saturating_add(other.without_premium_nanos);
        self.list_nanos = self.list_nanos.saturating_add(other.list_nanos);
        self.runs = self.runs.saturating_add(other.runs);
    }
}

/// A stored entry: the key travels in the value, so the storage key is only for order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub key: LedgerKey,
    pub line: CostLine,
}

pub fn storage_key(key: &LedgerKey) -> Vec<u8> {
    format!(
        "{COST_PREFIX}{:020}\0{}\0{}\0{}",
        key.0, key.1, key.2, key.3
    )
    .into_bytes()
}

impl HodeiState {
    /// The lines of a run of `job` over [started_at, ended_at], at its pool's prices and its
    /// tenant's tier (what the ledger adds when it ends, and what a report adds for a job
    /// still running); `ended` counts the run in its last hour.
    pub(in crate::state) fn run_lines(
        &self,
        job: &Job,
        started_at: u64,
        ended_at: u64,
        ended: bool,
    ) -> Vec<(LedgerKey, CostLine)> {
        let pool = job.pool.clone().unwrap_or_default();
        let parts = self.prices_of(&pool).hourly_parts(
            job.spec.resources,
            started_at,
            ended_at,
            job.burst,
            self.tier_of(&job.spec.tenant),
        );
        let last = parts.len().saturating_sub(1);
        parts
            .into_iter()
            .enumerate()
            .map(|(index, part)| {
                (
                    (
                        part.hour_ms,
                        job.spec.tenant.clone(),
                        pool.clone(),
                        job.spec.queue.clone(),
                    ),
                    CostLine {
                        billed_nanos: part.billed_nanos,
                        without_premium_nanos: part.without_premium_nanos,
                        list_nanos: part.list_nanos,
                        runs: u64::from(ended && index == last),
                    },
                )
            })
            .collect()
    }

    /// The lines of `job`'s run going on, from its billable start to `now_ms` (none when it
    /// is not running).
    pub(in crate::state) fn live_run_lines(
        &self,
        job: &Job,
        now_ms: u64,
    ) -> Vec<(LedgerKey, CostLine)> {
        match self.billable_run_start(job) {
            Some(started_at) => self.run_lines(job, started_at, now_ms.max(started_at), false),
            None => Vec::new(),
        }
    }

    /// The pool's prices (its one price when never changed): borrowed, since every run's
    /// end reads them.
    pub(in crate::state) fn prices_of(&self, pool: &str) -> Cow<'_, PoolPrices> {
        match self.prices.get(pool) {
            Some(prices) => Cow::Borrowed(prices),
            None => Cow::Owned(PoolPrices::new(
                pool,
                self.pools
                    .get(pool)
                    .map(|found| found.pricing)
                    .unwrap_or_default(),
            )),
        }
    }

    /// Puts a stored entry back (a load or a snapshot install).
    pub(in crate::state) fn insert_cost_entry(&mut self, entry: LedgerEntry) {
        let (hour, tenant, pool, queue) = entry.key;
        self.cost_ledger
            .entry(hour)
            .or_default()
            .insert((tenant, pool, queue), entry.line);
    }

    /// Every entry, as stored (what a snapshot carries).
    pub(in crate::state) fn cost_entries(&self) -> Vec<LedgerEntry> {
        self.cost_lines(0, u64::MAX)
            .into_iter()
            .map(|(key, line)| LedgerEntry { key, line })
            .collect()
    }

    pub(in crate::state) fn tier_of(&self, tenant: &TenantId) -> hodei_domain::tenant::Tier {
        self.tenants
            .get(tenant)
            .map(|found| found.tier)
            .unwrap_or_default()
    }

    /// Adds the cost of the run that just ended `job` to the ledger.
    pub(in crate::state) fn record_run_cost(&mut self, job: &Job, writes: &mut WriteBatch) {
        let Some((started_at, ended_at)) = job.final_run_ms() else {
            return;
        };
        if !self.cost_settings().enabled {
            return;
        }
        // A run that began while tracking was off is billed from when it came on.
        let started_at = started_at.max(self.billed_since_ms()).min(ended_at);
        let mut lines = self.run_lines(job, started_at, ended_at, true);
        let tenant = self.ledger_tenant(&job.spec.tenant);
        for ((_, named, ..), _) in &mut lines {
            named.clone_from(&tenant);
        }
        self.record_run_extras(job, &lines, writes);
        for (key, line) in lines {
            let (hour, tenant, pool, queue) = key.clone();
            let kept = self
                .cost_ledger
                .entry(hour)
                .or_default()
                .entry((tenant, pool, queue))
                .or_default();
            kept.add(&line);
            let entry = LedgerEntry { key, line: *kept };
            put_encoded(writes, storage_key(&entry.key), &entry);
        }
    }

    pub(in crate::state) fn apply_purge_cost_ledger(
        &mut self,
        command::PurgeCostLedger { before_ms }: command::PurgeCostLedger,
        writes: &mut WriteBatch,
    ) -> CommandResult {
        if before_ms % hodei_domain::cost::HOUR_MS != 0 {
            return Err(DomainError::invalid(
                "before_ms",
                format!("must be the start of an hour, got {before_ms}"),
            ));
        }
        let due: Vec<u64> = self
            .cost_ledger
            .range(..before_ms)
            .map(|(hour, _)| *hour)
            .collect();
        let mut count = 0;
        for key in self.book.purge(before_ms) {
            writes.delete(key);
            count += 1;
        }
        for hour in due {
            for (tenant, pool, queue) in self
                .cost_ledger
                .remove(&hour)
                .unwrap_or_default()
                .into_keys()
            {
                writes.delete(storage_key(&(hour, tenant, pool, queue)));
                count += 1;
            }
        }
        Ok(CommandOutcome::Purged { count })
    }

    /// The ledger's lines of the hours in [from_ms, to_ms).
    pub fn cost_lines(&self, from_ms: u64, to_ms: u64) -> Vec<(LedgerKey, CostLine)> {
        self.cost_ledger
            .range(from_ms..to_ms.max(from_ms))
            .flat_map(|(hour, lines)| {
                lines.iter().map(move |((tenant, pool, queue), line)| {
                    ((*hour, tenant.clone(), pool.clone(), queue.clone()), *line)
                })
            })
            .collect()
    }

    /// The hour the oldest ledger line is of, if any.
    pub fn oldest_cost_hour(&self) -> Option<u64> {
        [
            self.cost_ledger.keys().next(),
            self.book.pools.keys().next(),
            self.book.labels.keys().next(),
            self.book.usage.keys().next().map(|(day, ..)| day),
        ]
        .into_iter()
        .flatten()
        .min()
        .copied()
    }

    /// The lines of the runs going on now, from their start to `now_ms` (a report's live
    /// part; not stored).
    pub fn running_cost_lines(&self, now_ms: u64) -> Vec<(LedgerKey, CostLine)> {
        self.running_cost_lines_of(None, now_ms)
    }

    /// [`Self::running_cost_lines`] of one tenant's runs, or of all.
    pub fn running_cost_lines_of(
        &self,
        tenant: Option<&TenantId>,
        now_ms: u64,
    ) -> Vec<(LedgerKey, CostLine)> {
        let mut lines = Vec::new();
        if !self.cost_settings().enabled {
            return lines;
        }
        for job in self.running_jobs() {
            if tenant.is_some_and(|tenant| *tenant != job.spec.tenant) {
                continue;
            }
            let ledger_tenant = self.ledger_tenant(&job.spec.tenant);
            lines.extend(self.live_run_lines(job, now_ms).into_iter().map(
                |((hour, _, pool, queue), line)| ((hour, ledger_tenant.clone(), pool, queue), line),
            ));
        }
        lines
    }

    /// The jobs running now (held by a worker and started).
    pub fn running_jobs(&self) -> impl Iterator<Item = &Job> {
        self.workers
            .values()
            .flat_map(|worker| worker.jobs.iter())
            .filter_map(|id| self.jobs.get(id).map(|job| job.as_ref()))
            .filter(|job| job.running_since_ms().is_some())
    }
}
