//! Bounded replication: a follower that was down while batch submissions went on catches
//! up while they continue, by snapshot (sent binary, in chunks) and by the log (sent in
//! pieces below the transport's limit), and ends with the same state as the others; a
//! follower behind a slow link catches up in calls small enough for the heartbeat interval.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hodei_tests::proxy::FaultProxy;
use hodei_tests::{NodeSpec, ProcessCluster, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

/// A batch of `size` jobs, each with an argv of about 100 bytes.
fn batch(size: usize, round: u64) -> Value {
    let padding = "x".repeat(100);
    json!({
        "jobs": (0..size)
            .map(|index| json!({
                "command": {"argv": ["echo", format!("{round}-{index}-{padding}")]},
                "resources": {"cpu_m": 1, "memory_mb": 1},
            }))
            .collect::<Vec<_>>()
    })
}

/// Whether every job of the batch was accepted (a refusal is printed).
async fn submit_batch(url: &str, round: u64) -> bool {
    let response = reqwest::Client::new()
        .post(url)
        .json(&batch(50, round))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    let Ok(response) = response else {
        eprintln!("batch {round}: {response:?}");
        return false;
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let accepted = status.is_success() && body["accepted"] == 50;
    if !accepted {
        eprintln!("batch {round}: {status} {body}");
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_during_batch_submits_catches_up_and_agrees() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ProcessCluster::start_with(
        dir.path(),
        3,
        &[
            "snapshot_every_entries: 40",
            "log_entries_kept_after_snapshot: 5",
        ],
        "multi_tenancy:\n  default_tenant_quota:\n    max_pending_jobs: 1000000\n",
    )
    .await
    .unwrap();
    let leader = match cluster.wait_bootstrapped(TIMEOUT).await {
        Ok(leader) => leader,
        Err(error) => {
            let kept = dir.path().to_path_buf();
            std::mem::forget(dir);
            panic!("{error:#}; data kept in {}", kept.display());
        }
    };
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let url = cluster.nodes[&leader].rest_url("/api/v1/jobs/batch");
    cluster.node(follower).kill9();

    // While it is down, the leader moves past a snapshot and compacts its log.
    let mut round = 0;
    loop {
        assert!(submit_batch(&url, round).await, "batch {round} refused");
        round += 1;
        let status = cluster.nodes[&leader].status().await.unwrap_or(Value::Null);
        if status["snapshot_index"].as_u64().unwrap_or(0) >= 60 {
            break;
        }
        if round >= 2_000 {
            let kept = dir.path().to_path_buf();
            std::mem::forget(dir);
            panic!(
                "no snapshot after {round} batches: {status}\ndata kept in {}\nleader log:\n{}",
                kept.display(),
                cluster.nodes[&leader].log_tail()
            );
        }
    }

    // It comes back while submissions go on.
    let stop = Arc::new(AtomicBool::new(false));
    let submitted = Arc::new(AtomicU64::new(0));
    let background = {
        let (stop, submitted, url) = (stop.clone(), submitted.clone(), url.clone());
        tokio::spawn(async move {
            // Steady, not flat out: a debug build of three nodes shares two cores here.
            let mut round = 1_000_000;
            let mut pace = tokio::time::interval(Duration::from_millis(250));
            while !stop.load(Ordering::SeqCst) {
                pace.tick().await;
                if submit_batch(&url, round).await {
                    submitted.fetch_add(1, Ordering::SeqCst);
                }
                round += 1;
            }
        })
    };
    cluster.node(follower).restart().unwrap();
    let nodes = &cluster.nodes;
    let caught_up = eventually(
        TIMEOUT,
        "the restarted follower to install a snapshot and follow",
        || async {
            let Some(status) = nodes[&follower].status().await else {
                return Ok(None);
            };
            let leader_status = nodes[&leader].status().await.unwrap_or(Value::Null);
            let applied = status["last_applied_index"].as_u64().unwrap_or(0);
            let committed = leader_status["last_log_index"].as_u64().unwrap_or(u64::MAX);
            Ok((status["snapshot_index"].as_u64().unwrap_or(0) > 0
                && applied + 20 >= committed
                && submitted.load(Ordering::SeqCst) >= 5)
                .then_some(()))
        },
    )
    .await;
    if let Err(error) = caught_up {
        let kept = dir.path().to_path_buf();
        std::mem::forget(dir);
        panic!(
            "{error:#}\ndata kept in {}\nfollower: {:?}\nleader: {:?}\nfollower log:\n{}",
            kept.display(),
            cluster.nodes[&follower].status().await,
            cluster.nodes[&leader].status().await,
            cluster.nodes[&follower].log_tail()
        );
    }
    stop.store(true, Ordering::SeqCst);
    background.await.unwrap();
    cluster.wait_caught_up(TIMEOUT).await.unwrap();
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();
}

/// A follower behind a slow link catches up. openraft gives every AppendEntries one
/// heartbeat interval (100 ms here) and a follower that fell behind is sent up to 2 MiB at
/// once, which this link (2 MB/s) carries in a second: every such call would be cut, the
/// follower would never catch up, and the leader would never hear its answers. The calls
/// that are cut make the next ones smaller until they fit (`AppendBudget`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_a_slow_link_catches_up_in_calls_that_fit_the_heartbeat() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut specs = NodeSpec::cluster(3);
    // The others reach node 3 only through the proxy.
    let proxy = FaultProxy::start(specs[2].peer_addr()).await.unwrap();
    NodeSpec::reach_through(&mut specs, 3, &proxy.addr());
    for spec in &mut specs {
        spec.extra_yaml =
            "multi_tenancy:\n  default_tenant_quota:\n    max_pending_jobs: 1000000\n".to_string();
    }
    let mut cluster = ProcessCluster::start_specs(dir.path(), specs)
        .await
        .unwrap();
    cluster.wait_bootstrapped(TIMEOUT).await.unwrap();
    cluster.make_leader(1, TIMEOUT).await.unwrap();
    let leader = 1;
    cluster.node(3).kill9();

    // About 2.5 MB of log while it is down: 80 entries of about 30 KB.
    let url = cluster.nodes[&leader].rest_url("/api/v1/jobs/batch");
    for round in 0..80 {
        let padding = "z".repeat(500);
        let body = json!({
            "jobs": (0..50)
                .map(|index| json!({
                    "command": {"argv": ["echo", format!("{round}-{index}-{padding}")]},
                    "resources": {"cpu_m": 1, "memory_mb": 1},
                }))
                .collect::<Vec<_>>()
        });
        let response = reqwest::Client::new()
            .post(&url)
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "batch {round}: {}",
            response.status()
        );
    }
    proxy.set_rate(2_000_000);
    cluster.node(3).restart().unwrap();
    let target = cluster.nodes[&leader]
        .status()
        .await
        .and_then(|status| status["last_log_index"].as_u64())
        .unwrap();
    let nodes = &cluster.nodes;
    let caught_up = eventually(
        Duration::from_secs(120),
        "node 3 to apply the leader's log through the slow link",
        || async {
            let applied = nodes[&3]
                .status()
                .await
                .and_then(|status| status["last_applied_index"].as_u64());
            Ok(applied
                .is_some_and(|applied| applied >= target)
                .then_some(()))
        },
    )
    .await;
    if let Err(error) = caught_up {
        panic!(
            "{error:#}\nnode 3: {:?}\nleader: {:?}\nnode 3 log:\n{}",
            cluster.nodes[&3].status().await,
            cluster.nodes[&leader].status().await,
            cluster.nodes[&3].log_tail()
        );
    }
}
