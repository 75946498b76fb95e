//! Quotas, enforcement and burst capacity (US-09.1.2 - US-09.1.4) against real processes.

use std::time::Duration;

use hodei_proto::v1 as pb;
use hodei_proto::v1::tenant_service_client::TenantServiceClient;
use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, RestApi as Api, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Two workers of 4000 m / 8192 MiB: the global burst pool is 20% of 8000 m = 1600 m.
const SMALL_POOLS: &str = "resource_pools:\n  pools:\n    - id: pool-default\n      min_size: 1\n      max_size: 2\n      worker_shape: { cpu_m: 4000, memory_mb: 8192, gpu: 0 }\n";

fn assert_problem(
    name: &str,
    (status, body): &(u16, Value),
    expected: u16,
    field: Option<&str>,
    rule: Option<&str>,
) {
    assert_eq!(*status, expected, "{name}: {body}");
    assert_eq!(body["status"], expected, "{name}: {body}");
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{name}: {body}");
    }
    if let Some(rule) = rule {
        assert_eq!(body["rule"], rule, "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_enforcement_and_burst_governance_over_rest_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(1);
    spec.extra_yaml = SMALL_POOLS.to_string();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = Api::new(&node);
    for id in ["acme", "beta", "gamma"] {
        assert_eq!(
            api.post("/api/v1/tenants", json!({ "id": id })).await.0,
            201
        );
    }

    // Quotas: the configured default, then replaced; absurd and malformed values refused.
    let (status, quota) = api.get("/api/v1/tenants/acme/quotas").await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            quota["cpu_m"].as_u64(),
            quota["memory_mb"].as_u64(),
            quota["max_concurrent_jobs"].as_u64()
        ),
        (Some(4000), Some(8192), Some(10))
    );
    let bad_quotas = [
        (
            "absurd cpu",
            json!({"cpu_m": 1_000_000_000_000u64}),
            "cpu_m",
        ),
        ("negative cpu", json!({"cpu_m": -5}), "cpu_m"),
        ("wrong type", json!({"memory_mb": "lots"}), "memory_mb"),
        (
            "zero backlog",
            json!({"max_pending_jobs": 0}),
            "max_pending_jobs",
        ),
        (
            "negative budget",
            json!({"daily_cost_budget_usd": -1.0}),
            "daily_cost_budget_usd",
        ),
        (
            "bad pool id",
            json!({"pool_limits": {"Bad Pool": {"cpu_m": 1}}}),
            "pool_limits.Bad Pool",
        ),
        ("unknown field", json!({"cpus": 4}), "cpus"),
    ];
    for (name, body, field) in bad_quotas {
        assert_problem(
            name,
            &api.put("/api/v1/tenants/acme/quotas", body).await,
            422,
            Some(field),
            None,
        );
    }
    assert_problem(
        "unknown tenant",
        &api.put("/api/v1/tenants/ghost/quotas", json!({})).await,
        404,
        None,
        None,
    );
    let as_tenant = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/tenants/acme/quotas",
            Some("tenant:acme"),
            Some(json!({"cpu_m": 99_000})),
        )
        .await;
    assert_problem(
        "a tenant may not set its quota",
        &as_tenant,
        403,
        None,
        None,
    );
    let (status, set) = api
        .put("/api/v1/tenants/acme/quotas", json!({"cpu_m": 2000, "memory_mb": 4096, "max_concurrent_jobs": 5, "daily_cost_budget_usd": 12.5}))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["cpu_m"], 2000);
    assert_eq!(
        set["max_pending_jobs"], 10000,
        "a field left out takes the default"
    );
    assert_eq!(set["daily_cost_budget_usd"], 12.5);
    assert_eq!(
        set["warnings"],
        json!([]),
        "nothing runs, so nothing exceeds the new quota"
    );
    let own = api
        .call(
            reqwest::Method::GET,
            "/api/v1/tenants/acme/quotas",
            Some("tenant:acme"),
            None,
        )
        .await;
    assert_eq!(own.0, 200, "a tenant reads its own quota");
    let other = api
        .call(
            reqwest::Method::GET,
            "/api/v1/tenants/beta/quotas",
            Some("tenant:acme"),
            None,
        )
        .await;
    assert_problem(
        "a tenant may not read another's quota",
        &other,
        403,
        None,
        None,
    );
    for id in ["beta", "gamma"] {
        assert_eq!(
            api.put(
                &format!("/api/v1/tenants/{id}/quotas"),
                json!({"cpu_m": 2000, "memory_mb": 4096})
            )
            .await
            .0,
            200
        );
    }

    // Usage.
    let (status, usage) = api.get("/api/v1/tenants/acme/usage").await;
    assert_eq!(status, 200);
    let cpu = &usage["dimensions"][0];
    assert_eq!(
        (
            cpu["dimension"].as_str(),
            cpu["quota"].as_u64(),
            cpu["used"].as_u64(),
            cpu["available"].as_u64()
        ),
        (Some("cpu"), Some(2000), Some(0), Some(2000))
    );
    assert!(cpu["burst_ceiling"].is_null());

    // Enforcement: every verdict, with reasons and numbers.
    let (_, allow) = api
        .post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "acme", "cpu_m": 500, "memory_mb": 512}),
        )
        .await;
    assert_eq!(allow["verdict"], "allow", "{allow}");
    let (_, queue) = api
        .post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "acme", "cpu_m": 2500, "memory_mb": 512}),
        )
        .await;
    assert_eq!(queue["verdict"], "queue", "{queue}");
    assert_eq!(
        queue["reasons"][0]["code"], "needs_burst",
        "larger than the quota alone: only a burst runs it"
    );
    assert_eq!(
        (
            queue["reasons"][0]["used"].as_u64(),
            queue["reasons"][0]["requested"].as_u64(),
            queue["reasons"][0]["limit"].as_u64()
        ),
        (Some(0), Some(2500), Some(2000))
    );
    let (_, deny) = api
        .post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "acme", "cpu_m": 3500}),
        )
        .await;
    assert_eq!(
        deny["verdict"], "deny",
        "above the 150% burst ceiling: {deny}"
    );
    assert_eq!(deny["reasons"][0]["code"], "exceeds_ceiling");
    let (_, too_big) = api
        .post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "default", "cpu_m": 100, "memory_mb": 9000}),
        )
        .await;
    assert_eq!(too_big["verdict"], "deny", "{too_big}");
    assert!(
        too_big["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|reason| reason["code"] == "exceeds_worker"),
        "{too_big}"
    );
    assert_problem(
        "unknown pool",
        &api.post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "acme", "cpu_m": 1, "pool": "nope"}),
        )
        .await,
        404,
        None,
        None,
    );
    assert_problem(
        "no resources",
        &api.post("/api/v1/quotas/enforce", json!({"tenant": "acme"}))
            .await,
        422,
        None,
        None,
    );
    assert_problem(
        "unknown tenant",
        &api.post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "ghost", "cpu_m": 1}),
        )
        .await,
        404,
        None,
        None,
    );
    let foreign = api
        .call(
            reqwest::Method::POST,
            "/api/v1/quotas/enforce",
            Some("tenant:beta"),
            Some(json!({"tenant": "acme", "cpu_m": 1})),
        )
        .await;
    assert_problem(
        "a tenant may not enforce for another",
        &foreign,
        403,
        None,
        None,
    );
    let (_, implicit) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/quotas/enforce",
            Some("tenant:beta"),
            Some(json!({"cpu_m": 1})),
        )
        .await;
    assert_eq!(
        implicit["tenant"], "beta",
        "a tenant principal asks about itself by default"
    );

    // Violations: the what-ifs above counted nothing; a real refusal at submit and a
    // job accepted to wait for its quota count, by tenant and reason.
    let (status, violations) = api.get("/api/v1/quotas/violations?tenant=acme").await;
    assert_eq!(status, 200);
    assert_eq!(
        violations["items"],
        json!([]),
        "enforce is a what-if: {violations}"
    );
    let (status, refused) = api
        .post(
            "/api/v1/jobs",
            json!({"tenant": "acme", "resources": {"cpu_m": 3500, "memory_mb": 512}, "command": {"argv": ["true"]}}),
        )
        .await;
    assert_eq!(status, 422, "above the 150% ceiling: {refused}");
    let (status, waiting) = api
        .post(
            "/api/v1/jobs",
            json!({"tenant": "acme", "resources": {"cpu_m": 2500, "memory_mb": 512}, "command": {"argv": ["true"]}}),
        )
        .await;
    assert_eq!(status, 202, "{waiting}");
    let (_, violations) = api.get("/api/v1/quotas/violations?tenant=acme").await;
    let seen: Vec<(&str, &str)> = violations["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["verdict"].as_str().unwrap(),
                item["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("queue", "submit"), ("deny", "submit")],
        "{violations}"
    );
    for reason in ["needs_burst", "exceeds_ceiling"] {
        assert!(
            violations["counts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|count| count["reason"] == reason && count["count"] == 1),
            "{reason}: {violations}"
        );
    }
    let (_, cancelled) = api
        .post(
            &format!(
                "/api/v1/jobs/{}/cancel",
                waiting["job"]["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let (_, own_violations) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/quotas/violations",
            Some("tenant:beta"),
            None,
        )
        .await;
    assert!(
        own_violations["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item["tenant"] == "beta")
    );
    assert_problem(
        "bad limit",
        &api.get("/api/v1/quotas/violations?limit=0").await,
        422,
        Some("limit"),
        None,
    );

    // Burst: each governance rule refuses by name.
    let burst = |ceiling: u64, seconds: u64| json!({"ceiling_percentage": ceiling, "duration_seconds": seconds, "reason": "quarter close"});
    assert_problem(
        "above the maximum",
        &api.post("/api/v1/tenants/acme/burst", burst(160, 60)).await,
        409,
        None,
        Some("ceiling"),
    );
    assert_problem(
        "not above 100",
        &api.post("/api/v1/tenants/acme/burst", burst(100, 60)).await,
        409,
        None,
        Some("ceiling"),
    );
    assert_problem(
        "too long",
        &api.post("/api/v1/tenants/acme/burst", burst(120, 2 * 3600))
            .await,
        409,
        None,
        Some("duration"),
    );
    assert_problem(
        "unknown field",
        &api.post(
            "/api/v1/tenants/acme/burst",
            json!({"ceiling_percentage": 120, "hours": 1}),
        )
        .await,
        422,
        Some("hours"),
        None,
    );
    let (status, session) = api
        .post("/api/v1/tenants/acme/burst", burst(120, 600))
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["status"], "active");
    assert_eq!(
        session["ends_at_ms"].as_u64().unwrap() - session["starts_at_ms"].as_u64().unwrap(),
        600_000
    );
    assert_problem(
        "a second concurrent session",
        &api.post("/api/v1/tenants/acme/burst", burst(120, 60)).await,
        409,
        None,
        Some("one_session"),
    );
    let (_, listed) = api.get("/api/v1/tenants/acme/burst").await;
    assert_eq!(listed["current"]["id"], session["id"]);
    let (_, with_burst) = api
        .post(
            "/api/v1/quotas/enforce",
            json!({"tenant": "acme", "cpu_m": 2300, "memory_mb": 512}),
        )
        .await;
    assert_eq!(with_burst["verdict"], "allow_burst", "{with_burst}");
    let (_, usage) = api.get("/api/v1/tenants/acme/usage").await;
    assert_eq!(usage["dimensions"][0]["burst_ceiling"], 2400);
    let (status, ended) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/tenants/acme/burst",
            Some("tenant:acme"),
            None,
        )
        .await;
    assert_eq!(status, 200, "a tenant may end its own session: {ended}");
    assert_eq!(
        (ended["status"].as_str(), ended["end_reason"].as_str()),
        (Some("ended"), Some("ended_early"))
    );
    assert_problem(
        "nothing left to end",
        &api.call(
            reqwest::Method::DELETE,
            "/api/v1/tenants/acme/burst",
            None,
            None,
        )
        .await,
        404,
        None,
        None,
    );
    assert_problem(
        "inside the cooldown",
        &api.post("/api/v1/tenants/acme/burst", burst(120, 60)).await,
        409,
        None,
        Some("cooldown"),
    );

    // Above the auto-approve threshold: waits for an admin, then runs from approval.
    let (status, waiting) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/tenants/beta/burst",
            Some("tenant:beta"),
            Some(burst(150, 600)),
        )
        .await;
    assert_eq!(
        (status, waiting["status"].as_str()),
        (201, Some("awaiting_approval")),
        "{waiting}"
    );
    let approve_path = format!(
        "/api/v1/tenants/beta/burst/{}/approve",
        waiting["id"].as_str().unwrap()
    );
    let by_tenant = api
        .call(
            reqwest::Method::POST,
            &approve_path,
            Some("tenant:beta"),
            None,
        )
        .await;
    assert_problem("a tenant may not approve", &by_tenant, 403, None, None);
    let (status, approved) = api.post(&approve_path, json!(null)).await;
    assert_eq!(
        (status, approved["status"].as_str()),
        (200, Some("active")),
        "{approved}"
    );
    assert_eq!(approved["approved_by"], "admin");
    assert_problem(
        "approved twice",
        &api.post(&approve_path, json!(null)).await,
        409,
        None,
        None,
    );
    assert_problem(
        "unknown session",
        &api.post("/api/v1/tenants/beta/burst/nope/approve", json!(null))
            .await,
        404,
        None,
        None,
    );

    // The global pool (1600 m): beta's 150% of 2000 m takes 1000 m; gamma's 140% would add 800 m.
    assert_problem(
        "global pool exhausted",
        &api.post("/api/v1/tenants/gamma/burst", burst(140, 60))
            .await,
        409,
        None,
        Some("global_pool"),
    );

    // gRPC: the same operations and refusals.
    let mut grpc = TenantServiceClient::connect(node.grpc_url()).await.unwrap();
    let quota = grpc
        .set_quota(pb::SetQuotaRequest {
            tenant: "gamma".into(),
            cpu_m: Some(3000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((quota.cpu_m, quota.memory_mb), (3000, 8192));
    let absurd = grpc
        .set_quota(pb::SetQuotaRequest {
            tenant: "gamma".into(),
            gpu: Some(u64::MAX),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(absurd.code(), tonic::Code::InvalidArgument);
    assert!(absurd.message().starts_with("gpu:"), "{}", absurd.message());
    let metrics = grpc
        .get_tenant_metrics(pb::GetTenantMetricsRequest {
            tenant: "beta".into(),
            consistency: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        metrics.burst.as_ref().map(|burst| burst.status.as_str()),
        Some("active")
    );
    assert_eq!(metrics.dimensions[0].burst_ceiling, Some(3000));
    let decision = grpc
        .enforce_quota(pb::EnforceQuotaRequest {
            tenant: "gamma".into(),
            cpu_m: 3500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision.verdict, "queue");
    let refused = grpc
        .request_burst_capacity(pb::RequestBurstRequest {
            tenant: "acme".into(),
            ceiling_percentage: 120,
            duration_seconds: 60,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("cooldown"),
        "{}",
        refused.message()
    );
    let granted = grpc
        .request_burst_capacity(pb::RequestBurstRequest {
            tenant: "default".into(),
            ceiling_percentage: 105,
            duration_seconds: 60,
            reason: "grpc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.status, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_session_expires_on_time_across_a_leader_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    let leader = cluster.wait_caught_up(TIMEOUT).await.unwrap();
    let survivor = if leader == 1 { 2 } else { 1 };
    let api = Api::new(&cluster.nodes[&leader]);
    assert_eq!(
        api.post("/api/v1/tenants", json!({"id": "acme"})).await.0,
        201
    );
    let (status, session) = api
        .post(
            "/api/v1/tenants/acme/burst",
            json!({"ceiling_percentage": 120, "duration_seconds": 5, "reason": "failover"}),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    let ends_at_ms = session["ends_at_ms"].as_u64().unwrap();

    // The leader that armed the timer dies; the new leader's tenant actor re-arms it.
    cluster.node(leader).kill9();
    let survivor_api = Api::new(&cluster.nodes[&survivor]);
    let history = eventually(TIMEOUT, "the session to end", || async {
        let (status, listed) = survivor_api.get("/api/v1/tenants/acme/burst").await;
        Ok((status == 200 && listed["history"][0]["status"] == "ended").then_some(listed))
    })
    .await
    .unwrap();
    let ended = &history["history"][0];
    assert_eq!(ended["end_reason"], "expired", "{history}");
    let ended_at_ms = ended["ended_at_ms"].as_u64().unwrap();
    assert!(
        ended_at_ms >= ends_at_ms,
        "never early: {ended_at_ms} < {ends_at_ms}"
    );
    assert!(
        ended_at_ms - ends_at_ms < 1_000,
        "ended {} ms after its end time",
        ended_at_ms - ends_at_ms
    );
    assert_eq!(
        history["history"].as_array().unwrap().len(),
        1,
        "one session, ended once: {history}"
    );
    assert!(history["current"].is_null());
    assert!(
        ended["ended_by"]
            .as_str()
            .unwrap()
            .contains(&format!("node {}", cluster.leader(TIMEOUT).await.unwrap()))
    );

    // The old leader comes back and agrees.
    cluster.node(leader).restart().unwrap();
    cluster.wait_caught_up(TIMEOUT).await.unwrap();
    let (_, on_old_leader) = Api::new(&cluster.nodes[&leader])
        .get("/api/v1/tenants/acme/burst?consistency=stale")
        .await;
    assert_eq!(
        on_old_leader["history"][0]["ended_at_ms"].as_u64(),
        Some(ended_at_ms)
    );
}

/// A job larger than its tenant's quota: with burst capacity it is accepted and says
/// `needs_burst` (submit answer, job, position and enforce agree); without, it is refused
/// at submit with the rule and its numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_larger_than_the_quota_needs_a_burst_or_is_refused_at_submit() {
    for burst_enabled in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = NodeSpec::new(1);
        spec.extra_yaml = format!(
            "{SMALL_POOLS}burst_capacity:\n  enabled: {burst_enabled}\n  max_overage_percentage: 150\n"
        );
        let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
        node.wait_ready(TIMEOUT).await.unwrap();
        let api = Api::new(&node);
        assert_eq!(
            api.post("/api/v1/tenants", json!({ "id": "acme" })).await.0,
            201
        );
        let (status, body) = api
            .put("/api/v1/tenants/acme/quotas", json!({ "cpu_m": 2000 }))
            .await;
        assert_eq!(status, 200, "{body}");
        let job = json!({
            "tenant": "acme",
            "resources": { "cpu_m": 2500, "memory_mb": 512 },
            "command": { "argv": ["true"] },
        });
        let (status, submitted) = api.post("/api/v1/jobs", job).await;
        if !burst_enabled {
            assert_problem(
                "over quota, no burst",
                &(status, submitted.clone()),
                422,
                Some("resources.cpu_m"),
                None,
            );
            let detail = submitted["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("2500") && detail.contains("2000"),
                "{submitted}"
            );
            continue;
        }
        assert_eq!(status, 202, "{submitted}");
        let reason = submitted["job"]["pending_reason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.starts_with("needs_burst:"), "{submitted}");
        let id = submitted["job"]["id"].as_str().unwrap().to_string();
        let (_, position) = api.get(&format!("/api/v1/jobs/{id}/position")).await;
        assert_eq!(position["reasons"][0]["code"], "needs_burst", "{position}");
        assert!(
            !position["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|found| found["code"] == "dispatching"),
            "{position}"
        );
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        assert!(
            job["pending_reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("needs_burst:"),
            "{job}"
        );
        let (_, decision) = api
            .post(
                "/api/v1/quotas/enforce",
                json!({ "tenant": "acme", "cpu_m": 2500, "memory_mb": 512 }),
            )
            .await;
        assert_eq!(decision["verdict"], "queue", "{decision}");
        assert_eq!(decision["reasons"][0]["code"], "needs_burst", "{decision}");
    }
}

/// Violations are recorded by apply: a refusal at one node is counted the same on every
/// node (not per node), and a what-if counts nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_violations_are_counted_once_cluster_wide() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    cluster.leader(TIMEOUT).await.unwrap();
    let apis: Vec<Api> = (1..=3).map(|id| Api::new(&cluster.nodes[&id])).collect();
    assert_eq!(
        apis[0]
            .post("/api/v1/tenants", json!({ "id": "acme" }))
            .await
            .0,
        201
    );
    let (status, body) = apis[0]
        .put("/api/v1/tenants/acme/quotas", json!({ "cpu_m": 1000 }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = apis[2]
        .post(
            "/api/v1/quotas/enforce",
            json!({ "tenant": "acme", "cpu_m": 2000, "memory_mb": 512 }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, refused) = apis[1]
        .post(
            "/api/v1/jobs",
            json!({ "tenant": "acme", "resources": { "cpu_m": 2000, "memory_mb": 512 }, "command": { "argv": ["true"] } }),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    for api in &apis {
        let counts = eventually(TIMEOUT, "the refusal on every node", || async {
            let (_, violations) = api.get("/api/v1/quotas/violations?tenant=acme").await;
            Ok((violations["items"].as_array().map(Vec::len) == Some(1))
                .then(|| violations["counts"].clone()))
        })
        .await
        .unwrap();
        assert_eq!(
            counts,
            json!([{ "tenant": "acme", "reason": "exceeds_ceiling", "count": 1 }]),
            "the what-if is not there"
        );
    }
}
