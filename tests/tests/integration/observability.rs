//! Observability (issue 20): the shipped alert rules pass promtool's checks and unit
//! tests, name only series a node exports, and reach a webhook through a real Prometheus
//! and a real Alertmanager (Debian's `prometheus` and `prometheus-alertmanager`) when
//! workers stop, a node dies and a tenant starves; the observability API shows those
//! alerts, Alertmanager's silences and every node's scrapes; the historical metrics agree
//! across nodes and outlive the leader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hodei_tests::{NodeSpec, ProcessCluster, RestApi, WorkerProcess, eventually, free_port};
use serde_json::{Value, json};

use crate::autoscaling::pool_with_queue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules() -> PathBuf {
    repository().join("deploy/prometheus/alerts/hodei.yml")
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} must be installed: {error}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program} {args:?}: {text}");
    text
}

#[test]
fn the_shipped_rules_and_routing_pass_promtool_and_amtool() {
    let rules = rules();
    let checked = run("promtool", &["check", "rules", rules.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS: 19 rules found"), "{checked}");
    let tests = repository().join("deploy/prometheus/alerts/hodei_test.yml");
    let tested = run("promtool", &["test", "rules", tests.to_str().unwrap()]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let routing = repository().join("deploy/alertmanager/alertmanager.yml");
    let checked = run("amtool", &["check-config", routing.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
}

/// Type-checks dashboards against Grafana's published dashboard model (`@grafana/schema`,
/// pinned in `deploy/grafana/schema-check`): each JSON model is a TypeScript literal that
/// must `satisfies Dashboard`, so a field of the wrong type, a missing required field or
/// an unknown one fails. Returns the compiler's verdict and what it said.
fn check_against_grafanas_schema(dashboards: &[String]) -> (bool, String) {
    let check = repository().join("deploy/grafana/schema-check");
    let tsc = check.join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "Grafana's schema is not installed: run `npm ci --prefix deploy/grafana/schema-check` (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut source = String::from("import type { Dashboard } from '@grafana/schema';\n");
    for (index, dashboard) in dashboards.iter().enumerate() {
        source.push_str(&format!(
            "export const dashboard{index} = {} satisfies Dashboard;\n",
            dashboard.trim()
        ));
    }
    std::fs::write(dir.path().join("check.ts"), source).unwrap();
    let tsconfig = json!({
        "compilerOptions": {
            "strict": true,
            "noEmit": true,
            "moduleResolution": "node",
            "module": "commonjs",
            "target": "es2020",
            "skipLibCheck": true,
            "baseUrl": check.join("node_modules").display().to_string(),
        },
        "files": ["check.ts"],
    });
    std::fs::write(
        dir.path().join("tsconfig.json"),
        serde_json::to_string_pretty(&tsconfig).unwrap(),
    )
    .unwrap();
    let output = Command::new(&tsc)
        .arg("-p")
        .arg(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn the_dashboards_satisfy_grafanas_published_dashboard_model() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repository().join("deploy/grafana/dashboards"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    files.sort();
    let dashboards: Vec<String> = files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    assert_eq!(dashboards.len(), 5);
    let (ok, said) = check_against_grafanas_schema(&dashboards);
    assert!(ok, "{said}");
    // The check can fail: a wrong type and an unknown field are each refused.
    let wrong_type = dashboards[0].replacen("\"editable\": true", "\"editable\": \"yes\"", 1);
    assert_ne!(wrong_type, dashboards[0]);
    let (ok, said) = check_against_grafanas_schema(&[wrong_type]);
    assert!(
        !ok && said.contains("not assignable to type 'boolean"),
        "{said}"
    );
    let unknown = dashboards[0].replacen(
        "\"editable\": true",
        "\"editable\": true, \"editabel\": true",
        1,
    );
    let (ok, said) = check_against_grafanas_schema(&[unknown]);
    assert!(!ok && said.contains("editabel"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_installs_the_rules_and_dashboards_where_prometheus_and_grafana_read_them() {
    let rules_dir = tempfile::tempdir().unwrap();
    let target = rules_dir.path().join("rules.d");
    let dashboards = rules_dir.path().join("dashboards");
    let metrics_port = free_port();
    let (_dir, _node) = crate::autoscaling::start_node(
        &format!(
            "observability:\n  alerting:\n    prometheus_alerts_dir: {}\n  grafana:\n    dashboards_dir: {}\n",
            target.display(),
            dashboards.display()
        ),
        Some(metrics_port),
    )
    .await;
    for name in [
        "hodei-cluster",
        "hodei-tenants",
        "hodei-queues",
        "hodei-pools",
        "hodei-cost",
    ] {
        let file = format!("{name}.json");
        assert_eq!(
            std::fs::read_to_string(dashboards.join(&file)).unwrap(),
            std::fs::read_to_string(repository().join("deploy/grafana/dashboards").join(&file))
                .unwrap(),
            "{file}"
        );
    }
    // The observability API tells where they are and lists them; the CLI too.
    let api = RestApi::new(&_node);
    let config = api
        .ok(reqwest::Method::GET, "/api/v1/observability/config", None)
        .await;
    assert_eq!(
        config["alerts_dir"],
        target.display().to_string(),
        "{config}"
    );
    assert_eq!(
        config["dashboards_dir"],
        dashboards.display().to_string(),
        "{config}"
    );
    assert_eq!(
        (
            config["dashboards"].as_u64(),
            config["alert_rules"].as_u64()
        ),
        (Some(5), Some(19))
    );
    let listed = api
        .ok(
            reqwest::Method::GET,
            "/api/v1/observability/dashboards",
            None,
        )
        .await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(5),
        "{listed}"
    );
    let cost = api
        .ok(
            reqwest::Method::GET,
            "/api/v1/observability/dashboards/hodei-cost",
            None,
        )
        .await;
    assert_eq!(cost["uid"], "hodei-cost");
    let (status, _) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/observability/dashboards/nope",
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let alerts = api
        .ok(reqwest::Method::GET, "/api/v1/observability/alerts", None)
        .await;
    let names: BTreeSet<&str> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains("HodeiNoLeader")
            && names.contains("HodeiTenantBelowFairShare")
            && names.len() == 19
    );
    let (status, _) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/observability/alerts",
            Some("tenant:default"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let table = run(
        hodei_tests::hodei_binary().unwrap().to_str().unwrap(),
        &["observability", "alerts", "--api", &_node.rest_url("")],
    );
    assert!(
        table.contains("HodeiNodeDown") && table.contains("critical"),
        "{table}"
    );
    let written = std::fs::read_to_string(target.join("hodei.yml"))
        .unwrap_or_else(|error| panic!("{error}: {}", _node.log_tail()));
    assert_eq!(written, std::fs::read_to_string(rules()).unwrap());
    run(
        "promtool",
        &["check", "rules", target.join("hodei.yml").to_str().unwrap()],
    );
    // This node's own metrics endpoint, scraped once, as the CLI shows it.
    reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap();
    let health = api
        .ok(
            reqwest::Method::GET,
            "/api/v1/observability/health?local=true",
            None,
        )
        .await;
    assert!(health["node"]["scrapes"].as_u64().unwrap() >= 1, "{health}");
    assert_eq!(health["members"], json!([]), "{health}");
    assert!(health["prometheus"].is_null(), "{health}");
    let table = run(
        hodei_tests::hodei_binary().unwrap().to_str().unwrap(),
        &["observability", "health", "--api", &_node.rest_url("")],
    );
    assert!(
        table.contains("REACHABLE") && table.contains(&format!("127.0.0.1:{metrics_port}")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_dashboards_and_alerts_are_neither_written_nor_served() {
    let folders = tempfile::tempdir().unwrap();
    let (_dir, node) = crate::autoscaling::start_node(
        "observability:\n  alerting:\n    enabled: false\n  grafana:\n    enabled: false\n",
        None,
    )
    .await;
    let api = RestApi::new(&node);
    let config = api
        .ok(reqwest::Method::GET, "/api/v1/observability/config", None)
        .await;
    assert_eq!(
        (&config["grafana_enabled"], &config["alerting_enabled"]),
        (&json!(false), &json!(false)),
        "{config}"
    );
    for (path, key) in [
        (
            "/api/v1/observability/dashboards",
            "observability.grafana.enabled",
        ),
        (
            "/api/v1/observability/dashboards/hodei-cost",
            "observability.grafana.enabled",
        ),
        (
            "/api/v1/observability/alerts",
            "observability.alerting.enabled",
        ),
    ] {
        let (status, problem) = api.call(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 409, "{path}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains(key)),
            "{path}: {problem}"
        );
    }
    // A folder given while its switch is off is refused before the node starts.
    let config_file = folders.path().join("config.yaml");
    std::fs::write(
        &config_file,
        format!(
            "observability:\n  grafana:\n    enabled: false\n    dashboards_dir: {}\n",
            folders.path().join("dashboards").display()
        ),
    )
    .unwrap();
    let checked = Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["config", "check", config_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let said = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    assert!(
        said.contains("observability.grafana.dashboards_dir"),
        "{said}"
    );
    assert!(!folders.path().join("dashboards").exists());
}

/// Every `hodei_*` series a rule reads, without the suffixes Prometheus adds.
fn rule_series() -> BTreeSet<String> {
    let text = std::fs::read_to_string(rules()).unwrap();
    let mut names = BTreeSet::new();
    for line in text
        .lines()
        .filter(|line| line.trim_start().starts_with("expr:"))
    {
        let mut rest = line;
        while let Some(start) = rest.find("hodei_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

/// Answers every request with 200 and keeps Alertmanager's notifications with the time
/// each arrived.
#[derive(Clone, Default)]
struct Webhook {
    received: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Webhook {
    async fn serve(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = self.received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let received = received.clone();
                tokio::spawn(async move {
                    let mut bytes = Vec::new();
                    let mut buffer = [0u8; 8192];
                    loop {
                        let Ok(read) = stream.read(&mut buffer).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        bytes.extend_from_slice(&buffer[..read]);
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length = text[..end]
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())
                                    .flatten()
                            })
                            .unwrap_or(0);
                        if bytes.len() < end + 4 + length {
                            continue;
                        }
                        let body = &bytes[end + 4..end + 4 + length];
                        if let Ok(payload) = serde_json::from_slice::<Value>(body) {
                            received.lock().unwrap().push((Instant::now(), payload));
                        }
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                });
            }
        });
        port
    }

    /// When the first firing notification of an alert whose labels include `labels`
    /// arrived.
    fn firing(&self, alert: &str, labels: &[(&str, &str)]) -> Option<Instant> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, payload)| payload["status"] == "firing")
            .find(|(_, payload)| {
                payload["alerts"].as_array().is_some_and(|alerts| {
                    alerts.iter().any(|found| {
                        found["status"] == "firing"
                            && found["labels"]["alertname"] == alert
                            && labels
                                .iter()
                                .all(|(name, value)| found["labels"][name] == *value)
                    })
                })
            })
            .map(|(at, _)| *at)
    }

    fn names(&self) -> BTreeSet<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, payload)| {
                payload["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|found| found["labels"]["alertname"].as_str().map(str::to_string))
            })
            .collect()
    }
}

/// An alert the test waits for: its name, labels, when its condition began, and its rule's
/// `for` in seconds.
type Expected<'a> = (&'a str, Vec<(&'a str, String)>, Instant, u64);

/// A child process stopped (and reaped) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[String], log: &Path) -> Server {
    let log = std::fs::File::create(log).unwrap();
    Server(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("{program} must be installed: {error}")),
    )
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The shipped rules, with the fair-share alert's 10 minutes shortened to 20 s (the only
/// change: a test cannot wait 10 minutes).
fn rules_for_the_test(dir: &Path) -> PathBuf {
    let shipped = std::fs::read_to_string(rules()).unwrap();
    let marker = "      - alert: HodeiTenantBelowFairShare";
    let (before, after) = shipped.split_at(shipped.find(marker).unwrap());
    let after = after.replacen("for: 10m", "for: 20s", 1);
    let path = dir.join("rules.yml");
    std::fs::write(&path, format!("{before}{after}")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_webhook_through_a_real_prometheus_and_alertmanager() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    // The nodes are told where Prometheus and Alertmanager will listen.
    let alertmanager_port = free_port();
    let prometheus_port = free_port();
    let specs: Vec<NodeSpec> = NodeSpec::cluster(3)
        .into_iter()
        .map(|mut spec| {
            spec.metrics_port = Some(free_port());
            spec.extra_yaml = format!(
                "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 100000\n    memory_mb: 100000\n    max_concurrent_jobs: 1000\n    max_pending_jobs: 1000\nobservability:\n  prometheus_url: http://127.0.0.1:{prometheus_port}\n  alertmanager_url: http://127.0.0.1:{alertmanager_port}\n"
            );
            spec
        })
        .collect();
    let targets: Vec<String> = specs
        .iter()
        .map(|spec| format!("'127.0.0.1:{}'", spec.metrics_port.unwrap()))
        .collect();
    let instance_of = |node: u64| {
        format!(
            "127.0.0.1:{}",
            specs[node as usize - 1].metrics_port.unwrap()
        )
    };
    let instances: Vec<String> = (1..=3).map(instance_of).collect();
    let mut cluster = ProcessCluster::start_specs(dir.path(), specs.clone())
        .await
        .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();

    let webhook = Webhook::default();
    let webhook_port = webhook.serve().await;
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname, instance, queue, tenant]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: 'http://127.0.0.1:{webhook_port}/alerts'\n        send_resolved: false\n"
        ),
    )
    .unwrap();
    let _alertmanager = start(
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{alertmanager_port}"),
            "--cluster.listen-address=".to_string(),
        ],
        &dir.path().join("alertmanager.log"),
    );
    let rules = rules_for_the_test(dir.path());
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{alertmanager_port}']\nscrape_configs:\n  - job_name: hodei\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets.join(", ")
        ),
    )
    .unwrap();
    let _prometheus = start(
        "prometheus",
        &[
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        &dir.path().join("prometheus.log"),
    );
    let query = |expr: String| async move {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{prometheus_port}/api/v1/query"),
            &[("query", expr)],
        )
        .ok()?;
        let answer: Value = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(answer)
    };
    // Prometheus has scraped every node once.
    eventually(TIMEOUT, "every node scraped", || async {
        let answer = query("sum(up{job=\"hodei\"})".to_string()).await;
        let up = answer
            .and_then(|answer| {
                answer["data"]["result"][0]["value"][1]
                    .as_str()
                    .map(str::to_string)
            })
            .and_then(|value| value.parse::<f64>().ok());
        Ok((up == Some(3.0)).then_some(()))
    })
    .await
    .unwrap();
    let api = RestApi::new(&cluster.nodes[&leader]);
    let ok = |method: reqwest::Method, path: &'static str, body: Value| {
        let api = &api;
        async move { api.ok(method, path, Some(body)).await }
    };

    // 1. A queue whose only worker stops while its jobs are pending.
    pool_with_queue(
        &cluster.nodes[&leader],
        json!({ "id": "ops", "type": "static", "provider": "static", "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 } }),
    )
    .await;
    let servers: Vec<String> = cluster
        .nodes
        .values()
        .map(|node| node.grpc_addr())
        .collect();
    let mut agent = WorkerProcess::start(
        &dir.path().join("agent"),
        "ops-1",
        "ops",
        &servers,
        1000,
        1024,
    )
    .unwrap();
    for _ in 0..3 {
        ok(
            reqwest::Method::POST,
            "/api/v1/jobs",
            json!({ "queue": "ops-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "command": { "argv": ["sleep", "300"] } }),
        )
        .await;
    }
    eventually(TIMEOUT, "a job running on the agent", || async {
        let page = api
            .ok(
                reqwest::Method::GET,
                "/api/v1/jobs?state=running&limit=10",
                None,
            )
            .await;
        Ok((page["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty()))
        .then_some(()))
    })
    .await
    .unwrap();

    // 3. A tenant held to nothing by its quota while another fills the pool.
    ok(
        reqwest::Method::POST,
        "/api/v1/pools",
        json!({ "id": "shared", "type": "dynamic", "provider": "simulated", "min_size": 2, "max_size": 2, "worker_shape": { "cpu_m": 2000, "memory_mb": 4096 } }),
    )
    .await;
    ok(
        reqwest::Method::POST,
        "/api/v1/queues",
        json!({ "id": "shared-q", "pools": ["shared"], "policy": "weighted_fair" }),
    )
    .await;
    for tenant in ["greedy", "starved"] {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({ "id": tenant })),
        )
        .await;
    }
    api.ok(
        reqwest::Method::PUT,
        "/api/v1/tenants/starved/quotas",
        Some(json!({ "cpu_m": 100, "memory_mb": 1024, "max_concurrent_jobs": 10, "max_pending_jobs": 10 })),
    )
    .await;
    for _ in 0..8 {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "tenant": "greedy", "queue": "shared-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 600000 } })),
        )
        .await;
    }
    // A budget and an SLA, so that every series a rule reads exists.
    api.ok(
        reqwest::Method::PUT,
        "/api/v1/tenants/greedy/quotas",
        Some(json!({ "cpu_m": 100000, "memory_mb": 100000, "max_concurrent_jobs": 100, "max_pending_jobs": 100, "daily_cost_budget_usd": 1000.0 })),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        "/api/v1/jobs",
        Some(json!({ "tenant": "greedy", "queue": "shared-q", "resources": { "cpu_m": 100, "memory_mb": 64 }, "simulate": { "duration_ms": 100 }, "sla": { "level": "high" } })),
    )
    .await;
    // A tenant running above its quota under a burst session, in a pool scaled by hand.
    pool_with_queue(
        &cluster.nodes[&leader],
        json!({ "id": "spare", "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 2, "worker_shape": { "cpu_m": 2000, "memory_mb": 4096 } }),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        "/api/v1/tenants",
        Some(json!({ "id": "bursty" })),
    )
    .await;
    api.ok(
        reqwest::Method::PUT,
        "/api/v1/tenants/bursty/quotas",
        Some(json!({ "cpu_m": 500, "memory_mb": 1024, "max_concurrent_jobs": 10, "max_pending_jobs": 10 })),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        "/api/v1/tenants/bursty/burst",
        Some(json!({ "ceiling_percentage": 130, "duration_seconds": 600, "reason": "test" })),
    )
    .await;
    for _ in 0..2 {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "tenant": "bursty", "queue": "spare-q", "resources": { "cpu_m": 300, "memory_mb": 64 }, "simulate": { "duration_ms": 600000 } })),
        )
        .await;
    }
    api.ok(
        reqwest::Method::POST,
        "/api/v1/pools/spare/scaling/triggers",
        Some(json!({ "id": "bump", "type": "manual", "adjustment": 1 })),
    )
    .await;
    api.ok(
        reqwest::Method::POST,
        "/api/v1/pools/spare/scaling/triggers/bump/fire",
        Some(json!({})),
    )
    .await;
    let starved_since = Instant::now();
    for _ in 0..2 {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "tenant": "starved", "queue": "shared-q", "resources": { "cpu_m": 120, "memory_mb": 64 }, "simulate": { "duration_ms": 1000 } })),
        )
        .await;
    }

    // The worker stops (kill -9): once it misses its heartbeats it is lost.
    agent.kill9();
    let lost = eventually(TIMEOUT, "the agent lost", || async {
        let workers = api
            .ok(reqwest::Method::GET, "/api/v1/pools/ops/workers", None)
            .await;
        let lost = workers["items"]
            .as_array()
            .and_then(|items| items.iter().find(|worker| worker["state"] == "lost"))
            .and_then(|worker| worker["state_changed_at_ms"].as_u64());
        Ok(lost)
    })
    .await
    .unwrap();
    let lost_since = Instant::now()
        .checked_sub(Duration::from_millis(wall_ms().saturating_sub(lost)))
        .unwrap();

    // 2. A follower dies.
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    cluster.node(follower).kill9();
    let killed_since = Instant::now();

    let expected: [Expected; 3] = [
        (
            "HodeiNoWorkersWhileJobsPending",
            vec![("queue", "ops-q".to_string())],
            lost_since,
            30,
        ),
        (
            "HodeiNodeDown",
            vec![("instance", instance_of(follower))],
            killed_since,
            15,
        ),
        (
            "HodeiTenantBelowFairShare",
            vec![
                ("queue", "shared-q".to_string()),
                ("tenant", "starved".to_string()),
            ],
            starved_since,
            20,
        ),
    ];
    for (alert, labels, since, for_s) in &expected {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let arrived = eventually(Duration::from_secs(150), alert, || async {
            Ok(webhook.firing(alert, &labels))
        })
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{error}: received {:?}; prometheus log:\n{}",
                webhook.names(),
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            )
        });
        let latency = arrived.saturating_duration_since(*since);
        println!(
            "alert latency {alert}: {:.1} s from the condition ({for_s} s of it the rule's `for`), {:.1} s after the `for`",
            latency.as_secs_f64(),
            latency.as_secs_f64() - *for_s as f64
        );
    }
    // Nothing fired that should not have: the cluster kept a leader.
    let names = webhook.names();
    assert!(!names.contains("HodeiNoLeader"), "{names:?}");
    observability_api_sees_the_alerts_silences_and_scrapes(
        &cluster.nodes[&leader],
        alertmanager_port,
        follower,
        &instance_of(follower),
    )
    .await;
    // Every series a rule reads is in Prometheus (so no rule is silently never true).
    let mut missing = Vec::new();
    for name in rule_series() {
        let answer = query(format!("count({{__name__=~\"{name}(_total|_bucket)?\"}})")).await;
        let found = answer.is_some_and(|answer| {
            answer["data"]["result"]
                .as_array()
                .is_some_and(|result| !result.is_empty())
        });
        if !found {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "series no node exports: {missing:?}");
    // Every dashboard panel's queries return data over the last hour, and all of them
    // together take under a second (what a dashboard load asks of Prometheus).
    let end = wall_ms() / 1_000;
    let mut empty = Vec::new();
    let mut spent = Duration::ZERO;
    let mut queries = 0;
    let mut dashboards: Vec<PathBuf> =
        std::fs::read_dir(repository().join("deploy/grafana/dashboards"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "json")
            })
            .collect();
    dashboards.sort();
    assert_eq!(dashboards.len(), 5, "{dashboards:?}");
    for file in dashboards {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let url = reqwest::Url::parse_with_params(
                    &format!("http://127.0.0.1:{prometheus_port}/api/v1/query_range"),
                    &[
                        ("query", expr.to_string()),
                        ("start", (end - 3_600).to_string()),
                        ("end", end.to_string()),
                        ("step", "15".to_string()),
                    ],
                )
                .unwrap();
                let started = Instant::now();
                let answer: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
                spent += started.elapsed();
                queries += 1;
                assert_eq!(answer["status"], "success", "{expr}: {answer}");
                if answer["data"]["result"]
                    .as_array()
                    .is_none_or(|result| result.is_empty())
                {
                    empty.push(format!("{} / {}: {expr}", dashboard["uid"], panel["title"]));
                }
            }
        }
    }
    println!(
        "dashboards: {queries} panel queries over 1 h in {:.0} ms",
        spent.as_secs_f64() * 1_000.0
    );
    // How long they took is printed, not asserted: speed is for benchmarks (this took
    // 1.36 s under `stress-ng --cpu 2`, about 0.3 s on an idle machine).
    assert!(empty.is_empty(), "panels without data: {empty:#?}");
    let up = query("up{job=\"hodei\"}".to_string()).await.unwrap();
    assert_eq!(
        up["data"]["result"].as_array().map(Vec::len),
        Some(instances.len()),
        "{up}"
    );
}

