//! The peer port: Raft, forwarded writes and membership changes are served apart from the
//! public API, only to members presenting the cluster secret; a node outside the
//! membership cannot raise the term or depose the leader.

use std::time::Duration;

use hodei_proto::v1::raft_service_client::RaftServiceClient;
use hodei_proto::v1::{ForwardRequest, RaftPayload};
use hodei_tests::{CLUSTER_SECRET, ProcessCluster, eventually};
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;

const TIMEOUT: Duration = Duration::from_secs(30);

async fn raft_client(url: String) -> RaftServiceClient<tonic::transport::Channel> {
    RaftServiceClient::connect(url).await.unwrap()
}

/// A call as a peer would make it: `secret` and `node_id` in the metadata when given.
fn peer_call<T>(
    message: T,
    secret: Option<&'static str>,
    node_id: Option<u64>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(secret) = secret {
        request.metadata_mut().insert(
            hodei_cluster_secret_key(),
            MetadataValue::from_static(secret),
        );
    }
    if let Some(node_id) = node_id {
        request
            .metadata_mut()
            .insert("x-hodei-node-id", node_id.into());
    }
    request
}

fn hodei_cluster_secret_key() -> &'static str {
    "x-hodei-cluster-secret"
}

fn vote_payload(cluster_id: &str, term: u64, candidate: u64) -> RaftPayload {
    RaftPayload {
        json: serde_json::to_vec(&json!({
            "vote": {"leader_id": {"term": term, "node_id": candidate}, "committed": false},
            "last_log_id": null,
        }))
        .unwrap(),
        cluster_id: cluster_id.to_string(),
    }
}

fn admin_remove(cluster_id: &str, node_id: u64) -> RaftPayload {
    RaftPayload {
        json: serde_json::to_vec(&json!({"RemoveMember": {"node_id": node_id}})).unwrap(),
        cluster_id: cluster_id.to_string(),
    }
}

/// The command a forward carried in the review: a tenant the API would refuse.
fn forged_tenant(cluster_id: &str) -> ForwardRequest {
    ForwardRequest {
        command: br#"{"V1":{"Probe":{"payload":"forged"}}}"#.to_vec(),
        cluster_id: cluster_id.to_string(),
        request_id: String::new(),
    }
}

