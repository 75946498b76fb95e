//! `hodei-chaos`: measurements that need real processes and real faults.
//!
//! - `failover`: starts a 3-node cluster, then N times kills the leader with SIGKILL and
//!   measures the time to the first acknowledged write through a surviving node.
//! - `raft-throughput`: starts a 3-node cluster (or uses `--leader`), and drives the Raft
//!   layer alone (forwarded probe commands over gRPC, fsync on) from many writers.
//!
//! - `submit-throughput`: starts a 3-node cluster and submits jobs through the public
//!   gRPC `JobService` from many clients, one job per call or in batches.
//!
//! - `bench`: drives a running cluster (`submit`, `read`, `mixed`, `soak`); see
//!   `hodei_chaos::bench` and `deploy/local/bench.sh`.
//!
//! - `nemesis`: a seeded random schedule of process, network and worker faults against a
//!   cluster running real jobs, checked for lost, duplicated and overlapping work
//!   (`hodei_chaos::nemesis`, CHAOS.md); `runner` is the job it runs.
//!
//! All print a progress line while they run and a JSON result at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hodei_chaos::stats::{millis, summarize};
use hodei_proto::v1::ForwardRequest;
use hodei_proto::v1::raft_service_client::RaftServiceClient;
use hodei_tests::ProcessCluster;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "hodei-chaos",
    about = "Failover and Raft throughput measurements on real process clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Kill -9 the leader of a 3-node cluster repeatedly; time to the first acknowledged write.
    Failover {
        /// How many kills.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        kills: u32,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the nodes' data and logs in this folder (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Replicated writes per second through the Raft layer of a 3-node cluster.
    RaftThroughput {
        /// Concurrent writers, each with one request in flight.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
        writers: u32,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// Bytes of payload per write.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
        size: u32,
        /// gRPC connections the writers share.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
        connections: u32,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Drive a running cluster: submit | read | mixed | soak (10,000 jobs running at once).
    Bench {
        #[command(flatten)]
        settings: hodei_chaos::bench::BenchSettings,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A follower killed during batch submissions and restarted while they go on: how
    /// long it takes to catch up with the leader, and whether all replicas agree after.
    Catchup {
        /// Seconds of batch submissions in all.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=3600))]
        seconds: u64,
        /// Seconds after the start at which the follower is killed, and again after which
        /// it is restarted.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        down_after: u64,
        /// Jobs per SubmitJobs call.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
        batch: u32,
        /// Concurrent submitting clients.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
        clients: u32,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Accepted jobs per second through `JobService.SubmitJob(s)` into a 3-node cluster.
    SubmitThroughput {
        /// Concurrent clients, each with one request in flight.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
        clients: u32,
        /// Jobs per request: 1 uses SubmitJob, more uses SubmitJobs (at most 1000).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        batch: u32,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// `leader`: clients call the leader; `all`: clients spread over every node (followers forward).
        #[arg(long, default_value = "leader", value_parser = ["leader", "all"])]
        target: String,
        /// Virtual workers of a simulated pool that also run the jobs (0: jobs stay pending).
        #[arg(long, default_value_t = 0)]
        simulated_workers: u32,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Faults at random (seeded) against a cluster running real jobs; checks the history,
    /// the jobs' journal and the final state. Needs root (a private network namespace
    /// and iptables). Exits 1 when a rule was broken.
    Nemesis {
        #[command(flatten)]
        settings: hodei_chaos::nemesis::NemesisSettings,
        /// Where to write the JSON report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The nemesis's job: journals its start, a tick every 100 ms and its end, from
    /// itself and from a child of its own.
    #[command(hide = true)]
    Runner {
        #[arg(long)]
        journal: PathBuf,
        #[arg(long)]
        ms: u64,
        #[arg(long)]
        child_of: Option<u32>,
    },
    /// Autoscaling's reaction against a running node (e.g. `hodei dev`): backlog appears ->
    /// first new worker registered, and backlog gone -> pool back at its min.
    ScalingReaction {
        /// REST address of the node.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// Rounds, each on a fresh pool.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// The backlog's jobs run this long.
        #[arg(long, default_value_t = 15)]
        job_s: u64,
        /// The pools' scale-down stabilisation window and cooldown.
        #[arg(long, default_value_t = 30)]
        down_s: u64,
        /// Where to write the JSON result.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn write_result(result: &serde_json::Value, out: Option<&PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(result)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        // A job: no runtime, no network.
        Command::Runner {
            journal,
            ms,
            child_of,
        } => hodei_chaos::runner::run(&journal, ms, child_of),
        command => {
            // The nemesis's cluster lives in a network namespace of its own, entered
            // before any thread starts (the runtime's included).
            let entered = match &command {
                Command::Nemesis { .. } => hodei_chaos::firewall::enter_private_network(),
                _ => Ok(()),
            };
            entered.and_then(|()| {
                hodei_tests::install_tls_provider();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(run(command))
            })
        }
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Nemesis { settings, out } => {
            let (report, held) = hodei_chaos::nemesis::run(settings).await?;
            write_result(&report, out.as_ref())?;
            if !held {
                bail!(
                    "{} violations (in the report's `violations`)",
                    report["violations"].as_array().map_or(0, Vec::len)
                );
            }
            eprintln!("nemesis: every rule held");
            Ok(())
        }
        Command::Runner { .. } => Ok(()),
        Command::Failover { kills, out, dir } => failover(kills, out.as_ref(), dir).await,
        Command::RaftThroughput {
            writers,
            seconds,
            size,
            connections,
            out,
        } => raft_throughput(writers, seconds, size as usize, connections, out.as_ref()).await,
        Command::ScalingReaction {
            api,
            rounds,
            job_s,
            down_s,
            out,
        } => {
            let settings = hodei_chaos::scaling_reaction::ReactionSettings {
                api,
                rounds,
                job_s,
                down_s,
            };
            let result = hodei_chaos::scaling_reaction::run(settings).await?;
            write_result(&result, out.as_ref())
        }
        Command::Bench { settings, out } => {
            let result = hodei_chaos::bench::run(settings).await?;
            write_result(&result, out.as_ref())
        }
        Command::Catchup {
            seconds,
            down_after,
            batch,
            clients,
            out,
        } => catchup(seconds, down_after, batch, clients, out.as_ref()).await,
        Command::SubmitThroughput {
            clients,
            batch,
            seconds,
            target,
            simulated_workers,
            out,
        } => {
            submit_throughput(
                clients,
                batch,
                seconds,
                target == "all",
                simulated_workers,
                out.as_ref(),
            )
            .await
        }
    }
}

async fn failover(kills: u32, out: Option<&PathBuf>, keep: Option<PathBuf>) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir()?;
    let root = keep.unwrap_or_else(|| temporary.path().to_path_buf());
    let mut cluster = ProcessCluster::start(&root, 3, &[]).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut samples = Vec::new();
    for round in 1..=kills {
        // Measure from a steady state: every node follows the leader and is caught up.
        let leader = cluster.wait_caught_up(Duration::from_secs(30)).await?;
        let survivor = if leader == 1 { 2 } else { 1 };
        let url = cluster.nodes[&survivor].rest_url("/api/v1/tenants");
        // The cluster takes writes before the fault.
        let warm = client
            .post(&url)
            .json(&json!({ "id": format!("warm-{round}") }))
            .send()
            .await?;
        if warm.status() != 201 {
            bail!(
                "round {round}: write before the kill failed with {}",
                warm.status()
            );
        }
        let killed_at = Instant::now();
        cluster.node(leader).kill9();
        let mut attempt = 0;
        let elapsed = loop {
            attempt += 1;
            let response = client
                .post(&url)
                .json(&json!({ "id": format!("after-kill-{round}-{attempt}") }))
                .send()
                .await;
            if matches!(&response, Ok(response) if response.status() == 201) {
                break killed_at.elapsed();
            }
            if killed_at.elapsed() > Duration::from_secs(30) {
                bail!("round {round}: no acknowledged write within 30 s of the kill");
            }
        };
        samples.push(elapsed);
        eprintln!(
            "kill {round}/{kills}: node {leader} killed, first acknowledged write after {:.0} ms",
            millis(elapsed)
        );
        cluster.node(leader).restart()?;
        cluster
            .node(leader)
            .wait_ready(Duration::from_secs(30))
            .await?;
    }
    // After every kill and restart, the replicas hold the same state.
    cluster.wait_caught_up(Duration::from_secs(60)).await?;
    let digests_compared = cluster
        .assert_digests_agree(Duration::from_secs(60))
        .await?;
    let summary = summarize(samples.clone());
    write_result(
        &json!({
            "scenario": "failover",
            "kills": kills,
            "digests_compared": digests_compared,
            "median_ms": millis(summary.p50),
            "p95_ms": millis(summary.p95),
            "max_ms": millis(summary.max),
            "mean_ms": millis(summary.mean),
            "samples_ms": samples.iter().map(|sample| millis(*sample)).collect::<Vec<_>>(),
        }),
        out,
    )
}

async fn raft_throughput(
    writers: u32,
    seconds: u64,
    size: usize,
    connections: u32,
    out: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let status = cluster.nodes[&leader]
        .status()
        .await
        .context("leader status")?;
    let cluster_id = status["cluster_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Forward is served on the peer port, to members presenting the cluster secret: the
    // writers present it under the leader's own node id.
    let endpoint = tonic::transport::Endpoint::from_shared(cluster.nodes[&leader].peer_url())?
        .tcp_nodelay(true);
    // A few connections shared by the writers, as clients of a real service would be.
    let mut channels = Vec::new();
    for _ in 0..writers.min(connections) {
        channels.push(endpoint.connect().await?);
    }
    // The JSON form of the command, which the node accepts as well as its binary one.
    let command = json!({ "V1": { "Probe": { "payload": "x".repeat(size) } } })
        .to_string()
        .into_bytes();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for writer in 0..writers as usize {
        let mut client = RaftServiceClient::new(channels[writer % channels.len()].clone());
        let request = ForwardRequest {
            command: command.clone(),
            cluster_id: cluster_id.clone(),
            request_id: String::new(),
        };
        let measuring = measuring.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut call = tonic::Request::new(request.clone());
                call.metadata_mut().insert(
                    hodei_cluster::SECRET_METADATA,
                    tonic::metadata::MetadataValue::from_static(hodei_tests::CLUSTER_SECRET),
                );
                call.metadata_mut()
                    .insert(hodei_cluster::NODE_ID_METADATA, leader.into());
                let outcome = client.forward(call).await;
                let latency = started.elapsed();
                let ok = outcome.is_ok_and(|reply| {
                    hodei_cluster::codec::decode::<Result<Vec<u8>, hodei_cluster::ClusterError>>(
                        &reply.get_ref().json,
                    )
                    .is_ok_and(|result| result.is_ok())
                });
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(latency);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    for second in 1..=seconds {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        eprintln!("raft-throughput: {second}/{seconds} s");
    }
    measuring.store(false, Ordering::Relaxed);
    let measured = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (writer_latencies, writer_errors) = task.await?;
        latencies.extend(writer_latencies);
        errors += writer_errors;
    }
    let summary = summarize(latencies);
    let final_status = cluster.nodes[&leader].status().await.unwrap_or_default();
    write_result(
        &json!({
            "scenario": "raft-throughput",
            "nodes": 3,
            "writers": writers,
            "connections": writers.min(connections),
            "payload_bytes": size,
            "seconds": measured.as_secs_f64(),
            "writes": summary.count,
            "errors": errors,
            "writes_per_second": summary.count as f64 / measured.as_secs_f64(),
            "p50_ms": millis(summary.p50),
            "p95_ms": millis(summary.p95),
            "p99_ms": millis(summary.p99),
            "max_ms": millis(summary.max),
            "raft_last_log_index": final_status["last_log_index"],
        }),
        out,
    )
}

/// Starts a 3-node cluster, submits batches to the leader, kills a follower and restarts
/// it while they go on, and reports how long it took to catch up.
async fn catchup(
    seconds: u64,
    down_after: u64,
    batch: u32,
    clients: u32,
    out: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if down_after * 2 >= seconds {
        bail!(
            "--down-after {down_after}: the follower must be back before the submissions end (at most {})",
            (seconds - 1) / 2
        );
    }
    let dir = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await?;
    let leader = cluster.wait_caught_up(Duration::from_secs(30)).await?;
    let follower = (1..=3).find(|id| *id != leader).context("a follower")?;
    let submissions = tokio::spawn(hodei_chaos::bench::run(hodei_chaos::bench::BenchSettings {
        scenario: hodei_chaos::bench::Scenario::Submit,
        nodes: vec![cluster.nodes[&leader].grpc_addr()],
        clients,
        seconds,
        batch,
        tenants: 10,
        job_ms: 1_000,
        target: 0,
        workers: Some(0),
        metrics: Vec::new(),
        count: None,
    }));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(down_after)).await;
    cluster.node(follower).kill9();
    eprintln!(
        "catchup: node {follower} killed at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(down_after)).await;
    let behind_at_restart = {
        let status = cluster.nodes[&leader].status().await.unwrap_or_default();
        status["last_log_index"].as_u64().unwrap_or(0)
    };
    cluster.node(follower).restart()?;
    let restarted = Instant::now();
    eprintln!(
        "catchup: node {follower} restarted at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Caught up: the follower has applied what the leader had logged at the previous
    // poll, 100 ms earlier (submissions go on, so it is never level for long).
    let mut previous_leader_index = u64::MAX;
    let mut last_progress = Instant::now();
    let caught_up = loop {
        let leader_index = cluster.nodes[&leader]
            .status()
            .await
            .and_then(|status| status["last_log_index"].as_u64())
            .unwrap_or(u64::MAX);
        let applied = cluster.nodes[&follower]
            .status()
            .await
            .and_then(|status| status["last_applied_index"].as_u64());
        if let Some(applied) = applied
            && applied >= previous_leader_index
        {
            break Some(restarted.elapsed());
        }
        if restarted.elapsed() > Duration::from_secs(seconds) {
            break None;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "catchup: {:.1} s after restart, node {follower} applied {} of the leader's {leader_index}",
                restarted.elapsed().as_secs_f64(),
                applied.map_or_else(|| "(not answering)".to_string(), |index| index.to_string()),
            );
        }
        previous_leader_index = leader_index;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let follower_status = cluster.nodes[&follower].status().await.unwrap_or_default();
    let submitted = submissions.await??;
    cluster.wait_caught_up(Duration::from_secs(60)).await?;
    let compared = cluster
        .assert_digests_agree(Duration::from_secs(60))
        .await?;
    let result = json!({
        "seconds": seconds,
        "down_after_s": down_after,
        "batch": batch,
        "clients": clients,
        "leader_last_log_index_at_restart": behind_at_restart,
        "caught_up_s": caught_up.map(|elapsed| elapsed.as_secs_f64()),
        "follower_snapshot_index": follower_status["snapshot_index"],
        "digests_compared": compared,
        "submissions": submitted,
    });
    write_result(&result, out)?;
    if caught_up.is_none() {
        bail!("node {follower} did not catch up while the submissions went on");
    }
    Ok(())
}

/// Starts a 3-node cluster and runs the load generator's `submit` scenario on it, against
/// the leader or spread over every node.
async fn submit_throughput(
    clients: u32,
    batch: u32,
    seconds: u64,
    spread: bool,
    simulated_workers: u32,
    out: Option<&PathBuf>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let nodes = if spread {
        cluster
            .nodes
            .values()
            .map(|node| node.grpc_addr())
            .collect()
    } else {
        vec![cluster.nodes[&leader].grpc_addr()]
    };
    let mut result = hodei_chaos::bench::run(hodei_chaos::bench::BenchSettings {
        scenario: hodei_chaos::bench::Scenario::Submit,
        nodes,
        clients,
        seconds,
        batch,
        tenants: 10,
        job_ms: 1_000,
        target: 0,
        workers: Some(simulated_workers),
        metrics: Vec::new(),
        count: None,
    })
    .await?;
    result["target"] = json!(if spread { "all" } else { "leader" });
    write_result(&result, out)
}
