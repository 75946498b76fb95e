//! The nemesis (`hodei-chaos nemesis`) against real clusters: a seeded run of every
//! fault kind must break no rule, and builds with a deliberate defect (debug builds'
//! `HODEI_TEST_DEFECT`) must be caught by the checker. Needs root (the nemesis runs the
//! cluster in a network namespace of its own and cuts links with iptables), as CI has.
//!
//! The runs share the machine's two cores: one at a time.

use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs the nemesis with `args` (and a defect, if any); whether it passed, and its report.
fn nemesis(args: &[&str], defect: Option<&str>) -> (bool, Value) {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_hodei-chaos"));
    command
        .arg("nemesis")
        .args(args)
        .arg("--dir")
        .arg(dir.path().join("run"))
        .arg("--out")
        .arg(&report);
    match defect {
        Some(defect) => command.env("HODEI_TEST_DEFECT", defect),
        None => command.env_remove("HODEI_TEST_DEFECT"),
    };
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(&report)
            .unwrap_or_else(|error| panic!("no report ({error}); the nemesis said:\n{stderr}")),
    )
    .unwrap();
    (output.status.success(), report)
}

fn rules_broken(report: &Value) -> Vec<String> {
    report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|violation| violation["rule"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The CI profile: two minutes of every fault kind on seed `HODEI_CHAOS_SEED` (1 unless
/// set); CHAOS.md has the long profile.
#[test]
fn two_minutes_of_every_fault_break_no_rule() {
    let seed = std::env::var("HODEI_CHAOS_SEED").unwrap_or_else(|_| "1".to_string());
    let (passed, report) = nemesis(&["--seed", &seed, "--duration", "120"], None);
    eprintln!(
        "faults {} operations {} jobs {} recovery {}",
        report["faults_by_kind"], report["operations"], report["jobs"], report["recovery"]
    );
    assert!(passed, "{:#}", report["violations"]);
    assert!(rules_broken(&report).is_empty());
    // The run did what it claims: faults of several kinds, jobs run and retried.
    assert!(
        report["faults_by_kind"].as_object().unwrap().len() >= 4,
        "{}",
        report["faults_by_kind"]
    );
    assert!(
        report["jobs"]["acknowledged"].as_u64().unwrap() > 100,
        "{}",
        report["jobs"]
    );
    assert!(
        report["jobs"]["retried"].as_u64().unwrap() > 0,
        "{}",
        report["jobs"]
    );
    assert!(report["digests_compared"].as_u64().unwrap() > 0);
}

#[test]
fn the_checker_catches_an_acknowledged_write_that_was_dropped() {
    let (passed, report) = nemesis(
        &[
            "--seed",
            "4",
            "--duration",
            "20",
            "--faults",
            "leader-transfer",
        ],
        Some("drop-acknowledged-tenant"),
    );
    assert!(!passed);
    let broken = rules_broken(&report);
    assert!(
        broken.iter().any(|rule| rule == "acknowledged_tenant_lost"),
        "{broken:?}"
    );
}

#[test]
fn the_checker_catches_a_refused_write_that_took_effect() {
    let (passed, report) = nemesis(
        &[
            "--seed",
            "4",
            "--duration",
            "20",
            "--faults",
            "leader-transfer",
        ],
        Some("apply-refused-tenant"),
    );
    assert!(!passed);
    let broken = rules_broken(&report);
    assert!(
        broken.iter().any(|rule| rule == "phantom_tenant"),
        "{broken:?}"
    );
}

/// Paused workers running long jobs: without fencing, their jobs run on beside the
/// re-runs; with it (the same run, no defect), never.
#[test]
fn the_checker_catches_skipped_fencing_and_fencing_holds_without_the_defect() {
    let args = [
        "--seed",
        "3",
        "--duration",
        "30",
        "--faults",
        "worker-pause",
        "--long-jobs",
        "100",
        "--clients",
        "1",
        "--workers",
        "4",
    ];
    let (passed, report) = nemesis(&args, Some("skip-fencing"));
    assert!(!passed);
    let broken = rules_broken(&report);
    assert!(
        broken.iter().any(|rule| rule == "runs_overlap"),
        "{broken:?}"
    );
    let (passed, report) = nemesis(&args, None);
    assert!(passed, "{:#}", report["violations"]);
    assert!(
        report["jobs"]["retried"].as_u64().unwrap() > 0,
        "{}",
        report["jobs"]
    );
}
