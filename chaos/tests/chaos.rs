//! Chaos against real processes: kill -9 a node while clients write, restart it, and
//! check the history: no acknowledged write lost, nothing created that no one asked for.

#[ctor::ctor]
fn install_tls_provider() {
    hodei_tests::install_tls_provider();
}

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hodei_chaos::{History, Outcome};
use hodei_tests::NodeProcess;
use serde_json::{Value, json};
use tokio::sync::Mutex;

async fn all_tenant_ids(node: &NodeProcess) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let mut ids = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value = client
            .get(node.rest_url(&format!("/api/v1/tenants?limit=1000&cursor={cursor}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for tenant in page["items"].as_array().unwrap() {
            ids.insert(tenant["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return ids,
        }
    }
}

/// The tenants that existed before the clients wrote, plus the `default` tenant that the
/// cluster creates itself at bootstrap (possibly only after the listing, under a fault):
/// it is never a phantom of the clients' writes.
fn system_and(mut ids: BTreeSet<String>) -> BTreeSet<String> {
    ids.insert("default".to_string());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_writes_loses_no_acknowledged_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(Duration::from_secs(30)).await.unwrap();
    let preexisting = system_and(all_tenant_ids(&node).await);

    let history = Arc::new(Mutex::new(History::default()));
    let url = node.rest_url("/api/v1/tenants");
    let mut writers = Vec::new();
    for writer in 0..8 {
        let history = history.clone();
        let url = url.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            for sequence in 0..400 {
                let id = format!("w{writer}-{sequence}");
                let outcome = match client.post(&url).json(&json!({ "id": id })).send().await {
                    Ok(response) if response.status() == 201 => Outcome::Acknowledged,
                    Ok(response) => Outcome::Refused(response.status().as_u16()),
                    Err(error) => Outcome::Unknown(error.to_string()),
                };
                let failed = matches!(outcome, Outcome::Unknown(_));
                history.lock().await.record(id, outcome);
                if failed {
                    // The node is down: this writer's part of the history is complete.
                    return;
                }
            }
        }));
    }

    // Kill once a good number of writes were acknowledged, mid-stream.
    hodei_tests::eventually(Duration::from_secs(60), "200 acknowledged writes", || {
        let history = history.clone();
        async move { Ok((history.lock().await.acknowledged() >= 200).then_some(())) }
    })
    .await
    .unwrap();
    node.kill9();
    for writer in writers {
        writer.await.unwrap();
    }

    node.restart().unwrap();
    node.wait_ready(Duration::from_secs(30)).await.unwrap();
    let final_ids = all_tenant_ids(&node).await;
    let history = history.lock().await;
    let violations = history.check(&final_ids, &preexisting);
    assert!(
        violations.is_empty(),
        "{} violations after kill -9 (of {} acknowledged): {:?}",
        violations.len(),
        history.acknowledged(),
        &violations[..violations.len().min(10)]
    );
    assert!(history.acknowledged() >= 200);
}

/// Writers spread over every node of a 3-node cluster while `fault` strikes the leader;
/// afterwards every acknowledged tenant must exist and nothing else may.
async fn writes_survive(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = hodei_tests::ProcessCluster::start(dir.path(), 3, &[])
        .await
        .unwrap();
    let leader = cluster
        .wait_caught_up(Duration::from_secs(30))
        .await
        .unwrap();
    let preexisting = system_and(all_tenant_ids(&cluster.nodes[&leader]).await);
    let urls: Vec<String> = cluster
        .nodes
        .values()
        .map(|node| node.rest_url("/api/v1/tenants"))
        .collect();

    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..6 {
        let history = history.clone();
        let stop = stop.clone();
        let url = urls[writer % urls.len()].clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut sequence = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("c{writer}-{sequence}");
                sequence += 1;
                let outcome = match client.post(&url).json(&json!({ "id": id })).send().await {
                    Ok(response) if response.status() == 201 => Outcome::Acknowledged,
                    Ok(response) => Outcome::Refused(response.status().as_u16()),
                    Err(error) => Outcome::Unknown(error.to_string()),
                };
                history.lock().await.record(id, outcome);
            }
        }));
    }
    hodei_tests::eventually(Duration::from_secs(60), "100 acknowledged writes", || {
        let history = history.clone();
        async move { Ok((history.lock().await.acknowledged() >= 100).then_some(())) }
    })
    .await
    .unwrap();

    let term_before = cluster.nodes[&leader].status().await.unwrap()["term"]
        .as_u64()
        .unwrap();
    let pid = cluster.nodes[&leader].pid().unwrap().to_string();
    match fault {
        Fault::Kill => {
            cluster.node(leader).kill9();
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.node(leader).restart().unwrap();
        }
        Fault::Pause => {
            // SIGSTOP: the leader is frozen mid-flight, a new one is elected, then the old
            // one wakes up believing it still leads.
            assert!(
                std::process::Command::new("kill")
                    .args(["-STOP", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(
                std::process::Command::new("kill")
                    .args(["-CONT", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
        }
    }
    // Keep writing through the recovery, then stop.
    let acknowledged_at_fault = history.lock().await.acknowledged();
    hodei_tests::eventually(Duration::from_secs(60), "writes to resume", || {
        let history = history.clone();
        async move {
            Ok((history.lock().await.acknowledged() >= acknowledged_at_fault + 100).then_some(()))
        }
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let final_leader = cluster
        .wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap();
    // The fault must have bitten: the cluster elected a leader in a later term.
    let term_after = cluster.nodes[&final_leader].status().await.unwrap()["term"]
        .as_u64()
        .unwrap();
    assert!(
        term_after > term_before,
        "{fault:?} caused no election: term {term_before} -> {term_after}"
    );
    let history = history.lock().await;
    for node in cluster.nodes.values() {
        let final_ids = all_tenant_ids(node).await;
        let violations = history.check(&final_ids, &preexisting);
        assert!(
            violations.is_empty(),
            "{fault:?} (leader {leader}, then {final_leader}): node {} shows {} violations of {} acknowledged: {:?}",
            node.node_id,
            violations.len(),
            history.acknowledged(),
            &violations[..violations.len().min(10)]
        );
    }
    // And every replica holds the same state at the indexes they share.
    cluster
        .assert_digests_agree(Duration::from_secs(60))
        .await
        .unwrap();
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_under_writes_loses_nothing_acknowledged() {
    writes_survive(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_under_writes_loses_nothing_acknowledged() {
    writes_survive(Fault::Pause).await;
}
