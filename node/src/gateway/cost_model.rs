//! Cost reports (US-09.5.3): the cost ledger's lines over a window, grouped by tenant,
//! pool, queue, job or a label's value, per hour or day, with the burst premium as its
//! own column, the runs still going on billed up to now, and each pool's cost with its
//! idle part (so the runs plus idle make up the pools' cost exactly). As JSON, CSV, or
//! the FinOps FOCUS columns. Also the cost breakdown and recommendations (US-09.5.2).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One group in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportItem {
    /// The period's start, ms since the epoch (UTC hours or days).
    pub period_start_ms: u64,
    /// The tenant, pool, queue, job or label value; `__idle__` for a pool's idle line
    /// (the pool itself when grouping by pool), `__unlabelled__` for runs without the label.
    pub group: String,
    /// usage (what runs billed) | idle (what a pool's workers cost that no run used)
    pub kind: String,
    /// The pool of an idle line.
    pub pool: Option<String>,
    /// What the runs billed, in nano-dollars (finished runs, and running ones up to now).
    pub billed_nanos: u64,
    /// Of that, the burst premium (billed less the same runs without it).
    pub burst_premium_nanos: u64,
    /// Of `billed_nanos`, the part of runs still going on.
    pub running_nanos: u64,
    /// At the pools' list prices (no tier percentage, no burst premium): the part of the
    /// pools' cost the runs used; for an idle line, the idle cost.
    pub list_nanos: u64,
    /// Runs that ended in the period.
    pub runs: u64,
}

/// A pool in a period: what its workers cost, what of it runs used, and the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolCostItem {
    pub period_start_ms: u64,
    pub pool: String,
    /// Provisioned workers x capacity x the pool's list prices x time.
    pub cost_nanos: u64,
    /// Of it, workers still live (up to now).
    pub running_nanos: u64,
    /// What the runs used of it (their list-price lines).
    pub attributed_nanos: u64,
    /// cost - attributed (negative only if runs were reported longer than their workers
    /// lived, by different nodes' clocks).
    pub idle_nanos: i64,
}

/// A cost report: the items by period then group, each pool's cost, and the totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportView {
    pub from_ms: u64,
    pub to_ms: u64,
    /// tenant | pool | queue | job | label:<key>
    pub group_by: String,
    /// hour | day
    pub step: String,
    pub items: Vec<CostReportItem>,
    /// Each pool per period (empty in a tenant's own report).
    pub pools: Vec<PoolCostItem>,
    pub total_billed_nanos: u64,
    pub total_burst_premium_nanos: u64,
    pub total_running_nanos: u64,
    pub total_runs: u64,
    /// Σ of the pools' cost.
    pub total_pool_cost_nanos: u64,
    /// Σ of the pools' idle.
    pub total_idle_nanos: i64,
}

