//! `hodei cost`: reports (table, CSV or FOCUS), stored report definitions, the breakdown
//! and the recommendations.

use clap::Subcommand;
use serde_json::json;

use crate::cli::api::{Api, segment};
use crate::cli::output::{Column, Show, col, dollars, text};
use crate::cli::tenant_cmd::without_nulls;

#[derive(Debug, Subcommand)]
pub enum CostCommand {
    /// What the jobs and pools cost over a window, by tenant, pool, queue, job or a
    /// label's value, per hour or day (runs still going on billed up to now; the burst
    /// premium as its own column; each pool's idle cost as `idle` lines).
    Report {
        /// Start of the window, ms since the epoch (default: 24 hours before --to).
        #[arg(long)]
        from: Option<u64>,
        /// End of the window, ms since the epoch (default: now).
        #[arg(long)]
        to: Option<u64>,
        /// tenant (default) | pool | queue | job | label:<key>
        #[arg(long)]
        group_by: Option<String>,
        /// hour (default) | day
        #[arg(long)]
        step: Option<String>,
        /// table (default: the --output) | csv | focus (the FinOps FOCUS columns).
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Each pool's cost over a window: what its workers cost, what runs used, the idle
    /// rest, and who used it (admin).
    Breakdown {
        /// Start of the window, ms since the epoch (default: 7 days before --to).
        #[arg(long)]
        from: Option<u64>,
        /// End of the window, ms since the epoch (default: now).
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// What could cost less, with the evidence, the estimated monthly saving and the
    /// confidence of each (admin).
    Recommendations {
        /// How far back to look: e.g. 7d (default), 24h, 30m.
        #[arg(long)]
        window: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Stored report definitions: create, list, run, delete.
    #[command(subcommand)]
    Definition(DefinitionCommand),
}

#[derive(Debug, Subcommand)]
pub enum DefinitionCommand {
    /// Store a named report (its grouping, step, window and format).
    Create {
        /// The report's name.
        #[arg(long)]
        name: String,
        /// tenant (default) | pool | queue | job | label:<key>
        #[arg(long)]
        group_by: Option<String>,
        /// hour (default) | day
        #[arg(long)]
        step: Option<String>,
        /// The window's length when run, e.g. 30d (default 24h).
        #[arg(long)]
        window: Option<String>,
        /// json (default) | csv | focus
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// The stored definitions.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Run a stored definition over its window, ending now.
    Run {
        /// The definition's id.
        id: String,
        /// table (default: the --output) | csv | focus
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a stored definition.
    Delete {
        /// The definition's id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

const COST_ITEM: &[Column] = &[
    col("PERIOD", "/period_start_ms", Show::Time),
    col("GROUP", "/group", Show::Text),
    col("KIND", "/kind", Show::Text),
    col("BILLED", "/billed_nanos", Show::Dollars),
    col("BURST PREMIUM", "/burst_premium_nanos", Show::Dollars),
    col("RUNNING", "/running_nanos", Show::Dollars),
    col("LIST", "/list_nanos", Show::Dollars),
    col("RUNS", "/runs", Show::Text),
];

const POOL_ITEM: &[Column] = &[
    col("POOL", "/pool", Show::Text),
    col("COST", "/cost_nanos", Show::Dollars),
    col("USED", "/attributed_nanos", Show::Dollars),
    col("IDLE", "/idle_nanos", Show::Text),
    col("UTILIZATION %", "/utilization_percent", Show::Text),
    col("BILLED", "/billed_nanos", Show::Dollars),
    col("BURST PREMIUM", "/burst_premium_nanos", Show::Dollars),
];

const RECOMMENDATION: &[Column] = &[
    col("KIND", "/kind", Show::Text),
    col("TARGET", "/target", Show::Text),
    col(
        "MONTHLY SAVING",
        "/estimated_monthly_saving_nanos",
        Show::Dollars,
    ),
    col("CONFIDENCE", "/confidence", Show::Text),
    col("ACTION", "/action", Show::Text),
];

const DEFINITION: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("NAME", "/name", Show::Text),
    col("GROUP BY", "/group_by", Show::Text),
    col("STEP", "/step", Show::Text),
    col("WINDOW", "/window_s", Show::Seconds),
    col("FORMAT", "/format", Show::Text),
    col("TENANT", "/tenant", Show::Text),
];

fn is_table(api: &Api) -> bool {
    matches!(api.output.output, crate::cli::output::Format::Table)
}

/// Prints a report: CSV or FOCUS as the API writes it, or a table with the totals.
async fn print_report(
    api: &Api,
    path: &str,
    mut query: Vec<(&str, Option<String>)>,
    format: Option<String>,
) -> anyhow::Result<()> {
    match format.as_deref() {
        Some("csv") | Some("focus") => {
            query.push(("format", format.clone()));
            print!("{}", api.get_text(path, &query).await?);
            Ok(())
        }
        None | Some("table") | Some("json") => {
            query.push(("format", Some("json".to_string())));
            let report = api.get(path, &query).await?;
            api.output.list(&report, "/items", COST_ITEM)?;
            if is_table(api) {
                let nanos = |field: &str| report[field].as_u64().unwrap_or_default();
                println!(
                    "billed: {}   burst premium: {}   pools: {}   idle: {} nano-dollars",
                    dollars(nanos("total_billed_nanos")),
                    dollars(nanos("total_burst_premium_nanos")),
                    dollars(nanos("total_pool_cost_nanos")),
                    report["total_idle_nanos"].as_i64().unwrap_or_default()
                );
            }
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!(
            "--format must be table, csv or focus, got {other:?}"
        )),
    }
}

pub async fn run_cost(command: CostCommand) -> anyhow::Result<()> {
    match command {
        CostCommand::Report {
            from,
            to,
            group_by,
            step,
            format,
            api,
        } => {
            let query = vec![
                ("from", from.map(|value| value.to_string())),
                ("to", to.map(|value| value.to_string())),
                ("group_by", group_by),
                ("step", step),
            ];
            print_report(&api, "/api/v1/cost-reports", query, format).await
        }
        CostCommand::Breakdown { from, to, api } => {
            let query = [
                ("from", from.map(|value| value.to_string())),
                ("to", to.map(|value| value.to_string())),
            ];
            let breakdown = api
                .get("/api/v1/cost-optimization/breakdown", &query)
                .await?;
            api.output.list(&breakdown, "/pools", POOL_ITEM)?;
            if is_table(&api) {
                let nanos = |field: &str| breakdown[field].as_u64().unwrap_or_default();
                println!(
                    "pools: {}   used: {}   idle: {} nano-dollars   billed: {}",
                    dollars(nanos("total_cost_nanos")),
                    dollars(nanos("total_attributed_nanos")),
                    breakdown["total_idle_nanos"].as_i64().unwrap_or_default(),
                    dollars(nanos("total_billed_nanos"))
                );
            }
            Ok(())
        }
        CostCommand::Recommendations { window, api } => {
            let found = api
                .get(
                    "/api/v1/cost-optimization/recommendations",
                    &[("window", window)],
                )
                .await?;
            api.output.list(&found, "/items", RECOMMENDATION)?;
            if is_table(&api) {
                for item in found["items"].as_array().into_iter().flatten() {
                    let evidence: Vec<String> = item["evidence"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|entry| format!("{}={}", text(&entry["name"]), entry["value"]))
                        .collect();
                    println!("{}: {}", text(&item["target"]), evidence.join(" "));
                }
            }
            Ok(())
        }
        CostCommand::Definition(command) => run_definition(command).await,
    }
}

async fn run_definition(command: DefinitionCommand) -> anyhow::Result<()> {
    match command {
        DefinitionCommand::Create {
            name,
            group_by,
            step,
            window,
            format,
            api,
        } => {
            let body = without_nulls(json!({
                "name": name,
                "group_by": group_by,
                "step": step,
                "window": window,
                "format": format,
            }));
            let created = api.post("/api/v1/cost-reports", body).await?;
            api.output.object(&created, DEFINITION)
        }
        DefinitionCommand::List { api } => {
            let found = api.get("/api/v1/cost-reports/definitions", &[]).await?;
            api.output.list(&found, "/items", DEFINITION)
        }
        DefinitionCommand::Run { id, format, api } => {
            let path = format!("/api/v1/cost-reports/{}", segment(&id));
            print_report(&api, &path, Vec::new(), format).await
        }
        DefinitionCommand::Delete { id, api } => {
            api.delete(&format!("/api/v1/cost-reports/{}", segment(&id)), &[])
                .await?;
            println!("deleted report definition {id}");
            Ok(())
        }
    }
}
