//! `hodei-chaos bench`: drives a running cluster over its public gRPC API with many
//! concurrent clients and reports throughput and latency percentiles per operation.
//!
//! Scenarios:
//! - `submit`: `SubmitJob` (or `SubmitJobs` with `--batch`), jobs that stay pending unless
//!   a pool runs them;
//! - `read`: `GetJob`, `ListJobs`, `GetTenantMetrics` and `GetQueueStatus` over jobs
//!   submitted first;
//! - `mixed`: half the clients submit, half read, while a simulated pool completes jobs;
//! - `soak`: holds `--target` jobs running at once on a simulated pool across many
//!   tenants (new jobs arrive as old ones finish), and reports the concurrency reached,
//!   the dispatch latency (pending to assigned) and the API latency during it.
//! - `history`: fills the job history with `--target` finished jobs (or tops it up to
//!   that), waits until they left memory, then measures reads of them (by id, filtered
//!   list pages) and the reports (fair share, SLA summary, pool metrics) polled by
//!   `--clients` clients, and single submissions beside the pollers and without them.
//! - `agents`: like `soak`, on real `hodei worker` agents of the queue `default`
//!   (`pool-default`) that the cluster already has: jobs go through the worker hub, the
//!   agents' streams, their heartbeats and their per-job reports. It reports completions
//!   per second and the time from an assignment's commit to the agent's start report.
//!
//! The bench sets up what it needs through the API: tenants `bench-0..` with quotas large
//! enough, and (except `agents`) a simulated pool and a queue `bench-<scenario>` on it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hodei_proto::v1 as pb;
use hodei_proto::v1::job_service_client::JobServiceClient;
use hodei_proto::v1::queue_service_client::QueueServiceClient;
use hodei_proto::v1::resource_pool_service_client::ResourcePoolServiceClient;
use hodei_proto::v1::tenant_service_client::TenantServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::stats::{bucket_delta, histogram_buckets, histogram_quantile, millis, summarize};

/// Each scenario has its own queue and simulated pool, `bench-<scenario>`; `agents` uses
/// the cluster's `default` queue and its pool of real agents.
pub(crate) fn queue_id(scenario: Scenario) -> String {
    match scenario {
        Scenario::Agents => "default".to_string(),
        other => format!("bench-{}", other.as_str()),
    }
}

pub(crate) fn pool_id(scenario: Scenario) -> String {
    match scenario {
        Scenario::Agents => "pool-default".to_string(),
        other => format!("bench-{}", other.as_str()),
    }
}
/// One virtual worker: 64 cores, 256 GiB.
const WORKER_CPU_M: u64 = 64_000;
const WORKER_MEMORY_MB: u64 = 262_144;
/// One bench job: 100 m, 64 MiB (640 per virtual worker).
const JOB_CPU_M: u64 = 100;
const JOB_MEMORY_MB: u64 = 64;
/// One `agents` job: 1 m, 1 MiB, so that an agent's capacity (`--cpu-m`) sets how many
/// run on it at once.
const AGENT_JOB_CPU_M: u64 = 1;
const AGENT_JOB_MEMORY_MB: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Submit,
    Read,
    Mixed,
    Soak,
    Agents,
    History,
    Flood,
}

impl Scenario {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        match raw {
            "submit" => Ok(Scenario::Submit),
            "read" => Ok(Scenario::Read),
            "mixed" => Ok(Scenario::Mixed),
            "soak" | "soak-10k" => Ok(Scenario::Soak),
            "agents" => Ok(Scenario::Agents),
            "history" => Ok(Scenario::History),
            "flood" => Ok(Scenario::Flood),
            other => bail!(
                "unknown scenario `{other}`: use submit, read, mixed, soak, agents, history or flood"
            ),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Submit => "submit",
            Scenario::Read => "read",
            Scenario::Mixed => "mixed",
            Scenario::Soak => "soak",
            Scenario::Agents => "agents",
            Scenario::History => "history",
            Scenario::Flood => "flood",
        }
    }

    /// Whether submitters are held to keep about `--target` jobs in the queue.
    fn holds_target(self) -> bool {
        matches!(self, Scenario::Soak | Scenario::Agents)
    }
}

