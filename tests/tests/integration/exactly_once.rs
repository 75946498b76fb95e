//! Exactly once under lost replies: a follower forwards writes to the leader through a
//! proxy that swallows the leader's answers, then the leader is killed. The follower
//! cannot know whether those writes were applied, says so (`outcome_unknown`, 504, with
//! the request id), and a retry with the same request id is answered with the first
//! outcome: no job is created twice and no caller gets a 409 for its own write.

use std::collections::BTreeMap;
use std::time::Duration;

use hodei_tests::proxy::{FaultProxy, ProxyMode};
use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn submit(node: &NodeProcess, request_id: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(node.rest_url("/api/v1/jobs"))
        .header("x-request-id", request_id)
        .json(&json!({
            "command": {"argv": ["true"]},
            "labels": {"req": request_id},
        }))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn jobs_by_request(node: &NodeProcess) -> Option<BTreeMap<String, Vec<String>>> {
    let mut by_request: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = node.rest_url("/api/v1/jobs?limit=500");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        for job in page["items"].as_array()? {
            if let Some(request) = job["labels"]["req"].as_str() {
                by_request
                    .entry(request.to_string())
                    .or_default()
                    .push(job["id"].as_str()?.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Some(by_request),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_replies_of_forwarded_writes_while_the_leader_dies_apply_exactly_once() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut specs: Vec<NodeSpec> = (1..=3).map(NodeSpec::new).collect();
    // Node 1 is reached by the others only through the proxy.
    let proxy = FaultProxy::start(specs[0].peer_addr()).await.unwrap();
    NodeSpec::reach_through(&mut specs, 1, &proxy.addr());
    let mut cluster = ProcessCluster::start_specs(dir.path(), specs)
        .await
        .unwrap();
    cluster.wait_bootstrapped(TIMEOUT).await.unwrap();
    cluster.make_leader(1, TIMEOUT).await.unwrap();

    // Writes through node 2 while the replies get through.
    let mut outcomes: BTreeMap<String, (u16, Value)> = BTreeMap::new();
    for index in 0..5 {
        let request_id = format!("before-{index}");
        let outcome = submit(&cluster.nodes[&2], &request_id).await;
        assert_eq!(outcome.0, 202, "{outcome:?}");
        outcomes.insert(request_id, outcome);
    }

    // The leader's answers are lost; writes go on; then the leader dies.
    let applied_before = cluster.nodes[&2].status().await.unwrap()["last_applied_index"]
        .as_u64()
        .unwrap();
    proxy.set(ProxyMode::DropReplies);
    let follower = cluster.nodes[&2].rest_url("");
    let mut in_flight = Vec::new();
    for index in 0..12 {
        let request_id = format!("lost-{index}");
        let follower = follower.clone();
        in_flight.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{follower}/api/v1/jobs"))
                .header("x-request-id", &request_id)
                .json(&json!({"command": {"argv": ["true"]}, "labels": {"req": request_id}}))
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let outcome = match response {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.json().await.unwrap_or(Value::Null))
                }
                Err(_) => (0, Value::Null),
            };
            (request_id, outcome)
        }));
    }
    // Some of them are committed (node 2 applies them) though their answers are lost.
    let nodes = &cluster.nodes;
    eventually(TIMEOUT, "lost writes to commit", || async {
        let applied = nodes[&2].status().await.unwrap()["last_applied_index"]
            .as_u64()
            .unwrap();
        Ok((applied > applied_before).then_some(()))
    })
    .await
    .unwrap();
    cluster.node(1).kill9();
    let mut unknown = 0;
    for task in in_flight {
        let (request_id, outcome) = task.await.unwrap();
        assert_ne!(
            outcome.0, 409,
            "a conflict for the caller's own write: {outcome:?}"
        );
        if outcome.0 == 504 {
            unknown += 1;
            assert_eq!(
                outcome.1["type"], "urn:hodei:problem:outcome_unknown",
                "{outcome:?}"
            );
            assert_eq!(
                outcome.1["request_id"].as_str(),
                Some(request_id.as_str()),
                "{outcome:?}"
            );
        }
        outcomes.insert(request_id, outcome);
    }
    assert!(unknown > 0, "no write's outcome was unknown: {outcomes:?}");

    // Every write not known to have succeeded is retried with its request id until it
    // has a definite answer, on the surviving nodes.
    for (request_id, outcome) in outcomes.iter_mut() {
        if outcome.0 == 202 || outcome.0 == 200 {
            continue;
        }
        let nodes = &cluster.nodes;
        *outcome = eventually(TIMEOUT, "a definite answer to the retry", || async {
            let retried = submit(&nodes[&2], request_id).await;
            assert_ne!(
                retried.0, 409,
                "a conflict for the caller's own write: {retried:?}"
            );
            Ok(matches!(retried.0, 200 | 202).then_some(retried))
        })
        .await
        .unwrap();
    }

    // Exactly one job per request, the one its caller was told of.
    let jobs = jobs_by_request(&cluster.nodes[&2]).await.unwrap();
    assert_eq!(jobs.len(), outcomes.len(), "{jobs:?}");
    for (request_id, (_, body)) in &outcomes {
        let ids = &jobs[request_id];
        assert_eq!(ids.len(), 1, "request {request_id} made jobs {ids:?}");
        assert_eq!(
            body["job"]["id"].as_str(),
            Some(ids[0].as_str()),
            "{request_id}: {body}"
        );
    }

    // The old leader comes back, catches up, and agrees with the others.
    proxy.set(ProxyMode::Pass);
    cluster.node(1).restart().unwrap();
    cluster.wait_caught_up(TIMEOUT).await.unwrap();
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();
}
