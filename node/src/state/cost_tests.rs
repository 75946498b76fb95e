//! The cost book kept by apply: a pool's cost from its workers' provisioned time, of which
//! the runs' list-price lines are the attributed part and the rest idle (exactly); lines
//! by label; usage against requests; the settings that switch recording off; budgets.

use hodei_cluster::{StateMachine, WriteBatch};
use hodei_domain::cost::{BudgetAction, CostSettings, DAY_MS, HOUR_MS, PoolPrices, Pricing};
use hodei_domain::dispatch::Assignment;
use hodei_domain::job::{CommandSpec, Job, JobSpec, Priority};
use hodei_domain::labels::Labels;
use hodei_domain::quota::Quota;
use hodei_domain::resources::Resources;
use hodei_domain::run::{RunOutcome, RunReport};
use hodei_domain::tenant::TenantId;
use hodei_domain::usage::RunUsage;
use tokio::sync::broadcast;

use crate::state::command::{self, CommandOutcome, CommandResult};
use crate::state::cost_report::{CostGroup, CostQuery, IDLE, RowKind, UNLABELLED};
use crate::state::hodei_state::HodeiState;
use crate::state::{Command, CommandV1};

fn apply(state: &mut HodeiState, command: CommandV1) -> CommandResult {
    let mut writes = WriteBatch::new();
    let response = StateMachine::apply(state, 1, &Command::V1(command).encode(), &mut writes);
    crate::state::decode_result(&response).unwrap()
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn job(id: &str, cpu_m: u64, labels: &[(&str, &str)]) -> Job {
    let mut with = Labels::new();
    for (key, value) in labels {
        with.insert(key.to_string(), value.to_string());
    }
    Job::new(
        id.to_string(),
        JobSpec {
            tenant: acme(),
            queue: "q".into(),
            priority: Priority::Normal,
            resources: Resources::new(cpu_m, 100, 0),
            command: CommandSpec {
                argv: vec!["true".into()],
                ..CommandSpec::default()
            },
            simulate: None,
            labels: with,
            max_retries: 0,
            idempotency_key: None,
            pool_selector: Vec::new(),
            sla: None,
        },
        2,
    )
}

/// Submits, assigns to w0, starts at `start` and ends at `end` with `usage`.
fn run(state: &mut HodeiState, job: Job, start: u64, end: u64, usage: Option<RunUsage>) {
    let id = job.id.clone();
    let submitted = apply(
        state,
        CommandV1::SubmitJobs(command::SubmitJobs {
            jobs: vec![job],
            max_burst_percent: None,
        }),
    );
    assert!(submitted.is_ok(), "{submitted:?}");
    let assigned = apply(
        state,
        CommandV1::AssignJobs(command::AssignJobs {
            assignments: vec![Assignment {
                job: id.clone(),
                worker: "w0".into(),
                burst: false,
            }],
            at_ms: start,
            sla_changes: Vec::new(),
        }),
    );
    assert!(
        matches!(
            assigned,
            Ok(CommandOutcome::JobsAssigned { assigned: 1, .. })
        ),
        "{assigned:?}"
    );
    apply(
        state,
        CommandV1::JobStarted(command::JobStarted {
            job: id.clone(),
            attempt: 1,
            worker: "w0".into(),
            at_ms: start,
        }),
    )
    .unwrap();
    let finished = apply(
        state,
        CommandV1::JobFinished(command::JobFinished {
            report: RunReport {
                job: id,
                attempt: 1,
                worker: "w0".into(),
                outcome: RunOutcome::Succeeded,
                exit_code: Some(0),
                output_tail: String::new(),
                at_ms: end,
                usage,
            },
        }),
    );
    assert!(
        matches!(finished, Ok(CommandOutcome::RunReported { applied: true })),
        "{finished:?}"
    );
}

fn query(group: CostGroup, now_ms: u64) -> CostQuery {
    CostQuery {
        from_ms: 0,
        to_ms: 6 * HOUR_MS,
        step_ms: HOUR_MS,
        group,
        tenant: None,
        now_ms,
    }
}

#[test]
fn a_pools_cost_is_its_runs_plus_idle_exactly_and_every_line_survives_a_snapshot() {
    // Worker w0 (1000 m, 1000 MiB) registered at 1 ms in pool `p` at the default prices.
    let mut state = super::jobs_tests::setup(Quota::default(), 1);
    let usage = RunUsage {
        cpu_ms: 90_000,
        peak_rss_mb: 40,
    };
    run(
        &mut state,
        job("a", 600, &[("team", "red")]),
        HOUR_MS / 2,
        2 * HOUR_MS + 17_000,
        Some(usage),
    );
    run(
        &mut state,
        job("b", 300, &[]),
        HOUR_MS,
        HOUR_MS + 600_000,
        None,
    );
    let lost_at = 3 * HOUR_MS + 1_234;
    apply(
        &mut state,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "test".into(),
            at_ms: lost_at,
        }),
    )
    .unwrap();
    let report = state.cost_report(&query(CostGroup::Tenant, 5 * HOUR_MS), &[]);
    // The pool's cost is the worker's capacity at list prices over its live time.
    let expected_cost = PoolPrices::new("p", Pricing::default()).list_cost_nanos(
        Resources::new(1_000, 1_000, 0),
        1,
        lost_at,
    );
    let cost: u64 = report.pools.values().map(|pool| pool.cost_nanos).sum();
    let diff = i128::from(cost) - i128::from(expected_cost);
    assert!(
        diff.abs() <= 4,
        "hourly parts add up: {cost} vs {expected_cost}"
    );
    let usage_list: u64 = report
        .rows
        .iter()
        .filter(|row| row.kind == RowKind::Usage)
        .map(|row| row.line.list_nanos)
        .sum();
    let idle_list: u64 = report
        .rows
        .iter()
        .filter(|row| row.kind == RowKind::Idle)
        .map(|row| row.line.list_nanos)
        .sum();
    assert!(report.rows.iter().any(|row| row.group == IDLE));
    assert_eq!(
        usage_list + idle_list,
        cost,
        "tenants + idle = the pool's cost"
    );
    for pool in report.pools.values() {
        assert!(pool.idle_nanos() >= 0, "{pool:?}");
        assert_eq!(
            i128::from(pool.attributed_nanos) + pool.idle_nanos(),
            i128::from(pool.cost_nanos)
        );
    }
    let costs: u64 = ["a", "b"]
        .iter()
        .map(|id| state.job(id).unwrap().cost_nanos.unwrap())
        .sum();
    let billed: u64 = report.rows.iter().map(|row| row.line.billed_nanos).sum();
    assert_eq!(billed, costs, "every run billed, to the nano-dollar");
    // By label: `red` is job a, the rest unlabelled.
    let by_label = state.cost_report(&query(CostGroup::Label("team".into()), 5 * HOUR_MS), &[]);
    let label = |group: &str| -> u64 {
        by_label
            .rows
            .iter()
            .filter(|row| row.group == group)
            .map(|row| row.line.billed_nanos)
            .sum()
    };
    assert_eq!(label("red"), state.job("a").unwrap().cost_nanos.unwrap());
    assert_eq!(
        label(UNLABELLED),
        state.job("b").unwrap().cost_nanos.unwrap()
    );
    // Usage against the request: 90 s of CPU over 600 m x ~1.5 h is 2.8 %: 3.
    let stats = state.usage_stats(0, DAY_MS);
    let all = &stats[&(acme(), String::new())];
    assert_eq!(all.runs, 1);
    assert_eq!(all.cpu_p95_percent(), Some(3));
    assert_eq!(
        stats[&(acme(), "team=red".to_string())],
        *all,
        "by its label too"
    );
    assert_eq!(state.job("a").unwrap().usage, Some(usage));
    // A snapshot carries all of it.
    let mut joined = HodeiState::new(broadcast::channel(16).0);
    joined
        .restore(&state.snapshot().unwrap(), &mut WriteBatch::new())
        .unwrap();
    assert_eq!(
        joined.cost_report(&query(CostGroup::Tenant, 5 * HOUR_MS), &[]),
        report
    );
    assert_eq!(joined.usage_stats(0, DAY_MS), stats);
    assert_eq!(
        (
            joined.billed_counters(5 * HOUR_MS),
            joined.idle_counters(5 * HOUR_MS)
        ),
        (
            state.billed_counters(5 * HOUR_MS),
            state.idle_counters(5 * HOUR_MS)
        )
    );
}

