//! `hodei-chaos bench history`: a large job history, then the reads and reports over it.
//!
//! 1. Fill: batches of 1,000 jobs (simulated, a few milliseconds each) until the bench
//!    pool has finished `--target` jobs; then wait until the newest of them has left
//!    memory for the history (`retention.finished_in_memory_s` after it ended: run the
//!    cluster with a short one, `HODEI_FINISHED_IN_MEMORY_S`).
//! 2. Reads: `--clients` clients for `--seconds`, each in turn: a job by id (drawn from
//!    every job submitted), a filtered list page (`state=succeeded`, one tenant, newest
//!    first, 50), the queue's fair share, the SLA summary, a 30-day cost report by tenant
//!    per day and the pool's metrics; beside
//!    them 4 clients submit single jobs (what apply's latency looks like under the reads).
//! 3. Quiet: the same 4 submitters alone for `--seconds` (apply's latency without them).
//!
//! Steps 2 and 3 are repeated three times (rounds), for the spread between runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use hodei_proto::v1 as pb;
use hodei_proto::v1::cost_optimization_service_client::CostOptimizationServiceClient;
use hodei_proto::v1::job_service_client::JobServiceClient;
use hodei_proto::v1::queue_service_client::QueueServiceClient;
use hodei_proto::v1::resource_pool_service_client::ResourcePoolServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::bench::{
    BenchSettings, Recorder, Scenario, pool_id, queue_id, submit_once, tenant_name,
};

/// Virtual workers of the bench pool (640 jobs each at once).
pub const VIRTUAL_WORKERS: u32 = 16;
/// Submitters while filling, each with a batch of 1,000 in flight.
const FILLERS: u32 = 8;
/// Submitters of single jobs beside the readers, and alone.
const WRITERS: u32 = 4;
/// Measured rounds, each `--seconds` with the readers and `--seconds` without.
const ROUNDS: u32 = 3;
/// Simulated run time of the jobs filled in.
const FILL_JOB_MS: u64 = 4;
/// Fillers wait while more jobs than this are pending (memory holds the pending ones).
const MAX_PENDING: u64 = 40_000;

async fn jobs_finished(channel: &Channel, pool: &str) -> Option<u64> {
    ResourcePoolServiceClient::new(channel.clone())
        .get_pool_metrics(pb::GetPoolRequest {
            id: pool.to_string(),
            ..Default::default()
        })
        .await
        .ok()
        .map(|reply| reply.into_inner().jobs_finished)
}

