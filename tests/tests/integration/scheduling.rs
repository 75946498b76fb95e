//! Fair sharing, SLA and queue status (US-09.2.1 - US-09.2.4) on simulated pools of a real
//! node: the fair-share report measured over real windows, SLA statuses recorded as
//! time passes, and every reason a job can be pending.

use std::time::{Duration, Instant};

use hodei_tests::{NodeProcess, NodeSpec, RestApi, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

const BIG_QUOTA: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 10000000\n    memory_mb: 10000000\n    max_concurrent_jobs: 100000\n    max_pending_jobs: 1000000\n";

async fn call(
    method: reqwest::Method,
    node: &NodeProcess,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    RestApi::new(node).call(method, path, None, body).await
}

async fn get(node: &NodeProcess, path: &str) -> Value {
    RestApi::new(node)
        .ok(reqwest::Method::GET, path, None)
        .await
}

async fn post(node: &NodeProcess, path: &str, body: Value) -> Value {
    RestApi::new(node)
        .ok(reqwest::Method::POST, path, Some(body))
        .await
}

/// A node in a temporary folder (removed when the returned guard drops).
async fn start(extra_yaml: String) -> (tempfile::TempDir, NodeProcess) {
    let spec = NodeSpec {
        extra_yaml,
        metrics_port: Some(hodei_tests::free_port()),
        ..NodeSpec::new(1)
    };
    // The metrics port is in the node's config; the tests read it back from there.
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    (dir, node)
}

async fn create_tenant(node: &NodeProcess, id: &str, weight: f64) {
    post(
        node,
        "/api/v1/tenants",
        json!({ "id": id, "weight": weight }),
    )
    .await;
}

/// Submits `count` simulated jobs of `cpu_m` for `tenant` into `queue`, in batches.
async fn backlog(
    node: &NodeProcess,
    tenant: &str,
    queue: &str,
    count: usize,
    cpu_m: u64,
    duration_ms: u64,
) {
    let mut left = count;
    while left > 0 {
        let size = left.min(1000);
        let jobs: Vec<Value> = (0..size)
            .map(|_| {
                json!({
                    "tenant": tenant,
                    "queue": queue,
                    "resources": { "cpu_m": cpu_m, "memory_mb": 10 },
                    "simulate": { "duration_ms": duration_ms },
                })
            })
            .collect();
        let batch = post(node, "/api/v1/jobs/batch", json!({ "jobs": jobs })).await;
        assert_eq!(batch["refused"], 0, "{batch}");
        left -= size;
    }
}

fn share_of<'a>(report: &'a Value, tenant: &str) -> &'a Value {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["tenant"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} in {report}"))
}