#[test]
fn with_tracking_off_nothing_is_recorded_and_jobs_carry_no_cost() {
    let mut state = super::jobs_tests::setup(Quota::default(), 1);
    let settings = CostSettings {
        enabled: false,
        ..CostSettings::default()
    };
    let applied = apply(
        &mut state,
        CommandV1::SetCostSettings(command::SetCostSettings { settings, at_ms: 0 }),
    );
    assert!(matches!(applied, Ok(CommandOutcome::CostSettings(_))));
    run(
        &mut state,
        job("a", 600, &[("team", "red")]),
        1_000,
        HOUR_MS,
        None,
    );
    apply(
        &mut state,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "test".into(),
            at_ms: 2 * HOUR_MS,
        }),
    )
    .unwrap();
    assert_eq!(state.job("a").unwrap().cost_nanos, None);
    assert!(state.cost_lines(0, u64::MAX).is_empty());
    let report = state.cost_report(&query(CostGroup::Pool, 3 * HOUR_MS), &[]);
    assert_eq!(report, Default::default(), "{report:?}");
    // Not by job: the ledger keeps the run, the job no cost.
    let mut state = super::jobs_tests::setup(Quota::default(), 1);
    let settings = CostSettings {
        track_by_job: false,
        track_by_tenant: false,
        ..CostSettings::default()
    };
    apply(
        &mut state,
        CommandV1::SetCostSettings(command::SetCostSettings { settings, at_ms: 0 }),
    )
    .unwrap();
    run(&mut state, job("a", 600, &[]), 1_000, HOUR_MS, None);
    assert_eq!(state.job("a").unwrap().cost_nanos, None);
    let lines = state.cost_lines(0, u64::MAX);
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|((_, tenant, ..), _)| *tenant == TenantId::untracked())
    );
}