/// With `observability.prometheus_url` and `alertmanager_url` set, the observability API
/// (REST and gRPC) shows the alerts Prometheus and Alertmanager hold, a silence made in
/// Alertmanager and the alert it quiets, and every member's scrapes: the killed follower
/// unreachable and down in Prometheus, the others scraped.
async fn observability_api_sees_the_alerts_silences_and_scrapes(
    node: &hodei_tests::NodeProcess,
    alertmanager_port: u16,
    follower: u64,
    follower_instance: &str,
) {
    use hodei_proto::v1 as pb;
    let api = RestApi::new(node);
    let alerts = api
        .ok(reqwest::Method::GET, "/api/v1/observability/alerts", None)
        .await;
    let sources: Vec<(&str, bool)> = alerts["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|source| {
            (
                source["name"].as_str().unwrap(),
                source["reachable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        vec![("prometheus", true), ("alertmanager", true)],
        "{alerts}"
    );
    let holds = |alerts: &Value, source: &str, state: &str| {
        alerts["active"].as_array().unwrap().iter().any(|alert| {
            alert["name"] == "HodeiNodeDown"
                && alert["source"] == source
                && alert["state"] == state
                && alert["labels"]["instance"] == follower_instance
        })
    };
    assert!(holds(&alerts, "prometheus", "firing"), "{alerts}");
    assert!(holds(&alerts, "alertmanager", "active"), "{alerts}");
    // A silence made in Alertmanager quiets the alert, and both show through the API.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let silence: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{alertmanager_port}/api/v2/silences"))
        .json(&json!({
            "matchers": [{ "name": "alertname", "value": "HodeiNodeDown", "isRegex": false, "isEqual": true }],
            "startsAt": rfc3339(now - 1),
            "endsAt": rfc3339(now + 3_600),
            "createdBy": "test",
            "comment": "node taken down on purpose",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let silence_id = silence["silenceID"].as_str().unwrap().to_string();
    eventually(TIMEOUT, "the silence and the silenced alert", || async {
        let alerts = api
            .ok(reqwest::Method::GET, "/api/v1/observability/alerts", None)
            .await;
        let silenced = alerts["silences"].as_array().unwrap().iter().any(|found| {
            found["id"] == silence_id.as_str()
                && found["state"] == "active"
                && found["comment"] == "node taken down on purpose"
                && found["matchers"][0]["value"] == "HodeiNodeDown"
        });
        let quiet = alerts["active"].as_array().unwrap().iter().any(|alert| {
            alert["name"] == "HodeiNodeDown"
                && alert["source"] == "alertmanager"
                && alert["state"] == "suppressed"
                && alert["silenced_by"][0] == silence_id.as_str()
        });
        Ok((silenced && quiet).then_some(()))
    })
    .await
    .unwrap();
    // Every member's metrics endpoint: the killed follower cannot be asked and is down in
    // Prometheus; the others have been scraped.
    let health = eventually(TIMEOUT, "the follower's target down", || async {
        let health = api
            .ok(reqwest::Method::GET, "/api/v1/observability/health", None)
            .await;
        let down = health["prometheus"]["targets"]
            .as_array()
            .is_some_and(|targets| {
                targets.iter().any(|target| {
                    target["instance"] == follower_instance && target["health"] == "down"
                })
            });
        Ok(down.then_some(health))
    })
    .await
    .unwrap();
    let members = health["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{health}");
    for member in members {
        if member["node_id"] == follower {
            assert_eq!(member["reachable"], false, "{health}");
            assert!(
                member["error"]
                    .as_str()
                    .is_some_and(|error| !error.is_empty()),
                "{health}"
            );
        } else {
            assert_eq!(member["reachable"], true, "{health}");
            assert!(
                member["endpoint"]["scrapes"].as_u64().unwrap() > 0,
                "{health}"
            );
            assert_eq!(member["endpoint"]["node_id"], member["node_id"], "{health}");
        }
    }
    let targets = health["prometheus"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 3, "{health}");
    assert_eq!(
        targets
            .iter()
            .filter(|target| target["health"] == "up")
            .count(),
        2,
        "{health}"
    );
    // The same over gRPC.
    let mut client = pb::observability_service_client::ObservabilityServiceClient::connect(
        format!("http://{}", node.grpc_addr()),
    )
    .await
    .unwrap();
    let grpc_health = client
        .get_health(pb::GetObservabilityHealthRequest { local_only: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_health.members.len(), 3);
    assert_eq!(
        grpc_health
            .members
            .iter()
            .filter(|member| member.reachable)
            .count(),
        2
    );
    assert_eq!(grpc_health.prometheus.unwrap().targets.len(), 3);
    let grpc_alerts = client
        .list_alerts(pb::ListAlertsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        grpc_alerts.rules.len(),
        alerts["items"].as_array().unwrap().len()
    );
    assert!(
        grpc_alerts
            .silences
            .iter()
            .any(|found| found.id == silence_id)
    );
    assert!(
        grpc_alerts
            .active
            .iter()
            .any(|alert| alert.name == "HodeiNodeDown"
                && alert.source == "alertmanager"
                && alert.silenced_by.contains(&silence_id))
    );
    let config = client
        .get_config(pb::GetObservabilityConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config.alertmanager_url,
        Some(format!("http://127.0.0.1:{alertmanager_port}"))
    );
    let dashboard = client
        .get_dashboard(pb::GetDashboardRequest {
            uid: "hodei-cost".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let model: Value = serde_json::from_str(&dashboard.json).unwrap();
    assert_eq!(model["uid"], "hodei-cost");
    let missing = client
        .get_dashboard(pb::GetDashboardRequest {
            uid: "nope".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// Seconds since the epoch as RFC 3339 (UTC), as Alertmanager's API takes times.
fn rfc3339(seconds: u64) -> String {
    chrono::DateTime::from_timestamp(seconds as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The points of `metric` with `labels` from `node`'s historical metrics, 10 s steps.
async fn history(node: &hodei_tests::NodeProcess, metric: &str, labels: &str) -> Vec<(u64, f64)> {
    let api = RestApi::new(node);
    let (status, answer) = api
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/metrics/historical?metric={metric}&labels={labels}&step=10"),
            None,
            None,
        )
        .await;
    if status != 200 {
        return Vec::new();
    }
    answer["series"][0]["points"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .map(|point| (point[0].as_u64().unwrap(), point[1].as_f64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_keeps_the_same_aligned_history_and_it_outlives_the_leader() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(
        dir.path(),
        3,
        &[],
        "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 100000\n    memory_mb: 100000\n    max_concurrent_jobs: 1000\n    max_pending_jobs: 1000\n",
    )
    .await
    .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let api = RestApi::new(&cluster.nodes[&leader]);
    pool_with_queue(
        &cluster.nodes[&leader],
        json!({ "id": "steady", "type": "dynamic", "provider": "simulated", "min_size": 2, "max_size": 2, "worker_shape": { "cpu_m": 2000, "memory_mb": 4096 } }),
    )
    .await;
    // Four run for ten minutes, two wait behind them: the same counts the whole test.
    for _ in 0..6 {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "queue": "steady-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 600000 } })),
        )
        .await;
    }
    let labels = "queue=steady-q,state=running";
    // Three points of 4 running on every node.
    for node in cluster.nodes.values() {
        eventually(
            Duration::from_secs(90),
            "three points of the steady state",
            || async {
                let points = history(node, "hodei_jobs", labels).await;
                let steady = points.iter().filter(|(_, value)| *value == 4.0).count();
                Ok((steady >= 3).then_some(()))
            },
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    for node in cluster.nodes.values() {
        let points = history(node, "hodei_jobs", labels).await;
        assert!(
            points.iter().all(|(at, _)| at % 10_000 == 0),
            "aligned: {points:?}"
        );
        seen.push(points);
    }
    // The same instants agree across nodes once steady.
    let steady_since = seen
        .iter()
        .filter_map(|points| {
            points
                .iter()
                .find(|(_, value)| *value == 4.0)
                .map(|(at, _)| *at)
        })
        .max()
        .unwrap();
    for points in &seen[1..] {
        for (at, value) in points.iter().filter(|(at, _)| *at > steady_since) {
            if let Some((_, first)) = seen[0].iter().find(|(other, _)| other == at) {
                assert_eq!(first, value, "at {at}: {seen:?}");
            }
        }
    }
    // The leader dies; another node still has the history from before, and goes on.
    let before: Vec<u64> = seen[0].iter().map(|(at, _)| *at).collect();
    cluster.node(leader).kill9();
    let new_leader = cluster.leader(TIMEOUT).await.unwrap();
    let node = &cluster.nodes[&new_leader];
    let after = eventually(
        Duration::from_secs(60),
        "a point after the failover",
        || async {
            let points = history(node, "hodei_jobs", labels).await;
            let last = points.last().map(|(at, _)| *at).unwrap_or_default();
            Ok((last > *before.last().unwrap()).then_some(points))
        },
    )
    .await
    .unwrap();
    assert!(
        after.iter().any(|(at, _)| before.contains(at)),
        "the history from before the failover: {after:?}"
    );
    // A bad request names its field.
    let (status, problem) = RestApi::new(node)
        .call(
            reqwest::Method::GET,
            "/api/v1/metrics/historical?metric=nope",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("metric")),
        "{problem}"
    );
    let (status, problem) = RestApi::new(node)
        .call(
            reqwest::Method::GET,
            "/api/v1/metrics/historical?metric=hodei_jobs&step=15",
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("step")),
        "{problem}"
    );
    // The same history over gRPC (ObservabilityService.GetHistoricalMetrics), for a
    // window that has ended, so both answers see the same points.
    let to_ms = after.last().unwrap().0;
    let from_ms = to_ms - 60_000;
    let (status, rest) = RestApi::new(node)
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/metrics/historical?metric=hodei_jobs&labels={labels}&step=20&from={from_ms}&to={to_ms}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    let mut client =
        hodei_proto::v1::observability_service_client::ObservabilityServiceClient::connect(
            format!("http://{}", node.grpc_addr()),
        )
        .await
        .unwrap();
    let grpc = client
        .get_historical_metrics(hodei_proto::v1::HistoricalMetricsRequest {
            metric: "hodei_jobs".to_string(),
            labels: labels.to_string(),
            from_ms: Some(from_ms),
            to_ms: Some(to_ms),
            step_s: Some(20),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((grpc.step_ms, grpc.resolution.as_str()), (20_000, "10s"));
    assert_eq!(grpc.series.len(), 1);
    let grpc_points: Vec<(u64, f64)> = grpc.series[0]
        .points
        .iter()
        .map(|point| (point.at_ms, point.value))
        .collect();
    let rest_points: Vec<(u64, f64)> = rest["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| (point[0].as_u64().unwrap(), point[1].as_f64().unwrap()))
        .collect();
    assert!(!grpc_points.is_empty());
    assert_eq!(grpc_points, rest_points);
    let refused = client
        .get_historical_metrics(hodei_proto::v1::HistoricalMetricsRequest {
            metric: "hodei_jobs".to_string(),
            step_s: Some(15),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
}
