//! The `hodei` binary's offline commands. (This integration test also makes cargo build
//! the binary, which the process tests of `hodei-tests` run.)

use std::process::Command;

fn hodei() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hodei"))
}

/// Runs `hodei config check` on a file holding `yaml`: its exit code and stderr.
fn check(yaml: &str) -> (Option<i32>, String) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = hodei()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/hodei.example.yaml");
    let output = hodei().args(["config", "check", example]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn config_check_lists_every_problem_and_fails() {
    let (code, stderr) =
        check("burst_capacity:\n  max_overage_percentage: 50\ncluster:\n  node_id: 0\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("burst_capacity.max_overage_percentage: must be >= 100, got 50"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cluster.node_id: must be >= 1, got 0"),
        "{stderr}"
    );
}

#[test]
fn config_print_applies_env_and_redacts_secrets() {
    let output = hodei()
        .args(["config", "print"])
        .env("HODEI_PROMETHEUS_PORT", "9999")
        .env("HODEI_CLUSTER_SECRET", "top-secret-of-sixteen-chars")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("9999"), "{stdout}");
    assert!(!stdout.contains("top-secret"), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
}

#[test]
fn config_check_lists_type_errors_and_rules_together_in_plain_words() {
    let (code, stderr) = check(
        "server:\n  port: eighty\n  grpc_port: 1.5\ncluster:\n  node_id: 0\nworkers:\n  missed_heartbeats: yes-please\n",
    );
    assert_eq!(code, Some(2));
    for expected in [
        "server.port: expected a whole number >= 0",
        "server.grpc_port: expected a whole number >= 0",
        "workers.missed_heartbeats: expected a whole number >= 0",
        "cluster.node_id: must be >= 1, got 0",
    ] {
        assert!(stderr.contains(expected), "{expected}:\n{stderr}");
    }
}
