//! Storage that fails stops the node, and what Raft acknowledges is on disk: a node
//! whose data directory fills up turns unhealthy and exits non-zero, and catches up with
//! nothing acknowledged missing once space is freed; every acknowledged write was
//! followed by `fdatasync` of sled's file (seen with strace).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hodei_tests::{NodeProcess, NodeSpec, ProcessCluster, eventually};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size_mb: u32) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount(8) runs");
        assert!(
            output.status.success(),
            "this test mounts a small tmpfs as a node's data directory and needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            path: path.to_path_buf(),
        }
    }
}

/// Free bytes of the file system holding `path`.
fn available_bytes(path: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap()
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn batch(round: u64) -> Value {
    let padding = "y".repeat(1_000);
    json!({
        "jobs": (0..50)
            .map(|index| json!({
                "command": {"argv": ["echo", format!("{round}-{index}-{padding}")]},
                "resources": {"cpu_m": 1, "memory_mb": 1},
                "labels": {"round": round.to_string()},
            }))
            .collect::<Vec<_>>()
    })
}

/// The ids of the jobs a batch submission acknowledged.
async fn submit(node: &NodeProcess, round: u64) -> Vec<String> {
    let Ok(response) = reqwest::Client::new()
        .post(node.rest_url("/api/v1/jobs/batch"))
        .json(&batch(round))
        .timeout(Duration::from_secs(20))
        .send()
        .await
    else {
        return Vec::new();
    };
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        eprintln!("batch {round} refused: {status} {body}");
        return Vec::new();
    }
    body["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter_map(|result| result["job"]["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn job_ids(node: &NodeProcess) -> Option<std::collections::BTreeSet<String>> {
    let mut ids = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = node.rest_url("/api/v1/jobs?limit=1000&consistency=stale");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
        for job in page["items"].as_array()? {
            ids.insert(job["id"].as_str()?.to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Some(ids),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_fills_stops_and_catches_up_once_space_is_freed() {
    let _heavy = crate::HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut specs = NodeSpec::cluster(3);
    for spec in &mut specs {
        spec.extra_yaml =
            "multi_tenancy:\n  default_tenant_quota:\n    max_pending_jobs: 1000000\n".to_string();
    }
    let disk = SmallDisk::mount(&dir.path().join("node3").join("data"), 64);
    let mut cluster = ProcessCluster::start_specs(dir.path(), specs)
        .await
        .unwrap();
    cluster.wait_bootstrapped(TIMEOUT).await.unwrap();
    // Node 3's disk fills: another node leads.
    cluster.make_leader(1, TIMEOUT).await.unwrap();
    let leader = 1;

    // Fill node 3's disk but for a little room, then write until it runs out; the other
    // two keep acknowledging.
    for round in 0..3 {
        submit(&cluster.nodes[&leader], round).await;
    }
    let filler = dir.path().join("node3").join("data").join("filler");
    let available = available_bytes(&dir.path().join("node3").join("data"));
    std::fs::write(
        &filler,
        vec![0u8; available.saturating_sub(256 * 1024) as usize],
    )
    .unwrap();
    let mut acknowledged = std::collections::BTreeSet::new();
    let mut saw_unhealthy = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 3;
    let exit_code = loop {
        // A batch refused (no leader for a moment on a loaded machine) is not counted.
        acknowledged.extend(submit(&cluster.nodes[&leader], round).await);
        round += 1;
        if let Ok(response) = reqwest::get(cluster.nodes[&3].rest_url("/api/v1/health")).await
            && response.status() == 503
        {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                body["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.starts_with("node failed:")),
                "{body}"
            );
            saw_unhealthy = true;
        }
        if let Some(status) = cluster.node(3).exit_status() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not stop with a full disk after {round} batches; log:\n{}",
            cluster.nodes[&3].log_tail()
        );
    };
    assert!(
        !exit_code.success(),
        "a storage failure exits non-zero: {exit_code}"
    );
    assert!(
        cluster.nodes[&3]
            .log_tail()
            .contains("the raft core stopped"),
        "{}",
        cluster.nodes[&3].log_tail()
    );
    eprintln!("node 3 stopped after {round} batches (unhealthy seen: {saw_unhealthy})");

    // Space is freed; node 3 restarts and has every acknowledged job.
    std::fs::remove_file(&filler).unwrap();
    cluster.node(3).restart().unwrap();
    cluster.node(3).wait_ready(TIMEOUT).await.unwrap();
    if let Err(error) = cluster.wait_caught_up(Duration::from_secs(120)).await {
        panic!(
            "{error:#}\nnode 3: {:?}\nleader: {:?}\nnode 3 log:\n{}",
            cluster.nodes[&3].status().await,
            cluster.nodes[&leader].status().await,
            cluster.nodes[&3].log_tail()
        );
    }
    let nodes = &cluster.nodes;
    eventually(TIMEOUT, "node 3 to hold every acknowledged job", || async {
        let Some(ids) = job_ids(&nodes[&3]).await else {
            return Ok(None);
        };
        let missing = acknowledged.difference(&ids).count();
        if missing > 0 {
            eprintln!(
                "node 3 misses {missing} of {} acknowledged jobs; status {:?}",
                acknowledged.len(),
                nodes[&3].status().await
            );
        }
        Ok((missing == 0).then_some(()))
    })
    .await
    .unwrap();
    cluster.assert_digests_agree(TIMEOUT).await.unwrap();
    drop(cluster);
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_followed_by_fdatasync_of_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1).unwrap();
    node.wait_ready(TIMEOUT).await.unwrap();
    let trace = dir.path().join("strace.txt");
    let mut tracer = Command::new("strace");
    tracer
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fdatasync,fsync,sync_file_range",
            "-o",
        ])
        .arg(&trace);
    for thread in node.thread_ids() {
        tracer.arg("-p").arg(thread.to_string());
    }
    let mut tracer = tracer
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("strace is installed (.ci/run installs it)");
    // strace announces nothing when it is attached: wait until it has written a line.
    let http = reqwest::Client::new();
    let created = |index: u32| {
        http.post(node.rest_url("/api/v1/tenants"))
            .json(&json!({"id": format!("durable-{index}")}))
            .send()
    };
    eventually(TIMEOUT, "strace to see the node", || async {
        let _ = created(1000).await;
        Ok(std::fs::read_to_string(&trace)
            .is_ok_and(|text| text.contains("fdatasync"))
            .then_some(()))
    })
    .await
    .unwrap();
    let before = std::fs::read_to_string(&trace).unwrap().lines().count();
    const WRITES: u32 = 20;
    for index in 0..WRITES {
        let response = created(index).await.unwrap();
        assert_eq!(response.status(), 201);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tracer.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = tracer.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let during: Vec<&str> = text.lines().skip(before).collect();
    let data_file_syncs = during
        .iter()
        .filter(|line| {
            line.contains("fdatasync(") && line.contains("/data/db>") && line.ends_with("= 0")
        })
        .count();
    assert!(
        data_file_syncs >= WRITES as usize,
        "{WRITES} acknowledged writes, {data_file_syncs} fdatasync of the data file:\n{}",
        during.join("\n")
    );
}