/// Six virtual workers of 1000 m: sixty slots for jobs of 100 m.
const SIXTY_SLOTS: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      provider: simulated\n      min_size: 6\n      max_size: 6\n      worker_shape: { cpu_m: 1000, memory_mb: 1000, gpu: 0 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_one_two_three_share_sixty_slots_and_two_tenants_then_split_one_two() {
    let (_dir, node) = start(format!("{BIG_QUOTA}{SIXTY_SLOTS}")).await;
    for (tenant, weight) in [("w1", 1.0), ("w2", 2.0), ("w3", 3.0)] {
        create_tenant(&node, tenant, weight).await;
    }
    eventually(TIMEOUT, "sixty slots", || async {
        let pool = get(&node, "/api/v1/pools/pool-default").await;
        Ok((pool["workers"]["idle"] == 6).then_some(()))
    })
    .await
    .unwrap();
    // Backlogs sized so that all three stay backlogged for more than 60 s (w3 runs 30 jobs
    // a second at its share) and w1, w2 well beyond.
    backlog(&node, "w3", "default", 2_100, 100, 1_000).await;
    backlog(&node, "w2", "default", 4_000, 100, 1_000).await;
    backlog(&node, "w1", "default", 3_000, 100, 1_000).await;
    let started = Instant::now();

    // A full minute of steady sharing after a few seconds of warm-up. (A measurement
    // window is the one wait here that is a duration, not a condition.)
    tokio::time::sleep_until((started + Duration::from_secs(64)).into()).await;
    let report = get(&node, "/api/v1/queues/default/fair-share?window_s=60").await;
    for (tenant, expected) in [("w1", 1.0 / 6.0), ("w2", 2.0 / 6.0), ("w3", 3.0 / 6.0)] {
        let entry = share_of(&report, tenant);
        assert_eq!(entry["backlogged_in_window"], true, "{report}");
        assert!(
            (entry["fair_share"].as_f64().unwrap() - expected).abs() < 1e-9,
            "{report}"
        );
        let actual = entry["actual_share"].as_f64().unwrap();
        assert!(
            (actual - expected).abs() < 0.05,
            "{tenant}: {actual} vs {expected}: {report}"
        );
    }
    assert!(report["jain_index"].as_f64().unwrap() > 0.95, "{report}");

    // w3's backlog ends; the other two split the pool 1:2.
    eventually(Duration::from_secs(120), "w3's backlog to end", || async {
        let status = get(&node, "/api/v1/queues/default/status").await;
        let w3 = status["by_tenant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["key"] == "w3");
        Ok((!w3).then_some(()))
    })
    .await
    .unwrap();
    let drained = Instant::now();
    tokio::time::sleep_until((drained + Duration::from_secs(16)).into()).await;
    let report = get(&node, "/api/v1/queues/default/fair-share?window_s=15").await;
    for (tenant, expected) in [("w1", 1.0 / 3.0), ("w2", 2.0 / 3.0)] {
        let actual = share_of(&report, tenant)["actual_share"].as_f64().unwrap();
        assert!(
            (actual - expected).abs() < 0.05,
            "{tenant}: {actual} vs {expected}: {report}"
        );
    }
    assert!(
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|entry| entry["tenant"] != "w3" || entry["backlogged_in_window"] == false),
        "{report}"
    );
    let status = get(&node, "/api/v1/queues/default/status").await;
    assert!(
        status["dispatch_rate_per_s"].as_f64().unwrap() > 10.0,
        "{status}"
    );
    assert!(status["estimated_wait_s"].as_f64().is_some(), "{status}");
    assert!(
        status["oldest_pending_age_s"].as_f64().unwrap() > 60.0,
        "{status}"
    );
}

/// One virtual worker of 1000 m: two slots for jobs of 500 m.
const TWO_SLOTS: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      provider: simulated\n      min_size: 1\n      max_size: 1\n      worker_shape: { cpu_m: 1000, memory_mb: 1000, gpu: 0 }\n";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn sla_states(job: &Value) -> Vec<String> {
    job["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_risk_job_jumps_its_tenants_backlog_and_starts_in_time() {
    let (_dir, node) = start(format!("{BIG_QUOTA}{TWO_SLOTS}")).await;
    eventually(TIMEOUT, "the virtual worker", || async {
        Ok((get(&node, "/api/v1/pools/pool-default").await["workers"]["idle"] == 1).then_some(()))
    })
    .await
    .unwrap();
    // 80 jobs of 500 ms on two slots: 20 s of backlog.
    backlog(&node, "default", "default", 80, 500, 500).await;
    let submitted = post(
        &node,
        "/api/v1/jobs",
        json!({
            "resources": { "cpu_m": 500, "memory_mb": 10 },
            "simulate": { "duration_ms": 500 },
            "sla": { "level": "critical", "start_by_ms": now_ms() + 6_000 },
        }),
    )
    .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let sla = eventually(TIMEOUT, "the SLA job's verdict", || async {
        let sla = get(&node, &format!("/api/v1/jobs/{id}/sla")).await;
        Ok(matches!(sla["status"].as_str(), Some("met" | "violated")).then_some(sla))
    })
    .await
    .unwrap();
    assert_eq!(sla["status"], "met", "{sla}");
    let history = sla_states(&sla);
    assert_eq!(
        history.first().map(String::as_str),
        Some("on_track"),
        "{sla}"
    );
    assert!(
        history.contains(&"at_risk".to_string()),
        "it was at risk first: {sla}"
    );
    assert_eq!(history.last().map(String::as_str), Some("met"), "{sla}");
    // It jumped the queue: most of the backlog submitted before it is still pending.
    let status = get(&node, "/api/v1/queues/default/status").await;
    assert!(status["pending"].as_u64().unwrap() > 40, "{status}");
    let summary = get(&node, "/api/v1/sla/summary?tenant=default&level=critical").await;
    assert_eq!(summary["items"][0]["met"], 1, "{summary}");
    assert_eq!(summary["items"][0]["compliance_ratio"], 1.0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_starved_by_quota_is_violated_and_the_summary_counts_it() {
    let (_dir, node) = start(format!("{BIG_QUOTA}{TWO_SLOTS}")).await;
    create_tenant(&node, "starved", 1.0).await;
    let (status, _) = call(
        reqwest::Method::PUT,
        &node,
        "/api/v1/tenants/starved/quotas",
        Some(json!({ "cpu_m": 4000, "memory_mb": 4000, "max_concurrent_jobs": 1 })),
    )
    .await;
    assert_eq!(status, 200);
    backlog(&node, "starved", "default", 1, 100, 120_000).await;
    eventually(TIMEOUT, "the long job to run", || async {
        let status = get(&node, "/api/v1/queues/default/status").await;
        Ok((status["running"] == 1).then_some(()))
    })
    .await
    .unwrap();
    let submitted = post(
        &node,
        "/api/v1/jobs",
        json!({
            "tenant": "starved",
            "resources": { "cpu_m": 100, "memory_mb": 10 },
            "simulate": { "duration_ms": 100 },
            "sla": { "level": "critical", "start_by_ms": now_ms() + 8_000 },
        }),
    )
    .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let position = get(&node, &format!("/api/v1/jobs/{id}/position")).await;
    let codes: Vec<&str> = position["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reason| reason["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"quota"), "{position}");
    // Waits on the recorded history itself: the view's `status` is computed when read and
    // may say violated before the change is recorded.
    let sla = eventually(TIMEOUT, "the starved job to be violated", || async {
        let sla = get(&node, &format!("/api/v1/jobs/{id}/sla")).await;
        let recorded = sla_states(&sla).last().cloned();
        Ok((recorded.as_deref() == Some("violated")).then_some(sla))
    })
    .await
    .unwrap();
    let history = sla_states(&sla);
    assert_eq!(
        history.last().map(String::as_str),
        Some("violated"),
        "{sla}"
    );
    assert!(
        history.contains(&"critical".to_string()) || history.contains(&"at_risk".to_string()),
        "{sla}"
    );
    let summary = get(&node, "/api/v1/sla/summary?tenant=starved").await;
    let item = &summary["items"][0];
    assert_eq!(
        (item["violated"].as_u64(), item["met"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    assert_eq!(item["compliance_ratio"], 0.0, "{summary}");
    let config = std::fs::read_to_string(node.dir.join("config.yaml")).unwrap();
    let metrics_port = config
        .lines()
        .skip_while(|line| !line.contains("prometheus:"))
        .find_map(|line| line.trim().strip_prefix("port: "))
        .unwrap()
        .to_string();
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("hodei_sla_compliance_ratio{")
                && line.contains("tenant=\"starved\"")
                && line.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("hodei_sla_jobs{")
                && line.contains("status=\"violated\"")
                && line.contains("tenant=\"starved\"")
                && line.ends_with(" 1"))
    );
    let (status, problem) = call(
        reqwest::Method::GET,
        &node,
        "/api/v1/sla/summary?level=urgent",
        None,
    )
    .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("level")));
}

const REASON_POOLS: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      provider: simulated\n      min_size: 1\n      max_size: 1\n      worker_shape: { cpu_m: 1000, memory_mb: 1000, gpu: 0 }\n    - id: pool-empty\n      min_size: 1\n      max_size: 1\n    - id: pool-pause\n      provider: simulated\n      min_size: 1\n      max_size: 1\n      worker_shape: { cpu_m: 1000, memory_mb: 1000, gpu: 0 }\nqueues:\n  - id: default\n    pools: [pool-default]\n  - id: empty\n    pools: [pool-empty]\n  - id: pause\n    pools: [pool-pause]\n";

async fn reasons(node: &NodeProcess, id: &str) -> Vec<(String, String)> {
    let position = get(node, &format!("/api/v1/jobs/{id}/position")).await;
    position["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reason| {
            (
                reason["code"].as_str().unwrap().to_string(),
                reason["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn submit_one(
    node: &NodeProcess,
    tenant: &str,
    queue: &str,
    cpu_m: u64,
    duration_ms: u64,
) -> String {
    let submitted = post(
        node,
        "/api/v1/jobs",
        json!({ "tenant": tenant, "queue": queue, "resources": { "cpu_m": cpu_m, "memory_mb": 10 }, "simulate": { "duration_ms": duration_ms } }),
    )
    .await;
    submitted["job"]["id"].as_str().unwrap().to_string()
}

async fn wait_state(node: &NodeProcess, id: &str, state: &str) {
    eventually(TIMEOUT, &format!("job {id} to be {state}"), || async {
        Ok((get(node, &format!("/api/v1/jobs/{id}")).await["state"] == state).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reason_a_job_is_pending_is_reported() {
    let (_dir, node) = start(format!("{BIG_QUOTA}{REASON_POOLS}")).await;
    for tenant in ["x", "y", "quo", "sus"] {
        create_tenant(&node, tenant, 1.0).await;
    }
    eventually(TIMEOUT, "the virtual workers", || async {
        let workers = get(&node, "/api/v1/workers").await;
        Ok((workers["items"].as_array().unwrap().len() == 2).then_some(()))
    })
    .await
    .unwrap();

    // x fills the only worker of the default queue; y's two jobs wait with a share of 0,
    // so x's next job is behind them, and there is no room.
    let filler = submit_one(&node, "x", "default", 1000, 120_000).await;
    wait_state(&node, &filler, "running").await;
    submit_one(&node, "y", "default", 100, 100).await;
    submit_one(&node, "y", "default", 100, 100).await;
    let behind = submit_one(&node, "x", "default", 100, 100).await;
    let found = reasons(&node, &behind).await;
    let codes: Vec<&str> = found.iter().map(|(code, _)| code.as_str()).collect();
    assert!(codes.contains(&"no_capacity"), "{found:?}");
    let smaller = found
        .iter()
        .find(|(code, _)| code == "behind_smaller_share")
        .expect("behind_smaller_share");
    assert!(smaller.1.contains("behind 2 pending job(s)"), "{found:?}");
    let position = get(&node, &format!("/api/v1/jobs/{behind}/position")).await;
    assert_eq!(position["position"], 2, "{position}");

    // A queue whose pool has no worker.
    let stranded = submit_one(&node, "x", "empty", 100, 100).await;
    assert!(
        reasons(&node, &stranded)
            .await
            .iter()
            .any(|(code, _)| code == "no_matching_pool")
    );

    // A suspended pool.
    let lifecycle = post(
        &node,
        "/api/v1/pools/pool-pause/lifecycle",
        json!({ "action": "suspend", "reason": "maintenance" }),
    )
    .await;
    assert_eq!(lifecycle["state"], "suspended");
    let paused = submit_one(&node, "x", "pause", 100, 100).await;
    let found = reasons(&node, &paused).await;
    assert!(
        found
            .iter()
            .any(|(code, message)| code == "pool_unavailable" && message.contains("suspended")),
        "{found:?}"
    );
    let (status, problem) = call(
        reqwest::Method::POST,
        &node,
        "/api/v1/pools/pool-pause/lifecycle",
        Some(json!({ "action": "decommission" })),
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        problem["detail"].as_str().unwrap().contains("is suspended"),
        "{problem}"
    );
    post(
        &node,
        "/api/v1/pools/pool-pause/lifecycle",
        json!({ "action": "resume" }),
    )
    .await;
    wait_state(&node, &paused, "succeeded").await;
    let history = get(&node, "/api/v1/pools/pool-pause/lifecycle").await;
    assert_eq!(history["history"].as_array().unwrap().len(), 2, "{history}");
    assert_eq!(history["history"][0]["reason"], "maintenance");

    // Quota, with its numbers.
    let (status, _) = call(
        reqwest::Method::PUT,
        &node,
        "/api/v1/tenants/quo/quotas",
        Some(json!({ "cpu_m": 4000, "memory_mb": 4000, "max_concurrent_jobs": 1 })),
    )
    .await;
    assert_eq!(status, 200);
    let first = submit_one(&node, "quo", "pause", 100, 120_000).await;
    wait_state(&node, &first, "running").await;
    let second = submit_one(&node, "quo", "pause", 100, 100).await;
    let found = reasons(&node, &second).await;
    assert!(
        found
            .iter()
            .any(|(code, message)| code == "quota" && message.contains("1/1 jobs running")),
        "{found:?}"
    );

    // A tenant suspended after it submitted (a suspended tenant submits nothing), its job
    // held in the queue whose pool has no worker (so it is still pending when suspended).
    let suspended = submit_one(&node, "sus", "empty", 100, 100).await;
    let (status, _) = call(
        reqwest::Method::PATCH,
        &node,
        "/api/v1/tenants/sus",
        Some(json!({ "status": "suspended" })),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        reasons(&node, &suspended)
            .await
            .iter()
            .any(|(code, _)| code == "tenant_suspended")
    );
    let job = get(&node, &format!("/api/v1/jobs/{suspended}")).await;
    assert!(
        job["pending_reason"]
            .as_str()
            .unwrap()
            .starts_with("tenant_suspended"),
        "{job}"
    );

    // A draining pool takes nothing new either.
    post(
        &node,
        "/api/v1/pools/pool-pause/lifecycle",
        json!({ "action": "drain", "reason": "retire" }),
    )
    .await;
    let drained = submit_one(&node, "x", "pause", 100, 100).await;
    let found = reasons(&node, &drained).await;
    assert!(
        found
            .iter()
            .any(|(code, message)| code == "pool_unavailable" && message.contains("draining")),
        "{found:?}"
    );

    // The same reports over gRPC.
    use hodei_proto::v1 as pb;
    let mut jobs = pb::job_service_client::JobServiceClient::connect(node.grpc_url())
        .await
        .unwrap();
    let position = jobs
        .get_job_position(pb::GetJobRequest {
            id: behind.clone(),
            consistency: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(position.position, Some(2));
    assert!(
        position
            .reasons
            .iter()
            .any(|reason| reason.code == "behind_smaller_share")
    );
    let no_sla = jobs
        .get_job_sla(pb::GetJobRequest {
            id: behind.clone(),
            consistency: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(no_sla.code(), tonic::Code::NotFound);
    let bad_level = jobs
        .get_sla_summary(pb::SlaSummaryRequest {
            tenant: String::new(),
            level: "urgent".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_level.code(), tonic::Code::InvalidArgument);
    let mut queues = pb::queue_service_client::QueueServiceClient::connect(node.grpc_url())
        .await
        .unwrap();
    let fair = queues
        .get_fair_share(pb::FairShareRequest {
            queue: "default".into(),
            window_s: Some(30),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        fair.tenants
            .iter()
            .any(|share| share.tenant == "y" && share.backlogged)
    );
    let status = queues
        .get_queue_status(pb::GetQueueRequest {
            id: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.pending, status.running), (3, 1));
    let all = queues
        .list_queue_status(pb::ListQueuesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.items.len(), 3);
    // The same report read stale (served from this node's state as it is).
    let stale = queues
        .list_queue_status(pb::ListQueuesRequest {
            consistency: "stale".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stale.items.len(), 3);
    let missing = queues
        .get_fair_share(pb::FairShareRequest {
            queue: "nope".into(),
            window_s: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
