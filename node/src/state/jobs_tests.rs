//! Apply's rules for jobs, runs and workers, end to end on a real store.

use hodei_domain::DomainError;
use hodei_domain::dispatch::Assignment;
use hodei_domain::job::{Job, JobSpec, JobState, Priority};
use hodei_domain::pool::Pool;
use hodei_domain::queue::{Queue, QueuePolicy};
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantId;
use hodei_domain::worker::WorkerState;

use crate::state::command;
use crate::state::command::{CommandOutcome, CommandResult, StartReport};
use crate::state::hodei_state::HodeiState;
use hodei_cluster::{SledStorage, StateMachine, Storage, WriteBatch};
use proptest::prelude::*;
use tokio::sync::broadcast;

use crate::state::jobs::SubmittedJob;
use crate::state::{Command, CommandV1};
use hodei_domain::job::CommandSpec;
use hodei_domain::labels::Labels;
use hodei_domain::pool::PoolProvider;
use hodei_domain::quota::Quota;
use hodei_domain::run::{RunOutcome, RunReport, WorkerRegistration};
use hodei_domain::tenant::{NewTenant, Tier};

pub(crate) fn apply(state: &mut HodeiState, command: CommandV1) -> CommandResult {
    let mut writes = WriteBatch::new();
    let response = StateMachine::apply(state, 1, &Command::V1(command).encode(), &mut writes);
    crate::state::decode_result(&response).unwrap()
}

