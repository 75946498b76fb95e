//! Resource pools (US-09.3.1 - US-09.3.4) on a real node: a `process` pool that starts
//! and stops real `hodei worker` processes (checked in the process table), a drain, a
//! static pool that degrades and recovers, and the refusals over REST and gRPC.

use std::time::Duration;

use hodei_proto::v1 as pb;
use hodei_proto::v1::resource_pool_service_client::ResourcePoolServiceClient;
use hodei_tests::{NodeProcess, NodeSpec, RestApi, WorkerProcess, eventually, worker_processes};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

const YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 1000000\n    memory_mb: 1000000\n    max_concurrent_jobs: 10000\n    max_pending_jobs: 100000\nworkers:\n  heartbeat_interval_ms: 500\n  missed_heartbeats: 3\n";

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

async fn send(node: &NodeProcess, method: reqwest::Method, path: &str, body: Value) -> Value {
    RestApi::new(node).ok(method, path, Some(body)).await
}

async fn start(extra_yaml: &str) -> (tempfile::TempDir, NodeProcess) {
    let spec = NodeSpec {
        extra_yaml: format!("{YAML}{extra_yaml}"),
        ..NodeSpec::new(1)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    (dir, node)
}

async fn wait_processes(pool: &str, count: usize) {
    eventually(
        TIMEOUT,
        &format!("{count} worker processes of {pool}"),
        || async { Ok((worker_processes(pool, None) == count).then_some(())) },
    )
    .await
    .unwrap();
}

async fn job_states(node: &NodeProcess, ids: &[String]) -> Vec<String> {
    let mut states = Vec::new();
    for id in ids {
        states.push(
            get(node, &format!("/api/v1/jobs/{id}")).await["state"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    states
}

/// With `workers.enforce_limits`, the agents a node starts give each job its memory
/// request as its address space: a job that builds a 64 MB string fails with 16 MiB and
/// succeeds with 512 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_limits_hold_a_job_to_its_memory_request() {
    let (_dir, node) = start("  enforce_limits: true\n").await;
    crate::autoscaling::pool_with_queue(
        &node,
        json!({
            "id": "limited", "provider": "process", "min_size": 1, "max_size": 1,
            "worker_shape": { "cpu_m": 2000, "memory_mb": 2048 },
        }),
    )
    .await;
    wait_processes("limited", 1).await;
    let script = "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo ${#x}";
    let api = RestApi::new(&node);
    let mut ends = Vec::new();
    for memory_mb in [16, 512] {
        let submitted = send(
            &node,
            reqwest::Method::POST,
            "/api/v1/jobs",
            json!({ "queue": "limited-q", "resources": { "cpu_m": 100, "memory_mb": memory_mb },
                    "command": { "argv": ["sh", "-c", script], "timeout_s": 60 } }),
        )
        .await;
        let id = submitted["job"]["id"].as_str().unwrap().to_string();
        let logs = eventually(TIMEOUT, "the job's end", || async {
            let (_, logs) = api
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/jobs/{id}/logs"),
                    None,
                    None,
                )
                .await;
            Ok(matches!(logs["state"].as_str(), Some("succeeded" | "failed")).then_some(logs))
        })
        .await
        .unwrap();
        ends.push((
            memory_mb,
            logs["state"].clone(),
            logs["output_tail"].clone(),
        ));
    }
    assert_eq!(ends[0].1, "failed", "{ends:?}");
    assert_eq!(ends[1].1, "succeeded", "{ends:?}");
    assert!(ends[1].2.as_str().unwrap().contains("64000000"), "{ends:?}");
}

/// A job runs with its own variables and a search path, and nothing of its worker's
/// environment: the node that started the worker holds `HODEI_CLUSTER_SECRET` (the test
/// harness sets it), which a process pool's workers inherit, and no job may read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_sees_none_of_its_nodes_environment() {
    let (_dir, node) = start("").await;
    crate::autoscaling::pool_with_queue(
        &node,
        json!({
            "id": "bare", "provider": "process", "min_size": 1, "max_size": 1,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
        }),
    )
    .await;
    wait_processes("bare", 1).await;
    let submitted = send(
        &node,
        reqwest::Method::POST,
        "/api/v1/jobs",
        json!({ "queue": "bare-q", "resources": { "cpu_m": 100, "memory_mb": 64 },
                "command": { "argv": ["env"], "env": { "MINE": "yes" } } }),
    )
    .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let api = RestApi::new(&node);
    let logs = eventually(TIMEOUT, "the job's output", || async {
        let (_, logs) = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{id}/logs"),
                None,
                None,
            )
            .await;
        Ok((logs["state"] == "succeeded").then_some(logs))
    })
    .await
    .unwrap();
    let output = logs["output_tail"].as_str().unwrap();
    assert!(
        output.contains("MINE=yes") && output.contains("PATH="),
        "{output}"
    );
    // The node's own HODEI_* variables stay with it; the job learns only which run it is.
    let mut hodei: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("HODEI_"))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    hodei.sort_unstable();
    assert_eq!(
        hodei,
        ["HODEI_JOB_ATTEMPT", "HODEI_JOB_ID", "HODEI_WORKER_ID"],
        "{output}"
    );
    assert!(output.contains(&format!("HODEI_JOB_ID={id}")), "{output}");
    assert!(!output.contains(hodei_tests::CLUSTER_SECRET), "{output}");
}

