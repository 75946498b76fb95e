//! Jobs on real workers (issue: jobs run on workers): real `hodei worker` processes run
//! real shell commands; failures are real kill -9s of nodes and workers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, RestApi, WorkerProcess, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Room for many concurrent jobs in the default tenant, and quick lost-worker detection.
const JOB_YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 200000\n    memory_mb: 400000\n    max_concurrent_jobs: 1000\n    max_pending_jobs: 100000\nworkers:\n  heartbeat_interval_ms: 500\n  missed_heartbeats: 3\n";

async fn post(node: &NodeProcess, path: &str, body: Value) -> (u16, Value) {
    RestApi::new(node).post(path, body).await
}

async fn get(node: &NodeProcess, path: &str) -> (u16, Value) {
    RestApi::new(node).get(path).await
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "timed_out" | "cancelled")
}

/// Waits until `count` workers are registered and live.
async fn wait_for_workers(node: &NodeProcess, count: usize) -> anyhow::Result<()> {
    eventually(TIMEOUT, "the workers to register", || async {
        let (_, body) = get(node, "/api/v1/workers").await;
        let live = body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|worker| worker["state"] != "lost")
                    .count()
            })
            .unwrap_or(0);
        Ok((live >= count).then_some(()))
    })
    .await
}

/// Waits until the job is final and returns it.
async fn wait_final(node: &NodeProcess, id: &str) -> anyhow::Result<Value> {
    eventually(TIMEOUT, &format!("job {id} to finish"), || async {
        let (_, job) = get(node, &format!("/api/v1/jobs/{id}")).await;
        Ok(job["state"]
            .as_str()
            .filter(|state| is_final(state))
            .map(|_| job.clone()))
    })
    .await
}

fn process_running(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .map(|output| !output.stdout.is_empty())
        .unwrap_or(false)
}

