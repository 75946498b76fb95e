//! A pool's prices (issue 19, first part): settable per pool over REST, gRPC and config,
//! a change billed from its time on to a job already running, tier percentages, and the
//! burst premium from `burst_capacity.premium_percentage`.

use std::time::Duration;

use hodei_tests::{RestApi, eventually};

use crate::autoscaling::{call, ok, pool_with_queue, start_node};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

const YAML: &str = "multi_tenancy:\n  default_tenant_quota:\n    cpu_m: 1000000\n    memory_mb: 1000000\n    max_concurrent_jobs: 10000\n    max_pending_jobs: 100000\n";

/// A run's cost as the domain bills it: each part at the price then in force (USD micros
/// per core-hour), times the tier's percentage, rounded once to the nearest nano-dollar.
pub(crate) fn expected_cost(cpu_m: u64, parts: &[(u64, u64)], tier_percent: u64) -> u64 {
    let numerator: u128 = parts
        .iter()
        .map(|(price_micros, ms)| {
            u128::from(cpu_m) * u128::from(*price_micros) * 1_024 * u128::from(*ms) * 100 * 1_000
        })
        .sum::<u128>()
        * u128::from(tier_percent);
    let denominator: u128 = 3_600_000 * 1_000 * 1_024 * 100 * 100;
    (numerator / denominator + u128::from(numerator % denominator >= denominator / 2)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_bills_a_running_job_from_its_time_on_and_a_tier_pays_its_percentage() {
    let (dir, node) = start_node(
        &format!("{YAML}burst_capacity:\n  premium_percentage: 200\n"),
        None,
    )
    .await;
    let pool = pool_with_queue(
        &node,
        json!({
            "id": "priced", "type": "dynamic", "provider": "simulated", "min_size": 1, "max_size": 1,
            "worker_shape": { "cpu_m": 2000, "memory_mb": 1024 },
            "pricing": { "cpu_core_hour_usd": 1.0, "memory_gb_hour_usd": 0.0 },
        }),
    )
    .await;
    assert_eq!(pool["id"], "priced");
    let pricing = ok(
        &node,
        reqwest::Method::GET,
        "/api/v1/pools/priced/pricing",
        None,
    )
    .await;
    assert_eq!(
        (
            pricing["cpu_core_hour_usd"].as_f64(),
            pricing["burst_premium_percent"].as_u64()
        ),
        (Some(1.0), Some(200)),
        "the burst premium comes from burst_capacity.premium_percentage: {pricing}"
    );
    let (status, problem) = call(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/priced/pricing",
        Some(json!({ "cpu_core_hour_usd": -1.0 })),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("cpu_core_hour_usd")),
        "{problem}"
    );
    let (status, problem) = call(
        &node,
        reqwest::Method::POST,
        "/api/v1/pools",
        Some(json!({ "id": "dear", "provider": "simulated", "pricing": { "gpu_hour_usd": 2e9 } })),
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("pricing.gpu_hour_usd")),
        "{problem}"
    );
    let tiers = ok(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/priced/pricing",
        Some(json!({ "tier_percent": { "free": 100, "standard": 100, "premium": 50, "enterprise": 100 } })),
    )
    .await;
    assert_eq!(
        tiers["history"].as_array().unwrap().len(),
        1,
        "tiers alone change no price: {tiers}"
    );
    ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/tenants",
        Some(json!({ "id": "gold", "tier": "premium" })),
    )
    .await;
    let submitted = ok(
        &node,
        reqwest::Method::POST,
        "/api/v1/jobs",
        Some(json!({ "tenant": "gold", "queue": "priced-q", "resources": { "cpu_m": 1000, "memory_mb": 64 }, "simulate": { "duration_ms": 4000, "exit_code": 0 } })),
    )
    .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    eventually(TIMEOUT, "the job running", || async {
        let job = ok(
            &node,
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{id}"),
            None,
        )
        .await;
        Ok(
            (job["state"] == "running" && job["running_cost_nanos"].as_u64() > Some(0))
                .then_some(()),
        )
    })
    .await
    .unwrap();
    // Twice the price from now on.
    let changed = ok(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/priced/pricing",
        Some(json!({ "cpu_core_hour_usd": 2.0 })),
    )
    .await;
    let change_at = changed["history"][1]["from_ms"].as_u64().unwrap();
    assert_eq!(changed["tier_percent"]["premium"], 50, "{changed}");
    let job = eventually(TIMEOUT, "the job to succeed", || async {
        let job = ok(
            &node,
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{id}"),
            None,
        )
        .await;
        Ok((job["state"] == "succeeded").then_some(job))
    })
    .await
    .unwrap();
    let at = |state: &str| {
        job["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|step| step["state"] == state)
            .and_then(|step| step["at_ms"].as_u64())
            .unwrap()
    };
    let (started, ended) = (at("running"), at("succeeded"));
    assert!(
        started <= change_at && change_at <= ended,
        "{started} {change_at} {ended}"
    );
    let expected = expected_cost(
        1_000,
        &[
            (1_000_000, change_at - started),
            (2_000_000, ended - change_at),
        ],
        50,
    );
    assert_eq!(job["cost_nanos"].as_u64(), Some(expected), "{job}");
    // One price for the whole run would have billed otherwise.
    assert_ne!(
        expected,
        expected_cost(1_000, &[(2_000_000, ended - started)], 50)
    );

    let bad = dir.path().join("bad-price.yaml");
    std::fs::write(
        &bad,
        "resource_pools:\n  pools:\n    - id: pool-default\n      pricing: { cpu_core_hour_usd: -2 }\n",
    )
    .unwrap();
    let output = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("resource_pools.pools[0].pricing.cpu_core_hour_usd"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_report_adds_up_to_the_jobs_costs_and_a_tenant_sees_its_own_lines() {
    let (_dir, node) = start_node(YAML, None).await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    pool_with_queue(
        &node,
        json!({
            "id": "billed", "type": "dynamic", "provider": "simulated", "min_size": 2, "max_size": 2,
            "worker_shape": { "cpu_m": 4000, "memory_mb": 8192 },
            "pricing": { "cpu_core_hour_usd": 3.6, "memory_gb_hour_usd": 0.36 },
        }),
    )
    .await;
    ok(
        &node,
        reqwest::Method::PUT,
        "/api/v1/pools/billed/pricing",
        Some(json!({ "tier_percent": { "free": 100, "standard": 100, "premium": 75, "enterprise": 100 } })),
    )
    .await;
    for (tenant, tier) in [("alpha", "standard"), ("beta", "premium")] {
        ok(
            &node,
            reqwest::Method::POST,
            "/api/v1/tenants",
            Some(json!({ "id": tenant, "tier": tier })),
        )
        .await;
    }
    let mut ids = Vec::new();
    for index in 0..10u64 {
        let tenant = if index % 2 == 0 { "alpha" } else { "beta" };
        let submitted = ok(
            &node,
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(json!({
                "tenant": tenant, "queue": "billed-q",
                "resources": { "cpu_m": 500 + index * 37, "memory_mb": 100 + index },
                "simulate": { "duration_ms": 700 + index * 111, "exit_code": 0 },
            })),
        )
        .await;
        ids.push((tenant, submitted["job"]["id"].as_str().unwrap().to_string()));
    }
    let mut expected: std::collections::BTreeMap<&str, u64> = Default::default();
    for (tenant, id) in &ids {
        let job = eventually(TIMEOUT, "the job to succeed", || async {
            let job = ok(
                &node,
                reqwest::Method::GET,
                &format!("/api/v1/jobs/{id}"),
                None,
            )
            .await;
            Ok((job["state"] == "succeeded").then_some(job))
        })
        .await
        .unwrap();
        let cost = job["cost_nanos"].as_u64().unwrap();
        assert!(cost > 0, "{job}");
        *expected.entry(tenant).or_default() += cost;
    }
    let path = format!(
        "/api/v1/cost-reports?from={}&group_by=tenant&step=hour",
        started - 1
    );
    let report = ok(&node, reqwest::Method::GET, &path, None).await;
    let mut reported: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for item in report["items"].as_array().unwrap() {
        if item["kind"] == "idle" {
            continue;
        }
        let line = reported
            .entry(item["group"].as_str().unwrap().to_string())
            .or_default();
        line.0 += item["billed_nanos"].as_u64().unwrap();
        line.1 += item["runs"].as_u64().unwrap();
    }
    println!("cost by tenant: expected {expected:?}, reported {reported:?}");
    for (tenant, cost) in &expected {
        assert_eq!(
            reported[*tenant],
            (*cost, 5),
            "to the nano-dollar: {report}"
        );
    }
    assert_eq!(
        report["total_billed_nanos"].as_u64(),
        Some(expected.values().sum::<u64>()),
        "{report}"
    );
    // The same in CSV.
    let csv = reqwest::get(node.rest_url(&format!("{path}&format=csv")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let billed = reader
        .headers()
        .unwrap()
        .iter()
        .position(|name| name == "billed_nanos")
        .unwrap();
    let csv_total: u64 = reader
        .records()
        .map(|row| row.unwrap()[billed].parse::<u64>().unwrap())
        .sum();
    assert_eq!(csv_total, expected.values().sum::<u64>(), "{csv}");
    // A tenant sees its own lines only.
    let (status, own) = RestApi::new(&node)
        .call(reqwest::Method::GET, &path, Some("tenant:beta"), None)
        .await;
    assert_eq!(status, 200);
    let groups: std::collections::BTreeSet<&str> = own["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["beta"].into(), "{own}");
    // The same over gRPC (CostOptimizationService.GenerateReport).
    let mut costs =
        hodei_proto::v1::cost_optimization_service_client::CostOptimizationServiceClient::connect(
            node.grpc_url(),
        )
        .await
        .unwrap();
    let grpc = costs
        .generate_report(hodei_proto::v1::CostReportRequest {
            from_ms: Some(started - 1),
            group_by: "tenant".into(),
            step: "hour".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.total_billed_nanos, expected.values().sum::<u64>());
    assert_eq!(grpc.total_runs, 10);
    // Grouped by pool, the same total.
    let by_pool = ok(
        &node,
        reqwest::Method::GET,
        &format!(
            "/api/v1/cost-reports?from={}&group_by=pool&step=day",
            started - 1
        ),
        None,
    )
    .await;
    assert_eq!(
        by_pool["total_billed_nanos"], report["total_billed_nanos"],
        "{by_pool}"
    );
    let (status, problem) = call(
        &node,
        reqwest::Method::GET,
        "/api/v1/cost-reports?group_by=colour",
        None,
    )
    .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("group_by")),
        "{problem}"
    );
}
