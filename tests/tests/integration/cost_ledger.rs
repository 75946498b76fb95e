//! The cost ledger against real nodes (issue 19): every dollar attributed across a leader
//! failover (runs of two tenants on a simulated and a real pool, one under burst; the
//! pools' idle lines), budgets, recommendations with their evidence, stored report
//! definitions, and cost tracking switched off.

use std::collections::BTreeMap;
use std::time::Duration;

use hodei_tests::{NodeProcess, ProcessCluster, RestApi, WorkerProcess, eventually};
use serde_json::{Value, json};

use crate::autoscaling::{call, ok, pool_with_queue, start_node};

const TIMEOUT: Duration = Duration::from_secs(90);

/// A run's cost: `cpu_m` at `price_micros` per core-hour for `ms`, times `percent` (the
/// burst premium, or 100; priced as a tier percentage would be), with no memory price.
fn expected_cost(cpu_m: u64, price_micros: u64, ms: u64, percent: u64) -> u64 {
    crate::cost::expected_cost(cpu_m, &[(price_micros, ms)], percent)
}

/// The final run of a job, [start, end].
fn final_run(job: &Value) -> (u64, u64) {
    let steps = job["transitions"].as_array().unwrap();
    let end = steps.last().unwrap()["at_ms"].as_u64().unwrap();
    let start = steps[steps.len() - 2]["at_ms"].as_u64().unwrap();
    assert_eq!(steps[steps.len() - 2]["state"], "running", "{job}");
    (start, end)
}

/// Nano-dollars from a USD decimal with 9 places.
fn nanos(usd: &str) -> u64 {
    let (units, fraction) = usd.split_once('.').unwrap();
    units.parse::<u64>().unwrap() * 1_000_000_000 + fraction.parse::<u64>().unwrap()
}

/// A CSV answer's rows as maps from the header.
fn csv_rows(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            headers
                .iter()
                .zip(record.iter())
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        })
        .collect()
}

