//! Bounded replication: a follower that was down while batch submissions went on catches
//! up while they continue, by snapshot (sent binary, in chunks) and by the log (sent in
//! pieces below the transport's limit), and ends with the same state as the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hodei_tests::{ProcessCluster, eventually};
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