/// A state with tenant `acme` (the given quota), pool `p` of 1000 m workers, queue `q`
/// and `workers` registered workers `w0..`.
pub(crate) fn setup(quota: Quota, workers: usize) -> HodeiState {
    let mut state = HodeiState::new(broadcast::channel(1024).0);
    let tenant = NewTenant {
        id: TenantId::parse("acme").unwrap(),
        display_name: None,
        tier: Tier::Standard,
        weight: None,
        labels: Labels::new(),
        quota,
    }
    .into_tenant(0)
    .unwrap();
    apply(
        &mut state,
        CommandV1::CreateTenant(command::CreateTenant { tenant }),
    )
    .unwrap();
    let pool = Pool::new(
        "p",
        hodei_domain::pool::PoolType::Static,
        PoolProvider::Static,
        Resources::new(1_000, 1_000, 0),
        0,
        10,
        0,
    );
    let queue = Queue {
        id: "q".into(),
        pools: vec!["p".into()],
        policy: QueuePolicy::Fifo,
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    apply(
        &mut state,
        CommandV1::EnsureQueuesAndPools(command::EnsureQueuesAndPools {
            pools: vec![pool],
            queues: vec![queue],
        }),
    )
    .unwrap();
    for index in 0..workers {
        apply(
            &mut state,
            CommandV1::RegisterWorker(register(&format!("w{index}"))),
        )
        .unwrap();
    }
    state
}

/// Worker `id`'s registration in pool `p` (1000 m, 1000 MiB) at time 1.
fn register(id: &str) -> command::RegisterWorker {
    command::RegisterWorker {
        registration: WorkerRegistration {
            id: id.into(),
            pool: "p".into(),
            capacity: Resources::new(1_000, 1_000, 0),
            labels: Labels::new(),
            simulated: false,
            running: Vec::new(),
        },
        at_ms: 1,
        provisioned_at_ms: None,
    }
}

pub(crate) fn job(id: &str, cpu_m: u64, max_retries: u32) -> Job {
    Job::new(
        id.to_string(),
        JobSpec {
            tenant: TenantId::parse("acme").unwrap(),
            queue: "q".into(),
            priority: Priority::Normal,
            resources: Resources::new(cpu_m, 10, 0),
            command: CommandSpec {
                argv: vec!["true".into()],
                ..CommandSpec::default()
            },
            simulate: None,
            labels: Labels::new(),
            max_retries,
            idempotency_key: None,
            pool_selector: Vec::new(),
            sla: None,
        },
        2,
    )
}

pub(crate) fn submit(
    state: &mut HodeiState,
    jobs: Vec<Job>,
) -> Vec<Result<SubmittedJob, DomainError>> {
    match apply(
        state,
        CommandV1::SubmitJobs(command::SubmitJobs {
            jobs,
            max_burst_percent: None,
        }),
    ) {
        Ok(CommandOutcome::JobsSubmitted(results)) => results,
        other => panic!("unexpected {other:?}"),
    }
}

pub(crate) fn assign(state: &mut HodeiState, pairs: &[(&str, &str)]) -> (usize, usize) {
    let assignments = pairs
        .iter()
        .map(|(job, worker)| Assignment {
            job: job.to_string(),
            worker: worker.to_string(),
            burst: false,
        })
        .collect();
    match apply(
        state,
        CommandV1::AssignJobs(command::AssignJobs {
            assignments,
            at_ms: 3,
            sla_changes: Vec::new(),
        }),
    ) {
        Ok(CommandOutcome::JobsAssigned { assigned, rejected }) => (assigned, rejected),
        other => panic!("unexpected {other:?}"),
    }
}

fn finish(state: &mut HodeiState, id: &str, worker: &str, attempt: u32) -> bool {
    let report = RunReport {
        job: id.into(),
        attempt,
        worker: worker.into(),
        outcome: RunOutcome::Succeeded,
        exit_code: Some(0),
        output_tail: "ok\n".into(),
        at_ms: 9,
        usage: None,
    };
    matches!(
        apply(
            state,
            CommandV1::JobFinished(command::JobFinished { report })
        ),
        Ok(CommandOutcome::RunReported { applied: true })
    )
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

#[test]
fn a_stale_plan_cannot_oversubscribe_a_worker_or_assign_twice() {
    let mut state = setup(Quota::default(), 1);
    submit(&mut state, vec![job("a", 600, 0), job("b", 600, 0)]);
    // Two plans made from the same snapshot: each alone fits, together they do not.
    assert_eq!(assign(&mut state, &[("a", "w0")]), (1, 0));
    assert_eq!(
        assign(&mut state, &[("b", "w0")]),
        (0, 1),
        "no room left on w0"
    );
    assert_eq!(
        assign(&mut state, &[("a", "w0")]),
        (0, 1),
        "a is no longer pending"
    );
    assert_eq!(state.worker("w0").unwrap().used.cpu_m, 600);
    let usage = state.usage(&acme());
    assert_eq!(
        (usage.running_jobs, usage.pending_jobs, usage.running.cpu_m),
        (1, 1, 600)
    );
}

#[test]
fn apply_holds_the_quota_whatever_the_plan_says() {
    let quota = Quota {
        max_concurrent_jobs: 1,
        ..Quota::default()
    };
    let mut state = setup(quota, 2);
    submit(&mut state, vec![job("a", 100, 0), job("b", 100, 0)]);
    assert_eq!(assign(&mut state, &[("a", "w0"), ("b", "w1")]), (1, 1));
}

#[test]
fn a_run_goes_start_to_finish_and_frees_its_room() {
    let mut state = setup(Quota::default(), 1);
    submit(&mut state, vec![job("a", 600, 0)]);
    assign(&mut state, &[("a", "w0")]);
    let started = apply(
        &mut state,
        CommandV1::JobStarted(command::JobStarted {
            job: "a".into(),
            attempt: 1,
            worker: "w0".into(),
            at_ms: 4,
        }),
    );
    assert_eq!(started, Ok(CommandOutcome::RunReported { applied: true }));
    assert!(
        !finish(&mut state, "a", "w0", 2),
        "a report of another attempt is ignored"
    );
    assert!(
        !finish(&mut state, "a", "w9", 1),
        "a report of another worker is ignored"
    );
    assert!(finish(&mut state, "a", "w0", 1));
    assert!(
        !finish(&mut state, "a", "w0", 1),
        "a repeated report changes nothing"
    );
    let done = state.job("a").unwrap();
    assert_eq!((done.state, done.exit_code), (JobState::Succeeded, Some(0)));
    assert_eq!(state.job_output("a"), Some("ok\n"));
    assert_eq!(state.worker("w0").unwrap().used, Resources::ZERO);
    assert_eq!(state.usage(&acme()).running_jobs, 0);
}

#[test]
fn batched_run_reports_start_and_end_runs_and_bill_their_run_time() {
    let mut state = setup(Quota::default(), 1);
    submit(&mut state, vec![job("a", 500, 0), job("b", 500, 0)]);
    assert_eq!(assign(&mut state, &[("a", "w0"), ("b", "w0")]), (2, 0));
    let start = |job: &str| StartReport {
        job: job.into(),
        attempt: 1,
        worker: "w0".into(),
        at_ms: 1_000,
    };
    let end = |job: &str, at_ms: u64| RunReport {
        job: job.into(),
        attempt: 1,
        worker: "w0".into(),
        outcome: RunOutcome::Succeeded,
        exit_code: Some(0),
        output_tail: String::new(),
        at_ms,
        usage: None,
    };
    // Both start; `a` ends an hour later in the same batch, and a report for a job
    // the worker does not run is ignored without spoiling the rest.
    let outcome = apply(
        &mut state,
        CommandV1::RunReports(command::RunReports {
            started: vec![start("a"), start("b"), start("zz")],
            finished: vec![end("a", 3_601_000)],
        }),
    );
    assert_eq!(outcome, Ok(CommandOutcome::RunsReported { applied: 3 }));
    assert_eq!(state.job("a").unwrap().state, JobState::Succeeded);
    assert_eq!(state.job("b").unwrap().state, JobState::Running);
    // Half a core and 10 MB for an hour at the default prices: 0.025 + 0.01 x 10/1024
    // USD.
    assert_eq!(state.job("a").unwrap().cost_nanos, Some(25_097_656));
    assert_eq!(state.job("b").unwrap().cost_nanos, None);
    assert_eq!(state.usage(&acme()).running_jobs, 1);
}

#[test]
fn a_lost_worker_requeues_its_jobs_until_retries_are_spent() {
    let mut state = setup(Quota::default(), 1);
    submit(&mut state, vec![job("keep", 100, 1), job("drop", 100, 0)]);
    assign(&mut state, &[("keep", "w0"), ("drop", "w0")]);
    let lost = apply(
        &mut state,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "missed heartbeats".into(),
            at_ms: 5,
        }),
    );
    assert_eq!(lost, Ok(CommandOutcome::WorkerLost { requeued: 1 }));
    let kept = state.job("keep").unwrap();
    assert_eq!((kept.state, kept.attempt), (JobState::Pending, 2));
    assert_eq!(state.job("drop").unwrap().state, JobState::Failed);
    assert_eq!(state.worker("w0").unwrap().state, WorkerState::Lost);
    assert_eq!(
        assign(&mut state, &[("keep", "w0")]),
        (0, 1),
        "a lost worker takes nothing"
    );
    let usage = state.usage(&acme());
    assert_eq!((usage.running_jobs, usage.pending_jobs), (0, 1));
}

