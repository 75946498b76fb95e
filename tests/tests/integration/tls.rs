//! TLS (issue 21): a 3-node cluster whose REST, gRPC and peer ports speak TLS only, with
//! certificates from `hodei tls generate`; members replicate over mutual TLS; clients
//! that do not trust the CA, plain-text clients and peers without a certificate are
//! refused; the agents a node starts join over TLS.

use std::path::Path;
use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

fn trusting(tls: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.join("ca.pem")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

fn https(node: &NodeProcess, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", node.rest_port)
}

/// A raw unary call to `path` on `endpoint`: the answer's status, or the transport error.
async fn raw_call(
    endpoint: tonic::transport::Endpoint,
    path: &'static str,
) -> Result<(), tonic::Status> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(format!("{error:?}")))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    grpc.unary(
        tonic::Request::new(Vec::new()),
        http::uri::PathAndQuery::from_static(path),
        crate::fuzz::Raw,
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_on_mutual_tls_and_refuses_whoever_lacks_the_ca_or_a_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let generated = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["tls", "generate", "--nodes", "3", "--out"])
        .arg(&tls)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{generated:?}");
    let mut nodes = Vec::new();
    for mut spec in NodeSpec::cluster(3) {
        let id = spec.node_id;
        spec.server_extra.extend([
            "tls:".to_string(),
            format!("  cert: {}", tls.join(format!("node-{id}.pem")).display()),
            format!("  key: {}", tls.join(format!("node-{id}.key")).display()),
            format!("  client_ca: {}", tls.join("ca.pem").display()),
        ]);
        nodes.push(NodeProcess::start_spec(&dir.path().join(format!("node{id}")), &spec).unwrap());
    }
    let client = trusting(&tls);
    // Every node answers over https and knows the leader: the members elected it over
    // mutual TLS.
    for node in &nodes {
        let url = https(node, "/api/v1/health");
        let client = client.clone();
        let result = eventually(TIMEOUT, "the node ready over https", || {
            let request = client.get(&url).send();
            async move {
                let Ok(response) = request.await else {
                    return Ok(None);
                };
                let body: Value = response.json().await?;
                Ok((body["ready"] == true).then_some(()))
            }
        })
        .await;
        assert!(result.is_ok(), "{result:?}\n{}", node.log_tail());
    }
    // A write on one node is read on another.
    let created = eventually(TIMEOUT, "a tenant created", || {
        let request = client
            .post(https(&nodes[0], "/api/v1/tenants"))
            .json(&json!({ "id": "secure" }))
            .send();
        async move {
            let response = request.await?;
            Ok(response.status().is_success().then_some(()))
        }
    })
    .await;
    assert!(created.is_ok(), "{created:?}");
    let read = eventually(TIMEOUT, "the tenant read on node 3", || {
        let request = client
            .get(https(&nodes[2], "/api/v1/tenants/secure"))
            .send();
        async move { Ok((request.await?.status() == 200).then_some(())) }
    })
    .await;
    assert!(read.is_ok(), "{read:?}");

    // A client that does not trust the CA, and a plain-text client, get no answer.
    let untrusting = reqwest::Client::new()
        .get(https(&nodes[0], "/api/v1/health"))
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/api/v1/health",
            nodes[0].rest_port
        ))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    // The peer port takes only callers with a certificate the CA signed.
    let ca = tonic::transport::Certificate::from_pem(std::fs::read(tls.join("ca.pem")).unwrap());
    let peer = format!("https://127.0.0.1:{}", nodes[0].peer_port);
    let anonymous = tonic::transport::Endpoint::from_shared(peer.clone())
        .unwrap()
        .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca.clone()))
        .unwrap();
    let refused = raw_call(anonymous, "/hodei.v1.RaftService/Hello").await;
    assert!(
        // The handshake fails or the server closes the connection: a transport error.
        matches!(&refused, Err(status) if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled)),
        "{refused:?}"
    );
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(tls.join("node-2.pem")).unwrap(),
        std::fs::read(tls.join("node-2.key")).unwrap(),
    );
    let member = tonic::transport::Endpoint::from_shared(peer)
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(ca)
                .identity(identity),
        )
        .unwrap();
    // With a certificate the call reaches the service (which then asks for the cluster
    // secret, or reads the message): no transport failure.
    let reached = raw_call(member, "/hodei.v1.RaftService/Hello").await;
    assert!(
        !matches!(&reached, Err(status) if status.code() == tonic::Code::Unavailable),
        "{reached:?}"
    );

    // The agents a node starts join over TLS.
    let leader_api = &nodes[0];
    let created = client
        .post(https(leader_api, "/api/v1/pools"))
        .json(
            &json!({ "id": "tls-pool", "provider": "process", "min_size": 1, "max_size": 1,
                       "worker_shape": { "cpu_m": 1000, "memory_mb": 1024 } }),
        )
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let joined = eventually(
        TIMEOUT,
        "the process pool's worker registered over TLS",
        || {
            let request = client
                .get(https(leader_api, "/api/v1/pools/tls-pool/workers"))
                .send();
            async move {
                let workers: Value = request.await?.json().await?;
                Ok(workers["items"]
                    .as_array()
                    .is_some_and(|items| items.iter().any(|worker| worker["state"] == "idle"))
                    .then_some(()))
            }
        },
    )
    .await;
    assert!(joined.is_ok(), "{joined:?}");
}
