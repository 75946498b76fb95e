//! Security (issue 21, first part): per-principal rate limits on REST and gRPC.

use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, RestApi};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

/// One tenant flooding a node gets 429 with `Retry-After` (REST) and RESOURCE_EXHAUSTED
/// (gRPC) once its bucket is empty, while another tenant and the admin are served; the
/// bucket refills at its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_is_refused_with_retry_after_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec {
        server_extra: vec!["rate_limit:\n    requests_per_second: 2\n    burst: 5".to_string()],
        ..NodeSpec::new(1)
    };
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = RestApi::new(&node);
    for tenant in ["flood", "calm"] {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({ "id": tenant })),
        )
        .await;
    }
    let http = reqwest::Client::new();
    let get_as = |principal: &'static str| {
        let http = http.clone();
        let url = node.rest_url("/api/v1/tenants/flood");
        async move {
            http.get(url)
                .header("x-hodei-principal", principal)
                .send()
                .await
                .unwrap()
        }
    };
    // The burst is served, then refusals come, each saying when to come back.
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..20 {
        let response = get_as("tenant:flood").await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 && refused.is_none() {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            let problem: serde_json::Value = response.json().await.unwrap();
            refused = Some((retry_after, problem));
        }
    }
    assert!(
        statuses.iter().filter(|status| **status == 200).count() >= 5,
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let (retry_after, problem) = refused.unwrap();
    assert_eq!(retry_after, Some(1), "{problem}");
    assert_eq!(
        problem["type"], "urn:hodei:problem:too-many-requests",
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("tenant:flood")),
        "{problem}"
    );
    // Another tenant has its own bucket, and the admin is not limited by default.
    let calm = http
        .get(node.rest_url("/api/v1/tenants/calm"))
        .header("x-hodei-principal", "tenant:calm")
        .send()
        .await
        .unwrap();
    assert_eq!(calm.status(), 200);
    for _ in 0..20 {
        assert_eq!(get_as("admin").await.status(), 200);
    }
    // gRPC counts against the same bucket: RESOURCE_EXHAUSTED while it is empty.
    let mut client =
        hodei_proto::v1::tenant_service_client::TenantServiceClient::connect(node.grpc_url())
            .await
            .unwrap();
    let mut codes = Vec::new();
    for _ in 0..10 {
        let mut request = tonic::Request::new(hodei_proto::v1::GetTenantRequest {
            id: "flood".to_string(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-hodei-principal", "tenant:flood".parse().unwrap());
        codes.push(match client.get_tenant(request).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        });
    }
    assert!(codes.contains(&tonic::Code::ResourceExhausted), "{codes:?}");
    // The bucket refills: after a second or two the tenant is served again.
    hodei_tests::eventually(TIMEOUT, "the bucket refilled", || async {
        Ok((get_as("tenant:flood").await.status() == 200).then_some(()))
    })
    .await
    .unwrap();
    // Submissions over the limit are refused and counted, not written to the audit log
    // one by one (a flood would push the trail out); the accepted ones are recorded.
    let mut submitted = Vec::new();
    for _ in 0..15 {
        let response = http
            .post(node.rest_url("/api/v1/jobs"))
            .header("x-hodei-principal", "tenant:flood")
            .json(&json!({ "command": { "argv": ["true"] } }))
            .send()
            .await
            .unwrap();
        submitted.push(response.status().as_u16());
    }
    assert!(submitted.contains(&429), "{submitted:?}");
    let (_, audit) = api
        .get("/api/v1/audit?principal=tenant:flood&limit=1000")
        .await;
    let results: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == "submit_job")
        .filter_map(|record| record["result"].as_str())
        .collect();
    let accepted = submitted.iter().filter(|status| **status < 300).count();
    assert_eq!(
        results.iter().filter(|result| **result == "ok").count(),
        accepted,
        "{results:?} for {submitted:?}"
    );
    assert!(!results.contains(&"too-many-requests"), "{results:?}");
}