fn usd(nanos: u64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

fn iso(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn written(writer: csv::Writer<Vec<u8>>) -> String {
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

impl CostReportView {
    fn step_ms(&self) -> u64 {
        if self.step == "day" {
            hodei_domain::cost::DAY_MS
        } else {
            hodei_domain::cost::HOUR_MS
        }
    }

    /// The report as CSV: a header, then one row per item (USD with 9 decimals too).
    pub fn to_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record([
            "period_start_ms",
            "group",
            "kind",
            "pool",
            "billed_nanos",
            "billed_usd",
            "burst_premium_nanos",
            "running_nanos",
            "list_nanos",
            "runs",
        ]);
        for item in &self.items {
            let _ = writer.write_record([
                item.period_start_ms.to_string(),
                item.group.clone(),
                item.kind.clone(),
                item.pool.clone().unwrap_or_default(),
                item.billed_nanos.to_string(),
                usd(item.billed_nanos),
                item.burst_premium_nanos.to_string(),
                item.running_nanos.to_string(),
                item.list_nanos.to_string(),
                item.runs.to_string(),
            ]);
        }
        written(writer)
    }

    /// The report in the FinOps FOCUS columns: a usage row per item (billed without the
    /// burst premium), the premium as its own row, and each pool's idle as an unbilled
    /// row at list cost. `BilledCost` sums to `total_billed_nanos`; `ListCost` of the
    /// usage and idle rows sums to the pools' cost.
    pub fn to_focus_csv(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let _ = writer.write_record([
            "BilledCost",
            "EffectiveCost",
            "ListCost",
            "ContractedCost",
            "BillingCurrency",
            "BillingPeriodStart",
            "BillingPeriodEnd",
            "ChargePeriodStart",
            "ChargePeriodEnd",
            "ChargeCategory",
            "ChargeClass",
            "ChargeDescription",
            "ResourceId",
            "ResourceName",
            "ResourceType",
            "ServiceName",
            "ServiceCategory",
            "ProviderName",
            "PublisherName",
            "InvoiceIssuerName",
            "SubAccountId",
            "Tags",
        ]);
        let step_ms = self.step_ms();
        for item in &self.items {
            let start = iso(item.period_start_ms);
            let end = iso(item.period_start_ms.saturating_add(step_ms));
            let tenant = if self.group_by == "tenant" && item.kind == "usage" {
                item.group.clone()
            } else {
                String::new()
            };
            let (resource_id, resource_type) = match (item.kind.as_str(), &item.pool) {
                ("idle", Some(pool)) => (format!("hodei:pool/{pool}"), "pool"),
                _ => (
                    format!("hodei:{}/{}", self.group_by.replace(':', "="), item.group),
                    "group",
                ),
            };
            let tags = serde_json::json!({
                "hodei.group_by": self.group_by,
                "hodei.group": item.group,
                "hodei.kind": item.kind,
                "hodei.runs": item.runs.to_string(),
            })
            .to_string();
            let base = item.billed_nanos - item.burst_premium_nanos;
            let mut row = |billed: u64, list: u64, description: &str, class: &str| {
                let _ = writer.write_record([
                    usd(billed),
                    usd(billed),
                    usd(list),
                    usd(billed),
                    "USD".to_string(),
                    start.clone(),
                    end.clone(),
                    start.clone(),
                    end.clone(),
                    "Usage".to_string(),
                    class.to_string(),
                    description.to_string(),
                    resource_id.clone(),
                    item.group.clone(),
                    resource_type.to_string(),
                    "Hodei".to_string(),
                    "Compute".to_string(),
                    "Hodei".to_string(),
                    "Hodei".to_string(),
                    "Hodei".to_string(),
                    tenant.clone(),
                    tags.clone(),
                ]);
            };
            if item.kind == "idle" {
                row(
                    0,
                    item.list_nanos,
                    "idle capacity: provisioned and used by no run",
                    "",
                );
                continue;
            }
            row(base, item.list_nanos, "job runs", "");
            if item.burst_premium_nanos > 0 {
                row(item.burst_premium_nanos, 0, "burst premium", "");
            }
        }
        written(writer)
    }
}

/// A stored report: a name and the report's parameters; run it with
/// `GET /api/v1/cost-reports/{id}` (its window ends when it is run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostReportDefinitionInput {
    pub name: String,
    /// tenant (default) | pool | queue | job | label:<key>
    pub group_by: Option<String>,
    /// hour (default) | day
    pub step: Option<String>,
    /// The window's length, e.g. `30d`, `24h`, `90m` (default `24h`).
    pub window: Option<String>,
    /// json (default) | csv | focus
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportDefinitionView {
    pub id: String,
    pub name: String,
    pub group_by: String,
    pub step: String,
    pub window_s: u64,
    pub format: String,
    /// The tenant it belongs to (a tenant's own), or none (an admin's).
    pub tenant: Option<String>,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportDefinitionListView {
    pub items: Vec<CostReportDefinitionView>,
}

/// A pool over a window: cost, used, idle, utilization, and who used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PoolBreakdownView {
    pub pool: String,
    pub cost_nanos: u64,
    pub attributed_nanos: u64,
    pub idle_nanos: i64,
    /// attributed / cost, percent.
    pub utilization_percent: u64,
    /// What the runs in it billed (tier percentages and burst premium included).
    pub billed_nanos: u64,
    pub burst_premium_nanos: u64,
    /// Per tenant: what its runs billed here.
    pub tenants: Vec<TenantShareView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantShareView {
    pub tenant: String,
    pub billed_nanos: u64,
    pub list_nanos: u64,
}

/// Where the money went over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostBreakdownView {
    pub from_ms: u64,
    pub to_ms: u64,
    pub pools: Vec<PoolBreakdownView>,
    pub total_cost_nanos: u64,
    pub total_attributed_nanos: u64,
    pub total_idle_nanos: i64,
    pub total_billed_nanos: u64,
    pub total_burst_premium_nanos: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EvidenceView {
    /// What the number is, its unit in its name (`_nanos`, `_percent`, `_s`, `_m`, ...).
    pub name: String,
    pub value: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationView {
    /// right_size_pool | cut_idle_capacity | lower_quota | right_size_requests |
    /// lengthen_cooldown | move_to_cheaper_pool
    pub kind: String,
    /// `pool/<id>` or `tenant/<id>`.
    pub target: String,
    pub action: String,
    pub evidence: Vec<EvidenceView>,
    /// What it would have saved over the window.
    pub window_saving_nanos: u64,
    pub estimated_monthly_saving_nanos: u64,
    /// low | medium | high
    pub confidence: String,
}

impl From<hodei_domain::optimize::Recommendation> for RecommendationView {
    fn from(found: hodei_domain::optimize::Recommendation) -> Self {
        Self {
            kind: found.kind.as_str().to_string(),
            target: found.target,
            action: found.action,
            evidence: found
                .evidence
                .into_iter()
                .map(|item| EvidenceView {
                    name: item.name,
                    value: item.value,
                })
                .collect(),
            window_saving_nanos: found.window_saving_nanos,
            estimated_monthly_saving_nanos: found.monthly_saving_nanos,
            confidence: found.confidence.as_str().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationsView {
    pub from_ms: u64,
    pub to_ms: u64,
    pub items: Vec<RecommendationView>,
    pub total_monthly_saving_nanos: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(group: &str, kind: &str, billed: u64, premium: u64, list: u64) -> CostReportItem {
        CostReportItem {
            period_start_ms: 0,
            group: group.to_string(),
            kind: kind.to_string(),
            pool: (kind == "idle").then(|| "p".to_string()),
            billed_nanos: billed,
            burst_premium_nanos: premium,
            running_nanos: 0,
            list_nanos: list,
            runs: 1,
        }
    }

    #[test]
    fn focus_rows_sum_to_the_totals_and_quote_what_needs_it() {
        let view = CostReportView {
            from_ms: 0,
            to_ms: 3_600_000,
            group_by: "tenant".to_string(),
            step: "hour".to_string(),
            items: vec![
                item("acme", "usage", 1_500, 500, 1_000),
                item("odd,\"name\"", "usage", 7, 0, 7),
                item("__idle__", "idle", 0, 0, 93),
            ],
            pools: Vec::new(),
            total_billed_nanos: 1_507,
            total_burst_premium_nanos: 500,
            total_running_nanos: 0,
            total_runs: 2,
            total_pool_cost_nanos: 1_100,
            total_idle_nanos: 93,
        };
        let focus = view.to_focus_csv();
        let mut reader = csv::Reader::from_reader(focus.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let column = |name: &str| headers.iter().position(|found| found == name).unwrap();
        let (billed, list) = (column("BilledCost"), column("ListCost"));
        let nanos = |text: &str| {
            let (units, fraction) = text.split_once('.').unwrap();
            units.parse::<u64>().unwrap() * 1_000_000_000 + fraction.parse::<u64>().unwrap()
        };
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 4, "usage, premium, usage, idle");
        let billed_sum: u64 = rows.iter().map(|row| nanos(&row[billed])).sum();
        let list_sum: u64 = rows.iter().map(|row| nanos(&row[list])).sum();
        assert_eq!(billed_sum, view.total_billed_nanos);
        assert_eq!(list_sum, view.total_pool_cost_nanos);
        assert_eq!(
            &rows[0][column("ChargePeriodStart")],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(&rows[0][column("ChargePeriodEnd")], "1970-01-01T01:00:00Z");
        assert!(
            rows.iter()
                .any(|row| &row[column("ResourceName")] == "odd,\"name\"")
        );
        let csv = view.to_csv();
        let parsed: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        assert_eq!(parsed.len(), 3);
        assert_eq!(&parsed[1][1], "odd,\"name\"");
    }
}
