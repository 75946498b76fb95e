//! Autoscaling (US-09.4.1 - US-09.4.4) on a real node: a `process` pool that a
//! utilization policy grows under a backlog of real jobs and shrinks back after it (the
//! worker processes checked in the process table); manual triggers and the cooldown; a
//! scheduled window; the refusals.

use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, RestApi, eventually, worker_processes};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

const YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 1000000\n    memory_mb: 1000000\n    max_concurrent_jobs: 10000\n    max_pending_jobs: 100000\nworkers:\n  heartbeat_interval_ms: 500\n  missed_heartbeats: 3\nautoscaling:\n  evaluation_interval_s: 1\n";

async fn start() -> (tempfile::TempDir, NodeProcess) {
    start_node(YAML, None).await
}

/// A ready node with `yaml` appended to its config (and metrics on `metrics_port`).
pub(crate) async fn start_node(
    yaml: &str,
    metrics_port: Option<u16>,
) -> (tempfile::TempDir, NodeProcess) {
    let spec = NodeSpec {
        extra_yaml: yaml.to_string(),
        metrics_port,
        ..NodeSpec::new(1)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    (dir, node)
}

pub(crate) async fn ok(
    node: &NodeProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    RestApi::new(node).ok(method, path, body).await
}

pub(crate) async fn call(
    node: &NodeProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    RestApi::new(node).call(method, path, None, body).await
}

/// Creates the pool `pool` describes and a queue `<id>-q` over it; answers the pool.
pub(crate) async fn pool_with_queue(node: &NodeProcess, pool: Value) -> Value {
    let created = ok(node, reqwest::Method::POST, "/api/v1/pools", Some(pool)).await;
    let id = created["id"].as_str().unwrap().to_string();
    ok(
        node,
        reqwest::Method::POST,
        "/api/v1/queues",
        Some(json!({ "id": format!("{id}-q"), "pools": [id] })),
    )
    .await;
    created
}

async fn history(node: &NodeProcess, pool: &str) -> Vec<Value> {
    let page = ok(
        node,
        reqwest::Method::GET,
        &format!("/api/v1/pools/{pool}/scaling/history?limit=500"),
        None,
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utilization_policy_grows_a_process_pool_under_a_backlog_and_brings_it_back_to_min() {
    let (_dir, node) = start().await;
    pool_with_queue(
        &node,
        json!({
            "id": "auto", "type": "dynamic", "provider": "process", "min_size": 1, "max_size": 6,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
            "dynamic": { "idle_timeout_s": 3600, "provision_timeout_s": 60 },
        }),
    )
    .await;
    let policy = ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/auto/scaling/policies",
        Some(json!({ "id": "util", "type": "target_tracking", "metric": "utilization", "target": 0.6 })),
    )
    .await;
    assert_eq!(
        (policy["id"].as_str(), policy["enabled"].as_bool()),
        (Some("util"), Some(true))
    );
    let cooldown = ok(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/auto/scaling/cooldown",
        Some(json!({ "scale_up_s": 5, "scale_down_s": 4, "scale_down_stabilization_s": 3 })),
    )
    .await;
    assert_eq!(cooldown["max_added_per_minute"], 10, "{cooldown}");
    eventually(TIMEOUT, "one worker process of auto", || async {
        Ok((worker_processes("auto", None) == 1).then_some(()))
    })
    .await
    .unwrap();

    // Eight jobs of a whole worker each: utilization 1.0 against a target of 0.6.
    let mut ids = Vec::new();
    for _ in 0..8 {
        let submitted = ok(
            &node,
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "queue": "auto-q", "resources": { "cpu_m": 1000, "memory_mb": 100 }, "command": { "argv": ["sleep", "12"] } })),
        )
        .await;
        ids.push(submitted["job"]["id"].as_str().unwrap().to_string());
    }
    eventually(
        TIMEOUT,
        "six worker processes of auto (its max)",
        || async { Ok((worker_processes("auto", None) == 6).then_some(())) },
    )
    .await
    .unwrap();
    eventually(TIMEOUT, "the eight jobs to succeed", || async {
        let mut done = 0;
        for id in &ids {
            let job = ok(
                &node,
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{id}"),
                None,
            )
            .await;
            assert!(
                !matches!(
                    job["state"].as_str(),
                    Some("failed" | "cancelled" | "timed_out")
                ),
                "no job is killed by a scale-down: {job}"
            );
            assert_eq!(job["attempt"], 1, "no job ran twice: {job}");
            done += usize::from(job["state"] == "succeeded");
        }
        Ok((done == ids.len()).then_some(()))
    })
    .await
    .unwrap();
    // The backlog gone and the cooldown over: back to one worker.
    eventually(TIMEOUT, "the pool back at one worker process", || async {
        let scaling = ok(
            &node,
            reqwest::Method::GET,
            "/api/v1/pools/auto/scaling",
            None,
        )
        .await;
        Ok((worker_processes("auto", None) == 1
            && scaling["desired"] == 1
            && scaling["current"] == 1)
            .then_some(()))
    })
    .await
    .unwrap();

    // Settled at the loop's next evaluation.
    let records = eventually(TIMEOUT, "the last decision settled", || async {
        let records = history(&node, "auto").await;
        Ok((records[0]["outcome"] != "in_progress").then_some(records))
    })
    .await
    .unwrap();
    let steps: Vec<(u64, u64, &str)> = records
        .iter()
        .rev()
        .map(|record| {
            (
                record["from"].as_u64().unwrap(),
                record["to"].as_u64().unwrap(),
                record["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    println!("scaling history of auto, oldest first: {steps:?}");
    let ups: Vec<&(u64, u64, &str)> = steps.iter().filter(|(from, to, _)| to > from).collect();
    assert!(ups.len() >= 2, "1 -> 2 -> 4 -> 6 takes steps: {steps:?}");
    assert_eq!(ups[0].0, 1, "{steps:?}");
    assert_eq!(ups.last().unwrap().1, 6, "{steps:?}");
    assert!(
        steps
            .iter()
            .any(|(_, _, outcome)| *outcome == "blocked_by_cooldown"),
        "a proposal within the scale-up cooldown is recorded as blocked: {steps:?}"
    );
    let last = &records[0];
    assert_eq!(
        (last["to"].as_u64(), last["outcome"].as_str()),
        (Some(1), Some("succeeded")),
        "{last}"
    );
    let (index, grown) = records
        .iter()
        .enumerate()
        .find(|(_, record)| record["to"] == 6)
        .expect("the step to 6");
    if grown["outcome"] == "succeeded" {
        assert!(grown["reached_at_ms"].as_u64().unwrap() >= grown["at_ms"].as_u64().unwrap());
    } else {
        // On a loaded machine the sixth worker may register after the backlog shrank:
        // the next decision then replaces the step, and starts from the six it reached.
        assert_eq!(grown["outcome"], "cancelled", "{grown}");
        assert!(index > 0, "a later decision replaced it: {grown}");
        assert_eq!(records[index - 1]["from"], 6, "{}", records[index - 1]);
    }
    assert!(
        grown["metrics"]["utilization"].as_f64().unwrap() > 0.6,
        "{grown}"
    );
    assert!(
        grown["reason"].as_str().unwrap().contains("policy:util"),
        "{grown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_triggers_respect_the_cooldown_unless_forced_and_a_scheduled_window_sets_the_size() {
    let metrics_port = hodei_tests::free_port();
    let (_dir, node) = start_node(YAML, Some(metrics_port)).await;
    ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools",
        Some(json!({
            "id": "sim", "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 8,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
        })),
    )
    .await;
    // Refusals name the field and the rule; a static pool has no autoscaling.
    let (status, problem) = call(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/sim/scaling/policies",
        Some(json!({ "type": "target_tracking", "metric": "utilization", "target": 1.5 })),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("policy.target"),
        "{problem}"
    );
    let (status, problem) = call(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/sim/scaling/policies",
        Some(json!({ "type": "scheduled", "cron": "0 25 * * *", "duration_s": 60, "min": 1, "max": 2, "desired": 2 })),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("policy.cron"),
        "{problem}"
    );
    let (status, problem) = call(
        &node,
        reqwest::Method::GET,
        "/api/v1/pools/pool-default/scaling",
        None,
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    let (status, _) = call(
        &node,
        reqwest::Method::GET,
        "/api/v1/pools/nope/scaling",
        None,
    )
    .await;
    assert_eq!(status, 404);

    ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/sim/scaling/triggers",
        Some(json!({ "id": "bump", "type": "manual" })),
    )
    .await;
    let fire = |desired: u64, force: bool| {
        let node = &node;
        async move {
            ok(
                node,
                reqwest::Method::POST,
                "/api/v1/pools/sim/scaling/triggers/bump/fire",
                Some(json!({ "desired": desired, "force": force })),
            )
            .await
        }
    };
    let first = fire(3, false).await;
    assert_eq!(
        (
            first["desired"].as_u64(),
            first["recorded"]["outcome"].as_str()
        ),
        (Some(3), Some("in_progress")),
        "{first}"
    );
    let second = fire(5, false).await;
    assert_eq!(second["desired"], 3, "{second}");
    assert_eq!(second["blocked_by"], "scale_up_cooldown", "{second}");
    assert_eq!(
        second["recorded"]["outcome"], "blocked_by_cooldown",
        "{second}"
    );
    let forced = fire(5, true).await;
    assert_eq!(
        (
            forced["desired"].as_u64(),
            forced["recorded"]["forced"].as_bool()
        ),
        (Some(5), Some(true)),
        "{forced}"
    );
    // The decisions and the cooldown left, in Prometheus' text.
    let exposition = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line_of = |name: &str, labels: &[&str]| {
        exposition
            .lines()
            .find(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    assert_eq!(
        line_of(
            "hodei_scaling_decisions_total",
            &["pool=\"sim\"", "outcome=\"in_progress\""]
        ),
        Some(2.0),
        "{exposition}"
    );
    assert_eq!(
        line_of(
            "hodei_scaling_decisions_total",
            &["pool=\"sim\"", "outcome=\"blocked_by_cooldown\""]
        ),
        Some(1.0)
    );
    let left = line_of(
        "hodei_scaling_cooldown_remaining_seconds",
        &["pool=\"sim\"", "direction=\"up\""],
    )
    .unwrap();
    assert!(left > 0.0 && left <= 60.0, "{left}");
    let records = history(&node, "sim").await;
    let outcomes: Vec<&str> = records
        .iter()
        .map(|record| record["outcome"].as_str().unwrap())
        .collect();
    // The first decision was replaced by the forced one, unless it had already settled.
    assert_eq!(outcomes[1], "blocked_by_cooldown", "{records:?}");
    assert!(
        matches!(outcomes[2], "cancelled" | "succeeded"),
        "{records:?}"
    );
    eventually(TIMEOUT, "five simulated workers", || async {
        let scaling = ok(
            &node,
            reqwest::Method::GET,
            "/api/v1/pools/sim/scaling",
            None,
        )
        .await;
        Ok((scaling["current"] == 5).then_some(()))
    })
    .await
    .unwrap();
    eventually(TIMEOUT, "the forced decision settled", || async {
        let newest = history(&node, "sim").await.remove(0);
        Ok((newest["outcome"] == "succeeded").then_some(newest))
    })
    .await
    .unwrap();

    // A window opening at the next minute (or the one after, too close to it) sets 7
    // within [7, 8], whatever the cooldown.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minutes_ahead = if now % 60 > 50 { 2 } else { 1 };
    let opens = (now / 60 + minutes_ahead) * 60;
    let cron = format!("{} {} * * *", (opens / 60) % 60, (opens / 3_600) % 24);
    ok(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/sim/scaling/policies/office",
        Some(json!({ "type": "scheduled", "cron": cron, "timezone": "UTC", "duration_s": 600, "min": 7, "max": 8, "desired": 7 })),
    )
    .await;
    let before = ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/sim/scaling/evaluate?dry_run=true",
        None,
    )
    .await;
    assert_eq!(
        (before["min"].as_u64(), before["desired"].as_u64()),
        (Some(1), Some(5)),
        "{before}"
    );
    let opened = eventually(
        Duration::from_secs(180),
        "the window to set the size",
        || async {
            let scaling = ok(
                &node,
                reqwest::Method::GET,
                "/api/v1/pools/sim/scaling",
                None,
            )
            .await;
            Ok((scaling["desired"] == 7).then_some(std::time::SystemTime::now()))
        },
    )
    .await
    .unwrap();
    let opened_s = opened
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        opened_s >= opens,
        "not before the window opened ({opened_s} < {opens})"
    );
    let newest = history(&node, "sim").await.remove(0);
    assert_eq!(
        (newest["from"].as_u64(), newest["to"].as_u64()),
        (Some(5), Some(7)),
        "{newest}"
    );
    assert!(
        newest["reason"].as_str().unwrap().contains("policy:office"),
        "{newest}"
    );
}

/// The SLA summary line of `tenant` at level high: (met, violated, jobs).
async fn high_verdicts(node: &NodeProcess, tenant: &str) -> (u64, u64, u64) {
    let summary = ok(
        node,
        reqwest::Method::GET,
        &format!("/api/v1/sla/summary?tenant={tenant}&level=high"),
        None,
    )
    .await;
    summary["items"]
        .as_array()
        .unwrap()
        .first()
        .map(|line| {
            (
                line["met"].as_u64().unwrap(),
                line["violated"].as_u64().unwrap(),
                line["jobs"].as_u64().unwrap(),
            )
        })
        .unwrap_or_default()
}

/// Submits `count` simulated `high` jobs of 100 m and 500 ms for `tenant` in `queue`.
async fn burst(node: &NodeProcess, tenant: &str, queue: &str, count: usize) {
    let job = json!({
        "tenant": tenant, "queue": queue,
        "resources": { "cpu_m": 100, "memory_mb": 64 },
        "sla": { "level": "high" },
        "simulate": { "duration_ms": 500, "exit_code": 0 },
    });
    for chunk in 0..count.div_ceil(1_000) {
        let size = 1_000.min(count - chunk * 1_000);
        let answer = ok(
            node,
            reqwest::Method::POST,
            "/api/v1/jobs/batch",
            Some(json!({ "jobs": vec![job.clone(); size] })),
        )
        .await;
        assert_eq!(
            answer["accepted"].as_u64(),
            Some(size as u64),
            "refused: {}",
            answer["refused"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sla_headroom_policy_starts_a_burst_of_high_jobs_within_their_window() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{YAML}scheduling:\n  sla_targets_s:\n    critical: 10\n    high: 30\nresource_pools:\n  pools:\n    - id: pool-default\n      min_size: 0\n      max_size: 2\n"
    );
    let mut cluster = hodei_tests::ProcessCluster::start_with(dir.path(), 3, &[], &yaml)
        .await
        .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let node = &cluster.nodes[&leader];
    for (pool, tenant) in [("plain", "t-plain"), ("headroom", "t-headroom")] {
        pool_with_queue(node, json!({
                "id": pool, "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 30,
                "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
            })).await;
        ok(
            node,
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({ "id": tenant })),
        )
        .await;
    }
    // The same pool with nothing to scale it: one worker of ten slots, 20 starts a second,
    // 600 in the 30 s target.
    let started = std::time::Instant::now();
    burst(node, "t-plain", "plain-q", 5_000).await;
    let (_, plain_violated, _) = eventually(TIMEOUT, "violations without the policy", || async {
        let verdicts = high_verdicts(node, "t-plain").await;
        Ok((verdicts.1 > 0).then_some(verdicts))
    })
    .await
    .unwrap();
    println!(
        "without a policy: {plain_violated} of 5000 high jobs violated their 30 s start target after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Out of the way of the second run: no more dispatch in the first pool.
    ok(
        node,
        reqwest::Method::POST,
        "/api/v1/pools/plain/lifecycle",
        Some(json!({ "action": "suspend", "reason": "first run over" })),
    )
    .await;

    ok(
        node,
        reqwest::Method::POST,
        "/api/v1/pools/headroom/scaling/policies",
        Some(json!({ "id": "sla", "type": "sla_headroom", "headroom": 0.5 })),
    )
    .await;
    ok(
        node,
        reqwest::Method::PUT,
        "/api/v1/pools/headroom/scaling/cooldown",
        Some(json!({ "scale_up_s": 2, "max_added_per_minute": 100 })),
    )
    .await;
    let started = std::time::Instant::now();
    burst(node, "t-headroom", "headroom-q", 5_000).await;
    let (met, violated, _) = eventually(
        TIMEOUT,
        "a verdict for every job with the policy",
        || async {
            let verdicts = high_verdicts(node, "t-headroom").await;
            Ok((verdicts.0 + verdicts.1 == 5_000).then_some(verdicts))
        },
    )
    .await
    .unwrap();
    let records = history(node, "headroom").await;
    let most = records
        .iter()
        .filter_map(|record| record["to"].as_u64())
        .max()
        .unwrap_or(1);
    println!(
        "with sla_headroom: {met} met, {violated} violated of 5000 in {:.1} s; the pool grew to {most} workers in {} decisions",
        started.elapsed().as_secs_f64(),
        records.len()
    );
    assert_eq!(
        violated, 0,
        "every high job starts within its window: {records:?}"
    );
    assert!(most > 1, "{records:?}");
    assert!(
        records.iter().any(|record| record["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("policy:sla")),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_continues_a_scale_up_from_the_replicated_size_and_history_with_no_orphans() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{YAML}resource_pools:\n  pools:\n    - id: pool-default\n      min_size: 0\n      max_size: 2\n"
    );
    let mut cluster = hodei_tests::ProcessCluster::start_with(dir.path(), 3, &[], &yaml)
        .await
        .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let node = &cluster.nodes[&leader];
    pool_with_queue(
        node,
        json!({
            "id": "fa", "type": "dynamic", "provider": "process", "min_size": 1, "max_size": 4,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
            "dynamic": { "idle_timeout_s": 3600, "provision_timeout_s": 60 },
        }),
    )
    .await;
    ok(
        node,
        reqwest::Method::POST,
        "/api/v1/pools/fa/scaling/policies",
        Some(json!({ "id": "util", "type": "target_tracking", "metric": "utilization", "target": 0.6 })),
    )
    .await;
    // Slow steps: the leader dies between the first scale-up and the next.
    ok(
        node,
        reqwest::Method::PUT,
        "/api/v1/pools/fa/scaling/cooldown",
        Some(json!({ "scale_up_s": 15 })),
    )
    .await;
    for _ in 0..6 {
        ok(
            node,
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "queue": "fa-q", "resources": { "cpu_m": 1000, "memory_mb": 100 }, "command": { "argv": ["sleep", "30"] } })),
        )
        .await;
    }
    let first = eventually(TIMEOUT, "the first scale-up", || async {
        let records = history(node, "fa").await;
        Ok(records.into_iter().find(|record| record["to"] == 2))
    })
    .await
    .unwrap();
    cluster.node(leader).kill9();
    let new_leader = cluster.leader(TIMEOUT).await.unwrap();
    assert_ne!(new_leader, leader);
    let node = &cluster.nodes[&new_leader];
    let new_pid = node.pid().unwrap();
    // The new leader starts from the replicated size and goes on to the max.
    eventually(
        TIMEOUT,
        "four workers of fa, all the new leader's",
        || async {
            Ok(
                (worker_processes("fa", Some(new_pid)) == 4 && worker_processes("fa", None) == 4)
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    let records = history(node, "fa").await;
    let kept = records
        .iter()
        .find(|record| record["seq"] == first["seq"])
        .expect("the decision made before the failover is in the new leader's history");
    assert_eq!(
        (kept["from"].as_u64(), kept["to"].as_u64()),
        (Some(1), Some(2)),
        "{kept}"
    );
    assert!(
        records
            .iter()
            .any(|record| record["to"] == 4 && record["seq"].as_u64() > first["seq"].as_u64()),
        "the new leader went on from 2: {records:?}"
    );
    drop(cluster);
    eventually(TIMEOUT, "no worker process of fa left", || async {
        Ok((worker_processes("fa", None) == 0).then_some(()))
    })
    .await
    .unwrap();
}

const SEEDED: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      min_size: 0\n      max_size: 2\n    - id: seeded\n      provider: simulated\n      min_size: 1\n      max_size: 5\n      worker_shape: { cpu_m: 1000, memory_mb: 1024, gpu: 0 }\n      scaling:\n        policies:\n          - { id: util, type: target_tracking, metric: utilization, target: 0.6 }\n          - { id: office, type: scheduled, cron: \"0 9 * * MON-FRI\", timezone: Europe/Madrid, duration_s: 36000, min: 2, max: 5, desired: 3 }\n        cooldown: { scale_up_s: 30, max_added_per_minute: 4 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_pool_starts_with_its_scaling_policies_and_config_check_names_a_bad_one() {
    let (dir, node) = start_node(&format!("{YAML}{SEEDED}"), None).await;
    let scaling = eventually(TIMEOUT, "the configured policies", || async {
        let (status, scaling) = call(
            &node,
            reqwest::Method::GET,
            "/api/v1/pools/seeded/scaling",
            None,
        )
        .await;
        Ok((status == 200
            && scaling["policies"]
                .as_array()
                .is_some_and(|policies| policies.len() == 2))
        .then_some(scaling))
    })
    .await
    .unwrap();
    assert_eq!(scaling["policies"][0]["id"], "util", "{scaling}");
    assert_eq!(
        scaling["policies"][1]["timezone"], "Europe/Madrid",
        "{scaling}"
    );
    assert_eq!(
        (
            scaling["cooldown"]["scale_up_s"].as_u64(),
            scaling["cooldown"]["max_added_per_minute"].as_u64(),
            scaling["cooldown"]["scale_down_s"].as_u64()
        ),
        (Some(30), Some(4), Some(120)),
        "{scaling}"
    );
    assert_eq!(scaling["active"], true, "{scaling}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, SEEDED.replace("target: 0.6", "target: 1.6")).unwrap();
    let output = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("resource_pools.pools[1].scaling.policies[0].target"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_over_grpc_and_a_threshold_trigger_that_fires_after_its_evaluations() {
    use hodei_proto::v1 as pb;
    use hodei_proto::v1::resource_pool_service_client::ResourcePoolServiceClient;
    let (_dir, node) = start().await;
    pool_with_queue(
        &node,
        json!({
            "id": "thr", "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 4,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
        }),
    )
    .await;
    let mut pools = ResourcePoolServiceClient::connect(node.grpc_url())
        .await
        .unwrap();
    let policy = pools
        .configure_scaling_policy(pb::ConfigureScalingPolicyRequest {
            pool_id: "thr".into(),
            policy: Some(pb::ScalingPolicy {
                r#type: "step_scaling".into(),
                metric: Some("pending_jobs_per_worker".into()),
                steps: vec![pb::ScalingStep {
                    lower: Some(100.0),
                    upper: None,
                    adjustment: 1,
                }],
                ..Default::default()
            }),
            enabled: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(policy.id.starts_with("policy-"), "{policy:?}");
    assert_eq!(
        (policy.r#type.as_str(), policy.enabled),
        ("step_scaling", true)
    );
    let refused = pools
        .configure_scaling_policy(pb::ConfigureScalingPolicyRequest {
            pool_id: "thr".into(),
            policy: Some(pb::ScalingPolicy {
                r#type: "target_tracking".into(),
                metric: Some("queue_depth".into()),
                target: Some(1.0),
                ..Default::default()
            }),
            enabled: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("metric"), "{refused:?}");
    let listed = pools
        .list_scaling_policies(pb::GetPoolRequest {
            id: "thr".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.policies.len(), 1);
    pools
        .delete_scaling_policy(pb::ScalingPolicyRef {
            pool_id: "thr".into(),
            policy_id: policy.id.clone(),
        })
        .await
        .unwrap();
    let missing = pools
        .delete_scaling_policy(pb::ScalingPolicyRef {
            pool_id: "thr".into(),
            policy_id: policy.id,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");

    // Five jobs wait on one worker of one slot: pending per worker 4 > 2, twice in a row.
    let trigger = ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/thr/scaling/triggers",
        Some(json!({ "id": "backlog", "type": "threshold", "metric": "pending_jobs_per_worker", "operator": "gt", "value": 2, "for_evaluations": 2, "adjustment": 1 })),
    )
    .await;
    assert_eq!(trigger["for_evaluations"], 2, "{trigger}");
    for _ in 0..6 {
        ok(
            &node,
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "queue": "thr-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 60000, "exit_code": 0 } })),
        )
        .await;
    }
    let fired = eventually(TIMEOUT, "the threshold trigger to fire", || async {
        let records = history(&node, "thr").await;
        Ok(records
            .into_iter()
            .find(|record| record["source"] == "trigger:backlog" && record["to"] == 2))
    })
    .await
    .unwrap();
    assert!(
        fired["proposals"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("for 2 evaluations"),
        "{fired}"
    );
    let grpc_history = pools
        .get_scaling_history(pb::ScalingHistoryRequest {
            pool_id: "thr".into(),
            limit: Some(10),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        grpc_history
            .records
            .iter()
            .any(|record| record.source == "trigger:backlog")
    );
    let dry = pools
        .evaluate_scaling(pb::EvaluateScalingRequest {
            pool_id: "thr".into(),
            dry_run: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.dry_run && dry.recorded.is_none(), "{dry:?}");
    assert_eq!(dry.from, 2, "{dry:?}");
}