async fn term_and_members(cluster: &ProcessCluster, node: u64) -> (u64, Option<u64>, Vec<u64>) {
    let status = cluster.nodes[&node].status().await.unwrap();
    let members = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|member| member["node_id"].as_u64())
        .collect();
    (
        status["term"].as_u64().unwrap(),
        status["leader_id"].as_u64(),
        members,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_can_neither_forward_nor_vote_nor_change_membership() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    let leader = cluster.wait_caught_up(TIMEOUT).await.unwrap();
    let status: Value = cluster.nodes[&leader].status().await.unwrap();
    let cluster_id = status["cluster_id"].as_str().unwrap().to_string();
    let before = term_and_members(&cluster, leader).await;
    let term = before.0;

    // The public gRPC port serves no Raft service at all.
    let mut public = raft_client(cluster.nodes[&leader].grpc_url()).await;
    let refused = public
        .forward(peer_call(
            forged_tenant(&cluster_id),
            Some(CLUSTER_SECRET),
            Some(leader),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    let mut peer = raft_client(cluster.nodes[&leader].peer_url()).await;
    // Without the secret: refused whatever it claims.
    for (what, status) in [
        (
            "forward",
            peer.forward(peer_call(forged_tenant(&cluster_id), None, Some(leader)))
                .await
                .unwrap_err(),
        ),
        (
            "vote",
            peer.vote(peer_call(
                vote_payload(&cluster_id, term + 100, 99),
                None,
                Some(99),
            ))
            .await
            .unwrap_err(),
        ),
        (
            "admin",
            peer.admin(peer_call(
                admin_remove(&cluster_id, 3),
                Some("wrong-secret-0123456789"),
                Some(1),
            ))
            .await
            .unwrap_err(),
        ),
    ] {
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status:?}"
        );
    }
    // With the secret but as a node outside the membership: refused.
    for (what, status) in [
        (
            "forward",
            peer.forward(peer_call(
                forged_tenant(&cluster_id),
                Some(CLUSTER_SECRET),
                Some(99),
            ))
            .await
            .unwrap_err(),
        ),
        (
            "vote",
            peer.vote(peer_call(
                vote_payload(&cluster_id, term + 100, 99),
                Some(CLUSTER_SECRET),
                Some(99),
            ))
            .await
            .unwrap_err(),
        ),
        (
            "admin",
            peer.admin(peer_call(
                admin_remove(&cluster_id, 3),
                Some(CLUSTER_SECRET),
                Some(99),
            ))
            .await
            .unwrap_err(),
        ),
        (
            // Claiming to be a member while carrying another node's vote.
            "vote as another",
            peer.vote(peer_call(
                vote_payload(&cluster_id, term + 100, 99),
                Some(CLUSTER_SECRET),
                Some(2),
            ))
            .await
            .unwrap_err(),
        ),
    ] {
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{what}: {status:?}"
        );
    }
    // An empty or foreign cluster id is refused even from a member with the secret.
    for cluster_id in ["", "another-cluster"] {
        let status = peer
            .forward(peer_call(
                forged_tenant(cluster_id),
                Some(CLUSTER_SECRET),
                Some(2),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::FailedPrecondition,
            "{cluster_id:?}: {status:?}"
        );
    }

    // Nothing moved: same leader, term and members, and no forged write applied.
    assert_eq!(term_and_members(&cluster, leader).await, before);
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();

    // The CLI shows the same digests as REST.
    let status: Value = cluster.nodes[&leader].status().await.unwrap();
    let latest = status["state_digest"].as_str().unwrap().to_string();
    let output = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["cluster", "digests", "--last", "100", "--addr"])
        .arg(cluster.nodes[&leader].grpc_addr())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        printed.contains(&latest) && printed.starts_with(&format!("node {leader}")),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_and_a_restarted_laggard_do_not_disturb_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    // Four voters: one is removed, one is stopped, and two still make a quorum of three.
    let mut cluster = ProcessCluster::start(dir.path(), 4, &[]).await.unwrap();
    let leader = cluster.wait_caught_up(TIMEOUT).await.unwrap();
    let removed = if leader == 4 { 3 } else { 4 };
    let other = (1..=4).find(|id| *id != leader && *id != removed).unwrap();
    let http = reqwest::Client::new();
    let response = http
        .delete(cluster.nodes[&leader].rest_url(&format!("/api/v1/cluster/members/{removed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (term, _, members) = term_and_members(&cluster, leader).await;
    assert!(!members.contains(&removed));

    // The removed node keeps running: it stops its Raft core once it sees its removal,
    // or, not having seen it, campaigns and is refused by the members. Either way,
    // wait until it has had the chance to disturb (it stopped, or its own term rose
    // three times) and see that the members' term and leader stayed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        // It exits once it sees its removal (0: it stopped on purpose).
        if !cluster.node(removed).is_running() {
            break;
        }
        if let Some(status) = cluster.nodes[&removed].status().await
            && (status["role"] == "shutdown" || status["term"].as_u64().unwrap_or(0) >= term + 3)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the removed node neither stopped nor campaigned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after_term, after_leader, _) = term_and_members(&cluster, leader).await;
    assert_eq!((after_term, after_leader), (term, Some(leader)));

    // A member that falls behind and comes back does not depose the leader either.
    cluster.node(other).kill9();
    for index in 0..20 {
        let response = http
            .post(cluster.nodes[&leader].rest_url("/api/v1/tenants"))
            .json(&json!({ "id": format!("while-down-{index}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    cluster.node(other).restart().unwrap();
    let nodes = &cluster.nodes;
    eventually(TIMEOUT, "the restarted member to catch up", || async {
        let leader_status = nodes[&leader].status().await.unwrap();
        let Some(status) = nodes[&other].status().await else {
            return Ok(None);
        };
        Ok(
            (status["last_applied_index"].as_u64() >= leader_status["last_log_index"].as_u64()
                && status["leader_id"].as_u64() == Some(leader))
            .then_some(()),
        )
    })
    .await
    .unwrap();
    let (final_term, final_leader, _) = term_and_members(&cluster, leader).await;
    assert_eq!((final_term, final_leader), (term, Some(leader)));
    // The removed node shares no index with the members any more: compare the members.
    cluster.node(removed).kill9();
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();
}