/// Fills the history up to `target` finished jobs; returns the ids submitted (a sample to
/// read by id) and the fill's rate.
async fn fill(
    settings: &BenchSettings,
    channels: &[Channel],
) -> anyhow::Result<(Vec<String>, Value)> {
    let pool = pool_id(Scenario::History);
    let queue = queue_id(Scenario::History);
    let already = jobs_finished(&channels[0], &pool).await.unwrap_or(0);
    let wanted = settings.target.saturating_sub(already);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let per_filler = wanted.div_ceil(u64::from(FILLERS) * 1_000);
    let pending = Arc::new(AtomicU64::new(0));
    for filler in 0..FILLERS {
        let channel = channels[filler as usize % channels.len()].clone();
        let queue = queue.clone();
        let tenants = settings.tenants;
        let pending = pending.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = JobServiceClient::new(channel);
            let mut recorder = Recorder::default();
            let mut ids = Vec::new();
            for round in 0..per_filler {
                while pending.load(Ordering::Relaxed) > MAX_PENDING {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let tenant = tenant_name((filler + round as u32) % tenants);
                let submitted = submit_once(
                    &mut client,
                    &mut recorder,
                    &tenant,
                    &queue,
                    1_000,
                    FILL_JOB_MS,
                )
                .await;
                // Keep a sample of ids to read back: one in ten.
                ids.extend(submitted.into_iter().step_by(10));
            }
            ids
        }));
    }
    let monitor = channels[0].clone();
    let progress = {
        let pool = pool.clone();
        let queue = queue.clone();
        let target = settings.target;
        let pending = pending.clone();
        tokio::spawn(async move {
            for second in 1u64.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Ok(status) = QueueServiceClient::new(monitor.clone())
                    .get_queue_status(pb::GetQueueRequest {
                        id: queue.clone(),
                        ..Default::default()
                    })
                    .await
                {
                    pending.store(status.into_inner().pending, Ordering::Relaxed);
                }
                if second % 5 == 0 {
                    let finished = jobs_finished(&monitor, &pool).await.unwrap_or(0);
                    eprintln!(
                        "bench history: filling, {finished} of {target} finished, {} pending",
                        pending.load(Ordering::Relaxed)
                    );
                }
            }
        })
    };
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await?);
    }
    let deadline = Instant::now() + Duration::from_secs(3_600);
    loop {
        let finished = jobs_finished(&channels[0], &pool).await.unwrap_or(0);
        if finished >= settings.target {
            break;
        }
        if Instant::now() > deadline {
            progress.abort();
            bail!("the fill did not finish within an hour ({finished} finished)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let filled_in = started.elapsed().as_secs_f64();
    progress.abort();
    // The newest job filled in has left memory once it reads back from the history.
    let mut client = JobServiceClient::new(channels[0].clone());
    if let Some(newest) = ids.last().cloned() {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let found = client
                .get_job(pb::GetJobRequest {
                    id: newest.clone(),
                    consistency: String::new(),
                })
                .await;
            if found.is_ok_and(|job| job.into_inner().source == "history") {
                break;
            }
            if Instant::now() > deadline {
                bail!("the jobs filled in did not reach the history within 15 minutes");
            }
            eprintln!("bench history: waiting for the jobs to leave memory");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let fill = json!({
        "jobs": wanted,
        "seconds": filled_in,
        "jobs_per_second": wanted as f64 / filled_in.max(0.001),
        "history_ready_after_seconds": started.elapsed().as_secs_f64(),
    });
    Ok((ids, fill))
}

/// One reader's turn: the operation `turn` selects.
async fn read_turn(
    channel: &Channel,
    recorder: &mut Recorder,
    ids: &[String],
    turn: u64,
    tenants: u32,
) {
    let queue = queue_id(Scenario::History);
    let started = Instant::now();
    match turn % 6 {
        0 => {
            let id = ids[(turn.wrapping_mul(2_654_435_761) % ids.len() as u64) as usize].clone();
            let outcome = JobServiceClient::new(channel.clone())
                .get_job(pb::GetJobRequest {
                    id,
                    consistency: String::new(),
                })
                .await;
            recorder.record("get_job_in_history", started, &outcome);
        }
        1 => {
            let outcome = JobServiceClient::new(channel.clone())
                .list_jobs(pb::ListJobsRequest {
                    tenant: tenant_name((turn / 5) as u32 % tenants),
                    state: "succeeded".to_string(),
                    order: "newest".to_string(),
                    limit: Some(50),
                    ..Default::default()
                })
                .await;
            recorder.record("list_jobs_filtered_50", started, &outcome);
        }
        2 => {
            let outcome = QueueServiceClient::new(channel.clone())
                .get_fair_share(pb::FairShareRequest {
                    queue,
                    ..Default::default()
                })
                .await;
            recorder.record("fair_share", started, &outcome);
        }
        3 => {
            let outcome = JobServiceClient::new(channel.clone())
                .get_sla_summary(pb::SlaSummaryRequest::default())
                .await;
            recorder.record("sla_summary", started, &outcome);
        }
        4 => {
            // A 30-day report by tenant, per day (the cost ledger, and the runs going on
            // up to now).
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64;
            let outcome = CostOptimizationServiceClient::new(channel.clone())
                .generate_report(pb::CostReportRequest {
                    from_ms: Some(now.saturating_sub(30 * 86_400_000)),
                    to_ms: Some(now),
                    group_by: "tenant".to_string(),
                    step: "day".to_string(),
                    consistency: String::new(),
                })
                .await;
            recorder.record("cost_report_30d_by_tenant", started, &outcome);
        }
        _ => {
            let outcome = ResourcePoolServiceClient::new(channel.clone())
                .get_pool_metrics(pb::GetPoolRequest {
                    id: pool_id(Scenario::History),
                    ..Default::default()
                })
                .await;
            recorder.record("pool_metrics", started, &outcome);
        }
    }
}

/// `WRITERS` single submitters (and `readers` readers) for `seconds`.
async fn measure(
    settings: &BenchSettings,
    channels: &[Channel],
    ids: &Arc<Vec<String>>,
    readers: u32,
) -> anyhow::Result<Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for client in 0..(WRITERS + readers) {
        let channel = channels[client as usize % channels.len()].clone();
        let stop = stop.clone();
        let ids = ids.clone();
        let tenants = settings.tenants;
        tasks.push(tokio::spawn(async move {
            let mut recorder = Recorder::default();
            let mut turn = u64::from(client);
            let mut jobs = JobServiceClient::new(channel.clone());
            while !stop.load(Ordering::Relaxed) {
                if client < WRITERS {
                    let tenant = tenant_name(client % tenants);
                    submit_once(
                        &mut jobs,
                        &mut recorder,
                        &tenant,
                        &queue_id(Scenario::History),
                        1,
                        FILL_JOB_MS,
                    )
                    .await;
                } else {
                    read_turn(&channel, &mut recorder, &ids, turn, tenants).await;
                    turn += 1;
                }
            }
            recorder
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(settings.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let mut total = Recorder::default();
    for task in tasks {
        total.merge(task.await?);
    }
    let mut report = total.report(seconds);
    report["readers"] = json!(readers);
    report["writers"] = json!(WRITERS);
    report["seconds"] = json!(seconds);
    Ok(report)
}

pub(crate) async fn run(settings: &BenchSettings, channels: &[Channel]) -> anyhow::Result<Value> {
    let (ids, fill) = fill(settings, channels).await?;
    if ids.is_empty() {
        bail!("no job id to read back: the fill submitted nothing");
    }
    let ids = Arc::new(ids);
    eprintln!(
        "bench history: {} jobs in the history; reads with {} clients for {} s",
        settings.target, settings.clients, settings.seconds
    );
    // Three rounds of (readers with writers, writers alone): the spread between rounds.
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        eprintln!("bench history: round {round}/{ROUNDS}, readers and writers");
        let under_reads = measure(settings, channels, &ids, settings.clients).await?;
        eprintln!("bench history: round {round}/{ROUNDS}, the writers alone");
        let quiet = measure(settings, channels, &ids, 0).await?;
        rounds.push(json!({ "with_readers": under_reads, "writers_alone": quiet }));
    }
    Ok(json!({
        "scenario": "history",
        "nodes": settings.nodes,
        "history_jobs": settings.target,
        "fill": fill,
        "rounds": rounds,
    }))
}