#[test]
fn a_restarted_worker_loses_the_runs_it_no_longer_reports() {
    let mut state = setup(Quota::default(), 1);
    submit(&mut state, vec![job("ran", 100, 1), job("still", 100, 1)]);
    assign(&mut state, &[("ran", "w0"), ("still", "w0")]);
    for id in ["ran", "still"] {
        apply(
            &mut state,
            CommandV1::JobStarted(command::JobStarted {
                job: id.into(),
                attempt: 1,
                worker: "w0".into(),
                at_ms: 4,
            }),
        )
        .unwrap();
    }
    let registered = apply(
        &mut state,
        CommandV1::RegisterWorker(command::RegisterWorker {
            registration: WorkerRegistration {
                id: "w0".into(),
                pool: "p".into(),
                capacity: Resources::new(1_000, 1_000, 0),
                labels: Labels::new(),
                simulated: false,
                running: vec!["still".into(), "unknown".into()],
            },
            at_ms: 6,
            provisioned_at_ms: None,
        }),
    );
    let Ok(CommandOutcome::WorkerRegistered { keep, requeued, .. }) = registered else {
        panic!("unexpected {registered:?}");
    };
    assert_eq!((keep, requeued), (vec!["still".to_string()], 1));
    assert_eq!(state.job("ran").unwrap().state, JobState::Pending);
    assert_eq!(state.job("still").unwrap().state, JobState::Running);
}