/// The `bench` command's arguments (also built directly by the other measurements).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct BenchSettings {
    /// submit | read | mixed | soak (or soak-10k) | agents | history | flood
    #[arg(value_parser = parse_scenario)]
    pub scenario: Scenario,
    /// gRPC addresses of the nodes, comma-separated (clients spread over them).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093"
    )]
    pub nodes: Vec<String>,
    /// Concurrent clients, each with one call in flight.
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// Measured seconds (at most, with --count).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Jobs per submit call (1: SubmitJob; up to 1000: SubmitJobs).
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Tenants the load is spread over.
    #[arg(long, default_value_t = 10)]
    pub tenants: u32,
    /// Mean simulated run time of a job, in milliseconds (each drawn uniformly from half to
    /// one and a half times it).
    #[arg(long, default_value_t = 1_000)]
    pub job_ms: u64,
    /// soak: jobs to hold running at once.
    #[arg(long, default_value_t = 10_000)]
    pub target: u64,
    /// Virtual workers of the bench pool (default: none for submit and read, 4 for mixed,
    /// enough for the target for soak).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Prometheus endpoints of the nodes (host:port, comma-separated), scraped for the
    /// dispatch latency the leader observes; none: not reported.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Stop after this many measured calls (all operations, all clients), if --seconds
    /// have not passed first.
    #[arg(long)]
    pub count: Option<u64>,
}

fn parse_scenario(raw: &str) -> Result<Scenario, String> {
    Scenario::parse(raw).map_err(|error| error.to_string())
}

impl BenchSettings {
    /// Checks the combination of arguments; each problem names its flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.nodes.is_empty() || self.nodes.iter().any(|node| node.trim().is_empty()) {
            bail!("--nodes: give at least one gRPC address, e.g. 127.0.0.1:9091,127.0.0.1:9092");
        }
        if !(1..=1000).contains(&self.batch) {
            bail!(
                "--batch: must be between 1 and 1000 (the server's limit), got {}",
                self.batch
            );
        }
        if !(1..=4096).contains(&self.clients) {
            bail!(
                "--clients: must be between 1 and 4096, got {}",
                self.clients
            );
        }
        if self.seconds == 0 {
            bail!("--seconds: must be at least 1");
        }
        if self.count == Some(0) {
            bail!("--count: must be at least 1 call");
        }
        if !(1..=1000).contains(&self.tenants) {
            bail!(
                "--tenants: must be between 1 and 1000, got {}",
                self.tenants
            );
        }
        if self.scenario.holds_target() && self.target == 0 {
            bail!("--target: the soak needs at least 1 job to hold running");
        }
        if self.scenario == Scenario::Mixed && self.clients < 2 {
            bail!("--clients: mixed needs at least 2 (half submit, half read)");
        }
        Ok(())
    }

    /// Virtual workers needed to hold the soak's target (with a margin of a tenth).
    pub fn soak_workers(&self) -> u32 {
        let per_worker = WORKER_CPU_M / JOB_CPU_M;
        (self.target.saturating_mul(11) / 10)
            .div_ceil(per_worker)
            .max(1) as u32
    }
}

fn endpoint(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

async fn connect(addr: &str) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(endpoint(addr))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot reach {addr}"))
}

/// Latencies and errors per operation, for one client; merged at the end.
#[derive(Default)]
pub(crate) struct Recorder {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<&'static str, u64>,
    jobs: u64,
}

impl Recorder {
    pub(crate) fn record<T, E>(
        &mut self,
        operation: &'static str,
        started: Instant,
        outcome: &Result<T, E>,
    ) {
        match outcome {
            Ok(_) => self
                .latencies
                .entry(operation)
                .or_default()
                .push(started.elapsed()),
            Err(_) => *self.errors.entry(operation).or_default() += 1,
        }
    }