#[test]
fn a_spent_budget_warns_once_per_level_and_holds_the_tenant_back_until_the_next_day() {
    // A budget of 10 micro-dollars; a 600 m run of an hour costs 30,000.
    let quota = Quota {
        daily_cost_budget_micros: Some(10),
        ..Quota::default()
    };
    let mut state = super::jobs_tests::setup(quota, 1);
    let day = 20 * DAY_MS;
    run(
        &mut state,
        job("a", 600, &[]),
        day + 1_000,
        day + HOUR_MS,
        None,
    );
    let now = day + 2 * HOUR_MS;
    assert!(state.spent_today(&acme(), now) > 10_000);
    assert!(!state.budget_exhausted(&acme(), now), "warn is the default");
    apply(
        &mut state,
        CommandV1::SetCostSettings(command::SetCostSettings {
            settings: CostSettings {
                budget_action: BudgetAction::Queue,
                ..CostSettings::default()
            },
            at_ms: day,
        }),
    )
    .unwrap();
    assert!(state.budget_exhausted(&acme(), now));
    assert!(!state.budget_exhausted(&acme(), day + DAY_MS), "a new day");
    let due = state.budget_alerts_due(now);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].level_percent, 100);
    let recorded = apply(
        &mut state,
        CommandV1::RecordBudgetAlert(command::RecordBudgetAlert {
            alert: due[0].clone(),
        }),
    );
    assert!(matches!(
        recorded,
        Ok(CommandOutcome::BudgetAlert { recorded: true })
    ));
    assert!(
        state.budget_alerts_due(now).is_empty(),
        "once per level and day"
    );
    let again = apply(
        &mut state,
        CommandV1::RecordBudgetAlert(command::RecordBudgetAlert {
            alert: due[0].clone(),
        }),
    );
    assert!(matches!(
        again,
        Ok(CommandOutcome::BudgetAlert { recorded: false })
    ));
    let mut bad = due[0].clone();
    bad.level_percent = 50;
    assert!(
        apply(
            &mut state,
            CommandV1::RecordBudgetAlert(command::RecordBudgetAlert { alert: bad }),
        )
        .is_err()
    );
}

