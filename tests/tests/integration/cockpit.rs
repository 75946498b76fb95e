//! What a new user hit while following the README (issue 16), each on a real node.

use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, RestApi as Api, eventually};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A static pool of 2 (whose configured max, 5, does not apply to a static pool).
const POOLS: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      type: static\n      min_size: 2\n      max_size: 5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_tenants_sla_without_level_pool_sizes_and_creation_times_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(1);
    spec.extra_yaml = POOLS.to_string();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = Api::new(&node);
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;

    // The configured queue and pools say when they were created.
    let (_, queue) = eventually(TIMEOUT, "the default queue", || async {
        let answer = api.get("/api/v1/queues/default").await;
        Ok((answer.0 == 200).then_some(answer))
    })
    .await
    .unwrap();
    assert!(
        queue["created_at_ms"].as_u64().unwrap() > started_ms,
        "{queue}"
    );
    let (_, pool) = api.get("/api/v1/pools/pool-default").await;
    assert!(
        pool["created_at_ms"].as_u64().unwrap() > started_ms,
        "{pool}"
    );

    // A static pool reports its size as min, max and desired.
    assert_eq!(
        (
            pool["type"].as_str(),
            pool["min_size"].as_u64(),
            pool["max_size"].as_u64(),
            pool["desired_size"].as_u64()
        ),
        (Some("static"), Some(2), Some(2), Some(2)),
        "{pool}"
    );

    // A suspended tenant cannot submit; active again, it can.
    assert_eq!(
        api.post("/api/v1/tenants", json!({ "id": "acme" })).await.0,
        201
    );
    let (status, body) = api
        .call(
            reqwest::Method::PATCH,
            "/api/v1/tenants/acme",
            None,
            Some(json!({ "status": "suspended" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let job = json!({ "tenant": "acme", "command": { "argv": ["true"] } });
    let (status, refused) = api.post("/api/v1/jobs", job.clone()).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("suspended"),
        "{refused}"
    );
    api.call(
        reqwest::Method::PATCH,
        "/api/v1/tenants/acme",
        None,
        Some(json!({ "status": "active" })),
    )
    .await;
    assert_eq!(api.post("/api/v1/jobs", job).await.0, 202);

    // An SLA may give only a start-by time (counted as best_effort); nothing at all is a 422.
    let start_by_ms = started_ms + 3_600_000;
    let (status, submitted) = api
        .post(
            "/api/v1/jobs",
            json!({ "queue": "default", "command": { "argv": ["true"] }, "sla": { "start_by_ms": start_by_ms } }),
        )
        .await;
    assert_eq!(status, 202, "{submitted}");
    assert_eq!(
        submitted["job"]["sla"]["level"], "best_effort",
        "{submitted}"
    );
    assert_eq!(
        submitted["job"]["sla"]["start_by_ms"], start_by_ms,
        "{submitted}"
    );
    let (status, problem) = api
        .post(
            "/api/v1/jobs",
            json!({ "command": { "argv": ["true"] }, "sla": {} }),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("sla")),
        "{problem}"
    );

    // A decommissioned pool wants no worker.
    let (status, body) = api
        .post(
            "/api/v1/pools",
            json!({ "id": "sim", "provider": "simulated", "min_size": 0, "max_size": 8, "desired": 4 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(TIMEOUT, "the simulated pool's four workers", || async {
        let (_, workers) = api.get("/api/v1/workers?pool=sim").await;
        Ok((workers["items"].as_array().map(Vec::len) == Some(4)).then_some(()))
    })
    .await
    .unwrap();
    for action in ["drain"] {
        let (status, body) = api
            .post("/api/v1/pools/sim/lifecycle", json!({ "action": action }))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let pool = eventually(
        TIMEOUT,
        "the simulated pool to be decommissioned",
        || async {
            let (_, pool) = api.get("/api/v1/pools/sim").await;
            Ok((pool["state"] == "decommissioned").then_some(pool))
        },
    )
    .await
    .unwrap();
    assert_eq!(pool["desired_size"], 0, "{pool}");
    // Its stopped workers leave `/workers`: nothing will bring them back.
    let (_, workers) = api.get("/api/v1/workers?pool=sim").await;
    assert_eq!(
        workers["items"].as_array().map(Vec::len),
        Some(0),
        "{workers}"
    );
    let (_, metrics) = api.get("/api/v1/pools/sim/metrics").await;
    assert_eq!(metrics["size"]["desired"], 0, "{metrics}");
}

/// The API reference page, served by the node from assets in its binary, renders every
/// operation of the OpenAPI document in a real browser (Debian's chromium, headless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_page_renders_every_operation_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &NodeSpec::new(1)).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = Api::new(&node);
    let (_, document) = api.get("/api/v1/openapi.json").await;
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|method| item.get(**method).is_some())
                .count()
        })
        .sum();
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists())
        .expect(
            "Debian's chromium is needed for this test (.ci/run installs it: apt install chromium)",
        );
    let profile = dir.path().join("chromium-profile");
    let url = node.rest_url("/api/v1/docs");
    let dom = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(["--dump-dom", &url])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains(&format!("data-count=\"{operations}\"")),
        "{operations} operations rendered:\n{}\n{}",
        html.chars().take(2_000).collect::<String>(),
        String::from_utf8_lossy(&dom.stderr)
    );
    for operation in [
        "POST /api/v1/jobs",
        "GET /api/v1/queues/{id}/fair-share",
        "PUT /api/v1/tenants/{id}/quotas",
    ] {
        assert!(
            html.contains(&format!("data-operation=\"{operation}\"")),
            "{operation}"
        );
    }
    assert!(
        html.contains("id=\"schema-SubmitJobInput\""),
        "schemas rendered"
    );
}

/// Fair share says `backlogged` only while the tenant has pending jobs; having had some
/// during the window (what the window's fair share counts) is `backlogged_in_window`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_share_says_backlogged_only_with_jobs_pending_now() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(1);
    spec.extra_yaml = "resource_pools:\n  pools:\n    - id: pool-default\n      provider: simulated\n      type: dynamic\n      min_size: 1\n      max_size: 1\n".to_string();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = Api::new(&node);
    eventually(TIMEOUT, "the virtual worker", || async {
        let (_, workers) = api.get("/api/v1/workers").await;
        Ok((workers["items"].as_array().map(Vec::len) == Some(1)).then_some(()))
    })
    .await
    .unwrap();
    let (status, submitted) = api
        .post(
            "/api/v1/jobs",
            json!({ "command": { "argv": ["true"] }, "simulate": { "duration_ms": 10 } }),
        )
        .await;
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    eventually(TIMEOUT, "the job to end", || async {
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "succeeded").then_some(()))
    })
    .await
    .unwrap();
    let (_, report) = api
        .get("/api/v1/queues/default/fair-share?window_s=300")
        .await;
    let default = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|share| share["tenant"] == "default")
        .cloned()
        .unwrap();
    assert_eq!(
        (
            &default["pending"],
            &default["backlogged"],
            &default["backlogged_in_window"]
        ),
        (&json!(0), &json!(false), &json!(true)),
        "{report}"
    );
}
