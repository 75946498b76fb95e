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
}