fn settings_at(state: &mut HodeiState, enabled: bool, at_ms: u64) {
    apply(
        state,
        CommandV1::SetCostSettings(command::SetCostSettings {
            settings: CostSettings {
                enabled,
                ..CostSettings::default()
            },
            at_ms,
        }),
    )
    .unwrap();
}

fn register(state: &mut HodeiState, cpu_m: u64, at_ms: u64) {
    apply(
        state,
        CommandV1::RegisterWorker(command::RegisterWorker {
            registration: hodei_domain::run::WorkerRegistration {
                id: "w0".into(),
                pool: "p".into(),
                capacity: Resources::new(cpu_m, 1_000, 0),
                labels: Labels::new(),
                simulated: false,
                running: Vec::new(),
            },
            at_ms,
            provisioned_at_ms: None,
        }),
    )
    .unwrap();
}

#[test]
fn tracking_off_then_on_and_a_new_capacity_keep_the_runs_within_the_pools_cost() {
    let mut state = super::jobs_tests::setup(Quota::default(), 1);
    let capacity = |cpu_m| Resources::new(cpu_m, 1_000, 0);
    let list = |cpu_m, from, to| {
        PoolPrices::new("p", Pricing::default()).list_cost_nanos(capacity(cpu_m), from, to)
    };
    settings_at(&mut state, false, HOUR_MS);
    // Off: not billed at all.
    run(
        &mut state,
        job("a", 600, &[]),
        HOUR_MS + 1_000,
        2 * HOUR_MS,
        None,
    );
    assert_eq!(state.job("a").unwrap().cost_nanos, None);
    // Begun while off, ended while on: billed from when tracking came on.
    let submitted = job("b", 500, &[]);
    let b_start = 2 * HOUR_MS + 600_000;
    let on_at = 2 * HOUR_MS + HOUR_MS / 2;
    {
        // Start b, turn tracking on, end b.
        let id = submitted.id.clone();
        apply(
            &mut state,
            CommandV1::SubmitJobs(command::SubmitJobs {
                jobs: vec![submitted],
                max_burst_percent: None,
            }),
        )
        .unwrap();
        apply(
            &mut state,
            CommandV1::AssignJobs(command::AssignJobs {
                assignments: vec![Assignment {
                    job: id.clone(),
                    worker: "w0".into(),
                    burst: false,
                }],
                at_ms: b_start,
                sla_changes: Vec::new(),
            }),
        )
        .unwrap();
        apply(
            &mut state,
            CommandV1::JobStarted(command::JobStarted {
                job: id.clone(),
                attempt: 1,
                worker: "w0".into(),
                at_ms: b_start,
            }),
        )
        .unwrap();
        settings_at(&mut state, true, on_at);
        apply(
            &mut state,
            CommandV1::JobFinished(command::JobFinished {
                report: RunReport {
                    job: id,
                    attempt: 1,
                    worker: "w0".into(),
                    outcome: RunOutcome::Succeeded,
                    exit_code: Some(0),
                    output_tail: String::new(),
                    at_ms: 3 * HOUR_MS,
                    usage: None,
                },
            }),
        )
        .unwrap();
    }
    let b = state.job("b").unwrap();
    assert_eq!(
        b.cost_nanos,
        Some(state.run_cost(b, on_at, 3 * HOUR_MS)),
        "billed from when tracking came on"
    );
    // A new capacity: the old one until now, the new one from now on; its registration
    // time stays.
    register(&mut state, 2_000, 3 * HOUR_MS + HOUR_MS / 2);
    assert_eq!(state.worker("w0").unwrap().registered_at_ms, 1);
    apply(
        &mut state,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "test".into(),
            at_ms: 4 * HOUR_MS,
        }),
    )
    .unwrap();
    let report = state.cost_report(&query(CostGroup::Pool, 5 * HOUR_MS), &[]);
    let cost: u64 = report.pools.values().map(|pool| pool.cost_nanos).sum();
    let expected = list(1_000, 1, HOUR_MS)
        + list(1_000, on_at, 3 * HOUR_MS + HOUR_MS / 2)
        + list(2_000, 3 * HOUR_MS + HOUR_MS / 2, 4 * HOUR_MS);
    assert!(
        (i128::from(cost) - i128::from(expected)).abs() <= 8,
        "{cost} vs {expected}"
    );
    for pool in report.pools.values() {
        assert!(pool.idle_nanos() >= 0, "{pool:?}");
    }
    let attributed: u64 = report
        .pools
        .values()
        .map(|pool| pool.attributed_nanos)
        .sum();
    assert_eq!(
        attributed,
        PoolPrices::new("p", Pricing::default()).list_cost_nanos(
            Resources::new(500, 100, 0),
            on_at,
            3 * HOUR_MS
        )
    );
}