/// A second agent under the id of a connected worker is refused, never a takeover: the
/// real worker keeps its session and its running job, which ends as it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_under_a_live_workers_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(&dir.path().join("node"), &NodeSpec::new(1)).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = RestApi::new(&node);
    let mut real = hodei_tests::WorkerProcess::start(
        &dir.path().join("real"),
        "w1",
        "pool-default",
        &[node.grpc_addr()],
        2000,
        2048,
    )
    .unwrap();
    hodei_tests::eventually(TIMEOUT, "the real worker registered", || async {
        let (_, workers) = api.get("/api/v1/pools/pool-default/workers").await;
        Ok(workers["items"]
            .as_array()
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|worker| worker["id"] == "w1" && worker["state"] != "lost")
            })
            .then_some(()))
    })
    .await
    .unwrap();
    let marker = dir.path().join("go");
    let submitted = api
        .ok(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({ "resources": { "cpu_m": 500, "memory_mb": 64 },
                "command": { "argv": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.1; done; echo done", marker.display())] } })),
        )
        .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    hodei_tests::eventually(TIMEOUT, "the job running on w1", || async {
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "running" && job["worker"] == "w1").then_some(()))
    })
    .await
    .unwrap();
    // The rogue agent: same id, same pool.
    let mut rogue = hodei_tests::WorkerProcess::start(
        &dir.path().join("rogue"),
        "w1",
        "pool-default",
        &[node.grpc_addr()],
        2000,
        2048,
    )
    .unwrap();
    let rogue_log = dir.path().join("rogue").join("worker-1.log");
    hodei_tests::eventually(TIMEOUT, "the rogue refused", || async {
        let log = std::fs::read_to_string(&rogue_log).unwrap_or_default();
        Ok(log.contains("never a takeover").then_some(()))
    })
    .await
    .unwrap();
    // The real worker still holds its job, which finishes on it.
    std::fs::write(&marker, "").unwrap();
    let job = hodei_tests::eventually(TIMEOUT, "the job finished", || async {
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "succeeded").then_some(job))
    })
    .await
    .unwrap();
    assert_eq!(
        (job["worker"].as_str(), job["attempt"].as_u64()),
        (Some("w1"), Some(1)),
        "{job}"
    );
    let real_log = std::fs::read_to_string(dir.path().join("real").join("worker-1.log")).unwrap();
    assert!(
        real_log.contains(&id),
        "the real agent ran the job: {real_log}"
    );
    // The real agent dies: its session ends, but the worker's id stays bound to it in
    // the replicated state until the worker is declared lost; only then does the
    // other agent (still retrying) get the id.
    real.kill9();
    let w1_state = || async {
        let (_, workers) = api.get("/api/v1/pools/pool-default/workers").await;
        workers["items"]
            .as_array()
            .and_then(|items| items.iter().find(|worker| worker["id"] == "w1"))
            .and_then(|worker| worker["state"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let rogue_registered = || {
        std::fs::read_to_string(&rogue_log)
            .unwrap_or_default()
            .contains("registered with the leader")
    };
    hodei_tests::eventually(TIMEOUT, "w1 declared lost", || async {
        assert!(
            !rogue_registered(),
            "the other agent took w1 before it was declared lost"
        );
        Ok((w1_state().await == "lost").then_some(()))
    })
    .await
    .unwrap();
    let admitted = hodei_tests::eventually(TIMEOUT, "the other agent registered as w1", || async {
        Ok((rogue_registered() && w1_state().await == "idle").then_some(()))
    })
    .await;
    if let Err(error) = admitted {
        let rogue = std::fs::read_to_string(&rogue_log).unwrap_or_default();
        let tail: Vec<&str> = rogue.lines().rev().take(20).collect();
        panic!(
            "{error:#}\nw1: {}\nrogue log, newest first:\n{}\nnode log:\n{}",
            w1_state().await,
            tail.join("\n"),
            node.log_tail()
        );
    }
    rogue.kill9();
}

/// A tenant sees its own line of a queue's status and fair share, and no worker (workers
/// carry every tenant's jobs); the admin sees every tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_its_own_lines_of_queue_reports_and_no_workers() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &NodeSpec::new(1)).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = RestApi::new(&node);
    for tenant in ["alpha", "beta"] {
        api.ok(
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({ "id": tenant })),
        )
        .await;
        // No worker: the job stays pending and counts in the queue's status.
        let (status, submitted) = api
            .call(
                reqwest::Method::POST,
                "/api/v1/jobs",
                Some(&format!("tenant:{tenant}")),
                Some(json!({ "resources": { "cpu_m": 100, "memory_mb": 64 }, "command": { "argv": ["true"] } })),
            )
            .await;
        assert_eq!(status, 202, "{submitted}");
    }
    let keys = |answer: &serde_json::Value, list: &str, key: &str| -> Vec<String> {
        answer[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| line[key].as_str().unwrap().to_string())
            .collect()
    };
    // The admin sees both tenants' lines; each tenant only its own.
    for (path, list, key, tenant) in [
        ("/api/v1/queues/default/status", "by_tenant", "key", "alpha"),
        (
            "/api/v1/queues/default/fair-share",
            "tenants",
            "tenant",
            "beta",
        ),
    ] {
        let (_, all) = api.get(path).await;
        assert!(keys(&all, list, key).len() >= 2, "{path}: {all}");
        let (status, own) = api
            .call(
                reqwest::Method::GET,
                path,
                Some(&format!("tenant:{tenant}")),
                None,
            )
            .await;
        assert_eq!(status, 200, "{path}: {own}");
        assert_eq!(keys(&own, list, key), vec![tenant], "{path}: {own}");
    }
    let (status, refused) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/pools/pool-default/workers",
            Some("tenant:alpha"),
            None,
        )
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(api.get("/api/v1/pools/pool-default/workers").await.0, 200);
}

/// Reads from `stream` until it ends (or `TIMEOUT`): what the server sent before closing.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

/// Four connections to `addr`, each having sent `first_bytes` and nothing more.
async fn open_connections(addr: &str, first_bytes: &[u8]) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(first_bytes).await.unwrap();
        streams.push(stream);
    }
    streams
}

