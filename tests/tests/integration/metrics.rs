//! Metrics: what `/metrics` shows after a workload, bounded label sets, and a real
//! Prometheus (Debian's `prometheus` package) ingesting the series.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hodei_tests::{
    NodeProcess, NodeSpec, eventually, free_port, metric_sample as sample, scrape_metrics as scrape,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

async fn node_with_metrics(dir: &std::path::Path) -> (NodeProcess, u16) {
    let mut spec = NodeSpec::new(1);
    let metrics_port = free_port();
    spec.metrics_port = Some(metrics_port);
    let mut node = NodeProcess::start_spec(dir, &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    (node, metrics_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_what_the_workload_did_with_bounded_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (node, metrics_port) = node_with_metrics(dir.path()).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(node.rest_url(path)).json(&body).send();
    for id in ["m1", "m2", "m3"] {
        assert_eq!(
            post("/api/v1/tenants", json!({ "id": id }))
                .await
                .unwrap()
                .status(),
            201
        );
    }
    assert_eq!(
        post("/api/v1/tenants", json!({"id": "m1"}))
            .await
            .unwrap()
            .status(),
        409
    );
    assert_eq!(
        post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "m1", "cpu_m": 5000})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "m1", "cpu_m": 100})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    let quota = reqwest::Client::new()
        .put(node.rest_url("/api/v1/tenants/m1/quotas"))
        .json(&json!({"cpu_m": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(quota.status(), 200);
    assert_eq!(
        post(
            "/api/v1/jobs",
            json!({"tenant": "m1", "resources": {"cpu_m": 2000, "memory_mb": 512}, "command": {"argv": ["true"]}})
        )
        .await
        .unwrap()
        .status(),
        422,
        "larger than m1 could ever run"
    );
    let refused = post(
        "/api/v1/tenants/m2/burst",
        json!({"ceiling_percentage": 500, "duration_seconds": 60}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 409);

    let text = scrape(metrics_port).await;
    let value = |name: &str, labels: &[&str]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert_eq!(
        value(
            "hodei_api_requests_total",
            &[
                r#"route="/api/v1/tenants""#,
                r#"method="POST""#,
                r#"status="201""#
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            "hodei_api_requests_total",
            &[r#"route="/api/v1/tenants""#, r#"status="409""#]
        ),
        1.0
    );
    assert_eq!(
        value(
            "hodei_gateway_requests_total",
            &[r#"operation="create_tenant""#, r#"code="ok""#]
        ),
        3.0
    );
    assert_eq!(
        value(
            "hodei_gateway_requests_total",
            &[r#"operation="create_tenant""#, r#"code="already-exists""#]
        ),
        1.0
    );
    assert_eq!(
        value(
            "hodei_api_request_duration_seconds_count",
            &[r#"route="/api/v1/tenants""#, r#"method="POST""#]
        ),
        4.0
    );
    assert_eq!(
        value("hodei_tenants", &[r#"status="active""#]),
        4.0,
        "three plus the default tenant"
    );
    // The what-ifs counted nothing; the refused submit counts, cluster-wide.
    assert_eq!(
        value(
            "hodei_quota_violations_total",
            &[r#"tenant="m1""#, r#"reason="exceeds_ceiling""#]
        ),
        1.0
    );
    assert_eq!(
        value(
            "hodei_quota_violations_total",
            &[r#"tenant="m1""#, r#"reason="quota""#]
        ),
        0.0
    );
    assert_eq!(
        value(
            "hodei_burst_refusals_total",
            &[r#"tenant="m2""#, r#"rule="ceiling""#]
        ),
        1.0
    );
    assert_eq!(value("hodei_raft_is_leader", &[]), 1.0);
    assert_eq!(value("hodei_cluster_members", &[r#"role="voter""#]), 1.0);
    assert!(value("hodei_raft_index", &[r#"kind="applied""#]) >= 4.0);
    assert!(
        value("hodei_raft_applied_commands_total", &[]) >= 4.0,
        "bootstrap and three creations"
    );
    assert!(value("hodei_raft_apply_seconds_total", &[]) > 0.0);
    assert_eq!(
        value("hodei_raft_snapshots_total", &[r#"kind="installed""#]),
        0.0
    );

    // Bounded cardinality: a thousand distinct ids in paths add no series.
    let before = series(&scrape(metrics_port).await);
    for index in 0..1000 {
        let response = http
            .get(node.rest_url(&format!("/api/v1/tenants/ghost-{index}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let after = series(&scrape(metrics_port).await);
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(
        added.len() <= 40,
        "{} new series for 1000 requests: {added:?}",
        added.len()
    );
    assert!(
        after.iter().all(|series| !series.contains("ghost-")),
        "an id leaked into a label"
    );
}

/// Debian's prometheus, started on a free port with a config that scrapes the node.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target_port: u16) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hodei\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("Debian's `prometheus` package must be installed (.ci/run installs it)");
        Self { child, port }
    }

    async fn query(&self, expression: &str) -> Vec<Value> {
        let encoded: String = expression
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={encoded}",
            self.port
        );
        let Ok(response) = reqwest::get(url).await else {
            return Vec::new();
        };
        let response: Value = response.json().await.unwrap_or(Value::Null);
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_shipped_prometheus_config_is_valid() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/prometheus.yml"
    );
    let checked = Command::new("promtool")
        .args(["check", "config", config])
        .output()
        .expect("promtool (Debian's prometheus package) must be installed");
    assert!(
        checked.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_ingests_the_series_and_promtool_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let spec = NodeSpec {
        metrics_port: Some(metrics_port),
        extra_yaml: SIMULATED_YAML.to_string(),
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(&dir.path().join("node"), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    eventually(TIMEOUT, "the virtual workers", || async {
        let text = scrape(metrics_port).await;
        Ok((sample(&text, "hodei_workers", &["state=\"idle\""]) == Some(10.0)).then_some(()))
    })
    .await
    .unwrap();
    submit_simulated(&node, 3, 0).await;
    wait_finished(metrics_port, 3.0).await;
    let created = reqwest::Client::new()
        .post(node.rest_url("/api/v1/tenants"))
        .json(&json!({"id": "scraped"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // The exposition passes promtool's linter.
    let text = scrape(metrics_port).await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) must be installed");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let prometheus = Prometheus::start(dir.path(), metrics_port);
    let ingested = eventually(Duration::from_secs(60), "prometheus to ingest hodei_api_requests_total", || async {
        let found = prometheus
            .query(r#"hodei_api_requests_total{route="/api/v1/tenants",method="POST",status="201"}"#)
            .await;
        Ok((!found.is_empty()).then_some(found))
    })
    .await
    .unwrap();
    assert_eq!(ingested[0]["metric"]["job"], "hodei");
    assert_eq!(ingested[0]["value"][1], "1");
    for expression in [
        "hodei_raft_is_leader == 1",
        r#"hodei_tenants{status="active"} == 2"#,
        r#"hodei_gateway_requests_total{operation="create_tenant",code="ok"}"#,
        "hodei_raft_term",
        r#"hodei_api_request_duration_seconds_bucket{route="/api/v1/tenants",le="+Inf"}"#,
        r#"hodei_jobs_finished_total{tenant="default",state="succeeded"} == 3"#,
        r#"hodei_jobs_submitted_total{tenant="default"} == 3"#,
        r#"hodei_job_run_seconds_count{queue="default",state="succeeded"} == 3"#,
        r#"hodei_job_wait_seconds_bucket{queue="default",le="+Inf"} == 3"#,
        r#"hodei_dispatch_assignments_total{queue="default",outcome="assigned"} == 3"#,
        r#"hodei_workers{pool="pool-default",state="idle"} == 10"#,
        r#"hodei_pool_size{pool="pool-default",kind="current"} == 10"#,
        r#"hodei_pool_state{pool="pool-default",state="active"} == 1"#,
        r#"hodei_pool_utilization_ratio{pool="pool-default",resource="cpu"} == 0"#,
        r#"hodei_quota_usage_ratio{tenant="default",dimension="cpu"}"#,
    ] {
        let found = eventually(TIMEOUT, expression, || async {
            let found = prometheus.query(expression).await;
            Ok((!found.is_empty()).then_some(found))
        })
        .await
        .unwrap();
        assert!(!found.is_empty(), "{expression}");
    }
    let up = prometheus.query(r#"up{job="hodei"}"#).await;
    assert_eq!(up[0]["value"][1], "1", "the scrape target is healthy");
}

/// A simulated pool of ten large virtual workers and room for many jobs.
const SIMULATED_YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 100000000\n    memory_mb: 100000000\n    max_concurrent_jobs: 1000000\n    max_pending_jobs: 1000000\nresource_pools:\n  pools:\n    - id: pool-default\n      provider: simulated\n      min_size: 10\n      max_size: 10\n      worker_shape: { cpu_m: 64000, memory_mb: 262144, gpu: 0 }\n";

async fn submit_simulated(node: &NodeProcess, count: usize, failing_every: usize) {
    let http = reqwest::Client::new();
    let mut left = count;
    let mut index = 0;
    while left > 0 {
        let size = left.min(1000);
        let jobs: Vec<Value> = (0..size)
            .map(|_| {
                index += 1;
                let exit_code = i32::from(failing_every > 0 && index % failing_every == 0);
                json!({
                    "resources": { "cpu_m": 100, "memory_mb": 64 },
                    "simulate": { "duration_ms": 5, "exit_code": exit_code },
                })
            })
            .collect();
        let response = http
            .post(node.rest_url("/api/v1/jobs/batch"))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        left -= size;
    }
}

/// Scrapes until `total` jobs have finished and the run-time histogram has observed each of
/// their runs (the histogram is fed by the node's job events, a moment after the state
/// the counters read).
async fn wait_finished(metrics_port: u16, total: f64) -> String {
    eventually(
        Duration::from_secs(120),
        "every job to finish and its run to be observed",
        || async move {
            let text = scrape(metrics_port).await;
            let summed = |name: &str| -> f64 {
                ["succeeded", "failed"]
                    .iter()
                    .filter_map(|state| sample(&text, name, &[&format!("state=\"{state}\"")]))
                    .sum()
            };
            let finished = summed("hodei_jobs_finished_total");
            let observed = summed("hodei_job_run_seconds_count");
            Ok((finished >= total && observed >= total).then_some(text))
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_metrics_count_what_ran_and_ten_thousand_jobs_add_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let spec = NodeSpec {
        metrics_port: Some(metrics_port),
        extra_yaml: SIMULATED_YAML.to_string(),
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    eventually(TIMEOUT, "the virtual workers", || async {
        let text = scrape(metrics_port).await;
        Ok((sample(
            &text,
            "hodei_workers",
            &["pool=\"pool-default\"", "state=\"idle\""],
        ) == Some(10.0))
        .then_some(()))
    })
    .await
    .unwrap();

    // 100 jobs, every fourth failing: the counters say exactly that.
    submit_simulated(&node, 100, 4).await;
    let text = wait_finished(metrics_port, 100.0).await;
    let finished = |state: &str| {
        sample(
            &text,
            "hodei_jobs_finished_total",
            &["tenant=\"default\"", &format!("state=\"{state}\"")],
        )
    };
    assert_eq!(finished("succeeded"), Some(75.0));
    assert_eq!(finished("failed"), Some(25.0));
    assert_eq!(
        sample(&text, "hodei_jobs_submitted_total", &["tenant=\"default\""]),
        Some(100.0)
    );
    assert_eq!(
        sample(
            &text,
            "hodei_job_run_seconds_count",
            &["queue=\"default\"", "state=\"succeeded\""]
        ),
        Some(75.0)
    );
    assert_eq!(
        sample(
            &text,
            "hodei_job_wait_seconds_count",
            &["queue=\"default\""]
        ),
        Some(100.0)
    );
    assert_eq!(
        sample(
            &text,
            "hodei_dispatch_assignments_total",
            &["queue=\"default\"", "outcome=\"assigned\""]
        ),
        Some(100.0)
    );
    assert!(
        sample(&text, "hodei_dispatch_plans_total", &["queue=\"default\""]).unwrap_or(0.0) >= 1.0
    );
    let before = series(&text);

    // 10,000 more jobs: the values grow, the set of series does not.
    submit_simulated(&node, 10_000, 0).await;
    let text = wait_finished(metrics_port, 10_100.0).await;
    assert_eq!(
        sample(
            &text,
            "hodei_jobs_finished_total",
            &["tenant=\"default\"", "state=\"succeeded\""]
        ),
        Some(10_075.0)
    );
    let after = series(&text);
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(added.is_empty(), "10,000 jobs added series: {added:?}");
}

/// Counters an alert takes `rate()` of exist at zero before their first event; no series
/// carries the OpenTelemetry scope label; REST latency has few buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_start_at_zero_without_scope_labels_and_rest_latency_has_few_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let (node, metrics_port) = node_with_metrics(dir.path()).await;
    let text = eventually(TIMEOUT, "the default tenant's zero series", || async {
        let text = scrape(metrics_port).await;
        Ok(sample(
            &text,
            "hodei_quota_violations_total",
            &["tenant=\"default\"", "reason=\"quota\""],
        )
        .is_some()
        .then_some(text))
    })
    .await
    .unwrap();
    for (name, labels) in [
        (
            "hodei_quota_violations_total",
            vec!["tenant=\"default\"", "reason=\"needs_burst\""],
        ),
        (
            "hodei_burst_refusals_total",
            vec!["tenant=\"default\"", "rule=\"cooldown\""],
        ),
        ("hodei_workers_lost_total", vec!["pool=\"pool-default\""]),
        (
            "hodei_dispatch_assignments_total",
            vec!["queue=\"default\"", "outcome=\"rejected\""],
        ),
        ("hodei_actor_restarts_total", vec!["actor=\"tenant\""]),
    ] {
        assert_eq!(sample(&text, name, &labels), Some(0.0), "{name} {labels:?}");
    }
    assert!(!text.contains("otel_scope"), "no scope labels");
    // Some REST traffic, then its histogram: 8 bounds and +Inf per route and method.
    let api = hodei_tests::RestApi::new(&node);
    api.get("/api/v1/tenants").await;
    let text = eventually(TIMEOUT, "the REST latency histogram", || async {
        let text = scrape(metrics_port).await;
        Ok(text
            .contains("hodei_api_request_duration_seconds_bucket")
            .then_some(text))
    })
    .await
    .unwrap();
    let buckets = text
        .lines()
        .filter(|line| {
            line.starts_with("hodei_api_request_duration_seconds_bucket")
                && line.contains("route=\"/api/v1/tenants\"")
                && line.contains("method=\"GET\"")
        })
        .count();
    assert_eq!(buckets, 9, "{text}");
}
