//! What the cost ledger keeps beside the jobs' lines (issue 19), all maintained by apply
//! and replicated: the cluster's cost settings; the jobs' lines again by label; what
//! each pool's provisioned workers cost, per hour (the pool's cost, of which the jobs'
//! lines at list prices are the attributed part and the rest is idle); the runs' usage
//! against their requests per tenant and day; stored report definitions; the budget
//! warnings; and lifetime totals for the counters.
//!
//! Each kind is stored under its own key below `costbook/`, as one [`BookEntry`] enum,
//! so loading, snapshots and purges treat them alike.

use std::collections::BTreeMap;

use hodei_cluster::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::state::cost_ledger::CostLine;
use crate::state::hodei_state::{HodeiState, put_encoded};
use crate::state::keys::COST_BOOK_PREFIX;
use hodei_domain::cost::{CostSettings, DAY_MS, HOUR_MS};
use hodei_domain::job::Job;
use hodei_domain::tenant::TenantId;
use hodei_domain::usage::UsageStats;
use hodei_domain::worker::Worker;

/// (hour, tenant, pool, label key, label value).
pub type LabelKey = (u64, TenantId, String, String, String);

/// (tenant, pool, label key, label value) within an hour.
pub type LabelLine = (TenantId, String, String, String);

/// A stored cost report: what to group by, per what step, over which window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDefinition {
    pub id: String,
    pub name: String,
    /// tenant | pool | queue | job | label:<key>
    pub group_by: String,
    /// hour | day
    pub step: String,
    /// The window ends when it is run and is this long.
    pub window_s: u64,
    /// json | csv | focus
    pub format: String,
    /// A tenant's own definition (it sees its own lines only); `None`: an admin's.
    pub tenant: Option<TenantId>,
    pub created_at_ms: u64,
}

/// The most stored report definitions.
pub const MAX_REPORT_DEFINITIONS: usize = 1_000;

/// A tenant reached a level of its daily budget (80, 95 or 100 %).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetAlert {
    pub tenant: TenantId,
    /// The day's start (UTC), ms.
    pub day_ms: u64,
    pub level_percent: u32,
    pub spent_nanos: u64,
    pub budget_nanos: u64,
    pub at_ms: u64,
}

/// Lifetime sums of a pool (never purged: what the counters read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTotals {
    /// What its provisioned workers cost (list prices), for intervals that ended.
    pub cost_nanos: u64,
    /// What of it runs used (list prices), for runs that ended.
    pub attributed_nanos: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum BookEntry {
    /// The settings, with the time tracking was last turned on (runs are billed from it).
    Settings {
        settings: CostSettings,
        enabled_since_ms: u64,
    },
    /// A live worker billed from this time rather than its registration (its capacity
    /// changed, or tracking was turned on or off, then).
    BilledFrom {
        worker: String,
        at_ms: u64,
    },
    Label {
        key: LabelKey,
        line: CostLine,
    },
    Pool {
        hour: u64,
        pool: String,
        nanos: u64,
    },
    /// The runs of a tenant on a day (`label` empty), or of its runs with one label
    /// (`key=value`).
    Usage {
        day: u64,
        tenant: TenantId,
        label: String,
        stats: UsageStats,
    },
    Report(ReportDefinition),
    Budget(BudgetAlert),
    Total {
        tenant: TenantId,
        pool: String,
        nanos: u64,
    },
    PoolTotal {
        pool: String,
        totals: PoolTotals,
    },
}

