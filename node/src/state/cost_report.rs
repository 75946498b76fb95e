//! A cost report over a window (US-09.5.3): the ledger's lines (finished runs, and the
//! running ones up to now) grouped by tenant, pool, queue, job or a label's value, per
//! period; and per pool and period what its workers cost, what of it the runs used
//! (their list-price lines) and the idle rest, so that the runs plus idle make up the
//! pool's cost exactly.

use std::collections::BTreeMap;

use crate::state::cost_ledger::{CostLine, LedgerKey};
use crate::state::hodei_state::HodeiState;
use hodei_domain::tenant::TenantId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostGroup {
    Tenant,
    Pool,
    Queue,
    Job,
    Label(String),
}

/// What the runs of no value of the label are grouped as.
pub const UNLABELLED: &str = "__unlabelled__";
/// What idle rows are grouped as (unless grouping by pool).
pub const IDLE: &str = "__idle__";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostQuery {
    pub from_ms: u64,
    pub to_ms: u64,
    pub step_ms: u64,
    pub group: CostGroup,
    /// A tenant's own report: its lines only, and no pool or idle lines.
    pub tenant: Option<TenantId>,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowKind {
    /// What runs billed.
    Usage,
    /// What a pool's workers cost that no run used (list prices, in `list_nanos`).
    Idle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRow {
    pub period_start_ms: u64,
    pub group: String,
    pub kind: RowKind,
    /// The pool of an idle row.
    pub pool: Option<String>,
    pub line: CostLine,
    /// Of `line.billed_nanos`, the part of runs still going on.
    pub running_nanos: u64,
}

/// A pool in a period: its workers' cost, and what of it the runs used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolPeriod {
    pub cost_nanos: u64,
    /// Of the cost, the part of workers still live.
    pub running_nanos: u64,
    pub attributed_nanos: u64,
}

impl PoolPeriod {
    /// Cost less attributed: what no run used. Negative only if runs were reported for
    /// longer than their workers were provisioned (clocks of different nodes).
    pub fn idle_nanos(&self) -> i128 {
        i128::from(self.cost_nanos) - i128::from(self.attributed_nanos)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostReport {
    pub rows: Vec<CostRow>,
    /// (period, pool) -> its cost; empty for a tenant's own report.
    pub pools: BTreeMap<(u64, String), PoolPeriod>,
}

type Grouped = BTreeMap<(u64, String, RowKind, Option<String>), (CostLine, u64)>;

fn add(
    grouped: &mut Grouped,
    key: (u64, String, RowKind, Option<String>),
    line: &CostLine,
    live: bool,
) {
    let (sums, running) = grouped.entry(key).or_default();
    sums.add(line);
    if live {
        *running = running.saturating_add(line.billed_nanos);
    }
}

impl HodeiState {
    /// The report; `archived` are the jobs of the history that ended in the window (read
    /// beforehand, outside the state's lock), for a report by job.
    pub fn cost_report(
        &self,
        query: &CostQuery,
        archived: &[hodei_domain::job::Job],
    ) -> CostReport {
        let CostQuery {
            from_ms,
            to_ms,
            step_ms,
            ..
        } = *query;
        let step_ms = step_ms.max(1);
        let period = |hour: u64| hour / step_ms * step_ms;
        let in_window = |hour: u64| hour >= from_ms && hour < to_ms;
        let own = |tenant: &TenantId| query.tenant.as_ref().is_none_or(|own| own == tenant);
        let finished = self.cost_lines(from_ms, to_ms);
        let running: Vec<(LedgerKey, CostLine)> = self
            .running_cost_lines_of(query.tenant.as_ref(), query.now_ms)
            .into_iter()
            .filter(|((hour, ..), _)| in_window(*hour))
            .collect();
        let mut grouped: Grouped = BTreeMap::new();
        // A job's lines in the window, as one group.
        let add_lines =
            |grouped: &mut Grouped, group: &str, lines: &[(LedgerKey, CostLine)], live: bool| {
                for ((hour, ..), line) in lines.iter().filter(|((hour, ..), _)| in_window(*hour)) {
                    add(
                        grouped,
                        (period(*hour), group.to_string(), RowKind::Usage, None),
                        line,
                        live,
                    );
                }
            };
        match &query.group {
            CostGroup::Tenant | CostGroup::Pool | CostGroup::Queue => {
                let lines = finished
                    .iter()
                    .map(|line| (line, false))
                    .chain(running.iter().map(|line| (line, true)));
                for (((hour, tenant, pool, queue), line), live) in lines {
                    if !own(tenant) {
                        continue;
                    }
                    let group = match query.group {
                        CostGroup::Tenant => tenant.to_string(),
                        CostGroup::Pool => pool.clone(),
                        _ => queue.clone(),
                    };
                    add(
                        &mut grouped,
                        (period(*hour), group, RowKind::Usage, None),
                        line,
                        live,
                    );
                }
            }
            CostGroup::Job => {
                let ended = self
                    .finished
                    .range((from_ms, String::new())..)
                    .filter_map(|(_, id)| self.jobs.get(id).map(|job| job.as_ref()))
                    .chain(
                        archived
                            .iter()
                            .filter(|job| !self.jobs.contains_key(&job.id)),
                    );
                for job in ended {
                    let Some((started_at, ended_at)) = job.final_run_ms() else {
                        continue;
                    };
                    if own(&job.spec.tenant) {
                        let lines = self.run_lines(job, started_at, ended_at, true);
                        add_lines(&mut grouped, &job.id, &lines, false);
                    }
                }
                for job in self.running_jobs().filter(|job| own(&job.spec.tenant)) {
                    let lines = self.live_run_lines(job, query.now_ms);
                    add_lines(&mut grouped, &job.id, &lines, true);
                }
            }
            CostGroup::Label(name) => {
                // The labelled lines as kept, and the rest of each period's total as
                // unlabelled.
                let mut unlabelled: BTreeMap<u64, CostLine> = BTreeMap::new();
                for ((hour, tenant, ..), line) in &finished {
                    if own(tenant) {
                        unlabelled.entry(period(*hour)).or_default().add(line);
                    }
                }
                for ((hour, tenant, _, value), line) in self.label_cost_lines(name, from_ms, to_ms)
                {
                    if !own(&tenant) {
                        continue;
                    }
                    let rest = unlabelled.entry(period(hour)).or_default();
                    *rest = subtract(rest, &line);
                    add(
                        &mut grouped,
                        (period(hour), value, RowKind::Usage, None),
                        &line,
                        false,
                    );
                }
                for (at, line) in unlabelled {
                    if line != CostLine::default() {
                        add(
                            &mut grouped,
                            (at, UNLABELLED.to_string(), RowKind::Usage, None),
                            &line,
                            false,
                        );
                    }
                }
                for job in self.running_jobs().filter(|job| own(&job.spec.tenant)) {
                    let value = job.spec.labels.get(name).map_or(UNLABELLED, String::as_str);
                    let lines = self.live_run_lines(job, query.now_ms);
                    add_lines(&mut grouped, value, &lines, true);
                }
            }
        }
        let mut pools: BTreeMap<(u64, String), PoolPeriod> = BTreeMap::new();
        if query.tenant.is_none() {
            for (hour, pool, nanos) in self.pool_cost_lines(from_ms, to_ms) {
                let entry = pools.entry((period(hour), pool)).or_default();
                entry.cost_nanos = entry.cost_nanos.saturating_add(nanos);
            }
            for (hour, pool, nanos) in self.running_pool_cost_lines(query.now_ms) {
                if in_window(hour) {
                    let entry = pools.entry((period(hour), pool)).or_default();
                    entry.cost_nanos = entry.cost_nanos.saturating_add(nanos);
                    entry.running_nanos = entry.running_nanos.saturating_add(nanos);
                }
            }
            for ((hour, _, pool, _), line) in finished.iter().chain(running.iter()) {
                let entry = pools.entry((period(*hour), pool.clone())).or_default();
                entry.attributed_nanos = entry.attributed_nanos.saturating_add(line.list_nanos);
            }
            for ((at, pool), costs) in &pools {
                let idle = u64::try_from(costs.idle_nanos().max(0)).unwrap_or(u64::MAX);
                let group = if query.group == CostGroup::Pool {
                    pool.clone()
                } else {
                    IDLE.to_string()
                };
                let line = CostLine {
                    list_nanos: idle,
                    ..Default::default()
                };
                add(
                    &mut grouped,
                    (*at, group, RowKind::Idle, Some(pool.clone())),
                    &line,
                    false,
                );
            }
        }
        let rows = grouped
            .into_iter()
            .map(
                |((period_start_ms, group, kind, pool), (line, running_nanos))| CostRow {
                    period_start_ms,
                    group,
                    kind,
                    pool,
                    line,
                    running_nanos,
                },
            )
            .collect();
        CostReport { rows, pools }
    }
}

fn subtract(total: &CostLine, part: &CostLine) -> CostLine {
    CostLine {
        billed_nanos: total.billed_nanos.saturating_sub(part.billed_nanos),
        without_premium_nanos: total
            .without_premium_nanos
            .saturating_sub(part.without_premium_nanos),
        list_nanos: total.list_nanos.saturating_sub(part.list_nanos),
        runs: total.runs.saturating_sub(part.runs),
    }
}