/// A node (with `extra_yaml`) and one worker `w1` of 4000 m / 8192 MiB registered with it.
async fn node_with_one_worker(
    root: &std::path::Path,
    extra_yaml: &str,
) -> anyhow::Result<(NodeProcess, WorkerProcess)> {
    let spec = NodeSpec {
        extra_yaml: extra_yaml.to_string(),
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(&root.join("node"), &spec)?;
    node.wait_ready(TIMEOUT).await?;
    let worker = WorkerProcess::start(
        &root.join("w1"),
        "w1",
        "pool-default",
        &[node.grpc_addr()],
        4000,
        8192,
    )?;
    wait_for_workers(&node, 1).await?;
    Ok((node, worker))
}

fn shell(script: &str) -> Value {
    json!({ "argv": ["sh", "-c", script] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_real_jobs_on_two_workers_end_as_their_commands_did() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let spec = NodeSpec {
        extra_yaml: JOB_YAML.to_string(),
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(&root.path().join("node"), &spec)?;
    node.wait_ready(TIMEOUT).await?;
    let servers = [node.grpc_addr()];
    let _first = WorkerProcess::start(
        &root.path().join("w1"),
        "w1",
        "pool-default",
        &servers,
        4000,
        8192,
    )?;
    let _second = WorkerProcess::start(
        &root.path().join("w2"),
        "w2",
        "pool-default",
        &servers,
        4000,
        8192,
    )?;
    wait_for_workers(&node, 2).await?;

    let out = root.path().join("out");
    std::fs::create_dir_all(&out)?;
    let jobs: Vec<Value> = (0..50)
        .map(|index| {
            let script = format!(
                "echo written-{index} > {dir}/file-{index}; echo line-{index}; echo err-{index} >&2; exit {code}",
                dir = out.display(),
                code = index % 3
            );
            json!({ "command": shell(&script), "resources": { "cpu_m": 500, "memory_mb": 128 } })
        })
        .collect();
    let (status, batch) = post(&node, "/api/v1/jobs/batch", json!({ "jobs": jobs })).await;
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["accepted"], 50);
    let ids: Vec<String> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["job"]["id"].as_str().unwrap().to_string())
        .collect();

    let mut workers_used = std::collections::BTreeSet::new();
    for (index, id) in ids.iter().enumerate() {
        let job = wait_final(&node, id).await?;
        let code = (index % 3) as i64;
        let expected = if code == 0 { "succeeded" } else { "failed" };
        assert_eq!(job["state"], expected, "job {index}: {job}");
        assert_eq!(job["exit_code"], code, "job {index}");
        let states: Vec<&str> = job["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["pending", "assigned", "running", expected]);
        // Billed for its real run time at the default prices (0.05 USD per core-hour,
        // 0.01 per GB-hour): 500 m and 128 MB, in nano-dollars.
        let at = |step: usize| job["transitions"][step]["at_ms"].as_u64().unwrap();
        let run_ms = (at(3) - at(2)) as f64;
        let expected_cost = (0.5 * 0.05 + 0.125 * 0.01) * 1e9 * run_ms / 3_600_000.0;
        let Some(cost) = job["cost_nanos"].as_u64() else {
            panic!("job {index} ended without a cost: {job}");
        };
        let cost = cost as f64;
        assert!(
            (cost - expected_cost).abs() <= 1.0,
            "job {index}: cost {cost} for {run_ms} ms, expected {expected_cost}"
        );
        workers_used.insert(job["worker"].as_str().unwrap().to_string());
        let (_, logs) = get(&node, &format!("/api/v1/jobs/{id}/logs")).await;
        let tail = logs["output_tail"].as_str().unwrap();
        assert!(
            tail.contains(&format!("line-{index}")) && tail.contains(&format!("err-{index}")),
            "{tail}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join(format!("file-{index}")))?,
            format!("written-{index}\n")
        );
    }
    assert_eq!(workers_used.len(), 2, "both workers ran jobs");

    // A job that sleeps past its timeout is timed_out and its process is gone.
    let (status, submitted) = post(
        &node,
        "/api/v1/jobs",
        json!({ "command": { "argv": ["sleep", "31.7"], "timeout_s": 1 } }),
    )
    .await;
    assert_eq!(status, 202, "{submitted}");
    let job = wait_final(&node, submitted["job"]["id"].as_str().unwrap()).await?;
    assert_eq!(job["state"], "timed_out", "{job}");
    assert!(
        !process_running("sleep 31.7"),
        "the timed-out process is gone"
    );

    // Cancelling a running job kills its process.
    let (_, submitted) = post(
        &node,
        "/api/v1/jobs",
        json!({ "command": { "argv": ["sleep", "32.9"] } }),
    )
    .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    eventually(TIMEOUT, "the job to run", || async {
        let (_, job) = get(&node, &format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "running" && process_running("sleep 32.9")).then_some(()))
    })
    .await?;
    let (status, cancelled) = post(&node, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (200, Some("cancelled"))
    );
    eventually(TIMEOUT, "the cancelled process to die", || async {
        Ok((!process_running("sleep 32.9")).then_some(()))
    })
    .await?;
    let (status, again) = post(&node, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 409, "cancelling a final job: {again}");

    // Filters and pagination of the list.
    let (_, failed) = get(&node, "/api/v1/jobs?state=failed&limit=1000").await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 33);
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let (_, page) = get(&node, &format!("/api/v1/jobs?limit=7&cursor={cursor}")).await;
        seen += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, 52);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_input_is_refused_naming_the_field_and_rule() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let spec = NodeSpec {
        extra_yaml: JOB_YAML.to_string(),
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(&root.path().join("node"), &spec)?;
    node.wait_ready(TIMEOUT).await?;
    eventually(TIMEOUT, "the default queue", || async {
        Ok((get(&node, "/api/v1/queues/default").await.0 == 200).then_some(()))
    })
    .await?;

    let cases = [
        (json!({ "command": { "argv": [] } }), 422, "command.argv"),
        // Client-supplied times are checked, never overflowed.
        (
            json!({ "command": shell("true"), "sla": { "level": "high", "start_by_ms": u64::MAX } }),
            422,
            "sla.start_by_ms",
        ),
        (
            json!({ "command": { "argv": ["true"], "working_dir": "../../etc" } }),
            422,
            "command.working_dir",
        ),
        (
            json!({ "command": { "argv": ["true"], "env": { "BIG": "x".repeat(40_000) } } }),
            422,
            "command.env.BIG",
        ),
        (
            json!({ "command": shell("true"), "resources": { "cpu_m": 0, "memory_mb": 10 } }),
            422,
            "resources.cpu_m",
        ),
        (
            json!({ "command": shell("true"), "resources": { "cpu_m": 100, "memory_mb": 0 } }),
            422,
            "resources.memory_mb",
        ),
        (
            json!({ "command": shell("true"), "resources": { "cpu_m": -5, "memory_mb": 10 } }),
            422,
            "resources.cpu_m",
        ),
        (
            json!({ "command": shell("true"), "resources": { "cpu_m": 64000, "memory_mb": 10 } }),
            422,
            "resources.cpu_m",
        ),
        (
            json!({ "command": shell("true"), "queue": "nope" }),
            404,
            "",
        ),
        (
            json!({ "command": shell("true"), "pool_selector": ["pool-nope"] }),
            404,
            "",
        ),
        (
            json!({ "command": shell("true"), "priority": "urgent" }),
            422,
            "priority",
        ),
        (
            json!({ "command": { "argv": ["true"], "timeout_s": 0 } }),
            422,
            "command.timeout_s",
        ),
    ];
    for (body, status, field) in cases {
        let (got, problem) = post(&node, "/api/v1/jobs", body.clone()).await;
        assert_eq!(got, status, "{body} -> {problem}");
        if !field.is_empty() {
            assert_eq!(problem["field"], field, "{body} -> {problem}");
        }
    }
    let (_, too_big) = post(
        &node,
        "/api/v1/jobs",
        json!({ "command": shell("true"), "resources": { "cpu_m": 64000, "memory_mb": 10 } }),
    )
    .await;
    assert!(
        too_big["detail"].as_str().unwrap().contains("at most 4000"),
        "the refusal names the limit: {too_big}"
    );

    let batch: Vec<Value> = (0..1001)
        .map(|_| json!({ "command": shell("true") }))
        .collect();
    let (status, problem) = post(&node, "/api/v1/jobs/batch", json!({ "jobs": batch })).await;
    assert_eq!(status, 413, "{problem}");
    let (status, _) = post(&node, "/api/v1/jobs/batch", json!({ "jobs": [] })).await;
    assert_eq!(status, 422);
    let (status, mixed) = post(
        &node,
        "/api/v1/jobs/batch",
        json!({ "jobs": [{ "command": shell("true") }, { "command": { "argv": [] } }] }),
    )
    .await;
    assert_eq!(
        (
            status,
            mixed["accepted"].as_u64(),
            mixed["refused"].as_u64()
        ),
        (202, Some(1), Some(1))
    );
    assert_eq!(mixed["results"][1]["field"], "command.argv");

    // An idempotency key returns the first job.
    let body = json!({ "command": shell("true"), "idempotency_key": "nightly-42" });
    let (first_status, first) = post(&node, "/api/v1/jobs", body.clone()).await;
    let (second_status, second) = post(&node, "/api/v1/jobs", body).await;
    assert_eq!((first_status, second_status), (202, 200));
    assert_eq!(first["job"]["id"], second["job"]["id"]);
    assert_eq!(second["duplicate"], true);
    // No worker: the job says why it waits, and where it stands.
    let (_, pending) = get(
        &node,
        &format!("/api/v1/jobs/{}", first["job"]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(pending["state"], "pending");
    assert!(
        pending["pending_reason"]
            .as_str()
            .unwrap()
            .starts_with("no_matching_pool"),
        "{pending}"
    );
    assert!(pending["queue_position"].is_u64());

    // A tenant sees only its own jobs.
    let (status, _) = RestApi::new(&node)
        .call(
            reqwest::Method::POST,
            "/api/v1/tenants",
            None,
            Some(json!({ "id": "acme" })),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = RestApi::new(&node)
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{}", first["job"]["id"].as_str().unwrap()),
            Some("tenant:acme"),
            None,
        )
        .await;
    assert_eq!(status, 404, "another tenant's job is not visible");
    let (status, listed) = RestApi::new(&node)
        .call(
            reqwest::Method::GET,
            "/api/v1/jobs",
            Some("tenant:acme"),
            None,
        )
        .await;
    assert_eq!(
        (status, listed["items"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = RestApi::new(&node)
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some("tenant:acme"),
            Some(json!({ "tenant": "default", "command": shell("true") })),
        )
        .await;
    assert_eq!(status, 403, "a tenant cannot submit for another");

    // Queues: create on a known pool, refuse unknown pools and the default's deletion.
    let (status, queue) = post(
        &node,
        "/api/v1/queues",
        json!({ "id": "batch", "pools": ["pool-default"], "policy": "fifo" }),
    )
    .await;
    assert_eq!((status, queue["policy"].as_str()), (201, Some("fifo")));
    let (status, _) = post(
        &node,
        "/api/v1/queues",
        json!({ "id": "ghost", "pools": ["pool-nope"] }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, patched) = RestApi::new(&node)
        .call(
            reqwest::Method::PATCH,
            "/api/v1/queues/batch",
            None,
            Some(json!({ "policy": "strict_priority" })),
        )
        .await;
    assert_eq!(
        (status, patched["policy"].as_str()),
        (200, Some("strict_priority"))
    );
    let (status, problem) = RestApi::new(&node)
        .call(
            reqwest::Method::PATCH,
            "/api/v1/queues/batch",
            None,
            Some(json!({ "policy": "random" })),
        )
        .await;
    assert_eq!((status, problem["field"].as_str()), (422, Some("policy")));
    let (status, _) = RestApi::new(&node)
        .call(
            reqwest::Method::DELETE,
            "/api/v1/queues/default",
            None,
            None,
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = RestApi::new(&node)
        .call(reqwest::Method::DELETE, "/api/v1/queues/batch", None, None)
        .await;
    assert_eq!(status, 204);
    Ok(())
}

/// Submits with an idempotency key to any node until one acknowledges it; `None` if
/// none did (then the job may or may not exist: it was never acknowledged).
async fn submit_until_acknowledged(
    cluster: &ProcessCluster,
    body: &Value,
    tries: usize,
) -> Option<String> {
    for attempt in 0..tries {
        for node in cluster.nodes.values() {
            let (status, answer) = post(node, "/api/v1/jobs", body.clone()).await;
            if status == 202 || status == 200 {
                return answer["job"]["id"].as_str().map(str::to_string);
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1))).await;
    }
    None
}

async fn any_get(cluster: &ProcessCluster, path: &str) -> Option<Value> {
    for node in cluster.nodes.values() {
        let (status, body) = get(node, path).await;
        if status == 200 {
            return Some(body);
        }
    }
    None
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_with_200_jobs_in_flight_every_acknowledged_job_runs_exactly_once()
-> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let yaml = JOB_YAML.replace("heartbeat_interval_ms: 500", "heartbeat_interval_ms: 1000");
    let mut cluster = ProcessCluster::start_with(root.path(), 3, &[], &yaml).await?;
    let servers: Vec<String> = cluster.nodes.values().map(NodeProcess::grpc_addr).collect();
    let _workers = [
        WorkerProcess::start(
            &root.path().join("w1"),
            "w1",
            "pool-default",
            &servers,
            4000,
            8192,
        )?,
        WorkerProcess::start(
            &root.path().join("w2"),
            "w2",
            "pool-default",
            &servers,
            4000,
            8192,
        )?,
    ];
    let leader = cluster.leader(TIMEOUT).await?;
    wait_for_workers(&cluster.nodes[&leader], 2).await?;
    let out = root.path().join("out");
    std::fs::create_dir_all(&out)?;

    let body = |key: &str| {
        json!({
            "idempotency_key": key,
            "resources": { "cpu_m": 250, "memory_mb": 64 },
            "command": {
                "argv": ["sh", "-c", "echo $$ >> \"$OUT/$KEY.starts\"; sleep 0.4; echo done >> \"$OUT/$KEY.ends\""],
                "env": { "OUT": out.display().to_string(), "KEY": key },
            },
        })
    };
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    for index in 0..200 {
        let key = format!("job-{index}");
        if index == 100 {
            // Half of the jobs are submitted and many still run: kill the leader.
            let (_, page) = get(&cluster.nodes[&leader], "/api/v1/jobs?limit=1000").await;
            let in_flight = page["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter(|job| !job["state"].as_str().is_some_and(is_final))
                        .count()
                })
                .unwrap_or(0);
            assert!(in_flight > 0, "jobs are in flight when the leader dies");
            cluster.node(leader).kill9();
        }
        if let Some(id) = submit_until_acknowledged(&cluster, &body(&key), 60).await {
            acknowledged.insert(key, id);
        }
    }
    assert!(
        acknowledged.len() >= 190,
        "most submissions are acknowledged: {}",
        acknowledged.len()
    );

    for (key, id) in &acknowledged {
        let job = eventually(TIMEOUT, &format!("job {key} to finish"), || async {
            let job = any_get(&cluster, &format!("/api/v1/jobs/{id}")).await;
            Ok(job.filter(|job| job["state"].as_str().is_some_and(is_final)))
        })
        .await?;
        assert_eq!(job["state"], "succeeded", "{key}: {job}");
        assert_eq!(
            lines(&out.join(format!("{key}.starts"))),
            1,
            "{key} started exactly once"
        );
        assert_eq!(
            lines(&out.join(format!("{key}.ends"))),
            1,
            "{key} finished exactly once"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_has_its_running_jobs_requeued_and_finished_elsewhere() -> anyhow::Result<()>
{
    let root = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start_with(root.path(), 3, &[], JOB_YAML).await?;
    let servers: Vec<String> = cluster.nodes.values().map(NodeProcess::grpc_addr).collect();
    let mut doomed = WorkerProcess::start(
        &root.path().join("w1"),
        "w1",
        "pool-default",
        &servers,
        4000,
        8192,
    )?;
    let leader = cluster.leader(TIMEOUT).await?;
    let node = &cluster.nodes[&leader];
    wait_for_workers(node, 1).await?;

    // Two jobs fill the only worker.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, submitted) = post(
            node,
            "/api/v1/jobs",
            json!({ "max_retries": 1, "resources": { "cpu_m": 2000, "memory_mb": 64 }, "command": { "argv": ["sleep", "1.5"] } }),
        )
        .await;
        assert_eq!(status, 202, "{submitted}");
        ids.push(submitted["job"]["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        eventually(TIMEOUT, "the job to run on w1", || async {
            let (_, job) = get(node, &format!("/api/v1/jobs/{id}")).await;
            Ok((job["state"] == "running" && job["worker"] == "w1").then_some(()))
        })
        .await?;
    }
    doomed.kill9();
    let _survivor = WorkerProcess::start(
        &root.path().join("w2"),
        "w2",
        "pool-default",
        &servers,
        4000,
        8192,
    )?;
    for id in &ids {
        let job = wait_final(node, id).await?;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["worker"], "w2", "{job}");
        assert_eq!(job["attempt"], 2, "{job}");
        let reasons: Vec<&str> = job["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|step| step["reason"].as_str())
            .collect();
        assert!(
            reasons
                .iter()
                .any(|reason| reason.contains("missed 3 heartbeats")),
            "{job}"
        );
    }
    let (_, workers) = get(node, "/api/v1/workers").await;
    let lost = workers["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["id"] == "w1")
        .unwrap();
    assert_eq!(lost["state"], "lost");
    Ok(())
}

/// The runs in a marks file written by [`MARKING_JOB`]: for each run (its shell's pid),
/// the first and last wall-clock nanoseconds any of its processes wrote.
fn runs_in(marks: &Path) -> BTreeMap<String, (u128, u128)> {
    let mut runs: BTreeMap<String, (u128, u128)> = BTreeMap::new();
    for line in std::fs::read_to_string(marks).unwrap_or_default().lines() {
        let mut fields = line.split_whitespace();
        let (Some(run), Some(_), Some(at)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<u128>() else { continue };
        let span = runs.entry(run.to_string()).or_insert((at, at));
        span.0 = span.0.min(at);
        span.1 = span.1.max(at);
    }
    runs
}

/// A job that writes "<run> main|child <ns>" lines to the file named by its first
/// argument every 50 ms for `SECONDS_TO_RUN` seconds, from its shell and from a child in
/// the background (a grandchild of the agent, which PR_SET_PDEATHSIG does not reach).
/// Both carry the file's path on their command line.
const MARKING_JOB: &str = r#"MARKS="$1"; run=$$
( while :; do echo "$run child $(date +%s%N) $HODEI_WORKER_ID $HODEI_JOB_ATTEMPT" >> "$MARKS"; sleep 0.05; done ) &
end=$(( $(date +%s) + SECONDS_TO_RUN ))
while [ "$(date +%s)" -lt "$end" ]; do echo "$run main $(date +%s%N) $HODEI_WORKER_ID $HODEI_JOB_ATTEMPT" >> "$MARKS"; sleep 0.05; done
kill $!"#;

/// Submits [`MARKING_JOB`] writing to `marks` for `seconds`; its id.
async fn submit_marking_job(node: &NodeProcess, marks: &Path, seconds: u32) -> String {
    let script = MARKING_JOB.replace("SECONDS_TO_RUN", &seconds.to_string());
    let (status, submitted) = post(
        node,
        "/api/v1/jobs",
        json!({ "max_retries": 2, "resources": { "cpu_m": 1000, "memory_mb": 64 },
                "command": { "argv": ["sh", "-c", script, "marking-job", marks.display().to_string()] } }),
    )
    .await;
    assert_eq!(status, 202, "{submitted}");
    submitted["job"]["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_workers_job_has_ended_before_its_rerun_and_a_killed_workers_job_tree_dies_with_it()
-> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start_with(root.path(), 1, &[], JOB_YAML).await?;
    let servers = vec![cluster.nodes[&1].grpc_addr()];
    let leader = cluster.leader(TIMEOUT).await?;
    let node = &cluster.nodes[&leader];
    let mut workers = BTreeMap::new();
    workers.insert(
        "w1",
        WorkerProcess::start(
            &root.path().join("w1"),
            "w1",
            "pool-default",
            &servers,
            4000,
            8192,
        )?,
    );
    wait_for_workers(node, 1).await?;

    // 1. The job runs on w1; w2 joins; w1 is paused (SIGSTOP) for 10 s. Its fence kills
    // the job's processes when w1's lease ends (2 beats), before the leader declares w1
    // lost (3 beats) and the job runs again on w2.
    let marks = root.path().join("marks");
    let id = submit_marking_job(node, &marks, 4).await;
    eventually(
        TIMEOUT,
        "the job to write its first marks on w1",
        || async {
            let (_, job) = get(node, &format!("/api/v1/jobs/{id}")).await;
            Ok((job["worker"] == "w1" && !runs_in(&marks).is_empty()).then_some(()))
        },
    )
    .await?;
    workers.insert(
        "w2",
        WorkerProcess::start(
            &root.path().join("w2"),
            "w2",
            "pool-default",
            &servers,
            4000,
            8192,
        )?,
    );
    wait_for_workers(node, 2).await?;
    workers["w1"].pause(true)?;
    let paused = std::time::Instant::now();
    let job = wait_final(node, &id).await?;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["worker"], "w2", "{job}");
    assert_eq!(job["attempt"], 2, "{job}");
    // Resumed after 10 s at least; its lease has long ended, so it starts nothing old.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(paused.elapsed())).await;
    workers["w1"].pause(false)?;
    eventually(TIMEOUT, "w1 to register again", || async {
        let (_, listed) = get(node, "/api/v1/workers").await;
        let w1 = listed["items"]
            .as_array()
            .and_then(|items| items.iter().find(|worker| worker["id"] == "w1").cloned());
        Ok(w1.filter(|worker| worker["state"] == "idle").map(|_| ()))
    })
    .await?;
    let runs = runs_in(&marks);
    assert_eq!(runs.len(), 2, "two runs wrote marks: {runs:?}");
    // Each run knows which it is: HODEI_WORKER_ID and HODEI_JOB_ATTEMPT.
    let text = std::fs::read_to_string(&marks)?;
    assert!(text.lines().any(|line| line.ends_with(" w1 1")), "{text}");
    assert!(text.lines().any(|line| line.ends_with(" w2 2")), "{text}");
    let mut spans: Vec<(u128, u128)> = runs.values().copied().collect();
    spans.sort();
    assert!(
        spans[0].1 < spans[1].0,
        "the paused worker's run (last mark at {} ns) overlapped the re-run (first mark at {} ns): {runs:?}\nw1's log:\n{}",
        spans[0].1,
        spans[1].0,
        workers["w1"].log_tail()
    );
    // Nothing of the first run writes after the second ended: its tree is gone.
    let before = std::fs::metadata(&marks)?.len();
    let marker_gone = eventually(TIMEOUT, "no process of either run left", || async {
        Ok((!process_running(&marks.display().to_string())).then_some(()))
    })
    .await;
    assert!(marker_gone.is_ok(), "{marker_gone:?}");
    assert_eq!(
        std::fs::metadata(&marks)?.len(),
        before,
        "a run wrote after both ended"
    );

    // 2. A worker killed -9 mid-run: the fence kills the job's whole process group,
    // the background child too, before the job runs again elsewhere.
    let marks = root.path().join("marks-killed");
    let id = submit_marking_job(node, &marks, 600).await;
    let running_on = eventually(TIMEOUT, "the long job to write its first marks", || async {
        let (_, job) = get(node, &format!("/api/v1/jobs/{id}")).await;
        let worker = job["worker"].as_str().map(str::to_string);
        Ok(worker.filter(|_| job["state"] == "running" && !runs_in(&marks).is_empty()))
    })
    .await?;
    let doomed = if running_on == "w1" { "w1" } else { "w2" };
    let survivor = if doomed == "w1" { "w2" } else { "w1" };
    let first_run = runs_in(&marks).into_keys().next().unwrap_or_default();
    let matching = |path: &Path| -> BTreeSet<String> {
        std::process::Command::new("pgrep")
            .args(["-f", &path.display().to_string()])
            .output()
            .map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(|pid| pid.trim().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // The first run's shell and its background child (the re-run has not begun).
    let first_processes = matching(&marks);
    assert!(first_processes.len() >= 2, "{first_processes:?}");
    workers.get_mut(doomed).unwrap().kill9();
    eventually(
        TIMEOUT,
        "every process of the killed worker's run to be gone",
        || async { Ok(matching(&marks).is_disjoint(&first_processes).then_some(())) },
    )
    .await?;
    // The background child of the first run writes no more once the re-run is going.
    eventually(TIMEOUT, "the job to run again on the survivor", || async {
        let (_, job) = get(node, &format!("/api/v1/jobs/{id}")).await;
        Ok(
            (job["worker"] == survivor && job["attempt"] == 2 && runs_in(&marks).len() == 2)
                .then_some(()),
        )
    })
    .await?;
    let runs = runs_in(&marks);
    let second_start = runs
        .iter()
        .filter(|(run, _)| **run != first_run)
        .map(|(_, span)| span.0)
        .min()
        .unwrap_or(0);
    assert!(
        runs[&first_run].1 < second_start,
        "the killed worker's job (its background child) wrote after the re-run began: {runs:?}"
    );
    let (status, _) = post(node, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    Ok(())
}

/// A static pool with a real worker and a simulated pool, each behind its own queue.
const TWO_POOLS_YAML: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      min_size: 1\n      max_size: 2\n    - id: pool-sim\n      provider: simulated\n      min_size: 3\n      max_size: 3\n      worker_shape: { cpu_m: 1000, memory_mb: 1024, gpu: 0 }\nqueues:\n  - id: default\n    pools: [pool-default]\n  - id: sim\n    pools: [pool-sim]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_pools_grpc_watch_and_the_cli_follow_jobs_to_their_end() -> anyhow::Result<()> {
    use hodei_proto::v1 as pb;
    use hodei_proto::v1::job_service_client::JobServiceClient;

    let root = tempfile::tempdir()?;
    let spec = NodeSpec {
        extra_yaml: format!("{JOB_YAML}{TWO_POOLS_YAML}"),
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(&root.path().join("node"), &spec)?;
    node.wait_ready(TIMEOUT).await?;
    let _worker = WorkerProcess::start(
        &root.path().join("w1"),
        "w1",
        "pool-default",
        &[node.grpc_addr()],
        4000,
        8192,
    )?;
    wait_for_workers(&node, 4).await?;
    let (_, workers) = get(&node, "/api/v1/workers?pool=pool-sim").await;
    assert_eq!(
        workers["items"].as_array().unwrap().len(),
        3,
        "three virtual workers: {workers}"
    );

    // Simulated jobs over gRPC: 30 of 400 m on 3 workers of 1000 m, two at a time on each.
    let mut client = JobServiceClient::connect(node.grpc_url()).await?;
    let jobs = (0..30)
        .map(|index| pb::JobSpec {
            queue: "sim".into(),
            resources: Some(pb::JobResources {
                cpu_m: 400,
                memory_mb: 64,
                gpu: 0,
            }),
            simulate: Some(pb::JobSimulation {
                duration_ms: 200,
                exit_code: if index % 10 == 9 { 2 } else { 0 },
                used_percent: None,
            }),
            ..Default::default()
        })
        .collect();
    let batch = client
        .submit_jobs(pb::SubmitJobsRequest { jobs })
        .await?
        .into_inner();
    assert_eq!((batch.accepted, batch.refused), (30, 0));
    let watched = batch.results[9].job.clone().unwrap().id;
    let mut stream = client
        .watch_job(pb::GetJobRequest {
            id: watched.clone(),
            consistency: String::new(),
        })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(update) = stream.message().await? {
        last = Some(update);
    }
    let last = last.expect("the watch sends the job");
    let states: Vec<&str> = last
        .transitions
        .iter()
        .map(|step| step.state.as_str())
        .collect();
    assert_eq!(
        states,
        ["pending", "assigned", "running", "failed"],
        "the stream ends at the final state"
    );
    for result in &batch.results {
        let id = result.job.as_ref().unwrap().id.clone();
        let job = wait_final(&node, &id).await?;
        let expected = if job["simulate"]["exit_code"] == 2 {
            "failed"
        } else {
            "succeeded"
        };
        assert_eq!(job["state"], expected, "{job}");
        assert!(
            job["worker"].as_str().unwrap().starts_with("pool-sim-sim-"),
            "{job}"
        );
    }

    // The CLI: `job submit --wait` shows the states and exits with the job's code.
    let output = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "job",
            "submit",
            "--wait",
            "--api",
            &node.rest_url(""),
            "--",
            "sh",
            "-c",
            "echo from-cli; exit 4",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(4),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("running") && stdout.contains("failed") && stdout.contains("from-cli"),
        "{stdout}"
    );
    let output = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "job",
            "list",
            "--api",
            &node.rest_url(""),
            "--state",
            "failed",
        ])
        .output()?;
    let listed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        listed
            .lines()
            .filter(|line| line.contains("failed"))
            .count(),
        4,
        "{listed}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hodei_dev_runs_a_job_on_its_local_workers_and_stops_them_with_it() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (rest_port, grpc_port) = (hodei_tests::free_port(), hodei_tests::free_port());
    let data_dir = root.path().join("data");
    let mut dev = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "dev",
            "--port",
            &rest_port.to_string(),
            "--grpc-port",
            &grpc_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("HODEI_PROMETHEUS_ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(root.path().join("dev.log")).map(std::process::Stdio::from)?)
        .spawn()?;
    let api = format!("http://127.0.0.1:{rest_port}");
    let workers_url = format!("http://127.0.0.1:{rest_port}/api/v1/workers");
    eventually(TIMEOUT, "the two local workers", || async {
        let Ok(response) = reqwest::get(&workers_url).await else {
            return Ok(None);
        };
        let body: Value = response.json().await.unwrap_or_default();
        Ok((body["items"].as_array().map(Vec::len) == Some(2)).then_some(()))
    })
    .await?;
    let output = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "job", "submit", "--wait", "--api", &api, "--", "echo", "hello",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("succeeded") && stdout.contains("hello"),
        "{stdout}"
    );
    // A job that runs past its timeout: `--wait` exits 124, as timeout(1) does.
    let output = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "job",
            "submit",
            "--wait",
            "--timeout-s",
            "1",
            "--api",
            &api,
            "--",
            "sleep",
            "30",
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(124), "{stdout}");
    assert!(stdout.contains("timed_out"), "{stdout}");

    let marker = root.path().display().to_string();
    assert!(
        process_running(&marker),
        "the workers run as child processes"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    dev.wait()?;
    eventually(TIMEOUT, "the local workers to stop", || async {
        Ok((!process_running(&marker)).then_some(()))
    })
    .await?;

    // They left their pool before the node stopped: restarted (without local workers),
    // the node shows them terminated, not idle.
    let mut dev = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "dev",
            "--workers",
            "0",
            "--port",
            &rest_port.to_string(),
            "--grpc-port",
            &grpc_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("HODEI_PROMETHEUS_ENABLED", "false")
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::create(root.path().join("dev-2.log")).map(std::process::Stdio::from)?,
        )
        .spawn()?;
    let states = eventually(TIMEOUT, "the restarted node's workers", || async {
        let Ok(response) = reqwest::get(&workers_url).await else {
            return Ok(None);
        };
        let body: Value = response.json().await.unwrap_or_default();
        Ok(body["items"]
            .as_array()
            .filter(|items| items.len() == 2)
            .map(|items| {
                items
                    .iter()
                    .map(|item| item["state"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            }))
    })
    .await;
    let _ = dev.kill();
    let _ = dev.wait();
    assert_eq!(states?, ["terminated", "terminated"]);
    Ok(())
}

/// A running job that is cancelled keeps what a finished one keeps: its worker and pool,
/// the output it wrote until the cancel, and the cost of the time it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_job_keeps_its_output_worker_pool_and_cost() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (node, _worker) = node_with_one_worker(root.path(), JOB_YAML).await?;
    let (status, submitted) = post(
        &node,
        "/api/v1/jobs",
        json!({ "command": shell("echo before-cancel; sleep 60") }),
    )
    .await;
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    // Running; then some running time to bill (a lower bound: a loaded machine only
    // makes it longer).
    eventually(TIMEOUT, "the job to run", || async {
        let (_, job) = get(&node, &format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "running").then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, cancelled) = post(&node, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["worker"], "w1", "{cancelled}");
    assert_eq!(cancelled["pool"], "pool-default", "{cancelled}");
    assert!(
        cancelled["cost_nanos"].as_u64().unwrap_or(0) > 0,
        "{cancelled}"
    );
    let logs = eventually(TIMEOUT, "the cancelled run's output", || async {
        let (_, logs) = get(&node, &format!("/api/v1/jobs/{id}/logs")).await;
        Ok(logs["output_tail"]
            .as_str()
            .filter(|tail| tail.contains("before-cancel"))
            .map(|_| logs.clone()))
    })
    .await?;
    assert_eq!(logs["state"], "cancelled", "{logs}");
    let (_, job) = get(&node, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        (
            job["state"].as_str(),
            job["worker"].as_str(),
            job["pool"].as_str()
        ),
        (Some("cancelled"), Some("w1"), Some("pool-default")),
        "{job}"
    );
    Ok(())
}

/// A worker asked to stop (SIGTERM) stops taking jobs, lets a run that ends within its
/// grace period (10 s by default) end as usual, kills the rest, and leaves its pool:
/// recorded `terminated`, not `lost`, the killed job re-queued at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_leaves_its_pool_and_its_job_is_requeued()
-> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    // Default heartbeats (3 x 5 s): a lost worker would take 15 s to be noticed.
    let (node, mut worker) = node_with_one_worker(root.path(), "").await?;
    let mut ids = Vec::new();
    for script in ["sleep 1; echo short-done", "sleep 120"] {
        let (status, submitted) = post(
            &node,
            "/api/v1/jobs",
            json!({ "command": shell(script), "max_retries": 2, "resources": { "cpu_m": 1000, "memory_mb": 256 } }),
        )
        .await;
        assert_eq!(status, 202, "{submitted}");
        ids.push(submitted["job"]["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        eventually(TIMEOUT, "the jobs to run", || async {
            let (_, job) = get(&node, &format!("/api/v1/jobs/{id}")).await;
            Ok((job["state"] == "running").then_some(()))
        })
        .await?;
    }
    let exit = tokio::task::spawn_blocking(move || {
        let exit = worker.terminate();
        (exit, worker)
    })
    .await?;
    let (exit, worker) = exit;
    let exit = exit?;
    assert!(
        exit.success(),
        "the agent exits cleanly: {exit}\n{}",
        worker.log_tail()
    );
    let (_, workers) = get(&node, "/api/v1/workers").await;
    let w1 = workers["items"]
        .as_array()
        .and_then(|items| items.iter().find(|item| item["id"] == "w1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        w1["state"], "terminated",
        "recorded before the agent exited: {workers}"
    );
    let (_, short) = get(&node, &format!("/api/v1/jobs/{}", ids[0])).await;
    assert_eq!(
        short["state"], "succeeded",
        "it ended within the grace period: {short}"
    );
    let (_, long) = get(&node, &format!("/api/v1/jobs/{}", ids[1])).await;
    assert_eq!(
        (long["state"].as_str(), long["attempt"].as_u64()),
        (Some("pending"), Some(2)),
        "killed at the end of the grace period and re-queued: {long}"
    );
    Ok(())
}

/// A running job's output is reported while it runs: `/logs` shows it before the end,
/// stdout and stderr apart when asked, and `hodei job logs -f` follows it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_output_is_followed_live_with_its_streams_apart() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (node, _worker) = node_with_one_worker(root.path(), JOB_YAML).await?;
    let marker = root.path().join("go");
    let script = format!(
        "echo out-1; echo err-1 >&2; while [ ! -e {} ]; do sleep 0.1; done; echo out-2; exit 3",
        marker.display()
    );
    let (status, submitted) =
        post(&node, "/api/v1/jobs", json!({ "command": shell(&script) })).await;
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let follower = std::process::Command::new(hodei_tests::hodei_binary()?)
        .args([
            "job",
            "logs",
            "-f",
            "--stream",
            "stdout",
            "--api",
            &node.rest_url(""),
            &id,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    // While it runs (it waits for the marker), its first lines are there.
    let live = eventually(TIMEOUT, "the output of the running job", || async {
        let (_, logs) = get(&node, &format!("/api/v1/jobs/{id}/logs?stream=stdout")).await;
        Ok((logs["output_tail"] == "out-1\n").then_some(logs))
    })
    .await?;
    assert_eq!(live["state"], "running", "{live}");
    // A report may be taken between the script's two writes: stderr's line comes with
    // the same report or the next.
    let errors = eventually(TIMEOUT, "the running job's stderr", || async {
        let (_, logs) = get(&node, &format!("/api/v1/jobs/{id}/logs?stream=stderr")).await;
        Ok((logs["output_tail"] != "").then_some(logs))
    })
    .await?;
    assert_eq!(errors["state"], "running", "{errors}");
    assert_eq!(errors["output_tail"], "err-1\n", "{errors}");
    std::fs::write(&marker, "")?;
    let job = wait_final(&node, &id).await?;
    assert_eq!(job["state"], "failed", "{job}");
    let followed = tokio::task::spawn_blocking(move || follower.wait_with_output()).await??;
    assert_eq!(followed.status.code(), Some(3), "the job's exit code");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "out-1\nout-2\n");
    let (_, all) = get(&node, &format!("/api/v1/jobs/{id}/logs")).await;
    let all = all["output_tail"].as_str().unwrap_or_default().to_string();
    assert!(
        all.contains("out-1") && all.contains("err-1") && all.contains("out-2"),
        "{all}"
    );
    let (_, errors) = get(&node, &format!("/api/v1/jobs/{id}/logs?stream=stderr")).await;
    assert_eq!(errors["output_tail"], "err-1\n", "{errors}");
    let (status, problem) = get(&node, &format!("/api/v1/jobs/{id}/logs?stream=both")).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("stream")),
        "{problem}"
    );
    Ok(())
}