    pub(crate) fn merge(&mut self, other: Recorder) {
        for (operation, samples) in other.latencies {
            self.latencies.entry(operation).or_default().extend(samples);
        }
        for (operation, count) in other.errors {
            *self.errors.entry(operation).or_default() += count;
        }
        self.jobs += other.jobs;
    }

    pub(crate) fn report(self, seconds: f64) -> Value {
        let mut operations = serde_json::Map::new();
        let names: Vec<&'static str> = self
            .latencies
            .keys()
            .chain(self.errors.keys())
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for name in names {
            let samples = self.latencies.get(name).cloned().unwrap_or_default();
            let summary = summarize(samples);
            operations.insert(
                name.to_string(),
                json!({
                    "count": summary.count,
                    "errors": self.errors.get(name).copied().unwrap_or(0),
                    "per_second": summary.count as f64 / seconds,
                    "p50_ms": millis(summary.p50),
                    "p95_ms": millis(summary.p95),
                    "p99_ms": millis(summary.p99),
                    "max_ms": millis(summary.max),
                }),
            );
        }
        json!({ "operations": operations, "jobs_accepted": self.jobs, "jobs_per_second": self.jobs as f64 / seconds })
    }
}

/// A run time drawn uniformly from [job_ms / 2, 3 job_ms / 2] (mean `job_ms`), so that
/// runs started together do not all end together.
fn spread_run_time(job_ms: u64) -> u64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    // splitmix64 of a counter: well spread, reproducible, no dependency.
    let mut x = DRAWS
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    job_ms / 2 + x % (job_ms + 1)
}

fn job(tenant: &str, queue: &str, job_ms: u64) -> pb::JobSpec {
    if queue == queue_id(Scenario::Agents) {
        // Run by the agents' own runner: no simulation.
        return pb::JobSpec {
            tenant: tenant.to_string(),
            queue: queue.to_string(),
            resources: Some(pb::JobResources {
                cpu_m: AGENT_JOB_CPU_M,
                memory_mb: AGENT_JOB_MEMORY_MB,
                gpu: 0,
            }),
            command: Some(pb::JobCommand {
                argv: vec!["true".to_string()],
                ..Default::default()
            }),
            ..Default::default()
        };
    }
    pb::JobSpec {
        tenant: tenant.to_string(),
        queue: queue.to_string(),
        resources: Some(pb::JobResources {
            cpu_m: JOB_CPU_M,
            memory_mb: JOB_MEMORY_MB,
            gpu: 0,
        }),
        command: Some(pb::JobCommand {
            argv: vec!["true".to_string()],
            ..Default::default()
        }),
        simulate: Some(pb::JobSimulation {
            duration_ms: spread_run_time(job_ms),
            exit_code: 0,
            used_percent: None,
        }),
        ..Default::default()
    }
}

pub(crate) fn tenant_name(index: u32) -> String {
    format!("bench-{index}")
}