/// Submits a job to `queue` and waits for its end: (state, exit code, output).
async fn run_to_end(node: &NodeProcess, queue: &str, command: Value) -> (String, Value, String) {
    let submitted = send(
        node,
        reqwest::Method::POST,
        "/api/v1/jobs",
        json!({ "queue": queue, "resources": { "cpu_m": 100, "memory_mb": 64 }, "command": command }),
    )
    .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let api = RestApi::new(node);
    eventually(TIMEOUT, "the job's end", || async {
        let (_, logs) = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{id}/logs"),
                None,
                None,
            )
            .await;
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        // The logs' own state: their tail is complete once it is final.
        let ended = ["succeeded", "failed"].contains(&logs["state"].as_str().unwrap_or(""));
        Ok(ended.then(|| {
            (
                job["state"].as_str().unwrap().to_string(),
                job["exit_code"].clone(),
                logs["output_tail"].as_str().unwrap_or("").to_string(),
            )
        }))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_as_the_configured_user_only_in_allowed_directories_away_from_the_data_dir() {
    let allowed = tempfile::tempdir().unwrap();
    let work_root = tempfile::tempdir().unwrap();
    // The test runs as root (README): the agents start jobs as `nobody`.
    let (dir, node) = start(&format!(
        "  work_root: {}\n  run_as: nobody\n  allowed_dirs: [{}]\n",
        work_root.path().display(),
        allowed.path().display()
    ))
    .await;
    crate::autoscaling::pool_with_queue(
        &node,
        json!({
            "id": "confined", "provider": "process", "min_size": 1, "max_size": 1,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
        }),
    )
    .await;
    wait_processes("confined", 1).await;
    // In its work directory, as nobody, and not under the data directory.
    let (state, _, output) = run_to_end(
        &node,
        "confined-q",
        json!({ "argv": ["sh", "-c", "id -u; pwd"] }),
    )
    .await;
    assert_eq!(state, "succeeded", "{output}");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let mut lines = output.lines();
    assert_eq!(lines.next(), Some(nobody.to_string().as_str()), "{output}");
    let pwd = lines.next().unwrap_or_default().to_string();
    let work_root = std::fs::canonicalize(work_root.path()).unwrap();
    assert!(pwd.starts_with(work_root.to_str().unwrap()), "{pwd}");
    assert!(!pwd.starts_with(dir.path().to_str().unwrap()), "{pwd}");
    // In an allowed directory; anywhere else it fails before it starts.
    let (state, _, output) = run_to_end(
        &node,
        "confined-q",
        json!({ "argv": ["pwd"], "working_dir": allowed.path().display().to_string() }),
    )
    .await;
    assert_eq!(state, "succeeded", "{output}");
    for outside in ["/etc", dir.path().to_str().unwrap()] {
        let (state, exit_code, output) = run_to_end(
            &node,
            "confined-q",
            json!({ "argv": ["cat", "/etc/hostname"], "working_dir": outside }),
        )
        .await;
        assert_eq!(
            (state.as_str(), exit_code),
            ("failed", json!(126)),
            "{output}"
        );
        assert!(output.contains("outside the directories"), "{output}");
    }
    // As nobody, the node's data is out of reach.
    let data = dir.path().join("data");
    let (state, _, output) = run_to_end(
        &node,
        "confined-q",
        json!({ "argv": ["sh", "-c", format!("ls {} || echo refused", data.display())] }),
    )
    .await;
    assert_eq!(state, "succeeded", "{output}");
    assert!(output.contains("refused"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_pool_grows_to_run_parallel_jobs_and_shrinks_back_when_idle() {
    let (_dir, node) = start("").await;
    let pool = send(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools",
        json!({
            "id": "grow", "provider": "process", "min_size": 2, "max_size": 6,
            "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 },
            "dynamic": { "idle_timeout_s": 4, "provision_timeout_s": 30 },
        }),
    )
    .await;
    assert_eq!(
        (pool["type"].as_str(), pool["state"].as_str()),
        (Some("dynamic"), Some("active"))
    );
    send(
        &node,
        reqwest::Method::POST,
        "/api/v1/queues",
        json!({ "id": "grow-q", "pools": ["grow"] }),
    )
    .await;
    wait_processes("grow", 2).await;

    let mut ids = Vec::new();
    for _ in 0..6 {
        let submitted = send(
            &node,
            reqwest::Method::POST,
            "/api/v1/jobs",
            json!({ "queue": "grow-q", "resources": { "cpu_m": 1000, "memory_mb": 100 }, "command": { "argv": ["sleep", "8"] } }),
        )
        .await;
        ids.push(submitted["job"]["id"].as_str().unwrap().to_string());
    }
    let resized = send(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/grow/dynamic",
        json!({ "desired": 6 }),
    )
    .await;
    assert_eq!(resized["desired"], 6);
    wait_processes("grow", 6).await;
    eventually(TIMEOUT, "six jobs running at once", || async {
        let states = job_states(&node, &ids).await;
        Ok((states.iter().all(|state| state == "running")).then_some(()))
    })
    .await
    .unwrap();
    eventually(TIMEOUT, "the jobs to succeed", || async {
        let states = job_states(&node, &ids).await;
        Ok((states.iter().all(|state| state == "succeeded")).then_some(()))
    })
    .await
    .unwrap();
    // Idle beyond min for the idle timeout: back to two processes, and the desired size too.
    wait_processes("grow", 2).await;
    eventually(TIMEOUT, "the pool to be back at two", || async {
        let dynamic = get(&node, "/api/v1/pools/grow/dynamic").await;
        Ok((dynamic["current"] == 2 && dynamic["desired"] == 2).then_some(()))
    })
    .await
    .unwrap();
    let metrics = get(&node, "/api/v1/pools/grow/metrics").await;
    assert_eq!(metrics["jobs"]["finished"], 6, "{metrics}");
    assert_eq!(metrics["jobs"]["running"], 0, "{metrics}");
    assert_eq!(metrics["allocation_latency"]["samples"], 6, "{metrics}");
    assert!(
        metrics["allocation_latency"]["p99_ms"].as_u64().unwrap()
            >= metrics["allocation_latency"]["p50_ms"].as_u64().unwrap()
    );
    assert_eq!(
        metrics["provisioning"]["succeeded"], 6,
        "two at first, four for the resize: {metrics}"
    );
    assert_eq!(metrics["provisioning"]["success_rate"], 1.0, "{metrics}");
    assert_eq!(
        (
            metrics["size"]["current"].as_u64(),
            metrics["size"]["max"].as_u64()
        ),
        (Some(2), Some(6))
    );
    assert_eq!(metrics["utilization"]["cpu"], 0.0, "{metrics}");
    let workers = get(&node, "/api/v1/pools/grow/workers").await;
    let terminated = workers["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|worker| worker["state"] == "terminated")
        .count();
    assert_eq!(terminated, 4, "{workers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_running_jobs_finish_then_stops_the_workers_and_decommissions() {
    let (_dir, node) = start("").await;
    send(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools",
        json!({ "id": "drainme", "provider": "process", "min_size": 1, "max_size": 2, "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 } }),
    )
    .await;
    send(
        &node,
        reqwest::Method::POST,
        "/api/v1/queues",
        json!({ "id": "dq", "pools": ["drainme"] }),
    )
    .await;
    wait_processes("drainme", 1).await;
    let running = send(
        &node,
        reqwest::Method::POST,
        "/api/v1/jobs",
        json!({ "queue": "dq", "resources": { "cpu_m": 500, "memory_mb": 100 }, "command": { "argv": ["sleep", "3"] } }),
    )
    .await["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(TIMEOUT, "the job to run", || async {
        Ok((job_states(&node, std::slice::from_ref(&running)).await[0] == "running").then_some(()))
    })
    .await
    .unwrap();

    let drained = send(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools/drainme/lifecycle",
        json!({ "action": "drain", "reason": "retire" }),
    )
    .await;
    assert_eq!(drained["state"], "draining");
    // No new dispatch: a job submitted now waits, with the reason.
    let waiting = send(
        &node,
        reqwest::Method::POST,
        "/api/v1/jobs",
        json!({ "queue": "dq", "resources": { "cpu_m": 100, "memory_mb": 10 }, "command": { "argv": ["true"] } }),
    )
    .await["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let position = get(&node, &format!("/api/v1/jobs/{waiting}/position")).await;
    assert!(
        position["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|reason| reason["code"] == "pool_unavailable"),
        "{position}"
    );
    let lifecycle = eventually(TIMEOUT, "the pool to be decommissioned", || async {
        let lifecycle = get(&node, "/api/v1/pools/drainme/lifecycle").await;
        Ok((lifecycle["state"] == "decommissioned").then_some(lifecycle))
    })
    .await
    .unwrap();
    assert_eq!(
        job_states(&node, std::slice::from_ref(&running)).await,
        ["succeeded"]
    );
    assert_eq!(
        job_states(&node, std::slice::from_ref(&waiting)).await,
        ["pending"]
    );
    wait_processes("drainme", 0).await;
    let history: Vec<(String, String, String)> = lifecycle["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            (
                step["to"].as_str().unwrap().to_string(),
                step["by"].as_str().unwrap().to_string(),
                step["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(history.len(), 2, "{lifecycle}");
    assert_eq!(
        (
            history[0].0.as_str(),
            history[0].1.as_str(),
            history[0].2.as_str()
        ),
        ("draining", "admin", "retire")
    );
    assert_eq!(
        (history[1].0.as_str(), history[1].1.as_str()),
        ("decommissioned", "hodei")
    );
    assert!(lifecycle["allowed_actions"].as_array().unwrap().is_empty());

    // Deleting: refused while a queue uses it; after, allowed (it was drained).
    let (status, problem) = call(
        reqwest::Method::DELETE,
        &node,
        "/api/v1/pools/drainme",
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        problem["detail"].as_str().unwrap().contains("queue `dq`"),
        "{problem}"
    );
    send(
        &node,
        reqwest::Method::POST,
        &format!("/api/v1/jobs/{waiting}/cancel"),
        json!({}),
    )
    .await;
    let (status, _) = call(reqwest::Method::DELETE, &node, "/api/v1/queues/dq", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(
        reqwest::Method::DELETE,
        &node,
        "/api/v1/pools/drainme",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(reqwest::Method::GET, &node, "/api/v1/pools/drainme", None).await;
    assert_eq!(status, 404);
}

const STATIC_POOL: &str =
    "resource_pools:\n  pools:\n    - id: pool-default\n      min_size: 2\n      max_size: 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_pool_is_degraded_when_a_worker_dies_and_active_when_one_returns() {
    let (dir, node) = start(STATIC_POOL).await;
    let servers = [node.grpc_addr()];
    let _first = WorkerProcess::start(
        &dir.path().join("w1"),
        "s1",
        "pool-default",
        &servers,
        1000,
        1024,
    )
    .unwrap();
    let mut second = WorkerProcess::start(
        &dir.path().join("w2"),
        "s2",
        "pool-default",
        &servers,
        1000,
        1024,
    )
    .unwrap();
    let state = |expected: &'static str| {
        let node = &node;
        async move {
            eventually(
                TIMEOUT,
                &format!("pool-default to be {expected}"),
                || async {
                    let pool = get(node, "/api/v1/pools/pool-default").await;
                    Ok((pool["state"] == expected).then_some(()))
                },
            )
            .await
            .unwrap();
        }
    };
    eventually(TIMEOUT, "both workers healthy", || async {
        let settings = get(&node, "/api/v1/pools/pool-default/static").await;
        Ok((settings["healthy_workers"] == 2).then_some(()))
    })
    .await
    .unwrap();
    state("active").await;
    let static_settings = get(&node, "/api/v1/pools/pool-default/static").await;
    assert_eq!(
        (
            static_settings["size"].as_u64(),
            static_settings["healthy_workers"].as_u64()
        ),
        (Some(2), Some(2))
    );
    second.kill9();
    state("degraded").await;
    let lifecycle = get(&node, "/api/v1/pools/pool-default/lifecycle").await;
    let last = lifecycle["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["to"].as_str(), last["reason"].as_str()),
        (Some("degraded"), Some("1 of 2 workers healthy")),
        "{lifecycle}"
    );
    let _back = WorkerProcess::start(
        &dir.path().join("w3"),
        "s2",
        "pool-default",
        &servers,
        1000,
        1024,
    )
    .unwrap();
    state("active").await;
    // A smaller expected size makes one worker enough.
    let settings = send(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/pool-default/static",
        json!({ "size": 1, "expected_workers": ["s1"] }),
    )
    .await;
    assert_eq!(settings["size"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_refusals_over_rest_and_grpc() {
    let (_dir, node) = start("").await;
    let cases = [
        (json!({ "id": "Bad Id" }), 422, "id"),
        (
            json!({ "id": "p1", "min_size": 5, "max_size": 2 }),
            422,
            "min_size",
        ),
        (json!({ "id": "p1", "max_size": 0 }), 422, "max_size"),
        (json!({ "id": "p1", "provider": "cloud" }), 422, "provider"),
        (
            json!({ "id": "p1", "type": "static", "provider": "process" }),
            422,
            "provider",
        ),
        (
            json!({ "id": "p1", "type": "dynamic", "provider": "static" }),
            422,
            "provider",
        ),
        (
            json!({ "id": "p1", "worker_shape": { "cpu_m": 0, "memory_mb": 10 } }),
            422,
            "worker_shape",
        ),
        (json!({ "id": "pool-default" }), 409, ""),
    ];
    for (body, status, field) in cases {
        let (got, problem) = call(
            reqwest::Method::POST,
            &node,
            "/api/v1/pools",
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body}: {problem}");
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{body}: {problem}");
        }
    }
    send(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools",
        json!({ "id": "sim", "provider": "simulated", "min_size": 1, "max_size": 2 }),
    )
    .await;
    let (status, problem) = call(
        reqwest::Method::PUT,
        &node,
        "/api/v1/pools/sim/dynamic",
        Some(json!({ "desired": 5 })),
    )
    .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("desired")));
    let (status, _) = call(
        reqwest::Method::GET,
        &node,
        "/api/v1/pools/sim/static",
        None,
    )
    .await;
    assert_eq!(status, 409, "a dynamic pool has no static settings");
    let (status, _) = call(
        reqwest::Method::GET,
        &node,
        "/api/v1/pools/nope/workers",
        None,
    )
    .await;
    assert_eq!(status, 404);
    eventually(TIMEOUT, "the virtual worker", || async {
        Ok((get(&node, "/api/v1/pools/sim").await["workers"]["idle"] == 1).then_some(()))
    })
    .await
    .unwrap();
    let (status, problem) = call(reqwest::Method::DELETE, &node, "/api/v1/pools/sim", None).await;
    assert_eq!(status, 409, "a pool with a live worker: {problem}");
    let (status, problem) = call(
        reqwest::Method::POST,
        &node,
        "/api/v1/pools/sim/lifecycle",
        Some(json!({ "action": "resume" })),
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        problem["detail"].as_str().unwrap().contains("is active"),
        "{problem}"
    );
    let (status, problem) = call(
        reqwest::Method::POST,
        &node,
        "/api/v1/pools/sim/lifecycle",
        Some(json!({ "action": "explode" })),
    )
    .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("action")));

    let mut pools = ResourcePoolServiceClient::connect(node.grpc_url())
        .await
        .unwrap();
    let created = pools
        .create_pool(pb::CreatePoolRequest {
            id: "g1".into(),
            provider: "simulated".into(),
            min_size: Some(0),
            max_size: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (created.r#type.as_str(), created.state.as_str()),
        ("dynamic", "active")
    );
    let listed = pools
        .list_pools(pb::ListPoolsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.iter().any(|pool| pool.id == "g1"));
    // gRPC reads offer the same consistency choice as REST.
    let stale = pools
        .list_pools(pb::ListPoolsRequest {
            consistency: "stale".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stale.items.iter().any(|pool| pool.id == "g1"));
    let refused = pools
        .get_pool(pb::GetPoolRequest {
            id: "g1".into(),
            consistency: "eventual".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("consistency"),
        "{}",
        refused.message()
    );
    let bad = pools
        .create_pool(pb::CreatePoolRequest {
            id: "g2".into(),
            min_size: Some(4),
            max_size: Some(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let duplicate = pools
        .create_pool(pb::CreatePoolRequest {
            id: "g1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), tonic::Code::AlreadyExists);
    let busy = pools
        .delete_pool(pb::GetPoolRequest {
            id: "sim".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(busy.code(), tonic::Code::FailedPrecondition);
    let illegal = pools
        .apply_pool_action(pb::PoolActionRequest {
            id: "g1".into(),
            action: "decommission".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(illegal.code(), tonic::Code::FailedPrecondition);
    let updated = pools
        .update_pool(pb::UpdatePoolRequest {
            id: "g1".into(),
            max_size: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.max_size, 5);
    let missing = pools
        .get_pool(pb::GetPoolRequest {
            id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let metrics = pools
        .get_pool_metrics(pb::GetPoolRequest {
            id: "sim".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (metrics.current_size, metrics.state.as_str()),
        (1, "active")
    );
    let no_metrics = pools
        .get_pool_metrics(pb::GetPoolRequest {
            id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_metrics.code(), tonic::Code::NotFound);
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let suspended = pools
        .apply_pool_action(pb::PoolActionRequest {
            id: "g1".into(),
            action: "suspend".into(),
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suspended.state, "suspended");
    assert_eq!(suspended.allowed_actions, ["resume", "drain"]);
    let deleted = pools
        .delete_pool(pb::GetPoolRequest {
            id: "g1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.id, "g1", "no worker and no job: it may go");
}

const PROCESS_POOL: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      min_size: 0\n      max_size: 2\n    - id: fo\n      provider: process\n      min_size: 2\n      max_size: 4\n      worker_shape: { cpu_m: 1000, memory_mb: 1024, gpu: 0 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_leader_failover_the_process_pool_returns_to_its_size_with_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = hodei_tests::ProcessCluster::start_with(
        dir.path(),
        3,
        &[],
        &format!("{YAML}{PROCESS_POOL}"),
    )
    .await
    .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let leader_pid = cluster.nodes[&leader].pid().unwrap();
    wait_processes("fo", 2).await;
    assert_eq!(
        worker_processes("fo", Some(leader_pid)),
        2,
        "the leader runs the pool's processes"
    );

    cluster.node(leader).kill9();
    // The dead leader's workers die with it; the new leader replaces them.
    let new_leader = cluster.leader(TIMEOUT).await.unwrap();
    assert_ne!(new_leader, leader);
    let new_pid = cluster.nodes[&new_leader].pid().unwrap();
    eventually(TIMEOUT, "two workers started by the new leader", || async {
        Ok(
            (worker_processes("fo", Some(new_pid)) == 2 && worker_processes("fo", None) == 2)
                .then_some(()),
        )
    })
    .await
    .unwrap();
    let node = &cluster.nodes[&new_leader];
    let reached = eventually(TIMEOUT, "the pool to have two live workers", || async {
        let pool = get(node, "/api/v1/pools/fo/dynamic").await;
        Ok((pool["current"] == 2).then_some(()))
    })
    .await;
    if let Err(error) = reached {
        // What the new leader sees, for the next time this fails (seen twice, on a loaded
        // machine, never alone).
        let pool = get(node, "/api/v1/pools/fo/dynamic").await;
        let workers = get(node, "/api/v1/pools/fo/workers").await;
        panic!(
            "{error}\npool: {pool}\nworkers: {workers}\nprocesses: {}\nnew leader log:\n{}",
            worker_processes("fo", None),
            node.log_tail()
        );
    }
    drop(cluster);
    wait_processes("fo", 0).await;
}
