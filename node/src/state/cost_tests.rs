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
    // Usage against the request: 90 s of CPU over 600 m x ~1.5 h is ~2 %.
    let stats = state.usage_stats(0, DAY_MS);
    assert_eq!(stats[&acme()].runs, 1);
    assert_eq!(stats[&acme()].cpu_p95_percent(), Some(2));
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
        joined.cost_counters(5 * HOUR_MS),
        state.cost_counters(5 * HOUR_MS)
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
        CommandV1::SetCostSettings(command::SetCostSettings { settings }),
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
        CommandV1::SetCostSettings(command::SetCostSettings { settings }),
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
