//! Authentication and authorization (issue 21), against a real node with
//! `server.auth: token`: every route and every gRPC method without a token, with another
//! tenant's token and with the admin's; tenant tokens (scopes, expiry, revocation, the
//! forged principal header); join tokens for workers; the admin token of the first start.

use std::collections::BTreeSet;
use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, RestApi, WorkerProcess, eventually};
use reqwest::Method;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
const ADMIN_TOKEN: &str = "harness-admin-token-0123456789abcdef";

fn spec(admin_token: Option<&str>) -> NodeSpec {
    let mut spec = NodeSpec::new(1);
    // With tokens, the jobs of process pools run as an unprivileged user (the tests run
    // as root).
    spec.extra_yaml = "workers:\n  run_as: nobody\n".to_string();
    spec.server_extra.push("auth: token".to_string());
    if let Some(token) = admin_token {
        spec.server_extra.push(format!("admin_token: {token}"));
    }
    spec
}

/// Routes a tenant may call (its token's scope permitting), by the policy: on its own
/// resources only. Every other route is an admin's.
const TENANT_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/tenants/{id}/tokens"),
    ("get", "/api/v1/tenants/{id}/tokens"),
    ("delete", "/api/v1/tenants/{id}/tokens/{token_id}"),
    ("get", "/api/v1/tenants"),
    ("get", "/api/v1/tenants/{id}"),
    ("get", "/api/v1/tenants/{id}/quotas"),
    ("get", "/api/v1/tenants/{id}/usage"),
    ("post", "/api/v1/quotas/enforce"),
    ("get", "/api/v1/quotas/violations"),
    ("post", "/api/v1/tenants/{id}/burst"),
    ("get", "/api/v1/tenants/{id}/burst"),
    ("delete", "/api/v1/tenants/{id}/burst"),
    ("post", "/api/v1/jobs"),
    ("post", "/api/v1/jobs/batch"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{id}"),
    ("post", "/api/v1/jobs/{id}/cancel"),
    ("get", "/api/v1/jobs/{id}/logs"),
    ("get", "/api/v1/jobs/{id}/position"),
    ("get", "/api/v1/jobs/{id}/sla"),
    ("get", "/api/v1/sla/summary"),
    ("get", "/api/v1/queues"),
    ("get", "/api/v1/queues/{id}"),
    ("get", "/api/v1/queues/status"),
    ("get", "/api/v1/queues/{id}/status"),
    ("get", "/api/v1/queues/{id}/fair-share"),
    ("get", "/api/v1/pools"),
    ("get", "/api/v1/pools/{id}"),
    ("get", "/api/v1/pools/{id}/pricing"),
    ("get", "/api/v1/cost-reports"),
    ("post", "/api/v1/cost-reports"),
    ("get", "/api/v1/cost-reports/definitions"),
    ("get", "/api/v1/cost-reports/{id}"),
    ("delete", "/api/v1/cost-reports/{id}"),
];

/// A route's path with its parameters filled in: `tenant`'s resources where the route
/// names a tenant or a job.
fn fill(path: &str, tenant: &str, job: &str) -> String {
    let id = if path.starts_with("/api/v1/tenants/") {
        tenant
    } else if path.starts_with("/api/v1/jobs/") {
        job
    } else if path.starts_with("/api/v1/queues/") {
        "default"
    } else if path.starts_with("/api/v1/pools/") {
        "pool-default"
    } else {
        "x"
    };
    let mut filled = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        filled.push_str(&rest[..open]);
        filled.push_str(if &rest[open..=close] == "{id}" {
            id
        } else {
            "x"
        });
        rest = &rest[close + 1..];
    }
    filled.push_str(rest);
    filled
}