/// A fresh HTTP client that keeps no idle connection (each request's connection closes).
fn one_shot_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `server.limits`: a client that sends nothing, or trickles its headers, loses its
/// connection after `header_read_timeout_ms`; a port at `max_connections` closes one more
/// connection as soon as it is accepted (REST and gRPC) and serves again once one closes; an operation over
/// `max_in_flight` gets 503 with Retry-After, naming the limit. The node is one founding
/// member of three started alone: without a leader, each write waits `leader_wait_ms`,
/// which holds operations in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_operations_in_flight_and_slow_headers_are_bounded() {
    use tokio::io::AsyncWriteExt;
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = hodei_tests::free_port();
    let spec = NodeSpec {
        server_extra: vec![
            "limits:\n    max_connections: 4\n    max_in_flight: 2\n    header_read_timeout_ms: 8000"
                .to_string(),
        ],
        metrics_port: Some(metrics_port),
        ..NodeSpec::cluster(3).remove(0)
    };
    let node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    let health = node.rest_url("/api/v1/health");
    hodei_tests::eventually(TIMEOUT, "the REST port to answer", || async {
        Ok(one_shot_client().get(&health).send().await.ok().map(|_| ()))
    })
    .await
    .unwrap();

    // A client that connects and sends nothing is closed on either port, unanswered.
    let rest_addr = node.rest_url("").trim_start_matches("http://").to_string();
    let grpc_addr = node.grpc_addr();
    for addr in [&rest_addr, &grpc_addr] {
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = read_until_closed(&mut silent).await;
        assert!(answer.is_empty(), "{addr}: {answer}");
    }

    // REST: four clients trickle their headers and hold the four places.
    let mut slow = open_connections(&rest_addr, b"GET /api/v1/health HTTP/1.1\r\n").await;
    wait_open(metrics_port, "rest", 4.0).await;
    let mut fifth = tokio::net::TcpStream::connect(&rest_addr).await.unwrap();
    let _ = fifth
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut fifth).await;
    assert!(answer.is_empty(), "a fifth connection was served: {answer}");
    // The trickling clients are cut off by the header read timeout, without an answer
    // the server could not form (at most a 408).
    for stream in &mut slow {
        let answer = read_until_closed(stream).await;
        assert!(answer.is_empty() || answer.contains(" 408 "), "{answer}");
    }
    hodei_tests::eventually(TIMEOUT, "a new connection to be served", || async {
        Ok(one_shot_client().get(&health).send().await.ok().map(|_| ()))
    })
    .await
    .unwrap();

    // gRPC: four connections that sent the HTTP/2 preface and nothing more hold the
    // places; a health check on a fifth fails, and passes once they close.
    let idle = open_connections(&grpc_addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let check = || async {
        let channel = tonic::transport::Endpoint::from_shared(node.grpc_url())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|error| error.to_string())?;
        HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    };
    wait_open(metrics_port, "grpc", 4.0).await;
    assert!(check().await.is_err(), "a fifth gRPC connection was served");
    drop(idle);
    hodei_tests::eventually(TIMEOUT, "a gRPC connection to be served", || async {
        Ok(check().await.ok())
    })
    .await
    .unwrap();
    for port in ["rest", "grpc"] {
        let refused = port_sample(metrics_port, "hodei_connections_refused_total", port).await;
        assert!(
            refused >= 1.0,
            "{port}: {refused} refused connections counted"
        );
    }

    // Operations: writes wait for a leader that does not come; with two in flight, one
    // more is refused at once.
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let tenants = node.rest_url("/api/v1/tenants");
    let refused = hodei_tests::eventually(
        Duration::from_secs(90),
        "a write over max_in_flight",
        || {
            let answers = answers.clone();
            let tenants = tenants.clone();
            tokio::spawn(async move {
                let id = format!("held-{}", next_number());
                if let Ok(response) = one_shot_client()
                    .post(&tenants)
                    .json(&json!({ "id": id }))
                    .send()
                    .await
                {
                    let retry_after = response.headers().get("retry-after").cloned();
                    let status = response.status().as_u16();
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    let _ = answers.send((status, retry_after, body));
                }
            });
            let mut found = None;
            while let Ok(answer) = answered.try_recv() {
                if answer.0 == 503
                    && answer.2["detail"]
                        .as_str()
                        .is_some_and(|detail| detail.contains("server.limits.max_in_flight"))
                {
                    found = Some(answer);
                }
            }
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(found)
            }
        },
    )
    .await
    .unwrap();
    assert!(refused.1.is_some(), "no Retry-After: {:?}", refused.2);
}

/// The value of `name{port="<port>"}` on the node's metrics endpoint (0 when absent).
async fn port_sample(metrics_port: u16, name: &str, port: &str) -> f64 {
    let text = hodei_tests::scrape_metrics(metrics_port).await;
    hodei_tests::metric_sample(&text, name, &[&format!("port=\"{port}\"")]).unwrap_or(0.0)
}

/// Waits until `port` holds exactly `open` connections.
async fn wait_open(metrics_port: u16, port: &str, open: f64) {
    hodei_tests::eventually(
        TIMEOUT,
        &format!("{open} open {port} connections"),
        || async {
            Ok(
                (port_sample(metrics_port, "hodei_connections_open", port).await == open)
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
}

fn next_number() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
