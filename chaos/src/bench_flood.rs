//! `hodei-chaos bench flood`: one tenant floods a node while another submits at an even
//! pace; what the rate limits (`server.rate_limit`) leave the calm tenant.
//!
//! 1. Alone: the calm tenant's client submits one job every 50 ms for `--seconds`, as
//!    `tenant:bench-calm` (its submit latency unloaded).
//! 2. Flooded: the same, while `--clients` - 1 clients submit back to back as
//!    `tenant:bench-flood`, each with one call in flight (their accepted and refused
//!    calls are counted).
//!
//! Both phases are repeated three times (rounds) for the spread between runs. Every
//! client talks to the first node of `--nodes` (the limits are per node).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hodei_proto::v1 as pb;
use hodei_proto::v1::job_service_client::JobServiceClient;
use hodei_proto::v1::tenant_service_client::TenantServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::bench::{BenchSettings, Recorder, Scenario, ensure_tenant, queue_id};

const CALM: &str = "bench-calm";
const FLOOD: &str = "bench-flood";
/// The calm tenant's pace: one submit every this long.
const CALM_EVERY: Duration = Duration::from_millis(50);
const ROUNDS: u32 = 3;

fn as_tenant<T>(message: T, tenant: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("tenant:{tenant}").parse() {
        request.metadata_mut().insert("x-hodei-principal", value);
    }
    request
}

fn job(tenant: &str) -> pb::JobSpec {
    pb::JobSpec {
        tenant: tenant.to_string(),
        queue: queue_id(Scenario::Flood),
        resources: Some(pb::JobResources {
            cpu_m: 100,
            memory_mb: 64,
            gpu: 0,
        }),
        command: Some(pb::JobCommand {
            argv: vec!["true".to_string()],
            ..Default::default()
        }),
        simulate: Some(pb::JobSimulation {
            duration_ms: 10,
            exit_code: 0,
            used_percent: None,
        }),
        ..Default::default()
    }
}

async fn tenants(channel: Channel) -> anyhow::Result<()> {
    let mut client = TenantServiceClient::new(channel);
    for id in [CALM, FLOOD] {
        ensure_tenant(&mut client, id).await?;
    }
    Ok(())
}

/// The calm client: one submit every [`CALM_EVERY`] until `stop`.
async fn calm(channel: Channel, stop: Arc<AtomicBool>) -> Recorder {
    let mut client = JobServiceClient::new(channel);
    let mut recorder = Recorder::default();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let outcome = client
            .submit_job(as_tenant(
                pb::SubmitJobRequest {
                    job: Some(job(CALM)),
                },
                CALM,
            ))
            .await;
        recorder.record("calm_submit", started, &outcome);
        next += CALM_EVERY;
        tokio::time::sleep_until(next.into()).await;
    }
    recorder
}

/// A flooding client: submits back to back until `stop`, counting what was refused.
async fn flood(
    channel: Channel,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let mut client = JobServiceClient::new(channel);
    while !stop.load(Ordering::Relaxed) {
        let outcome = client
            .submit_job(as_tenant(
                pb::SubmitJobRequest {
                    job: Some(job(FLOOD)),
                },
                FLOOD,
            ))
            .await;
        match outcome {
            Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                refused.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => 0,
        };
    }
}

/// One phase: the calm client for `seconds`, beside `flooders` flooding clients.
async fn phase(channel: &Channel, seconds: u64, flooders: u32) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut floods = Vec::new();
    for _ in 0..flooders {
        floods.push(tokio::spawn(flood(
            channel.clone(),
            stop.clone(),
            accepted.clone(),
            refused.clone(),
        )));
    }
    let calm = tokio::spawn(calm(channel.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let recorder = calm.await.unwrap_or_default();
    for task in floods {
        let _ = task.await;
    }
    let seconds = seconds as f64;
    json!({
        "calm": recorder.report(seconds)["operations"]["calm_submit"].clone(),
        "flood_accepted_per_second": accepted.load(Ordering::Relaxed) as f64 / seconds,
        "flood_refused_per_second": refused.load(Ordering::Relaxed) as f64 / seconds,
    })
}

pub async fn run(settings: &BenchSettings, channels: &[Channel]) -> anyhow::Result<Value> {
    let channel = channels[0].clone();
    tenants(channel.clone()).await?;
    let flooders = settings.clients.saturating_sub(1).max(1);
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        eprintln!("bench flood: round {round}: the calm tenant alone");
        let alone = phase(&channel, settings.seconds, 0).await;
        eprintln!("bench flood: round {round}: beside {flooders} flooding clients");
        let flooded = phase(&channel, settings.seconds, flooders).await;
        let ratio = flooded["calm"]["p99_ms"].as_f64().unwrap_or(f64::NAN)
            / alone["calm"]["p99_ms"].as_f64().unwrap_or(f64::NAN);
        rounds.push(json!({
            "round": round,
            "alone": alone,
            "flooded": flooded,
            "calm_p99_flooded_over_alone": ratio,
        }));
    }
    Ok(json!({
        "scenario": "flood",
        "node": settings.nodes[0],
        "seconds_per_phase": settings.seconds,
        "flooding_clients": flooders,
        "calm_every_ms": CALM_EVERY.as_millis() as u64,
        "rounds": rounds,
    }))
}
