//! The foundation: a real node process serving tenants over REST and gRPC, surviving
//! kill -9 with its data, and refusing bad input with problem documents.

use std::time::Duration;

use hodei_proto::v1 as pb;
use hodei_proto::v1::cluster_service_client::ClusterServiceClient;
use hodei_proto::v1::tenant_service_client::TenantServiceClient;
use hodei_tests::NodeProcess;
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(30);

async fn rest_status(node: &NodeProcess) -> Value {
    reqwest::get(node.rest_url("/api/v1/cluster/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn rest_tenant(node: &NodeProcess, id: &str) -> Value {
    let response = reqwest::get(node.rest_url(&format!("/api/v1/tenants/{id}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET tenant {id}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_over_rest_and_grpc_survive_kill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(READY).await.unwrap();
    let http = reqwest::Client::new();

    // Created over REST ...
    let created = http
        .post(node.rest_url("/api/v1/tenants"))
        .json(&json!({"id": "alpha", "display_name": "Alpha Corp", "tier": "premium", "labels": {"team": "ml"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let trace_header = created.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .to_string();
    let alpha: Value = created.json().await.unwrap();
    assert_eq!(alpha["trace_id"], trace_header.as_str());
    assert_eq!(alpha["weight"], 3.0);

    // ... and over gRPC.
    let mut grpc = TenantServiceClient::connect(node.grpc_url()).await.unwrap();
    let beta = grpc
        .create_tenant(pb::CreateTenantRequest {
            id: "beta".to_string(),
            display_name: "Beta".to_string(),
            tier: "enterprise".to_string(),
            weight: Some(7.5),
            labels: [("env".to_string(), "prod".to_string())].into(),
        })
        .await
        .unwrap();
    assert!(beta.metadata().get("x-trace-id").is_some());
    assert_eq!(beta.get_ref().weight, 7.5);

    // Each read back through the other API.
    let alpha_over_grpc = grpc
        .get_tenant(pb::GetTenantRequest {
            id: "alpha".to_string(),
            consistency: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alpha_over_grpc.display_name, "Alpha Corp");
    assert_eq!(alpha_over_grpc.tier, "premium");
    assert_eq!(
        alpha_over_grpc.labels.get("team").map(String::as_str),
        Some("ml")
    );
    let beta_over_rest = rest_tenant(&node, "beta").await;
    assert_eq!(beta_over_rest["tier"], "enterprise");
    assert_eq!(beta_over_rest["labels"]["env"], "prod");

    // An update over gRPC shows over REST.
    grpc.update_tenant(pb::UpdateTenantRequest {
        id: "beta".to_string(),
        status: Some("suspended".to_string()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(rest_tenant(&node, "beta").await["status"], "suspended");

    // Pagination: alpha, beta, default in id order, two per page.
    let first_page: Value = http
        .get(node.rest_url("/api/v1/tenants?limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = |page: &Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first_page), ["alpha", "beta"]);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let second_page: Value = http
        .get(node.rest_url(&format!("/api/v1/tenants?limit=2&cursor={cursor}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&second_page), ["default"]);
    assert!(second_page["next_cursor"].is_null());

    let before = rest_status(&node).await;
    assert_eq!(before["role"], "leader");

    node.kill9();
    node.restart().unwrap();
    node.wait_ready(READY).await.unwrap();

    let after = rest_status(&node).await;
    assert_eq!(
        after["cluster_id"], before["cluster_id"],
        "same cluster after restart"
    );
    assert_eq!(
        after["term"], before["term"],
        "same raft term after restart"
    );
    assert!(
        after["last_log_index"].as_u64().unwrap() >= before["last_log_index"].as_u64().unwrap(),
        "the log survived: {before} then {after}"
    );
    assert!(
        after["last_applied_index"].as_u64().unwrap()
            >= before["last_applied_index"].as_u64().unwrap()
    );

    let alpha_after = rest_tenant(&node, "alpha").await;
    for field in [
        "id",
        "display_name",
        "tier",
        "weight",
        "labels",
        "status",
        "created_at_ms",
        "updated_at_ms",
    ] {
        assert_eq!(
            alpha_after[field], alpha[field],
            "alpha.{field} after restart"
        );
    }
    let mut grpc = TenantServiceClient::connect(node.grpc_url()).await.unwrap();
    let beta_after = grpc
        .get_tenant(pb::GetTenantRequest {
            id: "beta".to_string(),
            consistency: "stale".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(beta_after.status, "suspended");
    assert_eq!(beta_after.weight, 7.5);
    let listed = grpc
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .tenants
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["alpha", "beta", "default"]
    );

    let mut cluster = ClusterServiceClient::connect(node.grpc_url())
        .await
        .unwrap();
    let status = cluster
        .get_status(pb::GetClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.role, "leader");
    assert_eq!(
        Some(status.cluster_id.as_str()),
        after["cluster_id"].as_str()
    );
}

/// One request and what the problem document must say.
struct BadRequest {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
    field: Option<&'static str>,
}

fn bad(
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    body: &str,
    status: u16,
    field: Option<&'static str>,
) -> BadRequest {
    BadRequest {
        name,
        method,
        path,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        headers: Vec::new(),
        status,
        field,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problem_documents_and_never_breaks_the_node() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(READY).await.unwrap();
    let http = reqwest::Client::new();
    http.post(node.rest_url("/api/v1/tenants"))
        .json(&json!({"id": "taken"}))
        .send()
        .await
        .unwrap();

    let oversize = format!(
        "{{\"id\":\"big\",\"display_name\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let mut cases = vec![
        bad(
            "malformed json",
            Method::POST,
            "/api/v1/tenants",
            "{\"id\": ",
            400,
            None,
        ),
        bad(
            "not json at all",
            Method::POST,
            "/api/v1/tenants",
            "id=acme",
            400,
            None,
        ),
        bad(
            "unknown field",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"a","colour":"red"}"#,
            422,
            Some("colour"),
        ),
        bad(
            "wrong type",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"a","weight":"heavy"}"#,
            422,
            Some("weight"),
        ),
        bad(
            "missing id",
            Method::POST,
            "/api/v1/tenants",
            r#"{"tier":"free"}"#,
            422,
            Some("id"),
        ),
        bad(
            "bad id",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"Not A Slug"}"#,
            422,
            Some("id"),
        ),
        bad(
            "weight too small",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"w","weight":0.01}"#,
            422,
            Some("weight"),
        ),
        bad(
            "weight too large",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"w","weight":1000}"#,
            422,
            Some("weight"),
        ),
        bad(
            "unknown tier",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"w","tier":"gold"}"#,
            422,
            Some("tier"),
        ),
        bad(
            "bad label",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"w","labels":{"-x":"y"}}"#,
            422,
            Some("labels.-x"),
        ),
        bad(
            "duplicate id",
            Method::POST,
            "/api/v1/tenants",
            r#"{"id":"taken"}"#,
            409,
            None,
        ),
        bad(
            "oversize body",
            Method::POST,
            "/api/v1/tenants",
            &oversize,
            413,
            None,
        ),
        bad(
            "unknown tenant",
            Method::GET,
            "/api/v1/tenants/ghost",
            "",
            404,
            None,
        ),
        bad(
            "bad id in path",
            Method::GET,
            "/api/v1/tenants/NOPE",
            "",
            422,
            Some("id"),
        ),
        bad(
            "empty patch",
            Method::PATCH,
            "/api/v1/tenants/taken",
            "{}",
            422,
            None,
        ),
        bad(
            "bad status",
            Method::PATCH,
            "/api/v1/tenants/taken",
            r#"{"status":"paused"}"#,
            422,
            Some("status"),
        ),
        bad(
            "patch unknown tenant",
            Method::PATCH,
            "/api/v1/tenants/ghost",
            r#"{"weight":2}"#,
            404,
            None,
        ),
        bad(
            "delete unknown tenant",
            Method::DELETE,
            "/api/v1/tenants/ghost",
            "",
            404,
            None,
        ),
        bad(
            "delete default tenant",
            Method::DELETE,
            "/api/v1/tenants/default",
            "",
            409,
            None,
        ),
        bad(
            "bad cascade",
            Method::DELETE,
            "/api/v1/tenants/taken?cascade=yes",
            "",
            422,
            Some("cascade"),
        ),
        bad(
            "limit zero",
            Method::GET,
            "/api/v1/tenants?limit=0",
            "",
            422,
            Some("limit"),
        ),
        bad(
            "limit not a number",
            Method::GET,
            "/api/v1/tenants?limit=ten",
            "",
            422,
            Some("limit"),
        ),
        bad(
            "unknown query parameter",
            Method::GET,
            "/api/v1/tenants?limt=5",
            "",
            422,
            None,
        ),
        bad(
            "bad consistency",
            Method::GET,
            "/api/v1/tenants?consistency=eventual",
            "",
            422,
            Some("consistency"),
        ),
        bad(
            "unknown route",
            Method::GET,
            "/api/v1/nothing-here",
            "",
            404,
            None,
        ),
        bad(
            "wrong method",
            Method::PUT,
            "/api/v1/tenants",
            "{}",
            405,
            None,
        ),
    ];
    let mut no_content_type = bad(
        "no content type",
        Method::POST,
        "/api/v1/tenants",
        r#"{"id":"a"}"#,
        415,
        None,
    );
    no_content_type.content_type = None;
    cases.push(no_content_type);
    let mut bad_principal = bad(
        "bad principal",
        Method::GET,
        "/api/v1/tenants",
        "",
        422,
        Some("x-hodei-principal"),
    );
    bad_principal.headers.push(("x-hodei-principal", "root"));
    cases.push(bad_principal);
    let mut tenant_creates = bad(
        "tenant may not create tenants",
        Method::POST,
        "/api/v1/tenants",
        r#"{"id":"x"}"#,
        403,
        None,
    );
    tenant_creates
        .headers
        .push(("x-hodei-principal", "tenant:taken"));
    cases.push(tenant_creates);
    let mut tenant_reads_other = bad(
        "tenant may not read another",
        Method::GET,
        "/api/v1/tenants/default",
        "",
        403,
        None,
    );
    tenant_reads_other
        .headers
        .push(("x-hodei-principal", "tenant:taken"));
    cases.push(tenant_reads_other);

    for case in cases {
        // The server closes a connection whose body it refused unread (413), so each case
        // gets its own connection rather than a pooled one that may be closing.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut request = http
            .request(case.method.clone(), node.rest_url(case.path))
            .body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", case.name));
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(content_type, "application/problem+json", "{}", case.name);
        let trace_header = response.headers()["x-trace-id"]
            .to_str()
            .unwrap()
            .to_string();
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], case.status, "{}", case.name);
        assert_eq!(problem["trace_id"], trace_header.as_str(), "{}", case.name);
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:hodei:problem:"),
            "{}",
            case.name
        );
        assert!(
            !problem["title"].as_str().unwrap().is_empty(),
            "{}",
            case.name
        );
        assert!(
            !problem["detail"].as_str().unwrap().is_empty(),
            "{}",
            case.name
        );
        if let Some(field) = case.field {
            assert_eq!(problem["field"], field, "{}: {problem}", case.name);
        }
    }

    // A tenant principal sees only itself.
    let own: Value = http
        .get(node.rest_url("/api/v1/tenants"))
        .header("x-hodei-principal", "tenant:taken")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    assert_eq!(own["items"][0]["id"], "taken");

    // W3C traceparent is honoured.
    let traced = http
        .get(node.rest_url("/api/v1/tenants/taken"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        traced.headers()["x-trace-id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let body: Value = traced.json().await.unwrap();
    assert_eq!(body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    // gRPC refusals carry the same codes.
    let mut grpc = TenantServiceClient::connect(node.grpc_url()).await.unwrap();
    let refusals = [
        (
            pb::CreateTenantRequest {
                id: "Bad Id".into(),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            pb::CreateTenantRequest {
                id: "taken".into(),
                ..Default::default()
            },
            tonic::Code::AlreadyExists,
        ),
        (
            pb::CreateTenantRequest {
                id: "w".into(),
                weight: Some(-1.0),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            pb::CreateTenantRequest {
                id: "w".into(),
                tier: "gold".into(),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
    ];
    for (request, code) in refusals {
        let status = grpc.create_tenant(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), code, "{request:?}: {}", status.message());
        assert!(status.metadata().get("x-trace-id").is_some());
    }
    let missing = grpc
        .get_tenant(pb::GetTenantRequest {
            id: "ghost".into(),
            consistency: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut as_tenant = tonic::Request::new(pb::DeleteTenantRequest {
        id: "taken".into(),
        cascade: false,
    });
    as_tenant
        .metadata_mut()
        .insert("x-hodei-principal", "tenant:taken".parse().unwrap());
    assert_eq!(
        grpc.delete_tenant(as_tenant).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );

    // The node took all of that without dying.
    assert!(
        node.is_running(),
        "the node died; log:\n{}",
        node.log_tail()
    );
    let health: Value = http
        .get(node.rest_url("/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(READY).await.unwrap();
    let document: Value = reqwest::get(node.rest_url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let expected = [
        ("/api/v1/tenants", "post"),
        ("/api/v1/tenants", "get"),
        ("/api/v1/tenants/{id}", "get"),
        ("/api/v1/tenants/{id}", "patch"),
        ("/api/v1/tenants/{id}", "delete"),
        ("/api/v1/health", "get"),
        ("/api/v1/cluster/status", "get"),
        ("/api/v1/cluster/init", "post"),
        ("/api/v1/cluster/members", "post"),
        ("/api/v1/cluster/members/{node_id}", "delete"),
        ("/api/v1/cluster/transfer-leader", "post"),
        ("/api/v1/tenants/{id}/quotas", "get"),
        ("/api/v1/tenants/{id}/quotas", "put"),
        ("/api/v1/tenants/{id}/usage", "get"),
        ("/api/v1/quotas/enforce", "post"),
        ("/api/v1/quotas/violations", "get"),
        ("/api/v1/tenants/{id}/burst", "post"),
        ("/api/v1/tenants/{id}/burst", "get"),
        ("/api/v1/tenants/{id}/burst", "delete"),
        ("/api/v1/tenants/{id}/burst/{session}/approve", "post"),
    ];
    for (path, method) in expected {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    // Every operation states the rate limit's 429 with Retry-After, and every error it
    // declares comes as application/problem+json, as the server sends them.
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let too_many = &responses["429"];
            assert!(
                too_many["content"]["application/problem+json"].is_object()
                    && too_many["headers"]["Retry-After"].is_object(),
                "{method} {path}: {too_many}"
            );
            for (status, response) in responses {
                if status.parse::<u16>().is_ok_and(|code| code >= 400)
                    && let Some(content) = response["content"].as_object()
                {
                    assert!(
                        content
                            .keys()
                            .all(|kind| kind == "application/problem+json"),
                        "{method} {path} {status}: {response}"
                    );
                }
            }
        }
    }
    // Every documented operation answers (no route in the document that the server lacks).
    let http = reqwest::Client::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            // Never remove the only member: the route exists whatever the answer.
            let url = node.rest_url(
                &path
                    .replace("{id}", "default")
                    .replace("{node_id}", "42")
                    .replace("{session}", "none"),
            );
            let response = http
                .request(method.to_uppercase().parse().unwrap(), url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            // A domain 404 (an unknown session) is fine; the router's own 404 is not.
            assert!(
                !body["detail"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no route"),
                "{method} {path}: {status} {body}"
            );
            assert_ne!(
                status,
                reqwest::StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_reflection_list_the_services() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(READY).await.unwrap();

    let channel = tonic::transport::Endpoint::from_shared(node.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hodei.v1.TenantService".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in [
        "hodei.v1.TenantService",
        "hodei.v1.ClusterService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} not in {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_logs_carry_the_trace_id_of_rest_and_grpc_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(READY).await.unwrap();

    // REST with a caller's traceparent.
    let created = reqwest::Client::new()
        .post(node.rest_url("/api/v1/tenants"))
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .json(&json!({"id": "logged-rest"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // gRPC without one: the node makes one up and returns it.
    let mut grpc = TenantServiceClient::connect(node.grpc_url()).await.unwrap();
    let reply = grpc
        .create_tenant(pb::CreateTenantRequest {
            id: "logged-grpc".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let grpc_trace = reply
        .metadata()
        .get("x-trace-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    let log_lines = |tenant: &'static str| {
        let dir = dir.path().to_path_buf();
        move || {
            let log = std::fs::read_to_string(dir.join("node-1.log")).unwrap_or_default();
            log.lines()
                .filter(|line| line.contains("tenant created") && line.contains(tenant))
                .map(str::to_string)
                .collect::<Vec<_>>()
        }
    };
    let rest_lines = hodei_tests::eventually(READY, "the REST create in the log", || {
        let lines = log_lines("logged-rest")();
        async move { Ok((!lines.is_empty()).then_some(lines)) }
    })
    .await
    .unwrap();
    let line: Value = serde_json::from_str(&rest_lines[0]).unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["principal"], "admin");
    assert!(
        rest_lines[0].contains("0af7651916cd43dd8448eb211c80319c"),
        "{}",
        rest_lines[0]
    );

    let grpc_lines = hodei_tests::eventually(READY, "the gRPC create in the log", || {
        let lines = log_lines("logged-grpc")();
        async move { Ok((!lines.is_empty()).then_some(lines)) }
    })
    .await
    .unwrap();
    assert!(
        grpc_lines[0].contains(&grpc_trace),
        "{} does not carry {grpc_trace}",
        grpc_lines[0]
    );
}
