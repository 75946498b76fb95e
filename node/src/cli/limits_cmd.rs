//! `hodei quota get|set|usage|enforce|violations` and `hodei burst request|list|end|approve`,
//! over the REST API of any node.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::api::{Api, segment};
use crate::cli::output::{Column, Show, col};
use crate::cli::tenant_cmd::without_nulls;

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// A tenant's quota.
    Get {
        /// The tenant id.
        tenant: String,
        #[command(flatten)]
        api: Api,
    },
    /// Replace a tenant's quota (admin); dimensions left out take the configured default.
    Set {
        /// The tenant id.
        tenant: String,
        /// CPU in millicores (1000 = one core).
        #[arg(long)]
        cpu_m: Option<u64>,
        /// Memory in MiB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Whole GPUs.
        #[arg(long)]
        gpu: Option<u64>,
        /// Jobs running at once.
        #[arg(long)]
        max_concurrent_jobs: Option<u64>,
        /// Jobs waiting at once (beyond it a submit is refused with 429).
        #[arg(long)]
        max_pending_jobs: Option<u64>,
        /// A cap in one pool, `POOL=CPU_M,MEMORY_MB,GPU` (repeatable).
        #[arg(long = "pool-limit", value_parser = parse_pool_limit)]
        pool_limits: Vec<(String, Value)>,
        /// Daily cost budget in US dollars.
        #[arg(long)]
        daily_budget_usd: Option<f64>,
        #[command(flatten)]
        api: Api,
    },
    /// What a tenant runs and waits for, against its quota and burst ceiling.
    Usage {
        /// The tenant id.
        tenant: String,
        #[command(flatten)]
        api: Api,
    },
    /// Would a job of this size be admitted now? Changes nothing.
    Enforce {
        /// The tenant (default: the principal's, or `default` for admin).
        #[arg(long)]
        tenant: Option<String>,
        /// The job's CPU in millicores (1000 = one core).
        #[arg(long, default_value_t = 0)]
        cpu_m: u64,
        /// The job's memory in MiB.
        #[arg(long, default_value_t = 0)]
        memory_mb: u64,
        /// The job's GPUs.
        #[arg(long, default_value_t = 0)]
        gpu: u64,
        /// The pool it would run in (for per-pool limits).
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Recent submits and dispatches refused or queued by a quota, newest first.
    Violations {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// How many, 1-1000.
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Subcommand)]
pub enum BurstCommand {
    /// Ask for capacity above the quota for a time (premium price; may need approval).
    Request {
        /// The tenant id.
        tenant: String,
        /// The ceiling as a percentage of the quota, e.g. 150 for 1.5x.
        #[arg(long)]
        ceiling_percent: u64,
        /// How long, in seconds.
        #[arg(long)]
        duration_s: u64,
        /// Why (kept with the session).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        api: Api,
    },
    /// The tenant's current session and its history.
    List {
        /// The tenant id.
        tenant: String,
        #[command(flatten)]
        api: Api,
    },
    /// End the tenant's session now (or withdraw it before approval).
    End {
        /// The tenant id.
        tenant: String,
        #[command(flatten)]
        api: Api,
    },
    /// Approve a session that waits for approval (admin).
    Approve {
        /// The tenant id.
        tenant: String,
        /// The session id (`hodei burst list` shows it).
        session: String,
        #[command(flatten)]
        api: Api,
    },
}

fn parse_pool_limit(raw: &str) -> Result<(String, Value), String> {
    let usage = || format!("expected POOL=CPU_M,MEMORY_MB,GPU (numbers), got `{raw}`");
    let (pool, numbers) = raw.split_once('=').ok_or_else(usage)?;
    let numbers: Vec<u64> = numbers
        .split(',')
        .map(|number| number.trim().parse::<u64>().map_err(|_| usage()))
        .collect::<Result<_, _>>()?;
    let [cpu_m, memory_mb, gpu] = numbers[..] else {
        return Err(usage());
    };
    Ok((
        pool.to_string(),
        json!({ "cpu_m": cpu_m, "memory_mb": memory_mb, "gpu": gpu }),
    ))
}

const QUOTA: &[Column] = &[
    col("TENANT", "/tenant", Show::Text),
    col("CPU (m)", "/cpu_m", Show::Text),
    col("MEMORY (MiB)", "/memory_mb", Show::Text),
    col("GPU", "/gpu", Show::Text),
    col("MAX RUNNING", "/max_concurrent_jobs", Show::Text),
    col("MAX PENDING", "/max_pending_jobs", Show::Text),
    col("DAILY BUDGET ($)", "/daily_cost_budget_usd", Show::Text),
    col("WARNINGS", "/warnings", Show::Text),
];

const DIMENSION: &[Column] = &[
    col("DIMENSION", "/dimension", Show::Text),
    col("USED", "/used", Show::Text),
    col("QUOTA", "/quota", Show::Text),
    col("BURST CEILING", "/burst_ceiling", Show::Text),
    col("AVAILABLE", "/available", Show::Text),
];

const REASON: &[Column] = &[
    col("CODE", "/code", Show::Text),
    col("DIMENSION", "/dimension", Show::Text),
    col("USED", "/used", Show::Text),
    col("REQUESTED", "/requested", Show::Text),
    col("LIMIT", "/limit", Show::Text),
    col("MESSAGE", "/message", Show::Text),
];

const VIOLATION: &[Column] = &[
    col("WHEN", "/at_ms", Show::Time),
    col("TENANT", "/tenant", Show::Text),
    col("VERDICT", "/verdict", Show::Text),
    col("SOURCE", "/source", Show::Text),
    col("MESSAGE", "/message", Show::Text),
];