#[test]
fn a_decommissioned_pool_bills_and_stops_its_idle_workers() {
    let mut state = super::jobs_tests::setup(Quota::default(), 1);
    let lifecycle = |action| {
        CommandV1::PoolLifecycle(command::PoolLifecycle {
            pool: "p".into(),
            action,
            by: "admin".into(),
            reason: "test".into(),
            at_ms: 2 * HOUR_MS,
        })
    };
    apply(&mut state, lifecycle(hodei_domain::pool::PoolAction::Drain)).unwrap();
    apply(
        &mut state,
        lifecycle(hodei_domain::pool::PoolAction::Decommission),
    )
    .unwrap();
    assert!(state.worker("w0").is_none_or(|worker| !worker.is_live()));
    let cost: u64 = state
        .pool_cost_lines(0, u64::MAX)
        .iter()
        .map(|(_, _, nanos)| nanos)
        .sum();
    let expected = PoolPrices::new("p", Pricing::default()).list_cost_nanos(
        Resources::new(1_000, 1_000, 0),
        1,
        2 * HOUR_MS,
    );
    assert!((i128::from(cost) - i128::from(expected)).abs() <= 4);
}

#[test]
fn a_provisioned_worker_is_paid_for_from_its_start_within_the_provisioning_bound() {
    let mut state = super::jobs_tests::setup(Quota::default(), 0);
    let register_at = 2 * HOUR_MS;
    for (id, provisioned) in [
        ("w1", Some(register_at - 5_000)),
        ("w2", Some(register_at - HOUR_MS)),
        ("w3", None),
    ] {
        apply(
            &mut state,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: hodei_domain::run::WorkerRegistration {
                    id: id.into(),
                    pool: "p".into(),
                    capacity: Resources::new(1_000, 1_000, 0),
                    labels: Labels::new(),
                    simulated: false,
                    running: Vec::new(),
                },
                at_ms: register_at,
                provisioned_at_ms: provisioned,
            }),
        )
        .unwrap();
    }
    let start = |id: &str| state.billed_start(state.worker(id).unwrap());
    assert_eq!(start("w1"), register_at - 5_000);
    assert_eq!(
        start("w2"),
        register_at - crate::state::apply::workers::MAX_PROVISIONING_MS,
        "at most the provisioning bound before"
    );
    assert_eq!(start("w3"), register_at);
    assert_eq!(state.worker("w1").unwrap().registered_at_ms, register_at);
}
