//! `hodei pool ...`, `hodei worker list` and `hodei queue ...`, over the REST API of any
//! node.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::api::{Api, pairs_object, parse_pair, segment};
use crate::cli::output::{Column, Format, Show, col};
use crate::cli::tenant_cmd::without_nulls;

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool.
    Create {
        /// The pool id.
        id: String,
        /// static (agents an operator starts) | dynamic (sized between min and max).
        #[arg(long = "type")]
        pool_type: Option<String>,
        /// static | process (`hodei worker` children of the leader) | simulated.
        #[arg(long)]
        provider: Option<String>,
        /// The fewest workers (dynamic pools).
        #[arg(long)]
        min: Option<u32>,
        /// The most workers (dynamic pools).
        #[arg(long)]
        max: Option<u32>,
        /// The size to start with (between min and max).
        #[arg(long)]
        desired: Option<u32>,
        /// Each worker's CPU in millicores.
        #[arg(long)]
        cpu_m: Option<u64>,
        /// Each worker's memory in MiB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Each worker's GPUs.
        #[arg(long)]
        gpu: Option<u64>,
        /// A label, `key=value` (repeatable); jobs select pools by label.
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        api: Api,
    },
    /// List pools.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Show one pool.
    Get {
        /// The pool id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Change a pool's bounds, worker shape or labels.
    Update {
        /// The pool id.
        id: String,
        /// The fewest workers (dynamic pools).
        #[arg(long)]
        min: Option<u32>,
        /// The most workers (dynamic pools).
        #[arg(long)]
        max: Option<u32>,
        /// Each worker's CPU in millicores.
        #[arg(long)]
        cpu_m: Option<u64>,
        /// Each worker's memory in MiB.
        #[arg(long)]
        memory_mb: Option<u64>,
        /// Each worker's GPUs.
        #[arg(long)]
        gpu: Option<u64>,
        /// Replace every label with these (`key=value`, repeatable).
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        api: Api,
    },
    /// Set a dynamic pool's desired size now (static pools: `pool static --size`).
    Resize {
        /// The pool id.
        id: String,
        /// The number of workers to reach now, within [min, max].
        desired: u32,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a pool (refused while a queue uses it or a job runs in it).
    Delete {
        /// The pool id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// A pool's state and history; with an ACTION (activate | suspend | resume | drain |
    /// decommission), apply it.
    Lifecycle {
        /// The pool id.
        id: String,
        /// activate | suspend | resume | drain | decommission (without one: the state and history).
        action: Option<String>,
        /// Why (kept in the history).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// A pool's prices, burst premium and tier percentages; with a flag, change them
    /// (from now on: runs before keep the old prices).
    Pricing {
        /// The pool id.
        id: String,
        /// USD per CPU core-hour.
        #[arg(long)]
        cpu_core_hour_usd: Option<f64>,
        /// USD per GB-hour of memory.
        #[arg(long)]
        memory_gb_hour_usd: Option<f64>,
        /// USD per GPU-hour.
        #[arg(long)]
        gpu_hour_usd: Option<f64>,
        /// What burst jobs pay, in percent of the price (100 to 1000).
        #[arg(long)]
        burst_premium_percent: Option<u32>,
        /// What a tier pays, `tier=percent` (free, standard, premium, enterprise; repeatable).
        #[arg(long = "tier", value_parser = parse_pair)]
        tiers: Vec<(String, String)>,
        #[command(flatten)]
        api: Api,
    },
    /// A pool's autoscaling: policies, triggers, cooldown, history, evaluations.
    #[command(subcommand)]
    Scaling(crate::cli::scaling_cmd::ScalingCommand),
    /// The workers of a pool.
    Workers {
        /// The pool id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Size, utilization, jobs, allocation latency and provisioning of a pool.
    Metrics {
        /// The pool id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// A static pool's settings; with flags, change them.
    Static {
        /// The pool id.
        id: String,
        /// The number of agents the pool should have.
        #[arg(long)]
        size: Option<u32>,
        /// Worker ids expected to register (repeatable).
        #[arg(long = "expected-worker")]
        expected_workers: Vec<String>,
        /// Seconds between health checks of its workers.
        #[arg(long)]
        health_check_interval_s: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// A dynamic pool's settings; with flags, change them.
    Dynamic {
        /// The pool id.
        id: String,
        /// The fewest workers.
        #[arg(long)]
        min: Option<u32>,
        /// The most workers.
        #[arg(long)]
        max: Option<u32>,
        /// The number of workers to reach now, within [min, max].
        #[arg(long)]
        desired: Option<u32>,
        /// Seconds a worker beyond min may stay idle before it stops.
        #[arg(long)]
        idle_timeout_s: Option<u64>,
        /// Seconds a started worker has to register before it is replaced.
        #[arg(long)]
        provision_timeout_s: Option<u64>,
        /// Workers starting at once.
        #[arg(long)]
        max_provisioning: Option<u32>,
        /// Seconds a drain waits for running jobs before re-queueing them.
        #[arg(long)]
        drain_timeout_s: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Every worker (or a pool's) with its state, capacity and use.
    List {
        /// Only this pool's workers.
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// The job fence a worker agent starts (`hodei worker` runs it itself): kills its
    /// jobs' process groups when the agent's lease ends or the agent is gone.
    #[command(hide = true)]
    Fence,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queues.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Show one queue.
    Get {
        /// The queue id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Create a queue over some pools.
    Create {
        /// The queue id.
        id: String,
        /// A pool it dispatches to (repeatable; default the default pool).
        #[arg(long = "pool")]
        pools: Vec<String>,
        /// weighted_fair | strict_priority | fifo
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Change a queue's pools or policy.
    Update {
        /// The queue id.
        id: String,
        /// A pool it dispatches to (repeatable; replaces the list).
        #[arg(long = "pool")]
        pools: Vec<String>,
        /// weighted_fair | strict_priority | fifo
        #[arg(long)]
        policy: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a queue (refused while jobs wait or run in it).
    Delete {
        /// The queue id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Backlog, running jobs, dispatch rate and expected wait (one queue or all).
    Status {
        /// One queue (default: every queue).
        id: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// Each tenant's fair share against what it actually got, and Jain's index.
    FairShare {
        /// The queue id.
        id: String,
        /// The window in seconds (default 300).
        #[arg(long)]
        window_s: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
}

const POOL: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("TYPE", "/type", Show::Text),
    col("PROVIDER", "/provider", Show::Text),
    col("STATE", "/state", Show::Text),
    col("MIN", "/min_size", Show::Text),
    col("MAX", "/max_size", Show::Text),
    col("DESIRED", "/desired_size", Show::Text),
    col("WORKERS", "/workers", Show::Pairs),
    col("CPU (m)", "/worker_shape/cpu_m", Show::Text),
    col("MEMORY (MiB)", "/worker_shape/memory_mb", Show::Text),
    col("GPU", "/worker_shape/gpu", Show::Text),
    col("LABELS", "/labels", Show::Pairs),
    col("CREATED", "/created_at_ms", Show::Time),
];

const WORKER: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("POOL", "/pool", Show::Text),
    col("STATE", "/state", Show::Text),
    col("JOBS", "/jobs", Show::Text),
    col("CPU USED (m)", "/used/cpu_m", Show::Text),
    col("CPU (m)", "/capacity/cpu_m", Show::Text),
    col("MEMORY USED (MiB)", "/used/memory_mb", Show::Text),
    col("MEMORY (MiB)", "/capacity/memory_mb", Show::Text),
    col("SINCE", "/state_changed_at_ms", Show::Time),
];

const PRICING: &[Column] = &[
    col("POOL", "/pool", Show::Text),
    col("CPU CORE-HOUR (USD)", "/cpu_core_hour_usd", Show::Text),
    col("MEMORY GB-HOUR (USD)", "/memory_gb_hour_usd", Show::Text),
    col("GPU-HOUR (USD)", "/gpu_hour_usd", Show::Text),
    col("BURST PREMIUM (%)", "/burst_premium_percent", Show::Text),
    col("TIER PERCENT", "/tier_percent", Show::Pairs),
];

const TRANSITION: &[Column] = &[
    col("WHEN", "/at_ms", Show::Time),
    col("FROM", "/from", Show::Text),
    col("TO", "/to", Show::Text),
    col("ACTION", "/action", Show::Text),
    col("BY", "/by", Show::Text),
    col("REASON", "/reason", Show::Text),
];

const QUEUE: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("POLICY", "/policy", Show::Text),
    col("POOLS", "/pools", Show::Text),
    col("PENDING", "/pending", Show::Text),
    col("CREATED", "/created_at_ms", Show::Time),
];

const STATUS: &[Column] = &[
    col("QUEUE", "/queue", Show::Text),
    col("POLICY", "/policy", Show::Text),
    col("PENDING", "/pending", Show::Text),
    col("RUNNING", "/running", Show::Text),
    col("OLDEST WAIT", "/oldest_pending_age_s", Show::Seconds),
    col("DISPATCH/s", "/dispatch_rate_per_s", Show::Number),
    col("EST. WAIT", "/estimated_wait_s", Show::Seconds),
];

const SHARE: &[Column] = &[
    col("TENANT", "/tenant", Show::Text),
    col("WEIGHT", "/weight", Show::Text),
    col("PENDING NOW", "/backlogged", Show::Text),
    col("IN WINDOW", "/backlogged_in_window", Show::Text),
    col("FAIR SHARE", "/fair_share", Show::Percent),
    col("ACTUAL", "/actual_share", Show::Percent),
    col("PENDING", "/pending", Show::Text),
    col("RUNNING", "/running", Show::Text),
];

fn pool_path(id: &str, rest: &str) -> String {
    format!("/api/v1/pools/{}{rest}", segment(id))
}

fn shape(cpu_m: Option<u64>, memory_mb: Option<u64>, gpu: Option<u64>) -> Value {
    if cpu_m.is_none() && memory_mb.is_none() && gpu.is_none() {
        return Value::Null;
    }
    json!({
        "cpu_m": cpu_m.unwrap_or(1_000),
        "memory_mb": memory_mb.unwrap_or(1_024),
        "gpu": gpu.unwrap_or(0),
    })
}

pub async fn run_pool(command: PoolCommand) -> anyhow::Result<()> {
    match command {
        PoolCommand::Create {
            id,
            pool_type,
            provider,
            min,
            max,
            desired,
            cpu_m,
            memory_mb,
            gpu,
            labels: pairs,
            api,
        } => {
            let body = json!({
                "id": id, "type": pool_type, "provider": provider, "min_size": min,
                "max_size": max, "desired": desired, "worker_shape": shape(cpu_m, memory_mb, gpu),
                "labels": pairs_object(pairs),
            });
            let pool = api.post("/api/v1/pools", without_nulls(body)).await?;
            api.output.object(&pool, POOL)
        }
        PoolCommand::List { api } => {
            let pools = api.get("/api/v1/pools", &[]).await?;
            api.output.list(&pools, "/items", POOL)
        }
        PoolCommand::Get { id, api } => {
            let pool = api.get(&pool_path(&id, ""), &[]).await?;
            api.output.object(&pool, POOL)
        }
        PoolCommand::Update {
            id,
            min,
            max,
            cpu_m,
            memory_mb,
            gpu,
            labels: pairs,
            api,
        } => {
            // The API replaces the whole shape: the dimensions not given keep their values.
            let worker_shape = if cpu_m.is_some() || memory_mb.is_some() || gpu.is_some() {
                let current = api.get(&pool_path(&id, ""), &[]).await?;
                let now = |dimension: &str| current["worker_shape"][dimension].as_u64();
                json!({
                    "cpu_m": cpu_m.or(now("cpu_m")).unwrap_or(1_000),
                    "memory_mb": memory_mb.or(now("memory_mb")).unwrap_or(1_024),
                    "gpu": gpu.or(now("gpu")).unwrap_or(0),
                })
            } else {
                Value::Null
            };
            let body = json!({
                "min_size": min, "max_size": max, "worker_shape": worker_shape,
                "labels": pairs_object(pairs),
            });
            let pool = api.patch(&pool_path(&id, ""), without_nulls(body)).await?;
            api.output.object(&pool, POOL)
        }
        PoolCommand::Resize { id, desired, api } => {
            let settings = api
                .put(&pool_path(&id, "/dynamic"), json!({ "desired": desired }))
                .await?;
            api.output
                .raw_or_line(&settings, &format!("pool {id}: desired {desired}"))
        }
        PoolCommand::Delete { id, api } => {
            let answer = api.delete(&pool_path(&id, ""), &[]).await?;
            api.output
                .raw_or_line(&answer, &format!("deleted pool {id}"))
        }
        PoolCommand::Lifecycle {
            id,
            action,
            reason,
            api,
        } => lifecycle(&api, &id, action, reason).await,
        PoolCommand::Scaling(command) => crate::cli::scaling_cmd::run(command).await,
        PoolCommand::Pricing {
            id,
            cpu_core_hour_usd,
            memory_gb_hour_usd,
            gpu_hour_usd,
            burst_premium_percent,
            tiers,
            api,
        } => {
            let path = pool_path(&id, "/pricing");
            let unchanged = cpu_core_hour_usd.is_none()
                && memory_gb_hour_usd.is_none()
                && gpu_hour_usd.is_none()
                && burst_premium_percent.is_none()
                && tiers.is_empty();
            let answer = if unchanged {
                api.get(&path, &[]).await?
            } else {
                let mut body = without_nulls(json!({
                    "cpu_core_hour_usd": cpu_core_hour_usd,
                    "memory_gb_hour_usd": memory_gb_hour_usd,
                    "gpu_hour_usd": gpu_hour_usd,
                    "burst_premium_percent": burst_premium_percent,
                }));
                if !tiers.is_empty() {
                    let now = api.get(&path, &[]).await?;
                    let mut percents = now["tier_percent"].clone();
                    for (tier, percent) in tiers {
                        let percent: u32 = percent.parse().map_err(|_| {
                            anyhow::anyhow!(
                                "--tier {tier}={percent}: the percent is a whole number"
                            )
                        })?;
                        if percents.get(&tier).is_none() {
                            anyhow::bail!("--tier {tier}: free, standard, premium or enterprise");
                        }
                        percents[&tier] = json!(percent);
                    }
                    body["tier_percent"] = percents;
                }
                api.put(&path, body).await?
            };
            api.output.object(&answer, PRICING)
        }
        PoolCommand::Workers { id, api } => {
            let workers = api.get(&pool_path(&id, "/workers"), &[]).await?;
            api.output.list(&workers, "/items", WORKER)
        }
        PoolCommand::Metrics { id, api } => {
            let metrics = api.get(&pool_path(&id, "/metrics"), &[]).await?;
            api.output.raw(&metrics)
        }
        PoolCommand::Static {
            id,
            size,
            expected_workers,
            health_check_interval_s,
            api,
        } => {
            let mut body = without_nulls(
                json!({ "size": size, "health_check_interval_s": health_check_interval_s }),
            );
            if !expected_workers.is_empty() {
                body["expected_workers"] = json!(expected_workers);
            }
            settings(&api, &id, "/static", body).await
        }
        PoolCommand::Dynamic {
            id,
            min,
            max,
            desired,
            idle_timeout_s,
            provision_timeout_s,
            max_provisioning,
            drain_timeout_s,
            api,
        } => {
            let body = without_nulls(json!({
                "min_size": min, "max_size": max, "desired": desired,
                "idle_timeout_s": idle_timeout_s, "provision_timeout_s": provision_timeout_s,
                "max_provisioning": max_provisioning, "drain_timeout_s": drain_timeout_s,
            }));
            settings(&api, &id, "/dynamic", body).await
        }
    }
}

/// A pool's lifecycle: its state and history, after applying `action` if given.
async fn lifecycle(
    api: &Api,
    id: &str,
    action: Option<String>,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let path = pool_path(id, "/lifecycle");
    let lifecycle = match action {
        Some(action) => {
            let body = json!({ "action": action, "reason": reason });
            api.post(&path, without_nulls(body)).await?
        }
        None => api.get(&path, &[]).await?,
    };
    if api.output.output == Format::Table {
        println!(
            "pool {}: {} (allowed: {})",
            lifecycle["pool"].as_str().unwrap_or_default(),
            lifecycle["state"].as_str().unwrap_or_default(),
            crate::cli::output::cell(lifecycle.get("allowed_actions"), Show::Text, 0)
        );
    }
    api.output.list(&lifecycle, "/history", TRANSITION)
}

/// A pool's static or dynamic settings: read them when `changes` is empty, else change
/// those fields.
async fn settings(api: &Api, id: &str, kind: &str, changes: Value) -> anyhow::Result<()> {
    let path = pool_path(id, kind);
    let settings = if changes.as_object().is_some_and(|fields| fields.is_empty()) {
        api.get(&path, &[]).await?
    } else {
        api.put(&path, changes).await?
    };
    api.output.raw(&settings)
}

pub async fn run_worker(command: WorkerCommand) -> anyhow::Result<()> {
    match command {
        WorkerCommand::List { pool, api } => {
            let workers = api.get("/api/v1/workers", &[("pool", pool)]).await?;
            api.output.list(&workers, "/items", WORKER)
        }
        WorkerCommand::Fence => crate::worker::fence::serve(),
    }
}

fn queue_path(id: &str, rest: &str) -> String {
    format!("/api/v1/queues/{}{rest}", segment(id))
}

pub async fn run_queue(command: QueueCommand) -> anyhow::Result<()> {
    match command {
        QueueCommand::List { api } => {
            let queues = api.get("/api/v1/queues", &[]).await?;
            api.output.list(&queues, "/items", QUEUE)
        }
        QueueCommand::Get { id, api } => {
            let queue = api.get(&queue_path(&id, ""), &[]).await?;
            api.output.object(&queue, QUEUE)
        }
        QueueCommand::Create {
            id,
            pools,
            policy,
            api,
        } => {
            let mut body = json!({ "id": id, "policy": policy });
            if !pools.is_empty() {
                body["pools"] = json!(pools);
            }
            let queue = api.post("/api/v1/queues", without_nulls(body)).await?;
            api.output.object(&queue, QUEUE)
        }
        QueueCommand::Update {
            id,
            pools,
            policy,
            api,
        } => {
            let mut body = json!({ "policy": policy });
            if !pools.is_empty() {
                body["pools"] = json!(pools);
            }
            let queue = api.patch(&queue_path(&id, ""), without_nulls(body)).await?;
            api.output.object(&queue, QUEUE)
        }
        QueueCommand::Delete { id, api } => {
            let answer = api.delete(&queue_path(&id, ""), &[]).await?;
            api.output
                .raw_or_line(&answer, &format!("deleted queue {id}"))
        }
        QueueCommand::Status { id: Some(id), api } => {
            let status = api.get(&queue_path(&id, "/status"), &[]).await?;
            api.output.object(&status, STATUS)
        }
        QueueCommand::Status { id: None, api } => {
            let statuses = api.get("/api/v1/queues/status", &[]).await?;
            api.output.list(&statuses, "/items", STATUS)
        }
        QueueCommand::FairShare { id, window_s, api } => {
            let share = api
                .get(
                    &queue_path(&id, "/fair-share"),
                    &[("window_s", window_s.map(|window| window.to_string()))],
                )
                .await?;
            if api.output.output == Format::Table {
                println!(
                    "queue {} ({}), last {} s, Jain's index {}",
                    share["queue"].as_str().unwrap_or_default(),
                    share["policy"].as_str().unwrap_or_default(),
                    share["window_s"],
                    share["jain_index"]
                );
            }
            api.output.list(&share, "/tenants", SHARE)
        }
    }
}
