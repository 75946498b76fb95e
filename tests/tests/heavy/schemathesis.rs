//! schemathesis (issue 21) against a live node's `/api/v1/openapi.json`, as the admin
//! with a token: generated requests of every operation, valid and invalid, and
//! sequences of them (stateful), checked for server errors, undocumented statuses and
//! content types, responses that break their schema, valid data refused and invalid data
//! accepted. `tests/schemathesis/schemathesis.toml` says which rule of which operation
//! JSON Schema cannot state. Seeded: a failure replays.

use std::path::PathBuf;
use std::time::Duration;

use hodei_tests::{NodeProcess, NodeSpec, RestApi};

const ADMIN_TOKEN: &str = "schemathesis-admin-token-0123456789ab";

/// `$HODEI_SCHEMATHESIS`, or the virtual environment `.ci/run` makes under target/.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("HODEI_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/schemathesis/bin/st")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_with_the_api_or_its_document() {
    // Thousands of requests from a Python process: it loads the machine, so it runs with
    // the heavy tests, one at a time.
    let _heavy = crate::HEAVY.lock().await;
    let st = schemathesis();
    assert!(
        st.exists(),
        "schemathesis is not installed at {} (bash .ci/run installs it: python3 -m venv target/schemathesis && target/schemathesis/bin/pip install schemathesis==4.32.5)",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(1);
    spec.server_extra.push("auth: token".to_string());
    spec.server_extra
        .push(format!("admin_token: {ADMIN_TOKEN}"));
    spec.extra_yaml = "workers:\n  run_as: nobody\n".to_string();
    let mut node = NodeProcess::start_spec(dir.path(), &spec).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");
    let output = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .args(["--no-color", "run"])
        .arg(node.rest_url("/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["--max-examples", "10", "--workers", "1", "--seed", "1"])
        .args(["--request-timeout", "30"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = report
        .lines()
        .filter(|line| line.contains("generated") || line.contains("Tested:"))
        .collect();
    println!("schemathesis: {}", summary.join("; "));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The node is up and its log shows no panic.
    let (status, _) = RestApi::new(&node).get("/api/v1/health").await;
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(dir.path().join("node-1.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{}", node.log_tail());
}