#[test]
fn submit_rules_idempotency_backlog_and_placement() {
    let quota = Quota {
        max_pending_jobs: 2,
        ..Quota::default()
    };
    let mut state = setup(quota, 0);
    let mut keyed = job("k1", 100, 0);
    keyed.spec.idempotency_key = Some("nightly".into());
    let mut repeat = job("k2", 100, 0);
    repeat.spec.idempotency_key = Some("nightly".into());
    let results = submit(
        &mut state,
        vec![keyed, repeat, job("x", 100, 0), job("y", 100, 0)],
    );
    assert!(matches!(&results[0], Ok(first) if !first.is_duplicate()));
    assert!(
        matches!(&results[1], Ok(again) if again.earlier.as_ref().is_some_and(|job| job.id == "k1"))
    );
    assert!(results[2].is_ok());
    assert!(
        matches!(results[3], Err(DomainError::Exhausted(_))),
        "backlog of 2 is full"
    );
    let too_big = submit(&mut state, vec![job("big", 5_000, 0)]);
    assert!(
        matches!(&too_big[0], Err(DomainError::Invalid { field, .. }) if field == "resources.cpu_m"),
        "{too_big:?}"
    );
    let mut lost_queue = job("nq", 100, 0);
    lost_queue.spec.queue = "nope".into();
    assert!(matches!(
        &submit(&mut state, vec![lost_queue])[0],
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn jobs_load_back_from_storage_with_their_derived_usage() {
    let storage = SledStorage::temporary().unwrap();
    let keyspace = storage.keyspace("state").unwrap();
    let mut state = setup(Quota::default(), 1);
    let mut commands = vec![CommandV1::SubmitJobs(command::SubmitJobs {
        jobs: vec![job("a", 300, 0), job("b", 300, 0)],
        max_burst_percent: None,
    })];
    commands.push(CommandV1::AssignJobs(command::AssignJobs {
        assignments: vec![Assignment {
            job: "a".into(),
            worker: "w0".into(),
            burst: false,
        }],
        at_ms: 3,
        sla_changes: Vec::new(),
    }));
    // Replay everything into a stored state.
    let mut stored = HodeiState::new(broadcast::channel(16).0);
    let mut writes = WriteBatch::new();
    let snapshot = state.snapshot().unwrap();
    stored.restore(&snapshot, &mut writes).unwrap();
    keyspace.write(writes).unwrap();
    for command in commands {
        let mut writes = WriteBatch::new();
        StateMachine::apply(
            &mut stored,
            2,
            &Command::V1(command.clone()).encode(),
            &mut writes,
        );
        keyspace.write(writes).unwrap();
        apply(&mut state, command).unwrap();
    }
    let loaded = HodeiState::load(keyspace.as_ref(), broadcast::channel(1).0).unwrap();
    assert_eq!(loaded.usage(&acme()), state.usage(&acme()));
    assert_eq!(loaded.job("a").unwrap().state, JobState::Assigned);
    assert_eq!(loaded.pending_in("q").count(), 1);
    assert_eq!(loaded.worker("w0").unwrap().used.cpu_m, 300);
}

#[test]
fn deleting_a_tenant_with_live_jobs_needs_cascade_which_cancels_them() {
    let mut state = setup(Quota::default(), 1);
    submit(&mut state, vec![job("a", 300, 0), job("b", 300, 0)]);
    assign(&mut state, &[("a", "w0")]);
    let refused = apply(
        &mut state,
        CommandV1::DeleteTenant(command::DeleteTenant {
            id: acme(),
            cascade: false,
            at_ms: 5,
        }),
    );
    assert!(matches!(refused, Err(DomainError::Conflict(_))));
    let deleted = apply(
        &mut state,
        CommandV1::DeleteTenant(command::DeleteTenant {
            id: acme(),
            cascade: true,
            at_ms: 5,
        }),
    );
    assert!(matches!(deleted, Ok(CommandOutcome::TenantDeleted { .. })));
    for id in ["a", "b"] {
        assert_eq!(state.job(id).unwrap().state, JobState::Cancelled);
    }
    assert_eq!(state.worker("w0").unwrap().used, Resources::ZERO);
    assert_eq!(state.pending_in("q").count(), 0);
}

#[test]
fn sla_is_judged_at_start_and_recorded_changes_stick() {
    use hodei_domain::sla::{SlaLevel, SlaSpec, SlaStatus};
    let mut state = setup(Quota::default(), 1);
    let with_sla = |id: &str, target: u64| {
        let mut found = job(id, 100, 0);
        found.spec.sla = Some(SlaSpec {
            level: SlaLevel::Critical,
            start_by_ms: Some(target),
            finish_by_ms: None,
        });
        found.sla_target_start_ms = Some(target);
        found
    };
    submit(
        &mut state,
        vec![with_sla("on-time", 10), with_sla("late", 3)],
    );
    let recorded = apply(
        &mut state,
        CommandV1::RecordSla(command::RecordSla {
            changes: vec![crate::state::command::SlaUpdate {
                job: "late".into(),
                status: SlaStatus::AtRisk,
                at_ms: 2,
            }],
        }),
    );
    assert_eq!(recorded, Ok(CommandOutcome::SlaRecorded { changed: 1 }));
    assign(&mut state, &[("on-time", "w0"), ("late", "w0")]);
    for id in ["on-time", "late"] {
        apply(
            &mut state,
            CommandV1::JobStarted(command::JobStarted {
                job: id.into(),
                attempt: 1,
                worker: "w0".into(),
                at_ms: 5,
            }),
        )
        .unwrap();
    }
    assert_eq!(
        state.job("on-time").unwrap().sla_status(),
        Some(SlaStatus::Met)
    );
    let late: Vec<SlaStatus> = state
        .job("late")
        .unwrap()
        .sla_history
        .iter()
        .map(|change| change.status)
        .collect();
    assert_eq!(late, [SlaStatus::AtRisk, SlaStatus::Violated]);
}

#[derive(Debug, Clone)]
enum Step {
    Submit(u64),
    Assign(usize, usize),
    Finish(usize),
    Lose(usize),
    Register(usize),
    Cancel(usize),
    Start(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (100u64..700).prop_map(Step::Submit),
        (0usize..12, 0usize..3).prop_map(|(job, worker)| Step::Assign(job, worker)),
        (0usize..12).prop_map(Step::Finish),
        (0usize..3).prop_map(Step::Lose),
        (0usize..3).prop_map(Step::Register),
        (0usize..12).prop_map(Step::Cancel),
        (0usize..12).prop_map(Step::Start),
    ]
}

proptest! {
    /// Whatever plans, reports and failures arrive in whatever order, no worker holds
    /// more than its capacity, no tenant runs more than its quota, and the derived
    /// usage equals what a fresh rebuild from the jobs gives.
    #[test]
    fn no_interleaving_oversubscribes_or_corrupts_usage(steps in proptest::collection::vec(step(), 1..80)) {
        let quota = Quota { cpu_m: 1_500, max_concurrent_jobs: 3, ..Quota::default() };
        let mut state = setup(quota.clone(), 3);
        // Prices high enough that runs of a few ms cost whole nano-dollars.
        apply(&mut state, CommandV1::SetPoolPricing(command::SetPoolPricing {
            pool: "p".into(),
            changes: hodei_domain::cost::PricingChanges { cpu_core_hour_micros: Some(1_000_000_000_000), ..Default::default() },
            tiers: None,
            at_ms: 0,
        })).unwrap();
        let mut submitted = 0usize;
        for step in steps {
            match step {
                Step::Submit(cpu_m) => {
                    submit(&mut state, vec![job(&format!("j{submitted}"), cpu_m, 1)]);
                    submitted += 1;
                }
                Step::Assign(job_index, worker) => {
                    assign(&mut state, &[(&format!("j{job_index}"), &format!("w{worker}"))]);
                }
                Step::Finish(job_index) => {
                    let id = format!("j{job_index}");
                    if let Some(found) = state.job(&id).cloned()
                        && let Some(worker) = found.worker.clone()
                    {
                        finish(&mut state, &id, &worker, found.attempt);
                    }
                }
                Step::Lose(worker) => {
                    let _ = apply(&mut state, CommandV1::WorkerLost(command::WorkerLost { worker: format!("w{worker}"), reason: "test".into(), at_ms: 7 }));
                }
                Step::Register(worker) => {
                    let _ = apply(&mut state, CommandV1::RegisterWorker(command::RegisterWorker {
                        registration: WorkerRegistration {
                            id: format!("w{worker}"),
                            pool: "p".into(),
                            capacity: Resources::new(1_000, 1_000, 0),
                            labels: Labels::new(),
                            simulated: false,
                            running: Vec::new(),
                        },
                        at_ms: 8,
                        provisioned_at_ms: None,
                    }));
                }
                Step::Start(job_index) => {
                    let id = format!("j{job_index}");
                    if let Some(found) = state.job(&id).cloned()
                        && let Some(worker) = found.worker.clone()
                    {
                        let _ = apply(&mut state, CommandV1::JobStarted(command::JobStarted { job: id, attempt: found.attempt, worker, at_ms: 5 }));
                    }
                }
                Step::Cancel(job_index) => {
                    let _ = apply(&mut state, CommandV1::CancelJob(command::CancelJob { id: format!("j{job_index}"), cancelled_by: "test".into(), at_ms: 9 }));
                }
            }
            for worker in state.workers() {
                let held: Resources = worker.jobs.iter().filter_map(|id| state.job(id)).map(|job| job.spec.resources).fold(Resources::ZERO, Resources::saturating_add);
                prop_assert_eq!(held, worker.used);
                prop_assert!(worker.used.fits_within(worker.capacity));
            }
            let usage = state.usage(&acme());
            prop_assert!(usage.running_jobs <= quota.max_concurrent_jobs);
            prop_assert!(usage.running.cpu_m <= quota.cpu_m);
            let mut rebuilt = HodeiState::new(broadcast::channel(16).0);
            let mut writes = WriteBatch::new();
            rebuilt.restore(&state.snapshot().unwrap(), &mut writes).unwrap();
            prop_assert_eq!(rebuilt.usage(&acme()).running_jobs, usage.running_jobs);
            prop_assert_eq!(rebuilt.usage(&acme()).pending_jobs, usage.pending_jobs);
            prop_assert_eq!(rebuilt.usage(&acme()).running, usage.running);
            let nonzero = |hodei: &HodeiState| -> Vec<((String, TenantId, JobState), u64)> {
                hodei.job_tally().iter().filter(|(_, count)| **count > 0).map(|(key, count)| (key.clone(), *count)).collect()
            };
            prop_assert_eq!(nonzero(&rebuilt), nonzero(&state));
            let by_priority = |hodei: &HodeiState| -> Vec<((String, Priority, JobState), u64)> {
                hodei.priority_tally().iter().filter(|(_, count)| **count > 0).map(|(key, count)| (key.clone(), *count)).collect()
            };
            prop_assert_eq!(by_priority(&rebuilt), by_priority(&state));
            // Apply's count of pending jobs per shape is what the pending jobs say.
            let shapes = |hodei: &HodeiState| -> Vec<(crate::state::hodei_state::PendingShape, u64)> {
                hodei.pending_shapes().map(|(shape, count)| (shape.clone(), count)).collect()
            };
            let mut counted: std::collections::BTreeMap<crate::state::hodei_state::PendingShape, u64> = Default::default();
            for pending in state.pending_in("q") {
                *counted.entry(crate::state::hodei_state::PendingShape::of(pending)).or_default() += 1;
            }
            prop_assert_eq!(shapes(&state), counted.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(shapes(&rebuilt), shapes(&state));
            // The cost ledger holds exactly what the final jobs cost, whichever way they ended.
            let ledger: u64 = state.cost_lines(0, u64::MAX).iter().map(|(_, line)| line.billed_nanos).sum();
            let jobs: u64 = (0..submitted).filter_map(|index| state.job(&format!("j{index}"))).filter(|job| job.state.is_final()).map(|job| job.cost_nanos.unwrap_or(0)).sum();
            prop_assert_eq!(ledger, jobs);
            // The share ledger apply moved step by step says what a replay of the jobs says.
            // Seen from the jobs' queue, and from another queue over the same pool (which
            // counts only the runs that pool held).
            let pools = ["p".to_string()];
            for queue in ["q", "other"] {
                for (from, to) in [(0, 100), (4, 8), (8, 9)] {
                    let windows = |hodei: &HodeiState| -> Vec<(TenantId, [u128; 3], u64, Option<u64>)> {
                        hodei.share_window(queue, &pools, from, to).into_iter().map(|(tenant, lines)| (tenant, lines.held, lines.running, lines.left_pending_ms)).collect()
                    };
                    prop_assert_eq!(windows(&rebuilt), windows(&state));
                }
            }
        }
    }
}

#[test]
fn a_run_that_fails_with_its_lost_worker_is_billed_on_the_job_and_in_the_ledger() {
    let mut state = setup(Quota::default(), 1);
    apply(
        &mut state,
        CommandV1::SetPoolPricing(command::SetPoolPricing {
            pool: "p".into(),
            changes: hodei_domain::cost::PricingChanges {
                cpu_core_hour_micros: Some(1_000_000_000_000),
                ..Default::default()
            },
            tiers: None,
            at_ms: 0,
        }),
    )
    .unwrap();
    submit(&mut state, vec![job("once", 500, 0)]);
    assign(&mut state, &[("once", "w0")]);
    apply(
        &mut state,
        CommandV1::JobStarted(command::JobStarted {
            job: "once".into(),
            attempt: 1,
            worker: "w0".into(),
            at_ms: 5,
        }),
    )
    .unwrap();
    apply(
        &mut state,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "test".into(),
            at_ms: 7,
        }),
    )
    .unwrap();
    let failed = state.job("once").unwrap();
    assert_eq!(failed.state, JobState::Failed);
    let cost = failed.cost_nanos.expect("a failed run is billed");
    assert!(cost > 0);
    let ledger: u64 = state
        .cost_lines(0, u64::MAX)
        .iter()
        .map(|(_, line)| line.billed_nanos)
        .sum();
    assert_eq!(ledger, cost);
}

#[test]
fn every_job_end_reaches_the_observer_once_with_its_wait_and_run() {
    let mut state = setup(Quota::default(), 1);
    let ends = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = ends.clone();
    state.observe_job_ends(std::sync::Arc::new(move |end| {
        seen.lock().unwrap().push(end.clone());
    }));
    submit(&mut state, vec![job("a", 100, 0), job("b", 100, 0)]);
    assert_eq!(assign(&mut state, &[("a", "w0"), ("b", "w0")]), (2, 0));
    for id in ["a", "b"] {
        let started = apply(
            &mut state,
            CommandV1::JobStarted(command::JobStarted {
                job: id.into(),
                attempt: 1,
                worker: "w0".into(),
                at_ms: 4,
            }),
        );
        assert_eq!(started, Ok(CommandOutcome::RunReported { applied: true }));
        assert!(finish(&mut state, id, "w0", 1));
        assert!(
            !finish(&mut state, id, "w0", 1),
            "a repeated report ends nothing"
        );
    }
    let ends = ends.lock().unwrap();
    assert_eq!(ends.len(), 2, "{ends:?}");
    for end in ends.iter() {
        assert_eq!(
            (end.queue.as_str(), end.state, end.wait_ms, end.run_ms),
            ("q", JobState::Succeeded, Some(2), Some(5)),
            "submitted at 2, started at 4, ended at 9"
        );
    }
}

#[test]
fn a_live_workers_id_is_bound_to_its_agent_until_it_is_lost() {
    let mut state = setup(Quota::default(), 0);
    let register_from = |agent: &str| {
        CommandV1::RegisterAgentWorker(command::RegisterAgentWorker {
            register: register("w1"),
            agent: agent.into(),
        })
    };
    assert!(apply(&mut state, register_from("agent-a")).is_ok());
    assert_eq!(state.worker_agent("w1"), Some("agent-a"));
    submit(&mut state, vec![job("j", 100, 0)]);
    assert_eq!(assign(&mut state, &[("j", "w1")]), (1, 0));
    let before = state.worker("w1").cloned();
    let refused = apply(&mut state, register_from("agent-b"));
    assert!(
        matches!(&refused, Err(DomainError::Conflict(rule)) if rule.contains("never a takeover")),
        "{refused:?}"
    );
    assert_eq!(
        state.worker("w1").cloned(),
        before,
        "a refusal changes nothing"
    );
    assert_eq!(state.worker_agent("w1"), Some("agent-a"));
    // Its own agent reconnecting (after a leader change) keeps the worker and its job.
    assert!(apply(&mut state, register_from("agent-a")).is_ok());
    assert_eq!(state.job("j").unwrap().worker.as_deref(), Some("w1"));
    // Once lost, another agent may take the id.
    apply(
        &mut state,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w1".into(),
            reason: "missed heartbeats".into(),
            at_ms: 5,
        }),
    )
    .unwrap();
    assert!(apply(&mut state, register_from("agent-b")).is_ok());
    assert_eq!(state.worker_agent("w1"), Some("agent-b"));
    // The binding is replicated state: a snapshot carries it.
    let snapshot = StateMachine::snapshot(&state).unwrap();
    let mut restored = HodeiState::new(broadcast::channel(4).0);
    let mut writes = WriteBatch::new();
    StateMachine::restore(&mut restored, &snapshot, &mut writes).unwrap();
    assert_eq!(restored.worker_agent("w1"), Some("agent-b"));
}

