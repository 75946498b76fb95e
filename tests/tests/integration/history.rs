//! The job history (issue: bounded state): finished jobs leave memory for the history on
//! disk, are still found by id, in lists and by their idempotency key, on every member,
//! after a restart, and on a member that joins by snapshot; every replica holds the same
//! history (same state digest).

use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, RestApi, WorkerProcess, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Simulated workers, room for every job, and finished jobs moved to the history a second
/// after they end.
const HISTORY_YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 200000\n    memory_mb: 400000\n    max_concurrent_jobs: 1000\n    max_pending_jobs: 100000\nresource_pools:\n  pools:\n    - id: pool-sim\n      provider: simulated\n      min_size: 4\n      max_size: 4\n      worker_shape: { cpu_m: 4000, memory_mb: 8192, gpu: 0 }\nqueues:\n  - id: default\n    pools: [pool-sim]\nscheduling:\n  fair_share_window_s: 1\nretention:\n  finished_in_memory_s: 1\n  sweep_interval_s: 1\n";

const COMPACTION: [&str; 2] = [
    "snapshot_every_entries: 20",
    "log_entries_kept_after_snapshot: 0",
];

fn job(index: usize) -> Value {
    json!({
        "resources": { "cpu_m": 100, "memory_mb": 64 },
        "simulate": { "duration_ms": 20, "exit_code": 0 },
        "labels": { "batch": "history" },
        "idempotency_key": format!("key-{index}"),
    })
}

