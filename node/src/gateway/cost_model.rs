//! Cost reports (US-09.5.3, first part): the cost ledger's lines over a window, grouped
//! by tenant, pool or queue, per hour or day, with the burst premium as its own line and
//! the runs still going on billed up to now.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One group in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportItem {
    /// The period's start, ms since the epoch (UTC hours or days).
    pub period_start_ms: u64,
    /// The tenant, pool or queue.
    pub group: String,
    /// What the runs billed, in nano-dollars (finished runs, and running ones up to now).
    pub billed_nanos: u64,
    /// Of that, the burst premium (billed less the same runs without it).
    pub burst_premium_nanos: u64,
    /// Of `billed_nanos`, the part of runs still going on.
    pub running_nanos: u64,
    /// The same runs at the pools' list prices (no tier percentage, no burst premium).
    pub list_nanos: u64,
    /// Runs that ended in the period.
    pub runs: u64,
}

/// A cost report: the items by period then group, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportView {
    pub from_ms: u64,
    pub to_ms: u64,
    /// tenant | pool | queue
    pub group_by: String,
    /// hour | day
    pub step: String,
    pub items: Vec<CostReportItem>,
    pub total_billed_nanos: u64,
    pub total_burst_premium_nanos: u64,
    pub total_running_nanos: u64,
    pub total_runs: u64,
}

impl CostReportView {
    /// The report as CSV: a header, then one row per item (USD with 9 decimals too).
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(
            "period_start_ms,group,billed_nanos,billed_usd,burst_premium_nanos,running_nanos,runs\n",
        );
        for item in &self.items {
            let group = if item.group.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", item.group.replace('"', "\"\""))
            } else {
                item.group.clone()
            };
            csv.push_str(&format!(
                "{},{},{},{}.{:09},{},{},{}\n",
                item.period_start_ms,
                group,
                item.billed_nanos,
                item.billed_nanos / 1_000_000_000,
                item.billed_nanos % 1_000_000_000,
                item.burst_premium_nanos,
                item.running_nanos,
                item.runs
            ));
        }
        csv
    }
}
