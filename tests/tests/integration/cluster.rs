//! The HA cluster: separate `hodei` processes on loopback, real Raft over gRPC, kill -9.

use std::collections::BTreeSet;
use std::time::Duration;

use hodei_proto::v1 as pb;
use hodei_proto::v1::cluster_service_client::ClusterServiceClient;
use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn create_tenant(node: &NodeProcess, id: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(node.rest_url("/api/v1/tenants"))
        .json(&json!({ "id": id }))
        .send()
        .await
        .map(|response| response.status())
        .unwrap_or(reqwest::StatusCode::SERVICE_UNAVAILABLE)
}

async fn tenant_ids(node: &NodeProcess, consistency: &str) -> Option<BTreeSet<String>> {
    let url = node.rest_url(&format!(
        "/api/v1/tenants?limit=1000&consistency={consistency}"
    ));
    let page: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    Some(
        page["items"]
            .as_array()?
            .iter()
            .filter_map(|tenant| tenant["id"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Waits until `node` (read locally) holds every id of `expected`.
async fn wait_for_ids(node: &NodeProcess, expected: &BTreeSet<String>) {
    eventually(
        TIMEOUT,
        &format!("node {} to hold {} tenants", node.node_id, expected.len()),
        || async {
            Ok(tenant_ids(node, "stale")
                .await
                .filter(|ids| expected.is_subset(ids))
                .map(|_| ()))
        },
    )
    .await
    .unwrap();
}

async fn cluster_client(node: &NodeProcess) -> ClusterServiceClient<tonic::transport::Channel> {
    ClusterServiceClient::connect(node.grpc_url())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_anywhere_survive_leader_kill_and_the_old_leader_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();

    // A write sent to a follower is forwarded, acknowledged, and applied everywhere.
    assert_eq!(
        create_tenant(&cluster.nodes[&followers[0]], "via-follower").await,
        201
    );
    let other_follower = &cluster.nodes[&followers[1]];
    let linearizable = tenant_ids(other_follower, "linearizable").await.unwrap();
    assert!(
        linearizable.contains("via-follower"),
        "a linearizable read on another follower sees the write"
    );
    let expected = BTreeSet::from(["via-follower".to_string(), "default".to_string()]);
    for node in cluster.nodes.values() {
        wait_for_ids(node, &expected).await;
    }

    // Acknowledged writes through every node.
    let mut acknowledged = expected.clone();
    for index in 0..30 {
        let node_id = (index % 3) + 1;
        let id = format!("before-kill-{index}");
        assert_eq!(
            create_tenant(&cluster.nodes[&node_id], &id).await,
            201,
            "{id} via node {node_id}"
        );
        acknowledged.insert(id);
    }

    // kill -9 the leader: a new one is elected and writes resume.
    cluster.node(leader).kill9();
    let new_leader = cluster.leader(TIMEOUT).await.unwrap();
    assert_ne!(new_leader, leader);
    for index in 0..10 {
        let id = format!("after-kill-{index}");
        let node_id = followers[index % 2];
        assert_eq!(
            create_tenant(&cluster.nodes[&node_id], &id).await,
            201,
            "{id} via node {node_id}"
        );
        acknowledged.insert(id);
    }
    for node_id in &followers {
        let ids = tenant_ids(&cluster.nodes[node_id], "linearizable")
            .await
            .unwrap();
        let lost: Vec<&String> = acknowledged.difference(&ids).collect();
        assert!(
            lost.is_empty(),
            "node {node_id} lost acknowledged writes: {lost:?}"
        );
    }

    // The old leader restarts on its data and catches up.
    cluster.node(leader).restart().unwrap();
    cluster.node(leader).wait_ready(TIMEOUT).await.unwrap();
    wait_for_ids(&cluster.nodes[&leader], &acknowledged).await;
    let status = cluster.nodes[&leader].status().await.unwrap();
    assert_eq!(status["role"], "follower");

    // Leadership can be handed over on request.
    let mut client = cluster_client(&cluster.nodes[&leader]).await;
    let moved = client
        .transfer_leader(pb::TransferLeaderRequest { node_id: leader })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.leader_id, Some(leader));
    assert_eq!(cluster.leader(TIMEOUT).await.unwrap(), leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_catches_up_by_snapshot_and_a_leaving_node_keeps_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let compaction = [
        "snapshot_every_entries: 20",
        "log_entries_kept_after_snapshot: 0",
    ];
    let mut cluster = ProcessCluster::start(dir.path(), 3, &compaction)
        .await
        .unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let mut expected = BTreeSet::from(["default".to_string()]);
    for index in 0..60 {
        let id = format!("t{index}");
        assert_eq!(create_tenant(&cluster.nodes[&leader], &id).await, 201);
        expected.insert(id);
    }
    let snapshot_index = eventually(TIMEOUT, "a snapshot on the leader", || async {
        let status = cluster.nodes[&leader].status().await;
        Ok(status
            .and_then(|status| status["snapshot_index"].as_u64())
            .filter(|index| *index >= 20))
    })
    .await
    .unwrap();

    // Node 4 starts empty and joins through a member; the log behind the snapshot is gone,
    // so it can only catch up by snapshot.
    let mut spec = NodeSpec::new(4);
    spec.bootstrap = "join";
    spec.cluster_extra = compaction.iter().map(|line| line.to_string()).collect();
    let mut newcomer = NodeProcess::start_spec(&dir.path().join("node4"), &spec).unwrap();
    eventually(TIMEOUT, "node 4 to answer", || async {
        Ok(newcomer.status().await.map(|_| ()))
    })
    .await
    .unwrap();
    let joined = cluster_client(&cluster.nodes[&1])
        .await
        .add_member(pb::AddMemberRequest {
            node_id: 4,
            addr: spec.peer_addr(),
        })
        .await
        .unwrap()
        .into_inner();
    let voters: Vec<u64> = joined
        .members
        .iter()
        .filter(|m| m.role == "voter")
        .map(|m| m.node_id)
        .collect();
    assert_eq!(voters, [1, 2, 3, 4]);
    wait_for_ids(&newcomer, &expected).await;
    let newcomer_status = newcomer.status().await.unwrap();
    assert!(
        newcomer_status["snapshot_index"].as_u64().unwrap_or(0) >= snapshot_index.min(20),
        "node 4 installed a snapshot: {newcomer_status}"
    );
    assert_eq!(
        newcomer_status["cluster_id"],
        cluster.nodes[&1].status().await.unwrap()["cluster_id"]
    );
    newcomer.wait_ready(TIMEOUT).await.unwrap();

    // A node leaves; the rest keep a quorum and keep taking writes.
    let leaving = if leader == 3 { 2 } else { 3 };
    let left = cluster_client(&cluster.nodes[&1])
        .await
        .remove_member(pb::RemoveMemberRequest { node_id: leaving })
        .await
        .unwrap()
        .into_inner();
    assert!(left.members.iter().all(|member| member.node_id != leaving));
    cluster.node(leaving).kill9();
    let survivor = if leaving == 2 { 3 } else { 2 };
    for index in 0..5 {
        assert_eq!(
            create_tenant(&cluster.nodes[&survivor], &format!("after-leave-{index}")).await,
            201
        );
    }
    assert_eq!(create_tenant(&newcomer, "via-newcomer").await, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarts_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    let cluster_id = cluster.nodes[&1].status().await.unwrap()["cluster_id"].clone();
    let mut expected = BTreeSet::from(["default".to_string()]);
    for index in 0..20 {
        let id = format!("durable-{index}");
        assert_eq!(
            create_tenant(&cluster.nodes[&((index % 3) + 1)], &id).await,
            201
        );
        expected.insert(id);
    }
    for node_id in 1..=3 {
        cluster.node(node_id).kill9();
    }
    for node_id in 1..=3 {
        cluster.node(node_id).restart().unwrap();
    }
    for node_id in 1..=3 {
        cluster.node(node_id).wait_ready(TIMEOUT).await.unwrap();
    }
    cluster.leader(TIMEOUT).await.unwrap();
    for node in cluster.nodes.values() {
        assert_eq!(node.status().await.unwrap()["cluster_id"], cluster_id);
        let ids = tenant_ids(node, "linearizable").await.unwrap();
        assert_eq!(ids, expected, "node {}", node.node_id);
    }
    assert_eq!(
        create_tenant(&cluster.nodes[&2], "after-restart").await,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_refusals_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = NodeProcess::start_spec(&dir.path().join("a"), &NodeSpec::new(1)).unwrap();
    first.wait_ready(TIMEOUT).await.unwrap();
    let mut other_cluster =
        NodeProcess::start_spec(&dir.path().join("b"), &NodeSpec::new(7)).unwrap();
    other_cluster.wait_ready(TIMEOUT).await.unwrap();
    let mut uninitialised_spec = NodeSpec::new(9);
    uninitialised_spec.bootstrap = "join";
    let uninitialised =
        NodeProcess::start_spec(&dir.path().join("c"), &uninitialised_spec).unwrap();
    eventually(TIMEOUT, "the uninitialised node to answer", || async {
        Ok(uninitialised.status().await.map(|_| ()))
    })
    .await
    .unwrap();
    let mut client = cluster_client(&first).await;

    // Joining a node that is already a member.
    let again = client
        .add_member(pb::AddMemberRequest {
            node_id: 1,
            addr: first.peer_addr(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        tonic::Code::AlreadyExists,
        "{}",
        again.message()
    );
    assert!(
        again.message().contains("already a member"),
        "{}",
        again.message()
    );

    // Removing the last voter.
    let last = client
        .remove_member(pb::RemoveMemberRequest { node_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(
        last.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        last.message()
    );
    assert!(last.message().contains("last voter"), "{}", last.message());

    // Removing a node that is not a member.
    let stranger = client
        .remove_member(pb::RemoveMemberRequest { node_id: 42 })
        .await
        .unwrap_err();
    assert_eq!(
        stranger.code(),
        tonic::Code::NotFound,
        "{}",
        stranger.message()
    );

    // A join pointed at a node of another cluster.
    let foreign = client
        .add_member(pb::AddMemberRequest {
            node_id: 7,
            addr: other_cluster.peer_addr(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        foreign.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        foreign.message()
    );
    assert!(
        foreign.message().contains("belongs to cluster"),
        "{}",
        foreign.message()
    );

    // A join naming the wrong node id for an address.
    let mismatch = client
        .add_member(pb::AddMemberRequest {
            node_id: 5,
            addr: uninitialised.peer_addr(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        mismatch.code(),
        tonic::Code::InvalidArgument,
        "{}",
        mismatch.message()
    );

    // Initialising a node that already belongs to a cluster.
    let reinit = client.init(pb::InitClusterRequest {}).await.unwrap_err();
    assert_eq!(
        reinit.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        reinit.message()
    );

    // A command to a node that is not initialised: 503 with Retry-After and the way out.
    let response = reqwest::Client::new()
        .post(uninitialised.rest_url("/api/v1/tenants"))
        .json(&json!({"id": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("cluster init"),
        "{problem}"
    );

    // The same refusals over REST.
    let http = reqwest::Client::new();
    let rest_again = http
        .post(first.rest_url("/api/v1/cluster/members"))
        .json(&json!({"node_id": 1, "addr": first.peer_addr()}))
        .send()
        .await
        .unwrap();
    assert_eq!(rest_again.status(), 409);
    let rest_last = http
        .delete(first.rest_url("/api/v1/cluster/members/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(rest_last.status(), 409);
    let bad_id = http
        .delete(first.rest_url("/api/v1/cluster/members/one"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 422);

    // And the uninitialised node can still be made a cluster of its own.
    let mut own = cluster_client(&uninitialised).await;
    let initialised = own
        .init(pb::InitClusterRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(initialised.leader_id, Some(9));
    assert!(!initialised.cluster_id.is_empty());
}

/// `hodei cluster status` marks a member it cannot reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_marks_an_unreachable_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let down = if leader == 3 { 2 } else { 3 };
    let asked = cluster.nodes[&leader].grpc_url();
    cluster.node(down).kill9();
    let output = std::process::Command::new(hodei_tests::hodei_binary().unwrap())
        .args(["cluster", "status", "--addr", &asked])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = |id: u64| {
        table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(&id.to_string()))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(down).contains("UNREACHABLE"), "{table}");
    assert!(row(leader).contains("yes"), "{table}");
}

/// The leader removed: until the others elect a new one, they still name it as leader
/// though it is no longer in their membership. A write to them then waits for the new
/// leader (it once spun on the removed one, starving the node until it could not vote).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_takes_writes_again_after_its_leader_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start(dir.path(), 3, &[]).await.unwrap();
    let leader = cluster.leader(TIMEOUT).await.unwrap();
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    // Writes land on the followers, four at a time, while the removal commits and for
    // two seconds after: some arrive while they still name the removed leader.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls: Vec<String> = followers
        .iter()
        .map(|id| cluster.nodes[id].rest_url("/api/v1/tenants"))
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (stop, urls) = (stop.clone(), urls.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut index = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = http
                        .post(&urls[(writer + index) % urls.len()])
                        .json(&json!({ "id": format!("during-removal-{writer}-{index}") }))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    index += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = cluster_client(&cluster.nodes[&followers[0]]).await;
    let left = tokio::time::timeout(
        TIMEOUT,
        client.remove_member(pb::RemoveMemberRequest { node_id: leader }),
    )
    .await
    .expect("the removal answered")
    .unwrap()
    .into_inner();
    assert!(left.members.iter().all(|member| member.node_id != leader));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    // The removed leader stops (it exits, having no cluster).
    let removed = cluster.node(leader);
    eventually(TIMEOUT, "the removed leader to exit", || {
        let exited = removed.exit_status().is_some();
        async move { Ok(exited.then_some(())) }
    })
    .await
    .unwrap();
    for (index, follower) in followers.iter().enumerate() {
        let node = &cluster.nodes[follower];
        eventually(TIMEOUT, "a write after the leader left", || async {
            let status = create_tenant(node, &format!("after-removal-{index}")).await;
            // 409: an earlier try whose answer was lost took effect.
            Ok(matches!(status.as_u16(), 201 | 409).then_some(()))
        })
        .await
        .unwrap();
    }
}