async fn raw(
    http: &reqwest::Client,
    node: &NodeProcess,
    method: &str,
    path: &str,
    token: Option<&str>,
    principal: Option<&str>,
) -> (u16, String) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let mut request = http.request(method.clone(), node.rest_url(path));
    if method != Method::GET && method != Method::DELETE {
        request = request.json(&json!({}));
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(principal) = principal {
        request = request.header("x-hodei-principal", principal);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn issue(
    api: &RestApi,
    tenant: &str,
    scopes: &[&str],
    expires_in_s: Option<u64>,
) -> (String, String) {
    let issued = api
        .ok(
            Method::POST,
            &format!("/api/v1/tenants/{tenant}/tokens"),
            Some(json!({ "name": "test", "scopes": scopes, "expires_in_s": expires_in_s })),
        )
        .await;
    (
        issued["token"].as_str().unwrap().to_string(),
        issued["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_method_answers_as_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &spec(Some(ADMIN_TOKEN))).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let admin = RestApi::new(&node).with_token(ADMIN_TOKEN);
    for tenant in ["alpha", "beta", "zeta"] {
        admin
            .ok(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({ "id": tenant })),
            )
            .await;
    }
    let (alpha_token, _) = issue(
        &admin,
        "alpha",
        &["read", "submit", "admin-of-tenant"],
        None,
    )
    .await;
    let (beta_token, _) = issue(&admin, "beta", &["read", "submit", "admin-of-tenant"], None).await;
    let alpha = RestApi::new(&node).with_token(&alpha_token);
    let submitted = alpha
        .ok(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({ "resources": { "cpu_m": 100, "memory_mb": 64 }, "command": { "argv": ["true"] } })),
        )
        .await;
    let alpha_job = submitted["job"]["id"].as_str().unwrap().to_string();
    assert_eq!(submitted["job"]["tenant"], "alpha", "{submitted}");
    // The admin's pass of the walk deletes and cancels: it is given zeta's resources.
    let zeta_job = admin
        .ok(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({ "tenant": "zeta", "resources": { "cpu_m": 100, "memory_mb": 64 }, "command": { "argv": ["true"] } })),
        )
        .await["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The routes, from the node's own document.
    let http = reqwest::Client::new();
    let (status, document) = raw(
        &http,
        &node,
        "get",
        "/api/v1/openapi.json",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&document).unwrap();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                routes.push((method.clone(), path.clone()));
            }
        }
    }
    assert!(routes.len() > 80, "{} routes", routes.len());
    let listed: BTreeSet<(String, String)> = routes.iter().cloned().collect();
    for (method, path) in TENANT_ROUTES {
        assert!(
            listed.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is no route"
        );
    }
    let mut wrong = Vec::new();
    for (method, path) in &routes {
        // Membership changes as an admin would change the cluster; they are checked
        // without a token and as a tenant only.
        let membership = path.starts_with("/api/v1/cluster/") && method == "post";
        let filled = fill(path, "alpha", &alpha_job);
        let tenant_route = TENANT_ROUTES.contains(&(method.as_str(), path.as_str()));
        // No token: 401 everywhere but the health probe.
        let (status, _) = raw(&http, &node, method, &filled, None, Some("admin")).await;
        let expected = if path == "/api/v1/health" { 200 } else { 401 };
        if status != expected {
            wrong.push(format!(
                "no token: {method} {filled} -> {status}, expected {expected}"
            ));
        }
        // Tenant beta, about alpha's resources: 403 on an admin's route; on a tenant's
        // route, 403 or 404 where it names alpha's tenant or job, and nothing of alpha's
        // in any answer.
        let (status, body) = raw(
            &http,
            &node,
            method,
            &filled,
            Some(&beta_token),
            Some("admin"),
        )
        .await;
        let names_alpha = filled.contains("/alpha") || filled.contains(&alpha_job);
        let allowed: &[u16] = if path == "/api/v1/health" {
            &[200]
        } else if !tenant_route {
            &[403]
        } else if names_alpha {
            &[403, 404]
        } else {
            &[200, 201, 202, 400, 403, 404, 409, 422]
        };
        // A refusal may repeat the id the caller sent; nothing else of alpha's appears.
        let leaks = (!filled.contains(&alpha_job) && body.contains(&alpha_job))
            || body.contains("\"alpha\"");
        if !allowed.contains(&status) || leaks {
            wrong.push(format!(
                "tenant beta: {method} {filled} -> {status} {body:.200}"
            ));
        }
        // The admin: never 401 or 403.
        if !membership {
            let zeta = fill(path, "zeta", &zeta_job);
            let (status, body) = raw(&http, &node, method, &zeta, Some(ADMIN_TOKEN), None).await;
            if status == 401 || status == 403 || status >= 500 {
                wrong.push(format!("admin: {method} {zeta} -> {status} {body:.200}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // A tenant's token with a forged principal header is still the tenant's.
    let (status, body) = raw(
        &http,
        &node,
        "post",
        "/api/v1/tenants",
        Some(&alpha_token),
        Some("admin"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = raw(
        &http,
        &node,
        "get",
        "/api/v1/tenants",
        Some("hodei_t_0123456789abcdef_00"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    // Alpha's job is alpha's alone: beta can neither read nor cancel it, nor see it listed.
    let beta = RestApi::new(&node).with_token(&beta_token);
    let (_, jobs) = beta.get("/api/v1/jobs").await;
    assert!(!jobs.to_string().contains(&alpha_job), "{jobs}");
    let (status, _) = beta
        .post(&format!("/api/v1/jobs/{alpha_job}/cancel"), json!({}))
        .await;
    assert!(status == 403 || status == 404, "{status}");
    let (_, job) = alpha.get(&format!("/api/v1/jobs/{alpha_job}")).await;
    assert_ne!(job["state"], "cancelled", "{job}");

    // Scopes: a read-only token reads and submits nothing.
    let (reader, reader_id) = issue(&alpha, "alpha", &["read"], None).await;
    let reader_api = RestApi::new(&node).with_token(&reader);
    let (status, _) = reader_api.get(&format!("/api/v1/jobs/{alpha_job}")).await;
    assert_eq!(status, 200);
    let (status, body) = reader_api
        .post("/api/v1/jobs", json!({ "resources": { "cpu_m": 100, "memory_mb": 64 }, "command": { "argv": ["true"] } }))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("`submit` scope"),
        "{body}"
    );
    // Tokens are listed without their secrets, and a revoked one authenticates nothing.
    let (_, listed) = alpha.get("/api/v1/tenants/alpha/tokens").await;
    assert!(
        listed.to_string().contains(&reader_id) && !listed.to_string().contains(&reader),
        "{listed}"
    );
    let (status, _) = alpha
        .call(
            Method::DELETE,
            &format!("/api/v1/tenants/alpha/tokens/{reader_id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = reader_api.get(&format!("/api/v1/jobs/{alpha_job}")).await;
    assert_eq!(status, 401);
    // A token issues no token with a scope it lacks, nor one that outlives it.
    let (hourly, _) = issue(&alpha, "alpha", &["read", "admin-of-tenant"], Some(3_600)).await;
    let hourly_api = RestApi::new(&node).with_token(&hourly);
    let (status, body) = hourly_api
        .post(
            "/api/v1/tenants/alpha/tokens",
            json!({ "name": "wider", "scopes": ["submit"], "expires_in_s": 60 }),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = hourly_api
        .post(
            "/api/v1/tenants/alpha/tokens",
            json!({ "name": "forever", "scopes": ["read"] }),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("expires_in_s")),
        "{body}"
    );
    let (status, body) = hourly_api
        .post(
            "/api/v1/tenants/alpha/tokens",
            json!({ "name": "minute", "scopes": ["read"], "expires_in_s": 60 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // An expiring token stops working when it expires.
    let (brief, _) = issue(&alpha, "alpha", &["read"], Some(1)).await;
    let brief_api = RestApi::new(&node).with_token(&brief);
    eventually(TIMEOUT, "the token to expire", || async {
        let (status, body) = brief_api.get("/api/v1/jobs").await;
        Ok(
            (status == 401 && body["detail"].as_str().unwrap_or("").contains("expired"))
                .then_some(()),
        )
    })
    .await
    .unwrap();

    // The audit log holds the state-changing requests, accepted and refused, with their
    // principal, action, resource, result and trace id; tenants may not read it.
    let (status, audit) = admin.get("/api/v1/audit?limit=1000").await;
    assert_eq!(status, 200, "{audit}");
    let records = audit["items"].as_array().unwrap();
    let found = |principal: &str, action: &str, result: &str| {
        records.iter().any(|record| {
            record["principal"] == principal
                && record["action"] == action
                && record["result"] == result
                && !record["trace_id"].as_str().unwrap_or("").is_empty()
                && !record["resource"].as_str().unwrap_or("").is_empty()
        })
    };
    assert!(found("tenant:alpha", "submit_job", "ok"), "{audit}");
    assert!(
        found("tenant:beta", "create_tenant", "forbidden"),
        "{audit}"
    );
    assert!(found("admin", "delete_tenant", "ok"), "{audit}");
    let (status, _) = alpha.get("/api/v1/audit").await;
    assert_eq!(status, 403);
    let (status, only) = admin.get("/api/v1/audit?principal=tenant:beta").await;
    assert_eq!(status, 200);
    assert!(
        only["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|record| record["principal"] == "tenant:beta"),
        "{only}"
    );

    // gRPC: every method refuses a call without a token; the admin is never refused.
    let channel = tonic::transport::Endpoint::from_shared(node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut refused = Vec::new();
    for method in crate::fuzz::methods() {
        if method.service == "WorkerService" {
            continue;
        }
        let anonymous = crate::fuzz::call_as(channel.clone(), &method, Vec::new(), None).await;
        if anonymous.as_ref().err().map(tonic::Status::code) != Some(tonic::Code::Unauthenticated) {
            refused.push(format!("no token: {} -> {anonymous:?}", method.path));
        }
        if method.service == "ClusterService"
            && crate::fuzz::MEMBERSHIP.contains(&method.name.as_str())
        {
            continue;
        }
        let admin =
            crate::fuzz::call_as(channel.clone(), &method, Vec::new(), Some(ADMIN_TOKEN)).await;
        if let Err(status) = &admin
            && matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            )
        {
            refused.push(format!("admin: {} -> {status:?}", method.path));
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n"));
    let denied = crate::fuzz::call_as(
        channel.clone(),
        &crate::fuzz::methods()
            .into_iter()
            .find(|method| method.name == "CreateTenant")
            .unwrap(),
        Vec::new(),
        Some(&beta_token),
    )
    .await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);
}

/// A `hodei worker` with id `id` in `pool`, talking to `node`, with `join_token` if any;
/// its directory is `root/<name>`.
fn agent(
    root: &std::path::Path,
    node: &NodeProcess,
    name: &str,
    id: &str,
    pool: &str,
    join_token: Option<&str>,
) -> WorkerProcess {
    let extra: Vec<&str> = join_token
        .map(|token| vec!["--join-token", token])
        .unwrap_or_default();
    WorkerProcess::start_with(
        &root.join(name),
        id,
        pool,
        &[node.grpc_addr()],
        2000,
        2048,
        &extra,
    )
    .unwrap()
}

/// Waits until `agent`'s log says it was refused with `words`, then stops it.
async fn refused(mut agent: WorkerProcess, words: &str) {
    let log = agent.dir.join("worker-1.log");
    eventually(TIMEOUT, &format!("an agent refused: {words}"), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text.contains(words).then_some(()))
    })
    .await
    .unwrap();
    agent.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_with_a_join_token_and_the_first_start_prints_an_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    // No admin token configured: the first start prints one.
    let mut node = NodeProcess::start_spec(&dir.path().join("node"), &spec(None)).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let log = node.dir.join("node-1.log");
    let admin_token = eventually(TIMEOUT, "the first start's admin token", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(text
            .split_whitespace()
            .find(|word| word.starts_with("hodei_a_"))
            .map(str::to_string))
    })
    .await
    .unwrap();
    let admin = RestApi::new(&node).with_token(&admin_token);
    let (status, _) = admin.get("/api/v1/tenants").await;
    assert_eq!(status, 200);

    // A worker without a join token is refused, and so is one with another pool's.
    let rogue = agent(dir.path(), &node, "rogue", "rogue", "pool-default", None);
    refused(rogue, "needs a join token").await;
    let issued = admin
        .ok(
            Method::POST,
            "/api/v1/pools/pool-default/join-tokens",
            Some(json!({ "name": "racks" })),
        )
        .await;
    let join_token = issued["token"].as_str().unwrap().to_string();
    let elsewhere = agent(
        dir.path(),
        &node,
        "elsewhere",
        "elsewhere",
        "gpu",
        Some(&join_token),
    );
    refused(elsewhere, "does not admit workers to pool `gpu`").await;
    let mut real = agent(
        dir.path(),
        &node,
        "real",
        "w1",
        "pool-default",
        Some(&join_token),
    );
    eventually(
        TIMEOUT,
        "the worker with the join token registered",
        || async {
            let (_, workers) = admin.get("/api/v1/pools/pool-default/workers").await;
            Ok(workers["items"]
                .as_array()
                .is_some_and(|items| {
                    items
                        .iter()
                        .any(|worker| worker["id"] == "w1" && worker["state"] != "lost")
                })
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // A job runs on it; a second agent under its id, with a valid join token, is refused
    // and the job is untouched.
    let marker = dir.path().join("go");
    let submitted = admin
        .ok(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({ "resources": { "cpu_m": 500, "memory_mb": 64 },
                "command": { "argv": ["sh", "-c", format!("while [ ! -e {} ]; do sleep 0.1; done; echo done", marker.display())] } })),
        )
        .await;
    let job = submitted["job"]["id"].as_str().unwrap().to_string();
    eventually(TIMEOUT, "the job running on w1", || async {
        let (_, view) = admin.get(&format!("/api/v1/jobs/{job}")).await;
        Ok((view["state"] == "running" && view["worker"] == "w1").then_some(()))
    })
    .await
    .unwrap();
    let twin = agent(
        dir.path(),
        &node,
        "twin",
        "w1",
        "pool-default",
        Some(&join_token),
    );
    refused(twin, "never a takeover").await;
    std::fs::write(&marker, "").unwrap();
    eventually(TIMEOUT, "the job to succeed on w1", || async {
        let (_, view) = admin.get(&format!("/api/v1/jobs/{job}")).await;
        Ok((view["state"] == "succeeded" && view["worker"] == "w1").then_some(()))
    })
    .await
    .unwrap();
    // A revoked join token admits no one new.
    let token_id = issued["id"].as_str().unwrap();
    admin
        .ok(
            Method::DELETE,
            &format!("/api/v1/pools/pool-default/join-tokens/{token_id}"),
            None,
        )
        .await;
    let late = agent(
        dir.path(),
        &node,
        "late",
        "w2",
        "pool-default",
        Some(&join_token),
    );
    refused(late, "does not admit workers").await;
    // The node's own process pools join with the credential it gives them.
    admin
        .ok(
            Method::POST,
            "/api/v1/pools",
            Some(
                json!({ "id": "spawned", "provider": "process", "min_size": 1, "max_size": 1,
                "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 } }),
            ),
        )
        .await;
    eventually(TIMEOUT, "the process pool's worker registered", || async {
        let (_, workers) = admin.get("/api/v1/pools/spawned/workers").await;
        Ok(workers["items"]
            .as_array()
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|worker| worker["state"] == "idle" || worker["state"] == "busy")
            })
            .then_some(()))
    })
    .await
    .unwrap();
    real.kill9();

    // A restart prints no new admin token; the first one still works.
    node.kill9();
    node.restart().unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let (status, _) = admin.get("/api/v1/tenants").await;
    assert_eq!(status, 200);
    let restarted = std::fs::read_to_string(node.dir.join("node-2.log")).unwrap();
    assert!(
        !restarted.contains("hodei_a_"),
        "a second admin token was printed"
    );
    // It can be revoked like any token (its id follows `hodei_a_`).
    let id = admin_token.split('_').nth(2).unwrap();
    let (status, body) = admin
        .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = admin.get("/api/v1/tenants").await;
    assert_eq!(status, 401);
}

/// Every file under `dir` (recursively) that holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|window| window == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_variable_reaches_its_job_and_is_stored_and_shown_only_sealed() {
    const SECRET: &str = "s3cret-value-do-not-store";
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_spec(dir.path(), &NodeSpec::new(1)).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let api = RestApi::new(&node);
    crate::autoscaling::pool_with_queue(
        &node,
        json!({ "id": "sealed", "provider": "process", "min_size": 1, "max_size": 1,
                "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 } }),
    )
    .await;
    // The job prints the value's length and its last characters, so that its output
    // proves delivery without holding the value.
    let submitted = api
        .ok(
            Method::POST,
            "/api/v1/jobs",
            Some(json!({ "queue": "sealed-q", "resources": { "cpu_m": 100, "memory_mb": 64 },
                "command": { "argv": ["sh", "-c", "echo len=${#DB_PASSWORD} tail=${DB_PASSWORD#s3cret-value-do-not-}"],
                             "env": { "PLAIN": "visible" },
                             "secret_env": { "DB_PASSWORD": SECRET } } })),
        )
        .await;
    let id = submitted["job"]["id"].as_str().unwrap().to_string();
    let job = eventually(TIMEOUT, "the job to succeed", || async {
        let (_, job) = api.get(&format!("/api/v1/jobs/{id}")).await;
        Ok((job["state"] == "succeeded").then_some(job))
    })
    .await
    .unwrap();
    assert_eq!(
        job["command"]["secret_env"]["DB_PASSWORD"], "<redacted>",
        "{job}"
    );
    assert_eq!(job["command"]["env"]["PLAIN"], "visible", "{job}");
    assert!(job["command"]["env"].get("DB_PASSWORD").is_none(), "{job}");
    let (_, logs) = api.get(&format!("/api/v1/jobs/{id}/logs")).await;
    assert!(
        logs.to_string()
            .contains(&format!("len={} tail=store", SECRET.len())),
        "{logs}"
    );
    // A value that looks sealed is refused in `env`.
    let (status, body) = api
        .post(
            "/api/v1/jobs",
            json!({ "resources": { "cpu_m": 100, "memory_mb": 64 },
                "command": { "argv": ["true"], "env": { "X": "hodei-sealed:v1:00" } } }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    // Neither the Raft log, the state, the snapshots nor the node's log hold the value.
    // (The scan finds what is stored in clear: the plain variable's value.)
    assert!(!files_holding(&dir.path().join("data"), b"visible").is_empty());
    let holding = files_holding(dir.path(), SECRET.as_bytes());
    assert!(
        holding.is_empty(),
        "the secret is stored in clear in {holding:?}"
    );
}