async fn wait_in_history(node: &NodeProcess, id: &str) -> Value {
    eventually(TIMEOUT, &format!("job {id} in the history"), || async {
        let (_, found) = RestApi::new(node).get(&format!("/api/v1/jobs/{id}")).await;
        Ok((found["source"] == "history").then_some(found))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_move_to_the_history_on_every_member_and_by_snapshot() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(dir.path(), 3, &COMPACTION, HISTORY_YAML)
        .await
        .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let follower = if leader == 1 { 2 } else { 1 };
    let api = RestApi::new(&cluster.nodes[&leader]);
    let (status, batch) = api
        .post(
            "/api/v1/jobs/batch",
            json!({ "jobs": (0..40).map(job).collect::<Vec<_>>() }),
        )
        .await;
    assert_eq!(status, 202, "{}", batch["refused"]);
    let ids: Vec<String> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["job"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 40);

    // Every job ends, then leaves memory: found by id on a follower, from the history.
    for id in &ids {
        let found = wait_in_history(&cluster.nodes[&follower], id).await;
        assert_eq!(found["state"], "succeeded", "{found}");
    }
    // Lists page through memory and history alike, filters held.
    let follower_api = RestApi::new(&cluster.nodes[&follower]);
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = follower_api
            .get(&format!(
                "/api/v1/jobs?state=succeeded&label=batch=history&limit=15&cursor={cursor}"
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["source"], "history", "{item}");
            listed.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(listed, ids, "every job once, in submit order");
    let (_, newest) = follower_api
        .get("/api/v1/jobs?tenant=default&order=newest&limit=1")
        .await;
    assert_eq!(newest["items"][0]["id"], ids[39].as_str(), "{newest}");
    let (_, running) = follower_api.get("/api/v1/jobs?state=running").await;
    assert_eq!(running["items"], json!([]), "{running}");

    // An idempotency key of an archived job still answers with that job.
    let (status, again) = api.post("/api/v1/jobs", job(7)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["duplicate"].clone(), again["job"]["id"].clone()),
        (json!(true), json!(ids[7]))
    );
    // Cancelling a job in the history is a conflict, not a missing job.
    let (status, refused) = api
        .post(&format!("/api/v1/jobs/{}/cancel", ids[0]), json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    // The fair-share window cannot reach past what memory holds.
    let (status, refused) = api
        .get("/api/v1/queues/default/fair-share?window_s=3600")
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("retention.finished_in_memory_s"),
        "{refused}"
    );

    // A member that joins once the log is compacted gets the history by snapshot: enough
    // entries after the archiving for a snapshot (every 20) that holds it.
    let archived_by = cluster.nodes[&leader].status().await.unwrap()["last_applied_index"]
        .as_u64()
        .unwrap();
    for index in 0..25 {
        let (status, created) = api
            .post("/api/v1/tenants", json!({ "id": format!("t{index}") }))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    eventually(TIMEOUT, "a snapshot after the archiving", || async {
        let status = cluster.nodes[&leader].status().await;
        Ok(status
            .and_then(|status| status["snapshot_index"].as_u64())
            .filter(|index| *index > archived_by))
    })
    .await
    .unwrap();
    let mut spec = NodeSpec::new(4);
    spec.bootstrap = "join";
    spec.cluster_extra = COMPACTION.iter().map(|line| line.to_string()).collect();
    spec.extra_yaml = HISTORY_YAML.to_string();
    let newcomer = NodeProcess::start_spec(&dir.path().join("node4"), &spec).unwrap();
    eventually(TIMEOUT, "node 4 to answer", || async {
        Ok(newcomer.status().await.map(|_| ()))
    })
    .await
    .unwrap();
    let (status, added) = RestApi::new(&cluster.nodes[&leader])
        .post(
            "/api/v1/cluster/members",
            json!({ "node_id": 4, "addr": spec.peer_addr() }),
        )
        .await;
    assert!(status == 200 || status == 201, "{added}");
    cluster.nodes.insert(4, newcomer);
    cluster.node(4).wait_ready(TIMEOUT).await.unwrap();
    let found = wait_in_history(&cluster.nodes[&4], &ids[0]).await;
    assert_eq!(found["id"], ids[0].as_str());
    let status = cluster.nodes[&4].status().await.unwrap();
    assert!(
        status["snapshot_index"].as_u64().unwrap_or(0) > 0,
        "node 4 installed a snapshot: {status}"
    );
    cluster.wait_caught_up(TIMEOUT).await.unwrap();
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();

    // And after a restart it still reads them from its own disk.
    cluster.node(4).kill9();
    cluster.node(4).restart().unwrap();
    cluster.node(4).wait_ready(TIMEOUT).await.unwrap();
    let found = wait_in_history(&cluster.nodes[&4], &ids[39]).await;
    assert_eq!(found["state"], "succeeded");
}

/// The benchmark runner of `hodei worker` (`--runner instant` / `sleep:MS`) runs no
/// process: a job whose command would fail succeeds, through the same reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_runner_reports_runs_without_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(&dir.path().join("node"), 1).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let _worker = WorkerProcess::start_with(
        &dir.path().join("w1"),
        "bench-w1",
        "pool-default",
        &[node.grpc_addr()],
        4_000,
        8_192,
        &["--runner", "sleep:300"],
    )
    .unwrap();
    let api = RestApi::new(&node);
    let (status, submitted) = api
        .post(
            "/api/v1/jobs",
            json!({ "command": { "argv": ["sh", "-c", "echo ran; exit 3"] } }),
        )
        .await;
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let done = eventually(TIMEOUT, "the job to end", || async {
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "succeeded").then_some(job))
    })
    .await
    .unwrap();
    let at = |state: &str| {
        done["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["state"] == state)
            .map(|step| step["at_ms"].as_u64().unwrap())
            .unwrap()
    };
    // 300 ms on the agent's monotonic clock; the transitions carry wall-clock times,
    // which may differ by a few milliseconds.
    assert!(at("succeeded") - at("running") >= 250, "{done}");
    assert_eq!(done["exit_code"], 0, "no process ran: {done}");
    let (_, logs) = api.get(&format!("/api/v1/jobs/{id}/logs")).await;
    assert_eq!(logs["output_tail"], "", "{logs}");
    let refused = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["worker", "--runner", "sometimes"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("must be process, instant or sleep:MS"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
