//! `hodei job submit|get|list|cancel|logs|position|sla` and `hodei sla summary`, over the
//! REST API of any node.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::api::{Api, parse_pair, segment};
use crate::cli::output::{Column, Format, Show, col, now_ms};
use crate::cli::tenant_cmd::{more, without_nulls};

/// The exit code of `submit --wait` for a job that timed out (as `timeout(1)` uses).
pub const TIMED_OUT_EXIT: i32 = 124;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job: `hodei job submit [flags] -- PROGRAM ARGS...`, or many with --batch.
    Submit(Box<SubmitArgs>),
    /// Show one job, with why it waits (REASON) while it is pending.
    Get {
        /// The job id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// List jobs, newest first, with why each pending one waits.
    List {
        /// Only this tenant's jobs.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this queue's jobs.
        #[arg(long)]
        queue: Option<String>,
        /// pending | assigned | running | succeeded | failed | timed_out | cancelled
        #[arg(long)]
        state: Option<String>,
        /// Only jobs with this label, `key=value`.
        #[arg(long)]
        label: Option<String>,
        /// Oldest first instead.
        #[arg(long)]
        oldest_first: bool,
        /// Page size, 1-1000.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The `next_cursor` of an earlier page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Cancel a job (a running process is killed; the time it ran is billed).
    Cancel {
        /// The job id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Print the tail of a job's output (its last 64 KiB); -f follows it as it runs.
    Logs {
        /// The job id.
        id: String,
        /// Follow the job until it ends, printing what it writes as its worker reports it
        /// (every few seconds); exits with the job's code.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Which output: all (stdout and stderr interleaved), stdout or stderr.
        #[arg(long, default_value = "all", value_parser = ["all", "stdout", "stderr"])]
        stream: String,
        #[command(flatten)]
        api: Api,
    },
    /// Where a pending job stands in its queue, and every reason it waits.
    Position {
        /// The job id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// A job's SLA: its target, status, predicted start and history.
    Sla {
        /// The job id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The tenant (default: the principal's, or `default` for admin).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The queue (default `default`).
    #[arg(long)]
    pub queue: Option<String>,
    /// CPU in millicores, 1000 = one core (default 1000).
    #[arg(long)]
    pub cpu_m: Option<u64>,
    /// Memory in MiB (default 512).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Whole GPUs (default 0).
    #[arg(long)]
    pub gpu: Option<u64>,
    /// Dispatch order within a tenant: critical > high > normal (default) > low > batch.
    #[arg(long, value_parser = ["critical", "high", "normal", "low", "batch"])]
    pub priority: Option<String>,
    /// Kill the job after this many seconds (it ends `timed_out`).
    #[arg(long)]
    pub timeout_s: Option<u64>,
    /// Attempts after a lost worker before the job fails.
    #[arg(long)]
    pub max_retries: Option<u32>,
    /// A repeat with the same key returns the first job.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// An environment variable, `NAME=value` (repeatable).
    #[arg(long = "env", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Where the job runs (relative paths are taken from the worker's work dir).
    #[arg(long)]
    pub working_dir: Option<String>,
    /// A label, `key=value` (repeatable); `job list --label` finds it.
    #[arg(long = "label", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,
    /// Run only in this pool (repeatable: any of them).
    #[arg(long = "pool")]
    pub pools: Vec<String>,
    /// Time-to-start target: critical 5 min, high 15 min, medium 1 h, low 4 h,
    /// best_effort 24 h. (Priority orders jobs; the SLA level is a promise with a clock.)
    #[arg(long, alias = "sla", value_parser = ["critical", "high", "medium", "low", "best_effort"])]
    pub sla_level: Option<String>,
    /// Start within this long from now (`90s`, `10m`, `2h`), instead of the level's target.
    #[arg(long, value_parser = parse_after)]
    pub start_by: Option<u64>,
    /// Finish within this long from now (`90s`, `10m`, `2h`).
    #[arg(long, value_parser = parse_after)]
    pub finish_by: Option<u64>,
    /// Submit every job of a JSON file instead (`{"jobs": [...]}` or `[...]`, each as
    /// `POST /api/v1/jobs` takes it; at most 1,000).
    #[arg(long, conflicts_with = "argv")]
    pub batch: Option<std::path::PathBuf>,
    /// Show each state change; exit with the job's code (124 when it timed out).
    #[arg(long)]
    pub wait: bool,
    /// Print only the job's id (for scripts: `id=$(hodei job submit -q -- true)`).
    #[arg(long, short = 'q', conflicts_with = "wait")]
    pub quiet: bool,
    #[command(flatten)]
    pub api: Api,
    /// The program and its arguments.
    #[arg(last = true, required_unless_present = "batch")]
    pub argv: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum SlaCommand {
    /// SLA compliance per tenant and level.
    Summary {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// critical | high | medium | low | best_effort
        #[arg(long)]
        level: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

/// `90s`, `10m`, `2h`, `1d` from now, as ms since the epoch.
fn parse_after(raw: &str) -> Result<u64, String> {
    let usage = || format!("expected a duration such as 90s, 10m, 2h or 1d, got `{raw}`");
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(usage)?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().map_err(|_| usage())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(usage()),
    };
    number
        .checked_mul(unit_ms)
        .and_then(|ms| ms.checked_add(now_ms()))
        .ok_or_else(usage)
}

const JOBS: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("STATE", "/state", Show::Text),
    col("TENANT", "/tenant", Show::Text),
    col("QUEUE", "/queue", Show::Text),
    col("PRIORITY", "/priority", Show::Text),
    col("SUBMITTED", "/submitted_at_ms", Show::Time),
    col("WORKER", "/worker", Show::Text),
    col("EXIT", "/exit_code", Show::Text),
    col("COST", "/cost_nanos", Show::Dollars),
    col("REASON", "/pending_reason", Show::Text),
];

const JOB: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("STATE", "/state", Show::Text),
    col("SOURCE", "/source", Show::Text),
    col("REASON", "/pending_reason", Show::Text),
    col("QUEUE POSITION", "/queue_position", Show::Text),
    col("TENANT", "/tenant", Show::Text),
    col("QUEUE", "/queue", Show::Text),
    col("PRIORITY", "/priority", Show::Text),
    col("CPU (m)", "/resources/cpu_m", Show::Text),
    col("MEMORY (MiB)", "/resources/memory_mb", Show::Text),
    col("GPU", "/resources/gpu", Show::Text),
    col("ARGV", "/command/argv", Show::Text),
    col("LABELS", "/labels", Show::Pairs),
    col("SLA", "/sla/level", Show::Text),
    col("SLA STATUS", "/sla_status", Show::Text),
    col("ATTEMPT", "/attempt", Show::Text),
    col("WORKER", "/worker", Show::Text),
    col("POOL", "/pool", Show::Text),
    col("BURST", "/burst", Show::Text),
    col("EXIT CODE", "/exit_code", Show::Text),
    col("COST", "/cost_nanos", Show::Dollars),
    col("SUBMITTED", "/submitted_at_ms", Show::Time),
];

const TRANSITIONS: &[Column] = &[
    col("WHEN", "/at_ms", Show::Time),
    col("STATE", "/state", Show::Text),
    col("REASON", "/reason", Show::Text),
];

const BATCH: &[Column] = &[
    col("INDEX", "/index", Show::Text),
    col("STATUS", "/status", Show::Text),
    col("JOB", "/job/id", Show::Text),
    col("ERROR", "/error", Show::Text),
    col("FIELD", "/field", Show::Text),
];

const REASONS: &[Column] = &[
    col("CODE", "/code", Show::Text),
    col("WHY", "/message", Show::Text),
];

const SLA_HISTORY: &[Column] = &[
    col("WHEN", "/at_ms", Show::Time),
    col("STATUS", "/status", Show::Text),
];

const SLA_SUMMARY: &[Column] = &[
    col("TENANT", "/tenant", Show::Text),
    col("LEVEL", "/level", Show::Text),
    col("JOBS", "/jobs", Show::Text),
    col("MET", "/met", Show::Text),
    col("VIOLATED", "/violated", Show::Text),
    col("ON TRACK", "/on_track", Show::Text),
    col("AT RISK", "/at_risk", Show::Text),
    col("CRITICAL", "/critical", Show::Text),
    col("COMPLIANCE", "/compliance_ratio", Show::Percent),
];

fn job_path(id: &str, rest: &str) -> String {
    format!("/api/v1/jobs/{}{rest}", segment(id))
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "timed_out" | "cancelled")
}

/// The exit code for a finished job: 0 succeeded, its code (or 1) failed, 124 timed out,
/// 1 cancelled.
pub fn exit_code(job: &Value) -> i32 {
    match job["state"].as_str() {
        Some("succeeded") => 0,
        Some("timed_out") => TIMED_OUT_EXIT,
        _ => job["exit_code"]
            .as_i64()
            .filter(|code| *code != 0)
            .map_or(1, |code| code as i32),
    }
}

/// Polls the job until it is final, printing each transition once; then its output.
async fn follow(api: &Api, id: &str) -> anyhow::Result<i32> {
    let mut shown = 0;
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let job = loop {
        interval.tick().await;
        let job = api.get(&job_path(id, ""), &[]).await?;
        let transitions = job["transitions"].as_array().cloned().unwrap_or_default();
        for step in transitions.iter().skip(shown) {
            let at = crate::cli::output::utc(step["at_ms"].as_u64().unwrap_or_default());
            match step["reason"].as_str() {
                Some(reason) => println!(
                    "  {:<9} {at} ({reason})",
                    step["state"].as_str().unwrap_or_default()
                ),
                None => println!("  {:<9} {at}", step["state"].as_str().unwrap_or_default()),
            }
        }
        shown = transitions.len();
        if job["state"].as_str().is_some_and(is_final) {
            break job;
        }
    };
    let logs = api.get(&job_path(id, "/logs"), &[]).await?;
    print!("{}", logs["output_tail"].as_str().unwrap_or_default());
    Ok(exit_code(&job))
}

/// Prints the output tail as it grows until the job is final.
async fn follow_logs(api: &Api, id: &str, stream: &str) -> anyhow::Result<i32> {
    let mut printed = String::new();
    let mut settled = 0u32;
    let mut interval = tokio::time::interval(Duration::from_millis(500));
    loop {
        interval.tick().await;
        let logs = api
            .get(
                &job_path(id, "/logs"),
                &[("stream", Some(stream.to_string()))],
            )
            .await?;
        let tail = logs["output_tail"].as_str().unwrap_or_default();
        match tail.strip_prefix(printed.as_str()) {
            Some(new) => print!("{new}"),
            // The tail window moved past what was printed: print it whole.
            None => print!("{tail}"),
        }
        let unchanged = printed == tail;
        printed = tail.to_string();
        if logs["state"].as_str().is_some_and(is_final) {
            // The run's last output may commit just after its end: stop once it has not
            // changed for a poll, or a few seconds after the end.
            settled += 1;
            if unchanged && settled > 1 || settled > 10 {
                let job = api.get(&job_path(id, ""), &[]).await?;
                return Ok(exit_code(&job));
            }
        }
    }
}

fn submit_body(args: &SubmitArgs) -> Value {
    let SubmitArgs {
        tenant,
        queue,
        cpu_m,
        memory_mb,
        gpu,
        priority,
        timeout_s,
        max_retries,
        idempotency_key,
        env,
        working_dir,
        labels,
        pools,
        sla_level,
        start_by,
        finish_by,
        argv,
        ..
    } = args;
    let resources = (cpu_m.is_some() || memory_mb.is_some() || gpu.is_some()).then(|| {
        json!({
            "cpu_m": cpu_m.unwrap_or(1_000),
            "memory_mb": memory_mb.unwrap_or(512),
            "gpu": gpu.unwrap_or(0),
        })
    });
    let sla = (sla_level.is_some() || start_by.is_some() || finish_by.is_some()).then(|| {
        without_nulls(
            json!({ "level": sla_level, "start_by_ms": start_by, "finish_by_ms": finish_by }),
        )
    });
    let mut body = json!({
        "tenant": tenant,
        "queue": queue,
        "priority": priority,
        "resources": resources,
        "command": without_nulls(json!({
            "argv": argv,
            "env": env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "working_dir": working_dir,
            "timeout_s": timeout_s,
        })),
        "labels": labels.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "max_retries": max_retries,
        "idempotency_key": idempotency_key,
        "sla": sla,
    });
    if !pools.is_empty() {
        body["pool_selector"] = json!(pools);
    }
    without_nulls(body)
}

/// Reads a batch file: `{"jobs": [...]}` or a bare list.
fn batch_body(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    let parsed: Value = serde_json::from_str(&text)
        .map_err(|error| anyhow::anyhow!("{} is not JSON: {error}", path.display()))?;
    Ok(match parsed {
        Value::Array(jobs) => json!({ "jobs": jobs }),
        other => other,
    })
}

/// `job submit`: one job (printed, its id alone with -q, or followed with --wait), or a
/// batch file.
async fn submit(args: SubmitArgs) -> anyhow::Result<i32> {
    if let Some(path) = &args.batch {
        let results = args
            .api
            .post("/api/v1/jobs/batch", batch_body(path)?)
            .await?;
        if args.api.output.output == Format::Table {
            println!(
                "accepted {}, refused {}",
                results["accepted"], results["refused"]
            );
        }
        args.api.output.list(&results, "/results", BATCH)?;
        return Ok(i32::from(results["refused"].as_u64().unwrap_or(0) > 0));
    }
    let body = submit_body(&args);
    let SubmitArgs {
        wait, quiet, api, ..
    } = args;
    let submitted = api.post("/api/v1/jobs", body).await?;
    let job = &submitted["job"];
    if quiet {
        println!("{}", job["id"].as_str().unwrap_or_default());
        return Ok(0);
    }
    if !wait {
        match api.output.output {
            Format::Table => api
                .output
                .list(&json!({ "items": [job] }), "/items", JOBS)?,
            _ => api.output.raw(&submitted)?,
        }
        return Ok(0);
    }
    let id = job["id"].as_str().unwrap_or_default().to_string();
    println!("{id}");
    follow(&api, &id).await
}

/// Runs a job command; returns the process exit code (the job's, with `--wait` or `-f`).
pub async fn run(command: JobCommand) -> anyhow::Result<i32> {
    match command {
        JobCommand::Submit(args) => submit(*args).await,
        JobCommand::Get { id, api } => {
            let job = api.get(&job_path(&id, ""), &[]).await?;
            api.output.object(&job, JOB)?;
            if api.output.output == Format::Table {
                println!();
                api.output.list(&job, "/transitions", TRANSITIONS)?;
            }
            Ok(0)
        }
        JobCommand::List {
            tenant,
            queue,
            state,
            label,
            oldest_first,
            limit,
            cursor,
            api,
        } => {
            let mut page = api
                .get(
                    "/api/v1/jobs",
                    &[
                        ("tenant", tenant),
                        ("queue", queue),
                        ("state", state),
                        ("label", label),
                        (
                            "order",
                            Some(if oldest_first { "oldest" } else { "newest" }.to_string()),
                        ),
                        ("limit", Some(limit.to_string())),
                        ("cursor", cursor),
                    ],
                )
                .await?;
            if api.output.output == Format::Table {
                // The REASON column: a pending job's first reason, from the job itself.
                if let Some(items) = page["items"].as_array_mut() {
                    for item in items.iter_mut().filter(|item| item["state"] == "pending") {
                        let id = item["id"].as_str().unwrap_or_default().to_string();
                        if let Ok(full) = api.get(&job_path(&id, ""), &[]).await {
                            item["pending_reason"] = full["pending_reason"].clone();
                        }
                    }
                }
            }
            api.output.list(&page, "/items", JOBS)?;
            more(&api, &page);
            Ok(0)
        }
        JobCommand::Cancel { id, api } => {
            let job = api.post(&job_path(&id, "/cancel"), json!({})).await?;
            match api.output.output {
                Format::Table => api
                    .output
                    .list(&json!({ "items": [job] }), "/items", JOBS)?,
                _ => api.output.raw(&job)?,
            }
            Ok(0)
        }
        JobCommand::Logs {
            id,
            follow: true,
            stream,
            api,
        } => follow_logs(&api, &id, &stream).await,
        JobCommand::Logs {
            id, stream, api, ..
        } => {
            let logs = api
                .get(&job_path(&id, "/logs"), &[("stream", Some(stream))])
                .await?;
            match api.output.output {
                Format::Table => print!("{}", logs["output_tail"].as_str().unwrap_or_default()),
                _ => api.output.raw(&logs)?,
            }
            Ok(0)
        }
        JobCommand::Position { id, api } => {
            let position = api.get(&job_path(&id, "/position"), &[]).await?;
            if api.output.output == Format::Table {
                println!(
                    "job {} is {} in queue {}; position {}",
                    id,
                    position["state"].as_str().unwrap_or_default(),
                    position["queue"].as_str().unwrap_or_default(),
                    position["position"]
                );
            }
            api.output.list(&position, "/reasons", REASONS)?;
            Ok(0)
        }
        JobCommand::Sla { id, api } => {
            let sla = api.get(&job_path(&id, "/sla"), &[]).await?;
            api.output.object(
                &sla,
                &[
                    col("ID", "/id", Show::Text),
                    col("LEVEL", "/level", Show::Text),
                    col("STATUS", "/status", Show::Text),
                    col("START BY", "/target_start_ms", Show::Time),
                    col("FINISH BY", "/finish_by_ms", Show::Time),
                    col("PREDICTED START", "/predicted_start_ms", Show::Time),
                ],
            )?;
            if api.output.output == Format::Table {
                api.output.list(&sla, "/history", SLA_HISTORY)?;
            }
            Ok(0)
        }
    }
}

pub async fn run_sla(command: SlaCommand) -> anyhow::Result<()> {
    match command {
        SlaCommand::Summary { tenant, level, api } => {
            let summary = api
                .get(
                    "/api/v1/sla/summary",
                    &[("tenant", tenant), ("level", level)],
                )
                .await?;
            api.output.list(&summary, "/items", SLA_SUMMARY)
        }
    }
}