/// Tenant `id`, created if missing, with a quota that refuses nothing.
pub(crate) async fn ensure_tenant(
    tenants: &mut TenantServiceClient<Channel>,
    id: &str,
) -> anyhow::Result<()> {
    let created = tenants
        .create_tenant(pb::CreateTenantRequest {
            id: id.to_string(),
            ..Default::default()
        })
        .await;
    if let Err(status) = &created
        && status.code() != tonic::Code::AlreadyExists
    {
        bail!("cannot create tenant {id}: {}", status.message());
    }
    tenants
        .set_quota(pb::SetQuotaRequest {
            tenant: id.to_string(),
            cpu_m: Some(100_000_000),
            memory_mb: Some(10_000_000_000),
            max_concurrent_jobs: Some(10_000_000),
            max_pending_jobs: Some(100_000_000),
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot set the quota of {id}"))?;
    Ok(())
}

/// Tenants with quotas that refuse nothing, the simulated pool and the queue.
async fn set_up(channel: Channel, settings: &BenchSettings, workers: u32) -> anyhow::Result<()> {
    let mut tenants = TenantServiceClient::new(channel.clone());
    for index in 0..settings.tenants {
        ensure_tenant(&mut tenants, &tenant_name(index)).await?;
    }
    if settings.scenario == Scenario::Agents {
        return Ok(());
    }
    let mut pools = ResourcePoolServiceClient::new(channel.clone());
    let created = pools
        .create_pool(pb::CreatePoolRequest {
            id: queue_id(settings.scenario),
            provider: "simulated".to_string(),
            min_size: Some(workers),
            max_size: Some(workers.max(1)),
            desired: Some(workers),
            worker_shape: Some(pb::PoolShape {
                cpu_m: WORKER_CPU_M,
                memory_mb: WORKER_MEMORY_MB,
                gpu: 0,
            }),
            ..Default::default()
        })
        .await;
    if let Err(status) = &created
        && status.code() != tonic::Code::AlreadyExists
    {
        bail!("cannot create the bench pool: {}", status.message());
    }
    let mut queues = QueueServiceClient::new(channel);
    let created = queues
        .create_queue(pb::CreateQueueRequest {
            id: queue_id(settings.scenario),
            pools: vec![queue_id(settings.scenario)],
            policy: "weighted_fair".to_string(),
        })
        .await;
    if let Err(status) = &created
        && status.code() != tonic::Code::AlreadyExists
    {
        bail!("cannot create the bench queue: {}", status.message());
    }
    Ok(())
}

pub(crate) async fn submit_once(
    client: &mut JobServiceClient<Channel>,
    recorder: &mut Recorder,
    tenant: &str,
    queue: &str,
    batch: u32,
    job_ms: u64,
) -> Vec<String> {
    let started = Instant::now();
    if batch == 1 {
        let outcome = client
            .submit_job(pb::SubmitJobRequest {
                job: Some(job(tenant, queue, job_ms)),
            })
            .await;
        recorder.record("submit_job", started, &outcome);
        return match outcome {
            Ok(reply) => {
                recorder.jobs += 1;
                reply
                    .into_inner()
                    .job
                    .map(|job| vec![job.id])
                    .unwrap_or_default()
            }
            Err(_) => Vec::new(),
        };
    }
    let jobs = (0..batch).map(|_| job(tenant, queue, job_ms)).collect();
    let outcome = client.submit_jobs(pb::SubmitJobsRequest { jobs }).await;
    recorder.record("submit_jobs", started, &outcome);
    match outcome {
        Ok(reply) => {
            let reply = reply.into_inner();
            recorder.jobs += u64::from(reply.accepted);
            reply
                .results
                .into_iter()
                .filter_map(|result| result.job.map(|job| job.id))
                .collect()
        }
        Err(_) => Vec::new(),
    }
}

async fn read_once(
    channel: &Channel,
    queue: &str,
    recorder: &mut Recorder,
    ids: &[String],
    tenant: &str,
    turn: u64,
) {
    let mut jobs = JobServiceClient::new(channel.clone());
    // Without jobs to read (the soak reads what the cluster holds), skip the job reads.
    let turn = if ids.is_empty() && turn.is_multiple_of(4) {
        turn + 1
    } else {
        turn
    };
    match turn % 4 {
        0 => {
            let id = ids
                .get((turn as usize / 4) % ids.len().max(1))
                .cloned()
                .unwrap_or_default();
            let started = Instant::now();
            let outcome = jobs
                .get_job(pb::GetJobRequest {
                    id,
                    consistency: String::new(),
                })
                .await;
            recorder.record("get_job", started, &outcome);
        }
        1 => {
            let started = Instant::now();
            let outcome = jobs
                .list_jobs(pb::ListJobsRequest {
                    tenant: tenant.to_string(),
                    limit: Some(50),
                    ..Default::default()
                })
                .await;
            recorder.record("list_jobs", started, &outcome);
        }
        2 => {
            let started = Instant::now();
            let outcome = TenantServiceClient::new(channel.clone())
                .get_tenant_metrics(pb::GetTenantMetricsRequest {
                    tenant: tenant.to_string(),
                    consistency: String::new(),
                })
                .await;
            recorder.record("tenant_usage", started, &outcome);
        }
        _ => {
            let started = Instant::now();
            let outcome = QueueServiceClient::new(channel.clone())
                .get_queue_status(pb::GetQueueRequest {
                    id: queue.to_string(),
                    ..Default::default()
                })
                .await;
            recorder.record("queue_status", started, &outcome);
        }
    }
}

async fn queue_status(channel: &Channel, queue: &str) -> Option<pb::QueueStatus> {
    QueueServiceClient::new(channel.clone())
        .get_queue_status(pb::GetQueueRequest {
            id: queue.to_string(),
            ..Default::default()
        })
        .await
        .ok()
        .map(|reply| reply.into_inner())
}

/// Runs the scenario and returns its JSON result.
/// The buckets of `hodei_dispatch_latency_seconds` for `queue`, summed over the nodes'
/// Prometheus endpoints (only the leader observes it).
async fn dispatch_latency_buckets(endpoints: &[String], queue: &str) -> Vec<(f64, f64)> {
    let client = reqwest::Client::new();
    let mut exposition = String::new();
    for endpoint in endpoints {
        let url = format!("http://{endpoint}/metrics");
        match client
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(reply) => exposition.push_str(&reply.text().await.unwrap_or_default()),
            Err(error) => eprintln!("bench: cannot scrape {url}: {error}"),
        }
    }
    histogram_buckets(
        &exposition,
        "hodei_dispatch_latency_seconds",
        &[("queue", queue)],
    )
}

pub async fn run(settings: BenchSettings) -> anyhow::Result<Value> {
    settings.validate()?;
    let mut channels = Vec::new();
    for node in &settings.nodes {
        channels.push(connect(node).await?);
    }
    let workers = settings.workers.unwrap_or(match settings.scenario {
        Scenario::Submit | Scenario::Read => 0,
        Scenario::Mixed => 4,
        Scenario::Soak => settings.soak_workers(),
        Scenario::Agents => 0,
        Scenario::History => crate::bench_history::VIRTUAL_WORKERS,
        Scenario::Flood => 0,
    });
    set_up(channels[0].clone(), &settings, workers).await?;
    if settings.scenario == Scenario::History {
        return crate::bench_history::run(&settings, &channels).await;
    }
    if settings.scenario == Scenario::Flood {
        return crate::bench_flood::run(&settings, &channels).await;
    }
    // Jobs to read: a first batch per tenant.
    let mut seeded = Vec::new();
    if matches!(settings.scenario, Scenario::Read | Scenario::Mixed) {
        let mut client = JobServiceClient::new(channels[0].clone());
        let mut recorder = Recorder::default();
        for index in 0..settings.tenants.min(10) {
            seeded.extend(
                submit_once(
                    &mut client,
                    &mut recorder,
                    &tenant_name(index),
                    &queue_id(settings.scenario),
                    100,
                    3_600_000,
                )
                .await,
            );
        }
    }
    let seeded = Arc::new(seeded);
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    // Calls completed while measuring, all clients together (for `--count`).
    let calls = Arc::new(AtomicU64::new(0));
    // Soak: how many more jobs the submitters may send now (topped up each second).
    let allowance = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client_index in 0..settings.clients {
        let channel = channels[client_index as usize % channels.len()].clone();
        let settings = settings.clone();
        let stop = stop.clone();
        let measuring = measuring.clone();
        let calls = calls.clone();
        let seeded = seeded.clone();
        let allowance = allowance.clone();
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::default();
            let mut discarded = Recorder::default();
            let mut client = JobServiceClient::new(channel.clone());
            let tenant = tenant_name(client_index % settings.tenants);
            let queue = queue_id(settings.scenario);
            let reader = match settings.scenario {
                Scenario::Read => true,
                Scenario::Mixed => client_index % 2 == 1,
                Scenario::Soak | Scenario::Agents => client_index % 4 == 3,
                Scenario::Submit | Scenario::History | Scenario::Flood => false,
            };
            let mut turn = u64::from(client_index);
            while !stop.load(Ordering::Relaxed) {
                let counted = measuring.load(Ordering::Relaxed);
                let target = if counted {
                    &mut recorder
                } else {
                    &mut discarded
                };
                if reader {
                    read_once(&channel, &queue, target, &seeded, &tenant, turn).await;
                    if counted {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    turn += 1;
                    if settings.scenario.holds_target() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    continue;
                }
                if settings.scenario.holds_target() {
                    let wanted = u64::from(settings.batch);
                    let granted = allowance
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                            left.checked_sub(wanted)
                        })
                        .is_ok();
                    if !granted {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                submit_once(
                    &mut client,
                    target,
                    &tenant,
                    &queue,
                    settings.batch,
                    settings.job_ms,
                )
                .await;
                if counted {
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            recorder
        }));
    }

    // Warm-up, then the measured seconds, with a progress line and the soak's feeder.
    let monitor = channels[0].clone();
    let queue = queue_id(settings.scenario);
    let mut concurrency = Vec::new();
    let feed = |status: &Option<pb::QueueStatus>| {
        if let Some(status) = status {
            // Keep a pending cushion of a fifth of the target on top of what runs.
            let wanted = settings.target + settings.target / 5;
            let have = status.running + status.pending;
            allowance.store(wanted.saturating_sub(have), Ordering::Relaxed);
        }
    };
    let pool_metrics = |channel: Channel, pool: String| async move {
        ResourcePoolServiceClient::new(channel)
            .get_pool_metrics(pb::GetPoolRequest {
                id: pool,
                ..Default::default()
            })
            .await
            .map(|reply| reply.into_inner())
            .ok()
    };
    let warm_up = if settings.scenario == Scenario::Soak {
        // Fill up to the target before measuring.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = queue_status(&monitor, &queue).await;
            feed(&status);
            let running = status.as_ref().map(|found| found.running).unwrap_or(0);
            eprintln!(
                "bench soak: filling, {running} running of {}",
                settings.target
            );
            if running >= settings.target * 95 / 100 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Duration::ZERO
    } else if settings.scenario == Scenario::Agents {
        // Until the agents run jobs (the allowance is fed once a second).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = queue_status(&monitor, &queue).await;
            feed(&status);
            let running = status.as_ref().map(|found| found.running).unwrap_or(0);
            let finished = pool_metrics(monitor.clone(), pool_id(settings.scenario))
                .await
                .map(|pool| pool.jobs_finished)
                .unwrap_or(0);
            eprintln!("bench agents: warming up, {running} running, {finished} finished");
            if finished > 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Duration::from_secs(2)
    } else {
        Duration::from_secs(1)
    };
    tokio::time::sleep(warm_up).await;
    let finished_before = pool_metrics(monitor.clone(), pool_id(settings.scenario))
        .await
        .map(|pool| pool.jobs_finished);
    let latency_before = dispatch_latency_buckets(&settings.metrics, &queue).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let counted_out = || {
        settings
            .count
            .is_some_and(|count| calls.load(Ordering::Relaxed) >= count)
    };
    for second in 1..=settings.seconds {
        let next = started + Duration::from_secs(second);
        while Instant::now() < next && !counted_out() {
            tokio::time::sleep(Duration::from_millis(10).min(next - Instant::now())).await;
        }
        let status = queue_status(&monitor, &queue).await;
        if settings.scenario.holds_target() {
            feed(&status);
        }
        let (running, pending) = status
            .as_ref()
            .map(|found| (found.running, found.pending))
            .unwrap_or((0, 0));
        concurrency.push(running);
        eprintln!(
            "bench {}: {second}/{} s, {running} running, {pending} pending",
            settings.scenario.as_str(),
            settings.seconds
        );
        if counted_out() {
            eprintln!(
                "bench {}: {} calls made, stopping",
                settings.scenario.as_str(),
                calls.load(Ordering::Relaxed)
            );
            break;
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let measured = started.elapsed().as_secs_f64();
    let pool = pool_metrics(monitor.clone(), pool_id(settings.scenario)).await;
    let latency_after = dispatch_latency_buckets(&settings.metrics, &queue).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Recorder::default();
    for task in tasks {
        total.merge(task.await?);
    }
    let mut result = total.report(measured);
    result["scenario"] = json!(settings.scenario.as_str());
    result["nodes"] = json!(settings.nodes);
    result["clients"] = json!(settings.clients);
    result["jobs_per_call"] = json!(settings.batch);
    result["seconds"] = json!(measured);
    if settings.scenario == Scenario::Agents {
        result["assigned_to_started_ms"] = assigned_to_started(&monitor).await;
    }
    if matches!(
        settings.scenario,
        Scenario::Soak | Scenario::Mixed | Scenario::Agents
    ) {
        let finished = pool
            .as_ref()
            .map(|pool| pool.jobs_finished)
            .zip(finished_before)
            .map(|(after, before)| after.saturating_sub(before));
        let mean = concurrency.iter().sum::<u64>() as f64 / concurrency.len().max(1) as f64;
        result["concurrency"] = json!({
            "target": settings.target,
            "min": concurrency.iter().min(),
            "mean": mean,
            "max": concurrency.iter().max(),
            "samples": concurrency,
        });
        result["virtual_workers"] = json!(workers);
        result["job_ms"] = json!(settings.job_ms);
        if let Some(pool) = pool {
            result["wait_latency_ms"] = json!({
                "what": "pending to assigned (queueing for room included), the pool's last 1,000 assignments",
                "p50": pool.allocation_latency_p50_ms,
                "p95": pool.allocation_latency_p95_ms,
                "p99": pool.allocation_latency_p99_ms,
            });
        }
        if !settings.metrics.is_empty() {
            let measured_buckets = bucket_delta(&latency_before, &latency_after);
            let quantile = |q: f64| histogram_quantile(q, &measured_buckets).map(|s| s * 1000.0);
            result["dispatch_latency_ms"] = json!({
                "what": "a run's end freeing room while jobs wait, to the commit of the assignment filling it (hodei_dispatch_latency_seconds, interpolated in its buckets)",
                "samples": measured_buckets.last().map(|(_, count)| *count),
                "p50": quantile(0.50),
                "p95": quantile(0.95),
                "p99": quantile(0.99),
            });
        }
        result["jobs_finished"] = json!(finished);
        result["completions_per_second"] = json!(finished.map(|count| count as f64 / measured));
    }
    Ok(result)
}

/// From the commit of an assignment to the agent's report that the run started (the
/// job's `assigned` and `running` transitions), over the newest 1,000 jobs that started
/// (running or succeeded).
async fn assigned_to_started(channel: &Channel) -> Value {
    // The newest jobs that started: running now (long runs) or already succeeded.
    let mut started: Vec<pb::Job> = Vec::new();
    for state in ["running", "succeeded"] {
        if let Ok(page) = JobServiceClient::new(channel.clone())
            .list_jobs(pb::ListJobsRequest {
                order: "newest".to_string(),
                limit: Some(1_000),
                queue: queue_id(Scenario::Agents),
                state: state.to_string(),
                ..Default::default()
            })
            .await
        {
            started.extend(page.into_inner().items);
        }
    }
    started.sort_by(|left, right| right.id.cmp(&left.id));
    started.truncate(1_000);
    let gaps: Vec<Duration> = started
        .iter()
        .filter_map(|job| {
            let at = |state: &str| {
                job.transitions
                    .iter()
                    .rev()
                    .find(|step| step.state == state)
                    .map(|step| step.at_ms)
            };
            Some(Duration::from_millis(
                at("running")?.saturating_sub(at("assigned")?),
            ))
        })
        .collect();
    let summary = summarize(gaps);
    let measured = |value: Duration| (summary.count > 0).then(|| millis(value));
    json!({
        "what": "assignment committed to the agent's start report (the job's assigned and running transitions; millisecond clocks of one machine), newest 1,000 jobs",
        "samples": summary.count,
        "p50": measured(summary.p50),
        "p99": measured(summary.p99),
        "max": measured(summary.max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BenchSettings {
        BenchSettings {
            scenario: Scenario::Submit,
            nodes: vec!["127.0.0.1:9091".to_string()],
            clients: 64,
            seconds: 10,
            batch: 1,
            tenants: 10,
            job_ms: 1_000,
            target: 10_000,
            workers: None,
            metrics: Vec::new(),
            count: None,
        }
    }

    #[test]
    fn bad_arguments_are_refused_naming_the_flag() {
        let cases = [
            (
                BenchSettings {
                    nodes: Vec::new(),
                    ..settings()
                },
                "--nodes",
            ),
            (
                BenchSettings {
                    batch: 0,
                    ..settings()
                },
                "--batch",
            ),
            (
                BenchSettings {
                    batch: 1001,
                    ..settings()
                },
                "--batch",
            ),
            (
                BenchSettings {
                    clients: 0,
                    ..settings()
                },
                "--clients",
            ),
            (
                BenchSettings {
                    count: Some(0),
                    ..settings()
                },
                "--count",
            ),
            (
                BenchSettings {
                    seconds: 0,
                    ..settings()
                },
                "--seconds",
            ),
            (
                BenchSettings {
                    tenants: 0,
                    ..settings()
                },
                "--tenants",
            ),
            (
                BenchSettings {
                    scenario: Scenario::Soak,
                    target: 0,
                    ..settings()
                },
                "--target",
            ),
        ];
        for (bad, flag) in cases {
            let error = bad.validate().unwrap_err().to_string();
            assert!(error.starts_with(flag), "{error}");
        }
        assert!(settings().validate().is_ok());
        assert!(Scenario::parse("chaos").is_err());
        assert_eq!(Scenario::parse("agents").unwrap(), Scenario::Agents);
        assert_eq!(Scenario::parse("history").unwrap(), Scenario::History);
        assert_eq!(queue_id(Scenario::Agents), "default");
        assert_eq!(pool_id(Scenario::History), "bench-history");
        assert_eq!(Scenario::parse("soak-10k").unwrap(), Scenario::Soak);
    }

    #[test]
    fn the_soak_has_room_for_its_target() {
        let soak = BenchSettings {
            scenario: Scenario::Soak,
            ..settings()
        };
        // 640 jobs per virtual worker, a tenth more than the target.
        assert_eq!(soak.soak_workers(), 18);
        assert!(u64::from(soak.soak_workers()) * 640 >= 11_000);
    }

    #[test]
    fn run_times_are_spread_around_the_mean() {
        let draws: Vec<u64> = (0..10_000).map(|_| spread_run_time(1_000)).collect();
        assert!(draws.iter().all(|ms| (500..=1_500).contains(ms)));
        let mean = draws.iter().sum::<u64>() as f64 / draws.len() as f64;
        assert!((mean - 1_000.0).abs() < 20.0, "mean {mean}");
        // Both halves of the range are used.
        assert!(draws.iter().filter(|ms| **ms < 1_000).count() > 4_000);
        assert!(draws.iter().filter(|ms| **ms > 1_000).count() > 4_000);
    }

    #[test]
    fn the_recorder_reports_each_operation() {
        let mut recorder = Recorder::default();
        let started = Instant::now();
        recorder.record::<(), ()>("get_job", started, &Ok(()));
        recorder.record::<(), ()>("get_job", started, &Err(()));
        recorder.jobs = 5;
        let report = recorder.report(2.0);
        assert_eq!(report["operations"]["get_job"]["count"], 1);
        assert_eq!(report["operations"]["get_job"]["errors"], 1);
        assert_eq!(report["jobs_per_second"], 2.5);
    }
}