#[test]
fn a_loss_judged_before_a_registration_does_not_take_what_the_worker_got_since() {
    let mut state = setup(Quota::default(), 0);
    let register_at = |at_ms: u64| {
        let mut register = register("w1");
        register.at_ms = at_ms;
        CommandV1::RegisterAgentWorker(command::RegisterAgentWorker {
            register,
            agent: "agent-a".into(),
        })
    };
    let lost_since = |session_ms: u64| {
        CommandV1::WorkerLostSince(command::WorkerLostSince {
            lost: command::WorkerLost {
                worker: "w1".into(),
                reason: "missed heartbeats".into(),
                at_ms: 30,
            },
            session_ms,
        })
    };
    assert!(apply(&mut state, register_at(10)).is_ok());
    assert_eq!(state.worker_session("w1"), Some(10));
    // The leader judges the registration of 10 silent; before its loss commits, the
    // agent registers again (at 20) and is given a job.
    assert!(apply(&mut state, register_at(20)).is_ok());
    submit(&mut state, vec![job("j", 100, 3)]);
    assert_eq!(assign(&mut state, &[("j", "w1")]), (1, 0));
    let before = (state.worker("w1").cloned(), state.job("j").cloned());
    let refused = apply(&mut state, lost_since(10));
    assert!(
        matches!(&refused, Err(DomainError::Conflict(rule)) if rule.contains("registered again")),
        "{refused:?}"
    );
    assert_eq!(
        (state.worker("w1").cloned(), state.job("j").cloned()),
        before,
        "a refused loss changes nothing"
    );
    // A loss judged for the current registration applies: the job goes back.
    assert!(apply(&mut state, lost_since(20)).is_ok());
    assert!(!state.worker("w1").unwrap().is_live());
    assert_eq!(state.job("j").unwrap().state, JobState::Pending);
    // A snapshot carries the registration's time.
    let snapshot = StateMachine::snapshot(&state).unwrap();
    let mut restored = HodeiState::new(broadcast::channel(4).0);
    let mut writes = WriteBatch::new();
    StateMachine::restore(&mut restored, &snapshot, &mut writes).unwrap();
    assert_eq!(restored.worker_session("w1"), Some(20));
}