const BURST: &[Column] = &[
    col("SESSION", "/id", Show::Text),
    col("TENANT", "/tenant", Show::Text),
    col("CEILING (%)", "/ceiling_percentage", Show::Text),
    col("STATUS", "/status", Show::Text),
    col("DURATION", "/duration_ms", Show::Millis),
    col("STARTS", "/starts_at_ms", Show::Time),
    col("ENDS", "/ends_at_ms", Show::Time),
    col("REQUESTED BY", "/requested_by", Show::Text),
    col("APPROVED BY", "/approved_by", Show::Text),
    col("ENDED", "/ended_at_ms", Show::Time),
    col("END REASON", "/end_reason", Show::Text),
    col("REASON", "/reason", Show::Text),
];

pub async fn run_quota(command: QuotaCommand) -> anyhow::Result<()> {
    match command {
        QuotaCommand::Get { tenant, api } => {
            let quota = api.get(&quota_path(&tenant), &[]).await?;
            api.output.object(&quota, QUOTA)
        }
        QuotaCommand::Set {
            tenant,
            cpu_m,
            memory_mb,
            gpu,
            max_concurrent_jobs,
            max_pending_jobs,
            pool_limits,
            daily_budget_usd,
            api,
        } => {
            let mut body = json!({
                "cpu_m": cpu_m,
                "memory_mb": memory_mb,
                "gpu": gpu,
                "max_concurrent_jobs": max_concurrent_jobs,
                "max_pending_jobs": max_pending_jobs,
                "daily_cost_budget_usd": daily_budget_usd,
            });
            if !pool_limits.is_empty() {
                body["pool_limits"] = Value::Object(pool_limits.into_iter().collect());
            }
            let quota = api.put(&quota_path(&tenant), without_nulls(body)).await?;
            api.output.object(&quota, QUOTA)
        }
        QuotaCommand::Usage { tenant, api } => {
            let usage = api
                .get(&format!("/api/v1/tenants/{}/usage", segment(&tenant)), &[])
                .await?;
            api.output.list(&usage, "/dimensions", DIMENSION)?;
            if api.output.output == crate::cli::output::Format::Table {
                println!(
                    "pending {} of {}; burst: {}",
                    usage["pending_jobs"],
                    usage["max_pending_jobs"],
                    usage["burst"]["status"].as_str().unwrap_or("none")
                );
                let budget = &usage["budget"];
                if let Some(budget_nanos) = budget["daily_budget_nanos"].as_u64() {
                    println!(
                        "budget today: {} of {} ({:.0} %){}{}",
                        crate::cli::output::dollars(
                            budget["spent_today_nanos"].as_u64().unwrap_or_default()
                        ),
                        crate::cli::output::dollars(budget_nanos),
                        budget["used_ratio"].as_f64().unwrap_or_default() * 100.0,
                        budget["warned_percent"]
                            .as_u64()
                            .map(|level| format!("; warned at {level} %"))
                            .unwrap_or_default(),
                        if budget["exhausted"] == true {
                            "; its jobs wait until tomorrow (budget_exhausted)"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(())
        }
        QuotaCommand::Enforce {
            tenant,
            cpu_m,
            memory_mb,
            gpu,
            pool,
            api,
        } => {
            let body = json!({
                "tenant": tenant, "cpu_m": cpu_m, "memory_mb": memory_mb, "gpu": gpu, "pool": pool,
            });
            let decision = api
                .post("/api/v1/quotas/enforce", without_nulls(body))
                .await?;
            if api.output.output == crate::cli::output::Format::Table {
                println!(
                    "{}: {}",
                    decision["tenant"].as_str().unwrap_or_default(),
                    decision["verdict"].as_str().unwrap_or_default()
                );
            }
            api.output.list(&decision, "/reasons", REASON)
        }
        QuotaCommand::Violations { tenant, limit, api } => {
            let violations = api
                .get(
                    "/api/v1/quotas/violations",
                    &[
                        ("tenant", tenant),
                        ("limit", limit.map(|limit| limit.to_string())),
                    ],
                )
                .await?;
            api.output.list(&violations, "/items", VIOLATION)
        }
    }
}

fn quota_path(tenant: &str) -> String {
    format!("/api/v1/tenants/{}/quotas", segment(tenant))
}

fn burst_path(tenant: &str) -> String {
    format!("/api/v1/tenants/{}/burst", segment(tenant))
}

pub async fn run_burst(command: BurstCommand) -> anyhow::Result<()> {
    match command {
        BurstCommand::Request {
            tenant,
            ceiling_percent,
            duration_s,
            reason,
            api,
        } => {
            let body = json!({
                "ceiling_percentage": ceiling_percent,
                "duration_seconds": duration_s,
                "reason": reason,
            });
            let session = api.post(&burst_path(&tenant), body).await?;
            api.output.object(&session, BURST)
        }
        BurstCommand::List { tenant, api } => {
            let sessions = api.get(&burst_path(&tenant), &[]).await?;
            let mut all: Vec<Value> = sessions["current"]
                .as_object()
                .map(|_| sessions["current"].clone())
                .into_iter()
                .collect();
            all.extend(sessions["history"].as_array().cloned().unwrap_or_default());
            match api.output.output {
                crate::cli::output::Format::Table => {
                    api.output.list(&json!({ "items": all }), "/items", BURST)
                }
                _ => api.output.raw(&sessions),
            }
        }
        BurstCommand::End { tenant, api } => {
            let session = api.delete(&burst_path(&tenant), &[]).await?;
            api.output.object(&session, BURST)
        }
        BurstCommand::Approve {
            tenant,
            session,
            api,
        } => {
            let path = format!("{}/{}/approve", burst_path(&tenant), segment(&session));
            let session = api.post(&path, json!({})).await?;
            api.output.object(&session, BURST)
        }
    }
}
