//! `hodei-chaos scaling-reaction`: how fast autoscaling reacts, against a running node's
//! REST API (e.g. `hodei dev`). Each round makes a fresh dynamic `process` pool (min 1,
//! max 4, 1,000 m workers) with a utilization policy (target 0.6), waits for its one
//! worker process, then submits a backlog of 4 jobs of a whole worker each (`sleep`), and
//! measures:
//! - backlog appears -> the first new worker registered (its `registered_at_ms`);
//! - backlog gone (the last job's end) -> the pool back at its min (one live worker).
//!
//! Both include the evaluation interval of the node (`autoscaling.evaluation_interval_s`)
//! and, on the way down, the pool's stabilisation window and scale-down cooldown, which
//! the round sets (`--down-s`). The pool is drained and deleted after each round.

use std::time::Duration;

use anyhow::{Context, bail};
use hodei_tests::eventually;
use serde_json::{Value, json};

pub struct ReactionSettings {
    pub api: String,
    pub rounds: u32,
    /// The jobs' run time.
    pub job_s: u64,
    /// Scale-down stabilisation window and cooldown of the round's pool.
    pub down_s: u64,
}

struct Rest {
    client: reqwest::Client,
    base: String,
}

impl Rest {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = reply.status();
        let text = reply.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

async fn live_workers(rest: &Rest, pool: &str) -> anyhow::Result<Vec<Value>> {
    let workers = rest.get(&format!("/api/v1/pools/{pool}/workers")).await?;
    Ok(workers["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|worker| matches!(worker["state"].as_str(), Some("idle" | "busy")))
        .collect())
}

async fn round(rest: &Rest, settings: &ReactionSettings, index: u32) -> anyhow::Result<Value> {
    let pool = format!("react-{}-{index}", now_ms());
    let queue = format!("{pool}-q");
    rest.call(
        reqwest::Method::POST,
        "/api/v1/pools",
        Some(json!({
            "id": pool, "type": "dynamic", "provider": "process", "min_size": 1, "max_size": 4,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
            "dynamic": { "idle_timeout_s": 3600 },
        })),
    )
    .await?;
    rest.call(
        reqwest::Method::POST,
        "/api/v1/queues",
        Some(json!({ "id": queue, "pools": [pool] })),
    )
    .await?;
    rest.call(
        reqwest::Method::POST,
        &format!("/api/v1/pools/{pool}/scaling/policies"),
        Some(json!({ "id": "util", "type": "target_tracking", "metric": "utilization", "target": 0.6 })),
    )
    .await?;
    rest.call(
        reqwest::Method::PUT,
        &format!("/api/v1/pools/{pool}/scaling/cooldown"),
        Some(json!({ "scale_down_s": settings.down_s, "scale_down_stabilization_s": settings.down_s })),
    )
    .await?;
    let first = eventually(
        Duration::from_secs(60),
        "the pool's first worker",
        || async {
            let live = live_workers(rest, &pool).await?;
            Ok((live.len() == 1).then(|| live[0]["id"].as_str().unwrap_or_default().to_string()))
        },
    )
    .await?;
    let backlog_at = now_ms();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let submitted = rest
            .call(
                reqwest::Method::POST,
                "/api/v1/jobs",
                Some(json!({
                    "queue": queue, "resources": { "cpu_m": 1000, "memory_mb": 64 },
                    "command": { "argv": ["sleep", settings.job_s.to_string()] },
                })),
            )
            .await?;
        ids.push(
            submitted["job"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let registered_at = eventually(Duration::from_secs(120), "a second worker", || async {
        let live = live_workers(rest, &pool).await?;
        Ok(live
            .iter()
            .filter(|worker| worker["id"] != first.as_str())
            .filter_map(|worker| worker["registered_at_ms"].as_u64())
            .min())
    })
    .await?;
    let mut ended_at = 0;
    for id in &ids {
        let job = eventually(
            Duration::from_secs(settings.job_s * 4 + 120),
            "the jobs to end",
            || async {
                let job = rest.get(&format!("/api/v1/jobs/{id}")).await?;
                Ok(matches!(
                    job["state"].as_str(),
                    Some("succeeded" | "failed" | "cancelled" | "timed_out")
                )
                .then_some(job))
            },
        )
        .await?;
        if job["state"] != "succeeded" {
            bail!("job {id} ended {}", job["state"]);
        }
        let end = job["transitions"]
            .as_array()
            .and_then(|steps| steps.last())
            .and_then(|step| step["at_ms"].as_u64())
            .unwrap_or_default();
        ended_at = ended_at.max(end);
    }
    let most = rest
        .get(&format!("/api/v1/pools/{pool}/scaling/history?limit=500"))
        .await?["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|record| record["to"].as_u64())
        .max()
        .unwrap_or(1);
    let back_at = eventually(
        Duration::from_secs(settings.down_s * 4 + 120),
        "the pool back at its min",
        || async { Ok((live_workers(rest, &pool).await?.len() == 1).then(now_ms)) },
    )
    .await?;
    rest.call(
        reqwest::Method::POST,
        &format!("/api/v1/pools/{pool}/lifecycle"),
        Some(json!({ "action": "drain", "reason": "bench round over" })),
    )
    .await?;
    let result = json!({
        "pool": pool,
        "backlog_to_first_new_worker_ms": registered_at.saturating_sub(backlog_at),
        "backlog_gone_to_min_ms": back_at.saturating_sub(ended_at),
        "largest_size": most,
    });
    eprintln!("scaling-reaction round {}: {result}", index + 1);
    Ok(result)
}

pub async fn run(settings: ReactionSettings) -> anyhow::Result<Value> {
    let rest = Rest {
        client: reqwest::Client::new(),
        base: if settings.api.contains("://") {
            settings.api.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", settings.api.trim_end_matches('/'))
        },
    };
    let mut rounds = Vec::new();
    for index in 0..settings.rounds {
        rounds.push(round(&rest, &settings, index).await?);
    }
    let spread = |key: &str| {
        let mut values: Vec<u64> = rounds
            .iter()
            .filter_map(|round| round[key].as_u64())
            .collect();
        values.sort_unstable();
        json!({
            "min": values.first(),
            "median": values.get(values.len() / 2),
            "max": values.last(),
        })
    };
    Ok(json!({
        "scenario": "scaling-reaction",
        "job_s": settings.job_s,
        "down_s": settings.down_s,
        "rounds": rounds,
        "backlog_to_first_new_worker_ms": spread("backlog_to_first_new_worker_ms"),
        "backlog_gone_to_min_ms": spread("backlog_gone_to_min_ms"),
    }))
}