#[test]
fn a_run_its_live_worker_no_longer_lists_is_lost_only_for_that_attempt_and_registration() {
    let mut state = setup(Quota::default(), 0);
    let mut register = register("w1");
    register.at_ms = 10;
    apply(
        &mut state,
        CommandV1::RegisterAgentWorker(command::RegisterAgentWorker {
            register,
            agent: "agent-a".into(),
        }),
    )
    .unwrap();
    submit(&mut state, vec![job("j", 100, 3), job("k", 100, 3)]);
    assert_eq!(assign(&mut state, &[("j", "w1"), ("k", "w1")]), (2, 0));
    for id in ["j", "k"] {
        apply(
            &mut state,
            CommandV1::JobStarted(command::JobStarted {
                job: id.into(),
                attempt: 1,
                worker: "w1".into(),
                at_ms: 12,
            }),
        )
        .unwrap();
    }
    let vanished = |session_ms: u64, runs: Vec<(&str, u32)>| {
        CommandV1::RunsVanished(command::RunsVanished {
            worker: "w1".into(),
            session_ms,
            runs: runs
                .into_iter()
                .map(|(job, attempt)| (job.to_string(), attempt))
                .collect(),
            at_ms: 20,
        })
    };
    // Judged on an older registration: refused, nothing changes.
    let before = (state.worker("w1").cloned(), state.job("j").cloned());
    let refused = apply(&mut state, vanished(9, vec![("j", 1)]));
    assert!(
        matches!(&refused, Err(DomainError::Conflict(rule)) if rule.contains("registered again")),
        "{refused:?}"
    );
    assert_eq!(
        (state.worker("w1").cloned(), state.job("j").cloned()),
        before
    );
    // Another attempt than the current one: skipped.
    apply(&mut state, vanished(10, vec![("j", 2)])).unwrap();
    assert_eq!(state.job("j").unwrap().state, JobState::Running);
    // The current run: lost, re-queued as attempt 2; the worker stays live with k.
    apply(&mut state, vanished(10, vec![("j", 1)])).unwrap();
    let lost = state.job("j").unwrap();
    assert_eq!(
        (lost.state, lost.attempt, lost.worker.clone()),
        (JobState::Pending, 2, None)
    );
    let worker = state.worker("w1").unwrap();
    assert!(worker.is_live());
    assert_eq!(worker.jobs.iter().collect::<Vec<_>>(), ["k"]);
    assert_eq!(state.job("k").unwrap().state, JobState::Running);
    assert_eq!(state.usage(&acme()).running_jobs, 1);
}