impl BookEntry {
    pub fn storage_key(&self) -> Vec<u8> {
        let suffix = match self {
            BookEntry::Settings { .. } => "settings".to_string(),
            BookEntry::BilledFrom { worker, .. } => format!("billedfrom/{worker}"),
            BookEntry::Label {
                key: (hour, tenant, pool, name, value),
                ..
            } => format!("label/{hour:020}\0{tenant}\0{pool}\0{name}\0{value}"),
            BookEntry::Pool { hour, pool, .. } => format!("pool/{hour:020}\0{pool}"),
            BookEntry::Usage {
                day, tenant, label, ..
            } => format!("usage/{day:020}\0{tenant}\0{label}"),
            BookEntry::Report(definition) => format!("report/{}", definition.id),
            BookEntry::Budget(alert) => format!("budget/{:020}\0{}", alert.day_ms, alert.tenant),
            BookEntry::Total { tenant, pool, .. } => format!("total/{tenant}\0{pool}"),
            BookEntry::PoolTotal { pool, .. } => format!("pooltotal/{pool}"),
        };
        format!("{COST_BOOK_PREFIX}{suffix}").into_bytes()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct CostBook {
    /// As committed (`None`: never set, the defaults), and since when tracking is on.
    pub settings: Option<(CostSettings, u64)>,
    /// Live workers billed from a later time than their registration.
    pub billed_from: BTreeMap<String, u64>,
    pub labels: BTreeMap<u64, BTreeMap<LabelLine, CostLine>>,
    /// What each pool's workers cost, by hour (list prices), for intervals that ended.
    pub pools: BTreeMap<u64, BTreeMap<String, u64>>,
    /// (day, tenant, `` or `key=value`) -> the runs' usage against their requests.
    pub usage: BTreeMap<(u64, TenantId, String), UsageStats>,
    pub reports: BTreeMap<String, ReportDefinition>,
    pub budgets: BTreeMap<(u64, TenantId), BudgetAlert>,
    /// What each (tenant, pool) was billed, lifetime.
    pub totals: BTreeMap<(TenantId, String), u64>,
    pub pool_totals: BTreeMap<String, PoolTotals>,
    /// What each tenant was billed per day, for runs that ended (derived from the
    /// ledger's lines; what budgets read).
    pub day_spend: BTreeMap<(u64, TenantId), u64>,
}

impl CostBook {
    pub fn insert(&mut self, entry: BookEntry) {
        match entry {
            BookEntry::Settings {
                settings,
                enabled_since_ms,
            } => self.settings = Some((settings, enabled_since_ms)),
            BookEntry::BilledFrom { worker, at_ms } => {
                self.billed_from.insert(worker, at_ms);
            }
            BookEntry::Label {
                key: (hour, tenant, pool, name, value),
                line,
            } => {
                self.labels
                    .entry(hour)
                    .or_default()
                    .insert((tenant, pool, name, value), line);
            }
            BookEntry::Pool { hour, pool, nanos } => {
                self.pools.entry(hour).or_default().insert(pool, nanos);
            }
            BookEntry::Usage {
                day,
                tenant,
                label,
                stats,
            } => {
                self.usage.insert((day, tenant, label), stats);
            }
            BookEntry::Report(definition) => {
                self.reports.insert(definition.id.clone(), definition);
            }
            BookEntry::Budget(alert) => {
                self.budgets
                    .insert((alert.day_ms, alert.tenant.clone()), alert);
            }
            BookEntry::Total {
                tenant,
                pool,
                nanos,
            } => {
                self.totals.insert((tenant, pool), nanos);
            }
            BookEntry::PoolTotal { pool, totals } => {
                self.pool_totals.insert(pool, totals);
            }
        }
    }

    /// Every entry, as stored (what a snapshot carries).
    pub fn entries(&self) -> Vec<BookEntry> {
        let mut entries: Vec<BookEntry> = self
            .settings
            .iter()
            .map(|(settings, enabled_since_ms)| BookEntry::Settings {
                settings: *settings,
                enabled_since_ms: *enabled_since_ms,
            })
            .collect();
        for (worker, at_ms) in &self.billed_from {
            entries.push(BookEntry::BilledFrom {
                worker: worker.clone(),
                at_ms: *at_ms,
            });
        }
        for (hour, lines) in &self.labels {
            for ((tenant, pool, name, value), line) in lines {
                entries.push(BookEntry::Label {
                    key: (
                        *hour,
                        tenant.clone(),
                        pool.clone(),
                        name.clone(),
                        value.clone(),
                    ),
                    line: *line,
                });
            }
        }
        for (hour, pools) in &self.pools {
            for (pool, nanos) in pools {
                entries.push(BookEntry::Pool {
                    hour: *hour,
                    pool: pool.clone(),
                    nanos: *nanos,
                });
            }
        }
        for ((day, tenant, label), stats) in &self.usage {
            entries.push(BookEntry::Usage {
                day: *day,
                tenant: tenant.clone(),
                label: label.clone(),
                stats: stats.clone(),
            });
        }
        entries.extend(self.reports.values().cloned().map(BookEntry::Report));
        entries.extend(self.budgets.values().cloned().map(BookEntry::Budget));
        for ((tenant, pool), nanos) in &self.totals {
            entries.push(BookEntry::Total {
                tenant: tenant.clone(),
                pool: pool.clone(),
                nanos: *nanos,
            });
        }
        for (pool, totals) in &self.pool_totals {
            entries.push(BookEntry::PoolTotal {
                pool: pool.clone(),
                totals: *totals,
            });
        }
        entries
    }

    /// Forgets the hours (and days) before `before_ms`; returns the keys to delete.
    pub fn purge(&mut self, before_ms: u64) -> Vec<Vec<u8>> {
        let mut gone = Vec::new();
        let keep_labels = self.labels.split_off(&before_ms);
        for (hour, lines) in std::mem::replace(&mut self.labels, keep_labels) {
            for ((tenant, pool, name, value), line) in lines {
                gone.push(BookEntry::Label {
                    key: (hour, tenant, pool, name, value),
                    line,
                });
            }
        }
        let keep_pools = self.pools.split_off(&before_ms);
        for (hour, pools) in std::mem::replace(&mut self.pools, keep_pools) {
            for (pool, nanos) in pools {
                gone.push(BookEntry::Pool { hour, pool, nanos });
            }
        }
        let day_before = before_ms - before_ms % DAY_MS;
        let due: Vec<(u64, TenantId, String)> = self
            .usage
            .keys()
            .filter(|(day, ..)| *day < day_before)
            .cloned()
            .collect();
        for key in due {
            if let Some(stats) = self.usage.remove(&key) {
                gone.push(BookEntry::Usage {
                    day: key.0,
                    tenant: key.1,
                    label: key.2,
                    stats,
                });
            }
        }
        let due: Vec<(u64, TenantId)> = self
            .budgets
            .keys()
            .filter(|(day, _)| *day < day_before)
            .cloned()
            .collect();
        for key in due {
            if let Some(alert) = self.budgets.remove(&key) {
                gone.push(BookEntry::Budget(alert));
            }
        }
        self.day_spend.retain(|(day, _), _| *day >= day_before);
        gone.iter().map(BookEntry::storage_key).collect()
    }
}

fn put(entry: &BookEntry, writes: &mut WriteBatch) {
    put_encoded(writes, entry.storage_key(), entry);
}

impl HodeiState {
    pub fn cost_settings(&self) -> CostSettings {
        self.book
            .settings
            .map(|(settings, _)| settings)
            .unwrap_or_default()
    }

    /// Since when runs are billed: the last time tracking was turned on (0: always on).
    pub(in crate::state) fn billed_since_ms(&self) -> u64 {
        self.book.settings.map_or(0, |(_, since)| since)
    }

    /// Where a running job's run is billed from: its start, or when tracking came on.
    pub(in crate::state) fn billable_run_start(&self, job: &Job) -> Option<u64> {
        job.running_since_ms()
            .map(|started_at| started_at.max(self.billed_since_ms()))
    }

    /// What a running job's run has cost so far (`None` unless it runs and its cost is
    /// tracked).
    pub fn running_cost(&self, job: &Job, now_ms: u64) -> Option<u64> {
        let settings = self.cost_settings();
        if !settings.enabled || !settings.track_by_job {
            return None;
        }
        let started_at = self.billable_run_start(job)?;
        Some(self.run_cost(job, started_at, now_ms.max(started_at)))
    }

    /// Where a live worker's current billed interval starts: its registration, or its
    /// provisioning start, a capacity change or tracking turned on since.
    pub(in crate::state) fn billed_start(&self, worker: &Worker) -> u64 {
        self.book
            .billed_from
            .get(&worker.id)
            .copied()
            .unwrap_or(worker.registered_at_ms)
    }

    /// Bills the live worker from `at_ms` on.
    pub(in crate::state) fn bill_from(
        &mut self,
        worker: &str,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) {
        self.put_book_entry(
            BookEntry::BilledFrom {
                worker: worker.to_string(),
                at_ms,
            },
            writes,
        );
    }

    /// New cost settings at `at_ms`. Turning tracking off bills the live workers up to
    /// now; turning it on starts their billing (and the runs') now, so that the pools'
    /// cost and the runs cover the same time.
    pub(in crate::state) fn change_cost_settings(
        &mut self,
        settings: CostSettings,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) {
        let before = self.cost_settings();
        let mut since = self.billed_since_ms();
        if before.enabled != settings.enabled {
            let live: Vec<Worker> = self
                .workers
                .values()
                .filter(|worker| worker.is_live())
                .cloned()
                .collect();
            for worker in live {
                if before.enabled {
                    self.bill_interval(&worker, at_ms, writes);
                }
                self.put_book_entry(
                    BookEntry::BilledFrom {
                        worker: worker.id.clone(),
                        at_ms,
                    },
                    writes,
                );
            }
            if settings.enabled {
                since = at_ms;
            }
        }
        self.put_book_entry(
            BookEntry::Settings {
                settings,
                enabled_since_ms: since,
            },
            writes,
        );
    }
    /// Who the ledger names for `tenant` (nobody when tenants are not tracked).
    pub(in crate::state) fn ledger_tenant(&self, tenant: &TenantId) -> TenantId {
        if self.cost_settings().track_by_tenant {
            tenant.clone()
        } else {
            TenantId::untracked()
        }
    }

    /// Adds what the run that ended `job` adds beside its ledger lines: its labels' lines,
    /// its usage against its request, its tenant's day and lifetime totals. `lines` are the
    /// ledger lines of the run.
    pub(in crate::state) fn record_run_extras(
        &mut self,
        job: &Job,
        lines: &[(crate::state::cost_ledger::LedgerKey, CostLine)],
        writes: &mut WriteBatch,
    ) {
        let tenant = self.ledger_tenant(&job.spec.tenant);
        let pool = job.pool.clone().unwrap_or_default();
        let mut billed = 0u64;
        let mut list = 0u64;
        for ((hour, ..), line) in lines {
            billed = billed.saturating_add(line.billed_nanos);
            list = list.saturating_add(line.list_nanos);
            for (name, value) in job.spec.labels.iter() {
                let kept = self
                    .book
                    .labels
                    .entry(*hour)
                    .or_default()
                    .entry((tenant.clone(), pool.clone(), name.clone(), value.clone()))
                    .or_default();
                kept.add(line);
                let entry = BookEntry::Label {
                    key: (
                        *hour,
                        tenant.clone(),
                        pool.clone(),
                        name.clone(),
                        value.clone(),
                    ),
                    line: *kept,
                };
                put(&entry, writes);
            }
            let day = hour - hour % DAY_MS;
            let spent = self
                .book
                .day_spend
                .entry((day, tenant.clone()))
                .or_default();
            *spent = spent.saturating_add(line.billed_nanos);
        }
        let total = self
            .book
            .totals
            .entry((tenant.clone(), pool.clone()))
            .or_default();
        *total = total.saturating_add(billed);
        let entry = BookEntry::Total {
            tenant: tenant.clone(),
            pool: pool.clone(),
            nanos: *total,
        };
        put(&entry, writes);
        let totals = self.book.pool_totals.entry(pool.clone()).or_default();
        totals.attributed_nanos = totals.attributed_nanos.saturating_add(list);
        let entry = BookEntry::PoolTotal {
            pool,
            totals: *totals,
        };
        put(&entry, writes);
        if let (Some(usage), Some((started_at, ended_at))) = (job.usage, job.final_run_ms()) {
            let day = ended_at - ended_at % DAY_MS;
            let labels = std::iter::once(String::new()).chain(
                job.spec
                    .labels
                    .iter()
                    .map(|(name, value)| format!("{name}={value}")),
            );
            for label in labels {
                let stats = self
                    .book
                    .usage
                    .entry((day, tenant.clone(), label.clone()))
                    .or_default();
                stats.record(
                    job.spec.resources,
                    ended_at.saturating_sub(started_at),
                    usage,
                );
                let entry = BookEntry::Usage {
                    day,
                    tenant: tenant.clone(),
                    label,
                    stats: stats.clone(),
                };
                put(&entry, writes);
            }
        }
    }

    /// Bills the provisioned interval of `previous` that its next version `next` ends (a
    /// live worker lost or stopped).
    pub(in crate::state) fn bill_worker_interval(
        &mut self,
        previous: &Worker,
        next: &Worker,
        writes: &mut WriteBatch,
    ) {
        if !previous.is_live() || next.is_live() {
            return;
        }
        if self.cost_settings().enabled {
            self.bill_interval(previous, next.state_changed_at_ms, writes);
        }
        if self.book.billed_from.remove(&previous.id).is_some() {
            writes.delete(
                BookEntry::BilledFrom {
                    worker: previous.id.clone(),
                    at_ms: 0,
                }
                .storage_key(),
            );
        }
    }

    /// A live worker registers again with another capacity at `at_ms`: billed at its old
    /// capacity until then, at the new one from then on.
    pub(in crate::state) fn rebill_worker(
        &mut self,
        previous: &Worker,
        at_ms: u64,
        writes: &mut WriteBatch,
    ) {
        if !previous.is_live() {
            return;
        }
        if self.cost_settings().enabled {
            self.bill_interval(previous, at_ms, writes);
        }
        self.put_book_entry(
            BookEntry::BilledFrom {
                worker: previous.id.clone(),
                at_ms,
            },
            writes,
        );
    }

    /// Adds the live worker's cost from its billed start to `ended_at` to its pool.
    fn bill_interval(&mut self, worker: &Worker, ended_at: u64, writes: &mut WriteBatch) {
        for (hour, nanos) in self.worker_cost_parts(worker, ended_at) {
            if nanos == 0 {
                continue;
            }
            let kept = self
                .book
                .pools
                .entry(hour)
                .or_default()
                .entry(worker.pool.clone())
                .or_default();
            *kept = kept.saturating_add(nanos);
            let entry = BookEntry::Pool {
                hour,
                pool: worker.pool.clone(),
                nanos: *kept,
            };
            put(&entry, writes);
            let totals = self
                .book
                .pool_totals
                .entry(worker.pool.clone())
                .or_default();
            totals.cost_nanos = totals.cost_nanos.saturating_add(nanos);
            let entry = BookEntry::PoolTotal {
                pool: worker.pool.clone(),
                totals: *totals,
            };
            put(&entry, writes);
        }
    }

    /// What a live `worker` cost per hour from its billed start to `until_ms`, at its
    /// pool's list prices for its capacity.
    pub fn worker_cost_parts(&self, worker: &Worker, until_ms: u64) -> Vec<(u64, u64)> {
        let start = self.billed_start(worker);
        self.prices_of(&worker.pool)
            .hourly_parts(
                worker.capacity,
                start,
                until_ms.max(start),
                false,
                hodei_domain::tenant::Tier::Standard,
            )
            .into_iter()
            .map(|part| (part.hour_ms, part.list_nanos))
            .collect()
    }

    /// The pools' cost per (hour, pool) over [from_ms, to_ms): ended intervals.
    pub fn pool_cost_lines(&self, from_ms: u64, to_ms: u64) -> Vec<(u64, String, u64)> {
        self.book
            .pools
            .range(from_ms..to_ms.max(from_ms))
            .flat_map(|(hour, pools)| {
                pools
                    .iter()
                    .map(move |(pool, nanos)| (*hour, pool.clone(), *nanos))
            })
            .collect()
    }

    /// The live workers' intervals up to `now_ms`, per (hour, pool).
    pub fn running_pool_cost_lines(&self, now_ms: u64) -> Vec<(u64, String, u64)> {
        if !self.cost_settings().enabled {
            return Vec::new();
        }
        self.workers
            .values()
            .filter(|worker| worker.is_live())
            .flat_map(|worker| {
                self.worker_cost_parts(worker, now_ms)
                    .into_iter()
                    .map(|(hour, nanos)| (hour, worker.pool.clone(), nanos))
            })
            .collect()
    }

    /// The label lines of the hours in [from_ms, to_ms) for the label `name`.
    pub fn label_cost_lines(
        &self,
        name: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Vec<((u64, TenantId, String, String), CostLine)> {
        self.book
            .labels
            .range(from_ms..to_ms.max(from_ms))
            .flat_map(|(hour, lines)| {
                lines
                    .iter()
                    .filter(move |((_, _, key, _), _)| key == name)
                    .map(move |((tenant, pool, _, value), line)| {
                        ((*hour, tenant.clone(), pool.clone(), value.clone()), *line)
                    })
            })
            .collect()
    }

    /// What `tenant` spent on the day of `now_ms` (UTC): runs that ended, and the running
    /// ones up to now.
    pub fn spent_today(&self, tenant: &TenantId, now_ms: u64) -> u64 {
        let day = now_ms - now_ms % DAY_MS;
        let ended = self
            .book
            .day_spend
            .get(&(day, tenant.clone()))
            .copied()
            .unwrap_or_default();
        let running: u64 = self
            .running_cost_lines_of(Some(tenant), now_ms)
            .into_iter()
            .filter(|((hour, ..), _)| *hour >= day)
            .map(|(_, line)| line.billed_nanos)
            .fold(0, u64::saturating_add);
        ended.saturating_add(running)
    }

    /// The tenant's daily budget in nano-dollars, if it has one.
    pub fn budget_nanos(&self, tenant: &TenantId) -> Option<u64> {
        self.tenant(tenant)?
            .quota
            .daily_cost_budget_micros
            .map(|micros| micros.saturating_mul(1_000))
    }

    /// Whether the tenant's new work waits for the next day (`budget_action: queue` and
    /// its budget spent).
    pub fn budget_exhausted(&self, tenant: &TenantId, now_ms: u64) -> bool {
        let settings = self.cost_settings();
        if !settings.enabled
            || !settings.track_by_tenant
            || settings.budget_action != hodei_domain::cost::BudgetAction::Queue
        {
            return false;
        }
        self.budget_nanos(tenant)
            .is_some_and(|budget| self.spent_today(tenant, now_ms) >= budget)
    }

    /// The highest budget warning recorded for the tenant on the day of `now_ms`.
    pub fn budget_alert(&self, tenant: &TenantId, now_ms: u64) -> Option<&BudgetAlert> {
        self.book
            .budgets
            .get(&(now_ms - now_ms % DAY_MS, tenant.clone()))
    }

    /// The budget warnings due at `now_ms`: each tenant with a daily budget whose spending
    /// today reached a level above the one recorded today.
    pub fn budget_alerts_due(&self, now_ms: u64) -> Vec<BudgetAlert> {
        let settings = self.cost_settings();
        if !settings.enabled || !settings.track_by_tenant {
            return Vec::new();
        }
        let day_ms = now_ms - now_ms % DAY_MS;
        self.tenants
            .keys()
            .filter_map(|tenant| {
                let budget_nanos = self.budget_nanos(tenant)?;
                let spent_nanos = self.spent_today(tenant, now_ms);
                let level_percent = hodei_domain::cost::budget_level(spent_nanos, budget_nanos)?;
                let recorded = self
                    .budget_alert(tenant, now_ms)
                    .map_or(0, |alert| alert.level_percent);
                (level_percent > recorded).then(|| BudgetAlert {
                    tenant: tenant.clone(),
                    day_ms,
                    level_percent,
                    spent_nanos,
                    budget_nanos,
                    at_ms: now_ms,
                })
            })
            .collect()
    }

    /// The runs' usage stats per tenant over the days in [from_ms, to_ms).
    /// What each (tenant, `key=value`) label's finished runs billed over the hours in
    /// [from_ms, to_ms).
    pub fn label_billed(&self, from_ms: u64, to_ms: u64) -> BTreeMap<(TenantId, String), u64> {
        let mut billed: BTreeMap<(TenantId, String), u64> = BTreeMap::new();
        for lines in self
            .book
            .labels
            .range(from_ms..to_ms.max(from_ms))
            .map(|(_, lines)| lines)
        {
            for ((tenant, _, name, value), line) in lines {
                let total = billed
                    .entry((tenant.clone(), format!("{name}={value}")))
                    .or_default();
                *total = total.saturating_add(line.billed_nanos);
            }
        }
        billed
    }

    /// Keyed by (tenant, ``) for all of a tenant's runs, and (tenant, `key=value`) for its
    /// runs with that label.
    pub fn usage_stats(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> BTreeMap<(TenantId, String), UsageStats> {
        let mut merged: BTreeMap<(TenantId, String), UsageStats> = BTreeMap::new();
        for ((day, tenant, label), stats) in &self.book.usage {
            if *day + DAY_MS > from_ms && *day < to_ms {
                merged
                    .entry((tenant.clone(), label.clone()))
                    .or_default()
                    .merge(stats);
            }
        }
        merged
    }

    pub fn report_definitions(&self) -> impl Iterator<Item = &ReportDefinition> {
        self.book.reports.values()
    }

    pub fn report_definition(&self, id: &str) -> Option<&ReportDefinition> {
        self.book.reports.get(id)
    }

    /// What runs billed per (tenant, pool), lifetime, the running runs counted up to
    /// `now_ms` (so it only grows): the cost counter.
    pub fn billed_counters(&self, now_ms: u64) -> BTreeMap<(String, String), u64> {
        let mut billed: BTreeMap<(String, String), u64> = self
            .book
            .totals
            .iter()
            .map(|((tenant, pool), nanos)| ((tenant.to_string(), pool.clone()), *nanos))
            .collect();
        if self.cost_settings().enabled {
            for job in self.running_jobs() {
                let Some(started_at) = self.billable_run_start(job) else {
                    continue;
                };
                let key = (
                    self.ledger_tenant(&job.spec.tenant).to_string(),
                    job.pool.clone().unwrap_or_default(),
                );
                let total = billed.entry(key).or_default();
                *total =
                    total.saturating_add(self.run_cost(job, started_at, now_ms.max(started_at)));
            }
        }
        billed
    }

    /// What each pool's provisioned workers cost that no run used, lifetime, live workers
    /// and running runs counted up to `now_ms` (so it only grows): the idle counter.
    pub fn idle_counters(&self, now_ms: u64) -> BTreeMap<String, u64> {
        let mut cost: BTreeMap<String, (u64, u64)> = self
            .book
            .pool_totals
            .iter()
            .map(|(pool, totals)| (pool.clone(), (totals.cost_nanos, totals.attributed_nanos)))
            .collect();
        if self.cost_settings().enabled {
            for job in self.running_jobs() {
                let Some(started_at) = self.billable_run_start(job) else {
                    continue;
                };
                let pool = job.pool.clone().unwrap_or_default();
                let list = self.prices_of(&pool).list_cost_nanos(
                    job.spec.resources,
                    started_at,
                    now_ms.max(started_at),
                );
                let entry = cost.entry(pool).or_default();
                entry.1 = entry.1.saturating_add(list);
            }
            for worker in self.workers.values().filter(|worker| worker.is_live()) {
                let start = self.billed_start(worker);
                let nanos = self.prices_of(&worker.pool).list_cost_nanos(
                    worker.capacity,
                    start,
                    now_ms.max(start),
                );
                let entry = cost.entry(worker.pool.clone()).or_default();
                entry.0 = entry.0.saturating_add(nanos);
            }
        }
        cost.into_iter()
            .map(|(pool, (cost, attributed))| (pool, cost.saturating_sub(attributed)))
            .collect()
    }

    pub(in crate::state) fn put_book_entry(&mut self, entry: BookEntry, writes: &mut WriteBatch) {
        put(&entry, writes);
        self.book.insert(entry);
    }

    /// Rebuilds what the book derives from the ledger (each tenant's spend per day).
    pub(in crate::state) fn rebuild_day_spend(&mut self) {
        let mut spend: BTreeMap<(u64, TenantId), u64> = BTreeMap::new();
        for (hour, lines) in &self.cost_ledger {
            for ((tenant, ..), line) in lines {
                let total = spend
                    .entry((hour - hour % DAY_MS, tenant.clone()))
                    .or_default();
                *total = total.saturating_add(line.billed_nanos);
            }
        }
        self.book.day_spend = spend;
    }
}

/// The hour `at_ms` is in.
pub fn hour_of(at_ms: u64) -> u64 {
    at_ms - at_ms % HOUR_MS
}