async fn text(node: &NodeProcess, path: &str) -> String {
    let response = reqwest::get(node.rest_url(path)).await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.text().await.unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const CLUSTER_YAML: &str = "burst_capacity:\n  premium_percentage: 200\n  auto_approve_up_to_percentage: 130\nmulti_tenancy:\n  default_tenant_quota:\n    cpu_m: 100000\n    memory_mb: 100000\n    max_concurrent_jobs: 1000\n    max_pending_jobs: 1000\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dollar_is_attributed_across_a_leader_failover() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(dir.path(), 3, &[], CLUSTER_YAML)
        .await
        .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let started = now_ms();
    let node = &cluster.nodes[&leader];
    // Two pools at different prices (no memory price, so the cost is CPU alone): a
    // simulated one and one of a real worker agent.
    pool_with_queue(
        node,
        json!({
            "id": "cheap", "type": "dynamic", "provider": "simulated", "min_size": 2, "max_size": 2,
            "worker_shape": { "cpu_m": 2000, "memory_mb": 4096 },
            "pricing": { "cpu_core_hour_usd": 1.0, "memory_gb_hour_usd": 0.0 },
        }),
    )
    .await;
    pool_with_queue(
        node,
        json!({
            "id": "dear", "type": "static", "provider": "static",
            "worker_shape": { "cpu_m": 2000, "memory_mb": 4096 },
            "pricing": { "cpu_core_hour_usd": 3.0, "memory_gb_hour_usd": 0.0 },
        }),
    )
    .await;
    let servers: Vec<String> = cluster
        .nodes
        .values()
        .map(|node| node.grpc_addr())
        .collect();
    let _agent = WorkerProcess::start(
        &dir.path().join("agent"),
        "agent-1",
        "dear",
        &servers,
        2000,
        4096,
    )
    .unwrap();
    ok(
        node,
        reqwest::Method::POST,
        "/api/v1/tenants",
        Some(json!({ "id": "alpha" })),
    )
    .await;
    ok(
        node,
        reqwest::Method::POST,
        "/api/v1/tenants",
        Some(json!({ "id": "beta" })),
    )
    .await;
    ok(
        node,
        reqwest::Method::PUT,
        "/api/v1/tenants/beta/quotas",
        Some(json!({ "cpu_m": 1000, "memory_mb": 100000, "max_concurrent_jobs": 100, "max_pending_jobs": 100 })),
    )
    .await;
    let burst = ok(
        node,
        reqwest::Method::POST,
        "/api/v1/tenants/beta/burst",
        Some(json!({ "ceiling_percentage": 130, "duration_seconds": 600, "reason": "close" })),
    )
    .await;
    assert_eq!(burst["status"], "active", "{burst}");
    eventually(TIMEOUT, "the real worker registered", || async {
        let workers = ok(
            node,
            reqwest::Method::GET,
            "/api/v1/pools/dear/workers",
            None,
        )
        .await;
        Ok((workers["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty()))
        .then_some(()))
    })
    .await
    .unwrap();
    let mut jobs: Vec<(String, &str)> = Vec::new();
    let submit = |body: Value| async move {
        let submitted = ok(node, reqwest::Method::POST, "/api/v1/jobs", Some(body)).await;
        submitted["job"]["id"].as_str().unwrap().to_string()
    };
    for index in 0..4u64 {
        let id = submit(json!({
            "tenant": "alpha", "queue": "dear-q", "resources": { "cpu_m": 500, "memory_mb": 64 },
            "command": { "argv": ["sh", "-c", format!("sleep 2.{index}")] },
        }))
        .await;
        jobs.push((id, "dear"));
        let id = submit(json!({
            "tenant": "alpha", "queue": "cheap-q", "resources": { "cpu_m": 300 + 50 * index, "memory_mb": 64 },
            "simulate": { "duration_ms": 3_000 + 500 * index },
        }))
        .await;
        jobs.push((id, "cheap"));
    }
    // Beta's second run is above its quota: admitted under its burst session.
    for index in 0..3u64 {
        let id = submit(json!({
            "tenant": "beta", "queue": "cheap-q", "resources": { "cpu_m": 600, "memory_mb": 64 },
            "simulate": { "duration_ms": 2_500 + 300 * index },
        }))
        .await;
        jobs.push((id, "cheap"));
    }
    eventually(TIMEOUT, "jobs running on both pools", || async {
        let page = ok(
            node,
            reqwest::Method::GET,
            "/api/v1/jobs?state=running&limit=100",
            None,
        )
        .await;
        let pools: std::collections::BTreeSet<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|job| job["pool"].as_str().map(str::to_string))
            .collect();
        Ok((pools.len() == 2).then_some(()))
    })
    .await
    .unwrap();
    // The leader dies with runs going on in both pools.
    cluster.node(leader).kill9();
    let new_leader = cluster.leader(TIMEOUT).await.unwrap();
    assert_ne!(new_leader, leader);
    let node = &cluster.nodes[&new_leader];
    let mut finished = Vec::new();
    for (id, pool) in &jobs {
        let job = eventually(TIMEOUT, "every job to end", || async {
            let job = ok(
                node,
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{id}"),
                None,
            )
            .await;
            Ok((job["state"] == "succeeded").then_some(job))
        })
        .await
        .unwrap();
        finished.push((job, *pool));
    }
    // Each job's cost recomputed from its reported run time and its pool's price.
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut bursts = 0;
    for (job, pool) in &finished {
        let (start, end) = final_run(job);
        let price = if *pool == "dear" {
            3_000_000
        } else {
            1_000_000
        };
        let burst = job["burst"].as_bool().unwrap();
        bursts += usize::from(burst);
        let cost = expected_cost(
            job["resources"]["cpu_m"].as_u64().unwrap(),
            price,
            end - start,
            if burst { 200 } else { 100 },
        );
        assert_eq!(job["cost_nanos"].as_u64(), Some(cost), "{job}");
        assert_eq!(job["pool"].as_str(), Some(*pool), "{job}");
        *expected
            .entry(job["tenant"].as_str().unwrap().to_string())
            .or_default() += cost;
    }
    assert!(bursts >= 1, "beta ran above its quota under burst");
    // Real runs report what they used.
    let real = finished.iter().find(|(_, pool)| *pool == "dear").unwrap();
    assert!(real.0["usage"]["cpu_ms"].is_u64(), "{}", real.0);
    let path = format!("/api/v1/cost-reports?from={}&group_by=tenant", started - 1);
    let report = ok(node, reqwest::Method::GET, &path, None).await;
    let mut billed: BTreeMap<String, u64> = BTreeMap::new();
    let mut premium: BTreeMap<String, u64> = BTreeMap::new();
    let (mut used_list, mut idle_list) = (0u64, 0u64);
    for item in report["items"].as_array().unwrap() {
        let group = item["group"].as_str().unwrap().to_string();
        match item["kind"].as_str().unwrap() {
            "usage" => {
                *billed.entry(group.clone()).or_default() += item["billed_nanos"].as_u64().unwrap();
                *premium.entry(group).or_default() += item["burst_premium_nanos"].as_u64().unwrap();
                used_list += item["list_nanos"].as_u64().unwrap();
            }
            "idle" => idle_list += item["list_nanos"].as_u64().unwrap(),
            other => panic!("unknown kind {other}"),
        }
    }
    println!("cost by tenant: expected {expected:?}, reported {billed:?}, premium {premium:?}");
    assert_eq!(billed, expected, "to the nano-dollar: {report}");
    assert!(premium["beta"] > 0 && premium["alpha"] == 0, "{premium:?}");
    // Tenants + idle = the pools' cost, exactly; no pool is idle below zero.
    let pool_cost = report["total_pool_cost_nanos"].as_u64().unwrap();
    assert_eq!(used_list + idle_list, pool_cost, "{report}");
    for pool in report["pools"].as_array().unwrap() {
        let (cost, attributed, idle) = (
            pool["cost_nanos"].as_i64().unwrap(),
            pool["attributed_nanos"].as_i64().unwrap(),
            pool["idle_nanos"].as_i64().unwrap(),
        );
        assert_eq!(attributed + idle, cost, "{pool}");
        assert!(idle >= 0 && attributed > 0, "{pool}");
    }
    // The real pool's one worker: its capacity at 3 USD per core-hour since it registered.
    let agent = ok(
        node,
        reqwest::Method::GET,
        "/api/v1/pools/dear/workers",
        None,
    )
    .await;
    let registered = agent["items"][0]["registered_at_ms"].as_u64().unwrap();
    let dear: u64 = report["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pool| pool["pool"] == "dear")
        .map(|pool| pool["cost_nanos"].as_u64().unwrap())
        .sum();
    let since = |ms: u64| expected_cost(2_000, 3_000_000, ms, 100);
    assert!(
        dear <= since(now_ms() - registered) + 10,
        "the real pool cost at most its worker's live time: {dear}"
    );
    // CSV and FOCUS parse and add up to the same totals.
    let total = report["total_billed_nanos"].as_u64().unwrap();
    let csv = csv_rows(&text(node, &format!("{path}&format=csv")).await);
    let csv_total: u64 = csv
        .iter()
        .map(|row| row["billed_nanos"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(csv_total, total);
    let focus = csv_rows(&text(node, &format!("{path}&format=focus")).await);
    let focus_billed: u64 = focus.iter().map(|row| nanos(&row["BilledCost"])).sum();
    let focus_list: u64 = focus.iter().map(|row| nanos(&row["ListCost"])).sum();
    assert_eq!(
        focus_billed, total,
        "FOCUS BilledCost sums to the report's total"
    );
    assert!(
        focus_list >= pool_cost,
        "FOCUS ListCost is the pools' cost (a moment later: live workers go on costing)"
    );
    for column in [
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ResourceId",
        "ServiceName",
        "Tags",
    ] {
        assert!(focus.iter().all(|row| !row[column].is_empty()), "{column}");
    }
    assert!(
        focus
            .iter()
            .any(|row| row["ChargeDescription"] == "burst premium")
    );
    // The old leader comes back and catches up: every replica holds the same state,
    // the ledger included.
    cluster.node(leader).restart().unwrap();
    cluster.node(leader).wait_ready(TIMEOUT).await.unwrap();
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();
}

/// Submits a job; answers its id.
async fn submit(node: &NodeProcess, body: Value) -> String {
    let submitted = ok(node, reqwest::Method::POST, "/api/v1/jobs", Some(body)).await;
    submitted["job"]["id"].as_str().unwrap().to_string()
}

async fn job_in(node: &NodeProcess, id: &str, state: &str) -> Value {
    eventually(TIMEOUT, &format!("job {id} {state}"), || async {
        let job = ok(
            node,
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{id}"),
            None,
        )
        .await;
        Ok((job["state"] == state).then_some(job))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_warns_in_usage_and_metrics_and_with_queue_holds_the_next_job() {
    let metrics_port = hodei_tests::free_port();
    let (_dir, node) = start_node(
        "cost_tracking:\n  budget_action: queue\n",
        Some(metrics_port),
    )
    .await;
    pool_with_queue(
        &node,
        json!({
            "id": "pricey", "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 1,
            "worker_shape": { "cpu_m": 4000, "memory_mb": 4096 },
            "pricing": { "cpu_core_hour_usd": 3600.0, "memory_gb_hour_usd": 0.0 },
        }),
    )
    .await;
    // 1,000 m at 3,600 USD per core-hour is a dollar a second: a budget of 2 USD is
    // spent by a 3-second run.
    ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/tenants",
        Some(json!({ "id": "thrifty" })),
    )
    .await;
    ok(
        &node,
        reqwest::Method::PUT,
        "/api/v1/tenants/thrifty/quotas",
        Some(json!({ "cpu_m": 4000, "memory_mb": 4096, "max_concurrent_jobs": 10, "max_pending_jobs": 10, "daily_cost_budget_usd": 2.0 })),
    )
    .await;
    let first = submit(
        &node,
        json!({ "tenant": "thrifty", "queue": "pricey-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 3000 } }),
    )
    .await;
    job_in(&node, &first, "succeeded").await;
    let usage = eventually(TIMEOUT, "the budget warning recorded", || async {
        let usage = ok(
            &node,
            reqwest::Method::GET,
            "/api/v1/tenants/thrifty/usage",
            None,
        )
        .await;
        Ok((usage["budget"]["warned_percent"].as_u64() >= Some(80)).then_some(usage))
    })
    .await
    .unwrap();
    let budget = &usage["budget"];
    assert!(budget["used_ratio"].as_f64().unwrap() >= 1.0, "{usage}");
    assert_eq!(budget["level_percent"], 100, "{usage}");
    assert_eq!(budget["exhausted"], true, "{usage}");
    assert_eq!(budget["action"], "queue", "{usage}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ratio = metrics
        .lines()
        .find(|line| {
            line.starts_with("hodei_tenant_budget_used_ratio")
                && line.contains("tenant=\"thrifty\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok());
    assert!(ratio.is_some_and(|ratio| ratio >= 0.8), "{ratio:?}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("hodei_cost_nanodollars_total")
                && line.contains("tenant=\"thrifty\"")),
        "the cost counter is exported"
    );
    // Its next job waits, and says why.
    let second = submit(
        &node,
        json!({ "tenant": "thrifty", "queue": "pricey-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 100 } }),
    )
    .await;
    let position = eventually(TIMEOUT, "the reason it waits", || async {
        let position = ok(
            &node,
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{second}/position"),
            None,
        )
        .await;
        let waits = position["reasons"].as_array().is_some_and(|reasons| {
            reasons
                .iter()
                .any(|reason| reason["code"] == "budget_exhausted")
        });
        Ok(waits.then_some(position))
    })
    .await
    .unwrap();
    assert_eq!(position["state"], "pending", "{position}");
    // Another tenant is not held back.
    let other = submit(
        &node,
        json!({ "queue": "pricey-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 100 } }),
    )
    .await;
    job_in(&node, &other, "succeeded").await;
    let held = ok(
        &node,
        reqwest::Method::GET,
        &format!("/api/v1/jobs/{second}"),
        None,
    )
    .await;
    assert_eq!(held["state"], "pending", "{held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_pools_and_requests_get_recommendations_with_their_evidence() {
    let (_dir, node) = start_node(
        "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 100000\n    memory_mb: 100000\n    max_concurrent_jobs: 1000\n    max_pending_jobs: 1000\n",
        None,
    )
    .await;
    // Four 4-core workers for a trickle of work.
    pool_with_queue(
        &node,
        json!({
            "id": "big", "type": "dynamic", "provider": "simulated", "min_size": 4, "max_size": 4,
            "worker_shape": { "cpu_m": 4000, "memory_mb": 8192 },
            "pricing": { "cpu_core_hour_usd": 1.0, "memory_gb_hour_usd": 0.0 },
        }),
    )
    .await;
    ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/tenants",
        Some(json!({ "id": "wasteful" })),
    )
    .await;
    let mut ids = Vec::new();
    for index in 0..15u64 {
        // 4 cores requested, 5 % used (0.2 cores).
        ids.push(
            submit(
                &node,
                json!({
                    "tenant": "wasteful", "queue": "big-q",
                    "resources": { "cpu_m": 4000, "memory_mb": 1024 },
                    "labels": { "team": if index % 3 == 0 { "red" } else { "blue" } },
                    "simulate": { "duration_ms": 400 + 20 * index, "used_percent": 5 },
                }),
            )
            .await,
        );
    }
    for id in &ids {
        let job = job_in(&node, id, "succeeded").await;
        assert_eq!(job["usage"]["cpu_efficiency_percent"], 5, "{job}");
    }
    // As the pool stays idle its utilization falls below 40 %.
    let found = eventually(TIMEOUT, "a right-size recommendation", || async {
        let found = ok(
            &node,
            reqwest::Method::GET,
            "/api/v1/cost-optimization/recommendations?window=10m",
            None,
        )
        .await;
        let sized = found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["kind"] == "right_size_pool");
        Ok(sized.then_some(found))
    })
    .await
    .unwrap();
    println!("recommendations: {found}");
    let items = found["items"].as_array().unwrap();
    let of = |kind: &str, target: &str| {
        items
            .iter()
            .find(|item| item["kind"] == kind && item["target"] == target)
            .unwrap_or_else(|| panic!("no {kind} for {target}: {found}"))
            .clone()
    };
    let evidence = |item: &Value, name: &str| {
        item["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["name"] == name)
            .and_then(|entry| entry["value"].as_i64())
            .unwrap_or_else(|| panic!("no {name} in {item}"))
    };
    let pool = of("right_size_pool", "pool/big");
    let saving = pool["window_saving_nanos"].as_u64().unwrap();
    assert_eq!(evidence(&pool, "idle_nanos") as u64, saving, "{pool}");
    assert!(evidence(&pool, "utilization_percent") < 40, "{pool}");
    assert!(pool["estimated_monthly_saving_nanos"].as_u64().unwrap() > saving);
    // The saving is the ledger's idle cost over the window: a report a moment later shows
    // at least it, and no more than the pool's cost of the moment between.
    let from = found["from_ms"].as_u64().unwrap();
    let asked_at = now_ms();
    let report = ok(
        &node,
        reqwest::Method::GET,
        &format!("/api/v1/cost-reports?from={from}&group_by=pool&step=day"),
        None,
    )
    .await;
    let idle: i64 = report["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["pool"] == "big")
        .map(|item| item["idle_nanos"].as_i64().unwrap())
        .sum();
    let moment = expected_cost(16_000, 1_000_000, now_ms() - asked_at + 2_000, 100);
    assert!(
        idle as u64 >= saving && idle as u64 <= saving + moment,
        "idle {idle} vs saving {saving} (+{moment})"
    );
    let requests = of("right_size_requests", "tenant/wasteful");
    assert_eq!(evidence(&requests, "p95_used_cpu_percent"), 5, "{requests}");
    assert_eq!(
        evidence(&requests, "mean_requested_cpu_m"),
        4_000,
        "{requests}"
    );
    assert_eq!(evidence(&requests, "p95_used_cpu_m"), 200, "{requests}");
    assert_eq!(evidence(&requests, "suggested_cpu_m"), 240, "{requests}");
    assert_eq!(evidence(&requests, "runs"), 15, "{requests}");
    // And per label: the `blue` jobs are 10 of the 15 (the `red` 5 are too few to judge).
    let blue = of("right_size_requests", "tenant/wasteful/label/team=blue");
    assert_eq!(evidence(&blue, "runs"), 10, "{blue}");
    assert!(
        !items
            .iter()
            .any(|item| item["target"] == "tenant/wasteful/label/team=red"),
        "{found}"
    );
    assert_eq!(evidence(&blue, "p95_used_cpu_m"), 200, "{blue}");
    // The breakdown: the pool's cost, used and idle, and who used it.
    let breakdown = ok(
        &node,
        reqwest::Method::GET,
        "/api/v1/cost-optimization/breakdown",
        None,
    )
    .await;
    let big = breakdown["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pool| pool["pool"] == "big")
        .unwrap()
        .clone();
    assert_eq!(
        big["attributed_nanos"].as_i64().unwrap() + big["idle_nanos"].as_i64().unwrap(),
        big["cost_nanos"].as_i64().unwrap(),
        "{big}"
    );
    assert_eq!(big["tenants"][0]["tenant"], "wasteful", "{big}");
    // Grouped by label and by job, the same total.
    let total = |report: &Value| {
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| item["kind"] == "usage")
            .map(|item| item["billed_nanos"].as_u64().unwrap())
            .sum::<u64>()
    };
    let by_label = ok(
        &node,
        reqwest::Method::GET,
        &format!("/api/v1/cost-reports?from={from}&group_by=label:team"),
        None,
    )
    .await;
    let by_job = ok(
        &node,
        reqwest::Method::GET,
        &format!("/api/v1/cost-reports?from={from}&group_by=job"),
        None,
    )
    .await;
    let by_tenant = ok(
        &node,
        reqwest::Method::GET,
        &format!("/api/v1/cost-reports?from={from}&group_by=tenant"),
        None,
    )
    .await;
    assert_eq!(total(&by_label), total(&by_tenant));
    assert_eq!(total(&by_job), total(&by_tenant));
    let groups: std::collections::BTreeSet<&str> = by_label["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["kind"] == "usage")
        .map(|item| item["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["blue", "red"].into(), "{by_label}");
    // A stored definition, run by id, in its format; listed; deleted.
    let definition = ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/cost-reports",
        Some(json!({ "name": "monthly by tenant", "group_by": "tenant", "step": "day", "window": "30d", "format": "focus" })),
    )
    .await;
    let id = definition["id"].as_str().unwrap();
    assert_eq!(definition["window_s"], 30 * 86_400);
    let focus = csv_rows(&text(&node, &format!("/api/v1/cost-reports/{id}")).await);
    let focus_billed: u64 = focus.iter().map(|row| nanos(&row["BilledCost"])).sum();
    assert_eq!(focus_billed, total(&by_tenant));
    let listed = ok(
        &node,
        reqwest::Method::GET,
        "/api/v1/cost-reports/definitions",
        None,
    )
    .await;
    assert_eq!(listed["items"][0]["name"], "monthly by tenant");
    let (status, _) = RestApi::new(&node)
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/cost-reports/{id}"),
            Some("tenant:wasteful"),
            None,
        )
        .await;
    assert_eq!(status, 404, "another principal's definition is not found");
    let (status, problem) = call(
        &node,
        reqwest::Method::POST,
        "/api/v1/cost-reports",
        Some(json!({ "name": "x", "window": "5y" })),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("window")),
        "{problem}"
    );
    let (status, _) = call(
        &node,
        reqwest::Method::DELETE,
        &format!("/api/v1/cost-reports/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &node,
        reqwest::Method::GET,
        &format!("/api/v1/cost-reports/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = RestApi::new(&node)
        .call(
            reqwest::Method::GET,
            "/api/v1/cost-optimization/recommendations",
            Some("tenant:wasteful"),
            None,
        )
        .await;
    assert_eq!(status, 403, "recommendations read every pool: admin only");
    // The CLI: recommendations and breakdown as tables, a report as FOCUS.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
            .args(args)
            .args(["--api", &node.rest_url("")])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let table = cli(&["cost", "recommendations", "--window", "10m"]);
    assert!(
        table.contains("right_size_pool")
            && table.contains("pool/big")
            && table.contains("p95_used_cpu_m=200"),
        "{table}"
    );
    let table = cli(&["cost", "breakdown"]);
    assert!(table.contains("big") && table.contains("idle"), "{table}");
    let from = from.to_string();
    let focus = cli(&["cost", "report", "--from", &from, "--format", "focus"]);
    let rows = csv_rows(&focus);
    let focus_billed: u64 = rows.iter().map(|row| nanos(&row["BilledCost"])).sum();
    assert_eq!(focus_billed, total(&by_tenant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cost_tracking_off_nothing_is_recorded_and_the_routes_say_so() {
    let (_dir, node) = start_node("cost_tracking:\n  enabled: false\n", None).await;
    // The leader commits its settings shortly after it starts leading.
    let problem = eventually(TIMEOUT, "the cost routes to refuse", || async {
        let (status, problem) =
            call(&node, reqwest::Method::GET, "/api/v1/cost-reports", None).await;
        Ok((status == 409).then_some(problem))
    })
    .await
    .unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cost_tracking.enabled"),
        "{problem}"
    );
    pool_with_queue(
        &node,
        json!({ "id": "sim", "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 1 }),
    )
    .await;
    let id = submit(
        &node,
        json!({ "queue": "sim-q", "resources": { "cpu_m": 100, "memory_mb": 64 }, "simulate": { "duration_ms": 200 } }),
    )
    .await;
    let job = job_in(&node, &id, "succeeded").await;
    assert!(job["cost_nanos"].is_null(), "{job}");
    for path in [
        "/api/v1/cost-optimization/breakdown",
        "/api/v1/cost-optimization/recommendations",
    ] {
        let (status, _) = call(&node, reqwest::Method::GET, path, None).await;
        assert_eq!(status, 409, "{path}");
    }
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        "/api/v1/cost-reports",
        Some(json!({ "name": "nothing" })),
    )
    .await;
    assert_eq!(status, 409);
}
