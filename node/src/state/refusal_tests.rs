//! "Apply validates, then mutates": a refused command leaves the in-memory state, the write
//! batch and the event stream exactly as they were. Each reviewed hole has its test here,
//! then a table of refused commands of every kind and a property over random command
//! sequences check the rule for everything at once.
//!
//! Longer than our other files on purpose: one table of refusals for every command kind is
//! easier to keep complete in one place than spread over the aggregates' files.

use hodei_cluster::{StateMachine, WriteBatch};
use proptest::prelude::*;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::TryRecvError;

use crate::state::command;
use crate::state::command::PoolPatch;
use crate::state::command::{Command, CommandOutcome, CommandResult, CommandV1, StartReport};
use crate::state::hodei_state::{DomainEvent, HodeiState};
use hodei_domain::DomainError;
use hodei_domain::burst::{BurstPolicy, BurstRequest, EndReason};
use hodei_domain::dispatch::Assignment;
use hodei_domain::job::{CommandSpec, Job, JobSpec, JobState, Priority};
use hodei_domain::labels::Labels;
use hodei_domain::pool::{Pool, PoolAction, PoolProvider, PoolState, PoolType};
use hodei_domain::queue::{Queue, QueuePolicy};
use hodei_domain::quota::Quota;
use hodei_domain::resources::Resources;
use hodei_domain::run::{RunOutcome, RunReport, WorkerRegistration};
use hodei_domain::tenant::{NewTenant, Tenant, TenantId, TenantPatch, Tier};
use hodei_domain::worker::WorkerState;

const MINUTE: u64 = 60_000;

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn new_tenant(id: &str) -> Tenant {
    NewTenant {
        id: TenantId::parse(id).unwrap(),
        display_name: None,
        tier: Tier::Standard,
        weight: None,
        labels: Labels::new(),
        quota: Quota::default(),
    }
    .into_tenant(0)
    .unwrap()
}

fn job(id: &str, cpu_m: u64, max_retries: u32) -> Job {
    Job::new(
        id.to_string(),
        JobSpec {
            tenant: acme(),
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

fn registration(id: &str, pool: &str) -> WorkerRegistration {
    WorkerRegistration {
        id: id.into(),
        pool: pool.into(),
        capacity: Resources::new(1_000, 1_000, 0),
        labels: Labels::new(),
        simulated: false,
        running: Vec::new(),
    }
}

fn policy() -> BurstPolicy {
    BurstPolicy::defaults_for_tests(Resources::new(100_000, 200_000, 0))
}

fn report(job: &str, worker: &str) -> RunReport {
    RunReport {
        job: job.into(),
        attempt: 1,
        worker: worker.into(),
        outcome: RunOutcome::Succeeded,
        exit_code: Some(0),
        output_tail: "ok\n".into(),
        at_ms: 9,
        usage: None,
    }
}

/// Applies through the state machine's own entry point (encoded command, shared batch).
fn apply_into(
    state: &mut HodeiState,
    command: CommandV1,
    writes: &mut WriteBatch,
) -> CommandResult {
    let response = StateMachine::apply(state, 1, &Command::V1(command).encode(), writes);
    crate::state::decode_result(&response).unwrap()
}

fn apply(state: &mut HodeiState, command: CommandV1) -> CommandResult {
    apply_into(state, command, &mut WriteBatch::new())
}

/// A state with something of every kind: the default tenant and `acme`, static pool `p`
/// (size 1) with workers `w0` and `w1`, an empty dynamic pool `d`, queue `q` over `p`, and
/// jobs `pending`, `assigned` (on `w1`), `running` (on `w0`) and `done`; `acme` has a burst
/// session `s1` awaiting approval.
fn populated() -> (HodeiState, broadcast::Receiver<DomainEvent>) {
    let mut state = HodeiState::new(broadcast::channel(4_096).0);
    let events = state.subscribe();
    apply(
        &mut state,
        CommandV1::Bootstrap(command::Bootstrap {
            default_tenant: Tenant::default_tenant(0, Quota::default()),
        }),
    )
    .unwrap();
    apply(
        &mut state,
        CommandV1::CreateTenant(command::CreateTenant {
            tenant: new_tenant("acme"),
        }),
    )
    .unwrap();
    let static_pool = Pool::new(
        "p",
        PoolType::Static,
        PoolProvider::Static,
        Resources::new(1_000, 1_000, 0),
        1,
        10,
        0,
    );
    let dynamic_pool = Pool::new(
        "d",
        PoolType::Dynamic,
        PoolProvider::Simulated,
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
            pools: vec![static_pool, dynamic_pool],
            queues: vec![queue],
        }),
    )
    .unwrap();
    for worker in ["w0", "w1"] {
        apply(
            &mut state,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: registration(worker, "p"),
                at_ms: 1,
                provisioned_at_ms: None,
            }),
        )
        .unwrap();
    }
    apply(
        &mut state,
        CommandV1::SubmitJobs(command::SubmitJobs {
            jobs: vec![
                job("pending", 100, 1),
                job("assigned", 200, 1),
                job("running", 300, 1),
                job("done", 100, 0),
            ],
            max_burst_percent: None,
        }),
    )
    .unwrap();
    let assignments = [("running", "w0"), ("assigned", "w1"), ("done", "w0")]
        .into_iter()
        .map(|(job, worker)| Assignment {
            job: job.into(),
            worker: worker.into(),
            burst: false,
        })
        .collect();
    apply(
        &mut state,
        CommandV1::AssignJobs(command::AssignJobs {
            assignments,
            at_ms: 3,
            sla_changes: Vec::new(),
        }),
    )
    .unwrap();
    apply(
        &mut state,
        CommandV1::RunReports(command::RunReports {
            started: vec![StartReport {
                job: "running".into(),
                attempt: 1,
                worker: "w0".into(),
                at_ms: 4,
            }],
            finished: vec![report("done", "w0")],
        }),
    )
    .unwrap();
    apply(
        &mut state,
        CommandV1::RequestBurst(command::RequestBurst {
            tenant: acme(),
            session_id: "s1".into(),
            request: BurstRequest {
                ceiling_percentage: 150,
                duration_ms: 10 * MINUTE,
                reason: "load test".into(),
            },
            requested_by: "admin".into(),
            policy: policy(),
            at_ms: 5,
        }),
    )
    .unwrap();
    (state, events)
}

/// Everything a command may change: the snapshot (every stored entity) and the indices
/// derived from the jobs, which the snapshot does not carry.
fn fingerprint(state: &HodeiState) -> (Vec<u8>, String) {
    let derived = format!(
        "{:?}",
        (
            &state.usage,
            &state.pending,
            &state.idempotency,
            &state.job_tally,
            &state.priority_tally,
            &state.sla_tally,
            &state.dispatch_log,
        )
    );
    (state.snapshot().unwrap(), derived)
}

fn drain(events: &mut broadcast::Receiver<DomainEvent>) {
    loop {
        match events.try_recv() {
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
        }
    }
}

/// Applies `command` into a batch that already holds an earlier command's write, and checks
/// that it changed nothing: same state, same batch, no event. Returns what it answered.
fn apply_expecting_no_change(
    state: &mut HodeiState,
    events: &mut broadcast::Receiver<DomainEvent>,
    command: CommandV1,
) -> CommandResult {
    drain(events);
    let before = fingerprint(state);
    let mut writes = WriteBatch::new();
    writes.put(b"earlier/key".to_vec(), b"earlier value".to_vec());
    let batch_before = writes.clone();
    let result = apply_into(state, command.clone(), &mut writes);
    assert_eq!(
        writes, batch_before,
        "{command:?} answered {result:?} but changed the write batch"
    );
    assert!(
        fingerprint(state) == before,
        "{command:?} answered {result:?} but changed the state"
    );
    let event = events.try_recv();
    assert!(
        matches!(event, Err(TryRecvError::Empty)),
        "{command:?} answered {result:?} but emitted {event:?}"
    );
    result
}

/// Applies `command`, which must be refused, and checks that it changed nothing.
fn assert_refused_without_change(
    state: &mut HodeiState,
    events: &mut broadcast::Receiver<DomainEvent>,
    command: CommandV1,
) -> DomainError {
    match apply_expecting_no_change(state, events, command.clone()) {
        Err(error) => error,
        Ok(outcome) => panic!("{command:?} should be refused, got {outcome:?}"),
    }
}

/// The tenant's derived usage forgets its runs: a state no command can produce, which the
/// run-end paths must meet with a refusal rather than a half-applied release.
fn forget_usage_of_acme(state: &mut HodeiState) {
    state.usage.remove(&acme());
}

// ---- Hole 1: run ends check everything before releasing anything.

#[test]
fn a_refused_run_end_releases_no_worker() {
    let (mut state, mut events) = populated();
    forget_usage_of_acme(&mut state);
    let used_before = state.worker("w0").unwrap().used;
    let error = assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::JobFinished(command::JobFinished {
            report: report("running", "w0"),
        }),
    );
    assert!(matches!(error, DomainError::Conflict(_)), "{error:?}");
    assert_eq!(state.worker("w0").unwrap().used, used_before);
    assert_eq!(state.job("running").unwrap().state, JobState::Running);
}

#[test]
fn a_refused_run_end_in_a_batch_leaves_its_run_and_worker_untouched() {
    let (mut state, _events) = populated();
    forget_usage_of_acme(&mut state);
    let w0_before = state.worker("w0").unwrap().clone();
    // The start applies; the end of `running` is refused on its own, changing nothing.
    let outcome = apply(
        &mut state,
        CommandV1::RunReports(command::RunReports {
            started: vec![StartReport {
                job: "assigned".into(),
                attempt: 1,
                worker: "w1".into(),
                at_ms: 6,
            }],
            finished: vec![report("running", "w0")],
        }),
    );
    assert_eq!(outcome, Ok(CommandOutcome::RunsReported { applied: 1 }));
    assert_eq!(state.job("assigned").unwrap().state, JobState::Running);
    assert_eq!(state.job("running").unwrap().state, JobState::Running);
    assert_eq!(state.worker("w0").unwrap(), &w0_before);
    assert_eq!(state.job_output("running"), None);
}

#[test]
fn a_refused_cancel_releases_no_worker() {
    let (mut state, mut events) = populated();
    forget_usage_of_acme(&mut state);
    let error = assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::CancelJob(command::CancelJob {
            id: "running".into(),
            cancelled_by: "admin".into(),
            at_ms: 7,
        }),
    );
    assert!(matches!(error, DomainError::Conflict(_)), "{error:?}");
}

#[test]
fn a_refused_worker_loss_requeues_none_of_its_jobs() {
    let (mut state, mut events) = populated();
    // w0 and w1 hold a job each; move `assigned` onto w0 so that w0 holds two, and make
    // the tenant's usage hold only one of them: the second release cannot be done.
    {
        let moved = state.jobs.get_mut("assigned").unwrap();
        moved.worker = Some("w0".into());
        state.workers.get_mut("w1").unwrap().jobs.clear();
        state.workers.get_mut("w1").unwrap().used = Resources::ZERO;
        let w0 = state.workers.get_mut("w0").unwrap();
        w0.jobs.insert("assigned".into());
        w0.used = Resources::new(500, 20, 0);
        let usage = state.usage.get_mut(&acme()).unwrap();
        usage.running_jobs = 1;
    }
    let error = assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "missed heartbeats".into(),
            at_ms: 8,
        }),
    );
    assert!(matches!(error, DomainError::Conflict(_)), "{error:?}");
    assert_eq!(state.worker("w0").unwrap().state, WorkerState::Busy);
}

#[test]
fn a_worker_loss_holding_a_job_that_does_not_exist_is_refused_without_change() {
    let (mut state, mut events) = populated();
    state
        .workers
        .get_mut("w0")
        .unwrap()
        .jobs
        .insert("ghost".into());
    assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::WorkerLost(command::WorkerLost {
            worker: "w0".into(),
            reason: "missed heartbeats".into(),
            at_ms: 8,
        }),
    );
}

#[test]
fn a_refused_pool_release_stops_no_worker_and_requeues_nothing() {
    let (mut state, mut events) = populated();
    apply(
        &mut state,
        CommandV1::PoolLifecycle(command::PoolLifecycle {
            pool: "p".into(),
            action: PoolAction::Drain,
            by: "admin".into(),
            reason: "maintenance".into(),
            at_ms: 10,
        }),
    )
    .unwrap();
    // w1 holds a job id that names no job: it cannot be emptied, so nothing is released,
    // not even w0's run (which the old code re-queued before failing on w1).
    state
        .workers
        .get_mut("w1")
        .unwrap()
        .jobs
        .insert("ghost".into());
    assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::ReleasePool(command::ReleasePool {
            pool: "p".into(),
            reason: "drain timeout".into(),
            at_ms: 11,
        }),
    );
    assert_eq!(state.job("running").unwrap().state, JobState::Running);
    assert!(state.worker("w0").unwrap().is_live());
}

#[test]
fn a_refused_tenant_deletion_cancels_none_of_its_jobs() {
    let (mut state, mut events) = populated();
    // The usage holds `assigned` but no longer `running`: the second cancel cannot release
    // its run, so the first must not happen either.
    state.usage.get_mut(&acme()).unwrap().running_jobs = 1;
    assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::DeleteTenant(command::DeleteTenant {
            id: acme(),
            cascade: true,
            at_ms: 12,
        }),
    );
    assert!(state.tenant(&acme()).is_some());
    assert_eq!(state.job("pending").unwrap().state, JobState::Pending);
    assert_eq!(state.job("assigned").unwrap().state, JobState::Assigned);
}

// ---- Hole 2: a pool is released only while it drains.

#[test]
fn a_drain_timeout_committed_after_the_pool_left_draining_stops_no_worker() {
    let (mut state, mut events) = populated();
    // The pool actor decided the release while `p` drained; by the time it commits, `p` is
    // active (or, say, resumed after a suspend): its workers must keep running.
    let error = assert_refused_without_change(
        &mut state,
        &mut events,
        CommandV1::ReleasePool(command::ReleasePool {
            pool: "p".into(),
            reason: "drain timeout".into(),
            at_ms: 13,
        }),
    );
    assert!(matches!(error, DomainError::Conflict(_)), "{error:?}");
    assert!(state.worker("w0").unwrap().is_live());
    assert_eq!(state.job("running").unwrap().state, JobState::Running);
}

#[test]
fn a_pool_release_while_draining_requeues_its_runs_and_stops_its_workers() {
    let (mut state, _events) = populated();
    apply(
        &mut state,
        CommandV1::PoolLifecycle(command::PoolLifecycle {
            pool: "p".into(),
            action: PoolAction::Drain,
            by: "admin".into(),
            reason: "maintenance".into(),
            at_ms: 10,
        }),
    )
    .unwrap();
    let released = apply(
        &mut state,
        CommandV1::ReleasePool(command::ReleasePool {
            pool: "p".into(),
            reason: "drain timeout".into(),
            at_ms: 11,
        }),
    );
    assert_eq!(released, Ok(CommandOutcome::WorkerLost { requeued: 2 }));
    for worker in ["w0", "w1"] {
        let found = state.worker(worker).unwrap();
        assert_eq!(
            (found.state, found.used),
            (WorkerState::Terminated, Resources::ZERO)
        );
    }
    assert_eq!(state.job("running").unwrap().state, JobState::Pending);
    assert_eq!(state.usage(&acme()).running_jobs, 0);
}

// ---- Hole 3: pool health comes from the replicated workers.

#[test]
fn pool_health_follows_the_live_workers_not_the_leaders_count() {
    let (mut state, mut events) = populated();
    // `p` must have 1 healthy worker and has 2 live ones: a count of 0 degrades nothing.
    let outcome = apply_expecting_no_change(
        &mut state,
        &mut events,
        CommandV1::PoolHealth(command::PoolHealth {
            pool: "p".into(),
            healthy: 0,
            at_ms: 14,
        }),
    );
    assert!(
        matches!(outcome, Ok(CommandOutcome::Pool(ref pool)) if pool.state == PoolState::Active)
    );
    // Both workers lost: the pool is degraded whatever count the leader sends...
    for worker in ["w0", "w1"] {
        apply(
            &mut state,
            CommandV1::WorkerLost(command::WorkerLost {
                worker: worker.into(),
                reason: "gone".into(),
                at_ms: 15,
            }),
        )
        .unwrap();
    }
    apply(
        &mut state,
        CommandV1::PoolHealth(command::PoolHealth {
            pool: "p".into(),
            healthy: 7,
            at_ms: 16,
        }),
    )
    .unwrap();
    assert_eq!(state.pool("p").unwrap().state, PoolState::Degraded);
    // ...and active again only once a worker is back.
    let outcome = apply_expecting_no_change(
        &mut state,
        &mut events,
        CommandV1::PoolHealth(command::PoolHealth {
            pool: "p".into(),
            healthy: 5,
            at_ms: 17,
        }),
    );
    assert!(
        matches!(outcome, Ok(CommandOutcome::Pool(ref pool)) if pool.state == PoolState::Degraded)
    );
    apply(
        &mut state,
        CommandV1::RegisterWorker(command::RegisterWorker {
            registration: registration("w0", "p"),
            at_ms: 18,
            provisioned_at_ms: None,
        }),
    )
    .unwrap();
    apply(
        &mut state,
        CommandV1::PoolHealth(command::PoolHealth {
            pool: "p".into(),
            healthy: 0,
            at_ms: 19,
        }),
    )
    .unwrap();
    assert_eq!(state.pool("p").unwrap().state, PoolState::Active);
}

// ---- Hole 4: a tenant is validated in apply, whoever proposed it.

#[test]
fn a_raw_create_tenant_with_an_invalid_field_is_refused_naming_it() {
    let valid = new_tenant("raw");
    let with = |change: fn(&mut Tenant)| {
        let mut tenant = valid.clone();
        change(&mut tenant);
        tenant
    };
    let cases: Vec<(&str, Tenant)> = vec![
        ("weight", with(|tenant| tenant.weight = 0.0)),
        ("weight", with(|tenant| tenant.weight = 1_000.0)),
        ("weight", with(|tenant| tenant.weight = f64::NAN)),
        (
            "display_name",
            with(|tenant| tenant.display_name = "  ".into()),
        ),
        (
            "display_name",
            with(|tenant| tenant.display_name = "x".repeat(201)),
        ),
        (
            "display_name",
            with(|tenant| tenant.display_name = "bell\u{7}".into()),
        ),
        (
            "labels.-bad",
            with(|tenant| {
                tenant.labels.insert("-bad".into(), "x".into());
            }),
        ),
        ("quota.cpu_m", with(|tenant| tenant.quota.cpu_m = u64::MAX)),
        (
            "quota.max_pending_jobs",
            with(|tenant| tenant.quota.max_pending_jobs = 0),
        ),
    ];
    let (mut state, mut events) = populated();
    for (field, tenant) in cases {
        let error = assert_refused_without_change(
            &mut state,
            &mut events,
            CommandV1::CreateTenant(command::CreateTenant { tenant }),
        );
        assert!(
            matches!(&error, DomainError::Invalid { field: named, .. } if named == field),
            "expected {field}, got {error:?}"
        );
    }
    // An id that is not a slug cannot even be decoded: the raw entry is refused as a whole.
    let mut raw = serde_json::to_value(Command::V1(CommandV1::CreateTenant(
        command::CreateTenant {
            tenant: valid.clone(),
        },
    )))
    .unwrap();
    raw["V1"]["CreateTenant"]["tenant"]["id"] = "Not_A_Slug".into();
    let mut writes = WriteBatch::new();
    let response = StateMachine::apply(
        &mut state,
        1,
        &serde_json::to_vec(&raw).unwrap(),
        &mut writes,
    );
    let result = crate::state::decode_result(&response).unwrap();
    assert!(
        matches!(&result, Err(DomainError::Invalid { field, .. }) if field == "command"),
        "{result:?}"
    );
    assert!(writes.is_empty());
    assert!(
        apply(
            &mut state,
            CommandV1::CreateTenant(command::CreateTenant { tenant: valid })
        )
        .is_ok()
    );
}

// ---- Hole 5: nothing in apply panics or overflows.

#[test]
fn provisioning_counts_saturate_instead_of_overflowing() {
    let (mut state, _events) = populated();
    for _ in 0..2 {
        apply(
            &mut state,
            CommandV1::CountProvisioning(command::CountProvisioning {
                pool: "d".into(),
                succeeded: u64::MAX,
                failed: u64::MAX,
            }),
        )
        .unwrap();
    }
    let counts = state.pool("d").unwrap().provisioning;
    assert_eq!((counts.succeeded, counts.failed), (u64::MAX, u64::MAX));
    assert_eq!(counts.success_rate(), Some(0.5));
}

#[test]
fn a_submitted_job_that_is_not_fresh_is_refused_not_stored() {
    let (mut state, mut events) = populated();
    let mut running = job("forged-running", 100, 0);
    running.state = JobState::Running;
    let mut held = job("forged-held", 100, 0);
    held.worker = Some("w0".into());
    let mut retried = job("forged-retried", 100, 0);
    retried.attempt = u32::MAX;
    let outcome = apply_expecting_no_change(
        &mut state,
        &mut events,
        CommandV1::SubmitJobs(command::SubmitJobs {
            jobs: vec![running, held, retried],
            max_burst_percent: None,
        }),
    );
    let Ok(CommandOutcome::JobsSubmitted(results)) = outcome else {
        panic!("unexpected {outcome:?}");
    };
    for result in results {
        assert!(
            matches!(&result, Err(DomainError::Invalid { field, .. }) if field == "state"),
            "{result:?}"
        );
    }
}

#[test]
fn deleting_a_tenant_cancels_every_live_job_and_frees_their_workers() {
    let (mut state, _events) = populated();
    let deleted = apply(
        &mut state,
        CommandV1::DeleteTenant(command::DeleteTenant {
            id: acme(),
            cascade: true,
            at_ms: 20,
        }),
    );
    assert!(matches!(deleted, Ok(CommandOutcome::TenantDeleted { .. })));
    for id in ["pending", "assigned", "running"] {
        assert_eq!(state.job(id).unwrap().state, JobState::Cancelled, "{id}");
    }
    assert_eq!(state.job("done").unwrap().state, JobState::Succeeded);
    for worker in ["w0", "w1"] {
        assert_eq!(state.worker(worker).unwrap().used, Resources::ZERO);
    }
    assert_eq!(state.pending_in("q").count(), 0);
    assert!(state.tenant(&acme()).is_none());
}

// ---- Every kind of refusal changes nothing.

type Corruption = fn(&mut HodeiState);

fn untouched(_: &mut HodeiState) {}

/// One refused command of each kind (several for some), with the state it meets.
fn refused_commands() -> Vec<(&'static str, Corruption, CommandV1)> {
    let invalid_tenant = {
        let mut tenant = new_tenant("new");
        tenant.weight = -1.0;
        tenant
    };
    let pool = |id: &str| {
        Pool::new(
            id,
            PoolType::Static,
            PoolProvider::Static,
            Resources::new(1_000, 1_000, 0),
            0,
            10,
            0,
        )
    };
    let queue = |id: &str, pools: &[&str]| Queue {
        id: id.into(),
        pools: pools.iter().map(|pool| pool.to_string()).collect(),
        policy: QueuePolicy::Fifo,
        created_at_ms: 0,
        updated_at_ms: 0,
    };
    let ghost = || TenantId::parse("ghost").unwrap();
    vec![
        (
            "duplicate tenant",
            untouched,
            CommandV1::CreateTenant(command::CreateTenant {
                tenant: new_tenant("acme"),
            }),
        ),
        (
            "invalid tenant",
            untouched,
            CommandV1::CreateTenant(command::CreateTenant {
                tenant: invalid_tenant,
            }),
        ),
        (
            "update of an unknown tenant",
            untouched,
            CommandV1::UpdateTenant(command::UpdateTenant {
                id: ghost(),
                patch: TenantPatch::default(),
                at_ms: 30,
            }),
        ),
        (
            "invalid tenant patch",
            untouched,
            CommandV1::UpdateTenant(command::UpdateTenant {
                id: acme(),
                patch: TenantPatch {
                    weight: Some(0.0),
                    ..TenantPatch::default()
                },
                at_ms: 30,
            }),
        ),
        (
            "deletion of an unknown tenant",
            untouched,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id: ghost(),
                cascade: true,
                at_ms: 30,
            }),
        ),
        (
            "deletion of the default tenant",
            untouched,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id: TenantId::default_tenant(),
                cascade: true,
                at_ms: 30,
            }),
        ),
        (
            "deletion of a tenant with live jobs without cascade",
            untouched,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id: acme(),
                cascade: false,
                at_ms: 30,
            }),
        ),
        (
            "cascading deletion whose cancels cannot all be done",
            forget_usage_of_acme,
            CommandV1::DeleteTenant(command::DeleteTenant {
                id: acme(),
                cascade: true,
                at_ms: 30,
            }),
        ),
        (
            "quota of an unknown tenant",
            untouched,
            CommandV1::SetQuota(command::SetQuota {
                id: ghost(),
                quota: Quota::default(),
                at_ms: 30,
            }),
        ),
        (
            "invalid quota",
            untouched,
            CommandV1::SetQuota(command::SetQuota {
                id: acme(),
                quota: Quota {
                    max_pending_jobs: 0,
                    ..Quota::default()
                },
                at_ms: 30,
            }),
        ),
        (
            "second open burst session",
            untouched,
            CommandV1::RequestBurst(command::RequestBurst {
                tenant: acme(),
                session_id: "s2".into(),
                request: BurstRequest {
                    ceiling_percentage: 120,
                    duration_ms: MINUTE,
                    reason: "again".into(),
                },
                requested_by: "admin".into(),
                policy: policy(),
                at_ms: 30,
            }),
        ),
        (
            "burst of an unknown tenant",
            untouched,
            CommandV1::RequestBurst(command::RequestBurst {
                tenant: ghost(),
                session_id: "s9".into(),
                request: BurstRequest {
                    ceiling_percentage: 120,
                    duration_ms: MINUTE,
                    reason: "x".into(),
                },
                requested_by: "admin".into(),
                policy: policy(),
                at_ms: 30,
            }),
        ),
        (
            "approval of an unknown session",
            untouched,
            CommandV1::ApproveBurst(command::ApproveBurst {
                tenant: acme(),
                session_id: "nope".into(),
                approved_by: "admin".into(),
                policy: policy(),
                at_ms: 30,
            }),
        ),
        (
            "expiry of a session that is not active",
            untouched,
            CommandV1::EndBurst(command::EndBurst {
                tenant: acme(),
                session_id: "s1".into(),
                reason: EndReason::Expired,
                ended_by: "leader".into(),
                at_ms: 30,
            }),
        ),
        (
            "invalid queue",
            untouched,
            CommandV1::CreateQueue(command::CreateQueue {
                queue: queue("status", &["p"]),
            }),
        ),
        (
            "duplicate queue",
            untouched,
            CommandV1::CreateQueue(command::CreateQueue {
                queue: queue("q", &["p"]),
            }),
        ),
        (
            "queue over an unknown pool",
            untouched,
            CommandV1::CreateQueue(command::CreateQueue {
                queue: queue("q2", &["nope"]),
            }),
        ),
        (
            "update of an unknown queue",
            untouched,
            CommandV1::UpdateQueue(command::UpdateQueue {
                id: "nope".into(),
                pools: None,
                policy: None,
                at_ms: 30,
            }),
        ),
        (
            "queue moved to an unknown pool",
            untouched,
            CommandV1::UpdateQueue(command::UpdateQueue {
                id: "q".into(),
                pools: Some(vec!["nope".into()]),
                policy: Some(QueuePolicy::Edf),
                at_ms: 30,
            }),
        ),
        (
            "deletion of a queue with live jobs",
            untouched,
            CommandV1::DeleteQueue(command::DeleteQueue { id: "q".into() }),
        ),
        (
            "cancel of an unknown job",
            untouched,
            CommandV1::CancelJob(command::CancelJob {
                id: "nope".into(),
                cancelled_by: "admin".into(),
                at_ms: 30,
            }),
        ),
        (
            "cancel of a finished job",
            untouched,
            CommandV1::CancelJob(command::CancelJob {
                id: "done".into(),
                cancelled_by: "admin".into(),
                at_ms: 30,
            }),
        ),
        (
            "cancel of a run the usage does not hold",
            forget_usage_of_acme,
            CommandV1::CancelJob(command::CancelJob {
                id: "assigned".into(),
                cancelled_by: "admin".into(),
                at_ms: 30,
            }),
        ),
        (
            "run end the usage does not hold",
            forget_usage_of_acme,
            CommandV1::JobFinished(command::JobFinished {
                report: report("running", "w0"),
            }),
        ),
        (
            "worker with an invalid id",
            untouched,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: registration("bad id", "p"),
                at_ms: 30,
                provisioned_at_ms: None,
            }),
        ),
        (
            "worker in an unknown pool",
            untouched,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: registration("w9", "nope"),
                at_ms: 30,
                provisioned_at_ms: None,
            }),
        ),
        (
            "worker moving pools",
            untouched,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: registration("w0", "d"),
                at_ms: 30,
                provisioned_at_ms: None,
            }),
        ),
        (
            "restart whose lost run the usage does not hold",
            forget_usage_of_acme,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: registration("w0", "p"),
                at_ms: 30,
                provisioned_at_ms: None,
            }),
        ),
        (
            "loss of an unknown worker",
            untouched,
            CommandV1::WorkerLost(command::WorkerLost {
                worker: "nope".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "loss of a worker whose runs the usage does not hold",
            forget_usage_of_acme,
            CommandV1::WorkerLost(command::WorkerLost {
                worker: "w0".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "invalid pool",
            untouched,
            CommandV1::CreatePool(command::CreatePool { pool: pool("Bad") }),
        ),
        (
            "duplicate pool",
            untouched,
            CommandV1::CreatePool(command::CreatePool { pool: pool("p") }),
        ),
        (
            "update of an unknown pool",
            untouched,
            CommandV1::UpdatePool(command::UpdatePool {
                id: "nope".into(),
                patch: PoolPatch::default(),
            }),
        ),
        (
            "dynamic settings on a static pool",
            untouched,
            CommandV1::UpdatePool(command::UpdatePool {
                id: "p".into(),
                patch: PoolPatch {
                    desired_size: Some(3),
                    ..PoolPatch::default()
                },
            }),
        ),
        (
            "pool update that breaks its bounds",
            untouched,
            CommandV1::UpdatePool(command::UpdatePool {
                id: "p".into(),
                patch: PoolPatch {
                    min_size: Some(20),
                    ..PoolPatch::default()
                },
            }),
        ),
        (
            "deletion of a pool a queue uses",
            untouched,
            CommandV1::DeletePool(command::DeletePool { id: "p".into() }),
        ),
        (
            "deletion of an unknown pool",
            untouched,
            CommandV1::DeletePool(command::DeletePool { id: "nope".into() }),
        ),
        (
            "health of an unknown pool",
            untouched,
            CommandV1::PoolHealth(command::PoolHealth {
                pool: "nope".into(),
                healthy: 1,
                at_ms: 30,
            }),
        ),
        (
            "provisioning of an unknown pool",
            untouched,
            CommandV1::CountProvisioning(command::CountProvisioning {
                pool: "nope".into(),
                succeeded: 1,
                failed: 0,
            }),
        ),
        (
            "stop of an unknown worker",
            untouched,
            CommandV1::StopWorker(command::StopWorker {
                worker: "nope".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "stop of a busy worker",
            untouched,
            CommandV1::StopWorker(command::StopWorker {
                worker: "w0".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "release of an unknown pool",
            untouched,
            CommandV1::ReleasePool(command::ReleasePool {
                pool: "nope".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "release of a pool that is not draining",
            untouched,
            CommandV1::ReleasePool(command::ReleasePool {
                pool: "p".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "lifecycle of an unknown pool",
            untouched,
            CommandV1::PoolLifecycle(command::PoolLifecycle {
                pool: "nope".into(),
                action: PoolAction::Drain,
                by: "admin".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "illegal lifecycle action",
            untouched,
            CommandV1::PoolLifecycle(command::PoolLifecycle {
                pool: "p".into(),
                action: PoolAction::Decommission,
                by: "admin".into(),
                reason: "x".into(),
                at_ms: 30,
            }),
        ),
        (
            "scaling policy of a static pool",
            untouched,
            CommandV1::SetScaling(command::SetScaling {
                pool: "p".into(),
                change: command::ScalingChange::PutPolicy(scaling_policy(0.6)),
            }),
        ),
        (
            "scaling policy of an unknown pool",
            untouched,
            CommandV1::SetScaling(command::SetScaling {
                pool: "nope".into(),
                change: command::ScalingChange::PutPolicy(scaling_policy(0.6)),
            }),
        ),
        (
            "invalid scaling policy",
            untouched,
            CommandV1::SetScaling(command::SetScaling {
                pool: "d".into(),
                change: command::ScalingChange::PutPolicy(scaling_policy(0.0)),
            }),
        ),
        (
            "deleting an unknown scaling trigger",
            untouched,
            CommandV1::SetScaling(command::SetScaling {
                pool: "d".into(),
                change: command::ScalingChange::DeleteTrigger("nope".into()),
            }),
        ),
        (
            "invalid cooldown",
            untouched,
            CommandV1::SetScaling(command::SetScaling {
                pool: "d".into(),
                change: command::ScalingChange::Cooldown(hodei_domain::autoscale::Cooldown {
                    max_added_per_minute: 0,
                    ..Default::default()
                }),
            }),
        ),
        (
            "scaling from a size the pool no longer has",
            untouched,
            CommandV1::ScalePool(command::ScalePool {
                pool: "d".into(),
                record: scaling_record(7, 8),
                fired_schedules: Vec::new(),
            }),
        ),
        (
            "scaling beyond the pool's max",
            untouched,
            CommandV1::ScalePool(command::ScalePool {
                pool: "d".into(),
                record: scaling_record(0, 11),
                fired_schedules: Vec::new(),
            }),
        ),
        (
            "scaling a static pool",
            untouched,
            CommandV1::ScalePool(command::ScalePool {
                pool: "p".into(),
                record: scaling_record(1, 2),
                fired_schedules: Vec::new(),
            }),
        ),
        (
            "prices of an unknown pool",
            untouched,
            CommandV1::SetPoolPricing(command::SetPoolPricing {
                pool: "nope".into(),
                changes: hodei_domain::cost::PricingChanges {
                    cpu_core_hour_micros: Some(1),
                    ..Default::default()
                },
                tiers: None,
                at_ms: 30,
            }),
        ),
        (
            "a burst premium below the price",
            untouched,
            CommandV1::SetPoolPricing(command::SetPoolPricing {
                pool: "d".into(),
                changes: hodei_domain::cost::PricingChanges {
                    burst_premium_percent: Some(50),
                    ..Default::default()
                },
                tiers: None,
                at_ms: 30,
            }),
        ),
        (
            "prices with nothing to change",
            untouched,
            CommandV1::SetPoolPricing(command::SetPoolPricing {
                pool: "d".into(),
                changes: Default::default(),
                tiers: None,
                at_ms: 30,
            }),
        ),
        (
            "a token for a tenant that does not exist",
            untouched,
            CommandV1::IssueToken(command::IssueToken {
                token: access_token("t1", Some("ghost"), &[hodei_domain::access::Scope::Read]),
                bootstrap: false,
            }),
        ),
        (
            "a tenant token without scopes",
            untouched,
            CommandV1::IssueToken(command::IssueToken {
                token: access_token("t1", Some("acme"), &[]),
                bootstrap: false,
            }),
        ),
        (
            "an admin token outside the first start",
            untouched,
            CommandV1::IssueToken(command::IssueToken {
                token: access_token("t1", None, &[]),
                bootstrap: false,
            }),
        ),
        (
            "revoking a token that does not exist",
            untouched,
            CommandV1::RevokeToken(command::RevokeToken {
                id: "nope".into(),
                tenant: None,
            }),
        ),
        (
            "a join token for a pool that does not exist",
            untouched,
            CommandV1::IssueJoinToken(command::IssueJoinToken {
                token: hodei_domain::access::JoinToken {
                    id: "j1".into(),
                    pool: "nope".into(),
                    name: "n".into(),
                    digest: [0; 32],
                    created_at_ms: 30,
                    expires_at_ms: None,
                },
            }),
        ),
        (
            "revoking a join token of another pool",
            untouched,
            CommandV1::RevokeJoinToken(command::RevokeJoinToken {
                pool: "p".into(),
                id: "nope".into(),
            }),
        ),
        (
            "settling an unknown scaling decision",
            untouched,
            CommandV1::SettleScaling(command::SettleScaling {
                pool: "d".into(),
                seq: 9,
                outcome: hodei_domain::autoscale::ScalingOutcome::Succeeded,
                error: None,
                reached_at_ms: None,
                at_ms: 30,
            }),
        ),
    ]
}

fn scaling_policy(target: f64) -> hodei_domain::autoscale::ScalingPolicy {
    hodei_domain::autoscale::ScalingPolicy {
        id: "util".into(),
        kind: hodei_domain::autoscale::PolicyKind::TargetTracking {
            metric: hodei_domain::autoscale::ScalingMetric::Utilization,
            target,
        },
        enabled: true,
        created_at_ms: 1,
    }
}

fn scaling_record(from: u32, to: u32) -> hodei_domain::autoscale::ScalingRecord {
    hodei_domain::autoscale::ScalingRecord {
        seq: 0,
        at_ms: 30,
        source: "evaluation".into(),
        forced: false,
        metrics: Vec::new(),
        from,
        to,
        recommended: to,
        proposals: Vec::new(),
        reason: "test".into(),
        outcome: hodei_domain::autoscale::ScalingOutcome::InProgress,
        error: None,
        reached_at_ms: None,
        settled_at_ms: None,
    }
}

/// Commands that are accepted as a whole but whose every part is refused: they too must
/// change nothing.
fn wholly_refused_batches() -> Vec<(&'static str, Corruption, CommandV1)> {
    let mut too_big = job("too-big", 5_000, 0);
    too_big.spec.queue = "q".into();
    vec![
        (
            "submission of only refused jobs",
            untouched,
            CommandV1::SubmitJobs(command::SubmitJobs {
                jobs: vec![too_big, job("running", 100, 0)],
                max_burst_percent: None,
            }),
        ),
        (
            "plan of only refused assignments",
            untouched,
            CommandV1::AssignJobs(command::AssignJobs {
                assignments: vec![
                    Assignment {
                        job: "running".into(),
                        worker: "w1".into(),
                        burst: false,
                    },
                    Assignment {
                        job: "pending".into(),
                        worker: "nope".into(),
                        burst: false,
                    },
                ],
                at_ms: 30,
                sla_changes: Vec::new(),
            }),
        ),
        (
            "stale run reports",
            untouched,
            CommandV1::RunReports(command::RunReports {
                started: vec![StartReport {
                    job: "running".into(),
                    attempt: 2,
                    worker: "w0".into(),
                    at_ms: 30,
                }],
                finished: vec![report("done", "w0"), report("assigned", "w0")],
            }),
        ),
        (
            "batched run end the usage does not hold",
            forget_usage_of_acme,
            CommandV1::RunReports(command::RunReports {
                started: Vec::new(),
                finished: vec![report("running", "w0")],
            }),
        ),
        (
            "stale run end",
            untouched,
            CommandV1::JobFinished(command::JobFinished {
                report: report("running", "w1"),
            }),
        ),
    ]
}

fn access_token(
    id: &str,
    tenant: Option<&str>,
    scopes: &[hodei_domain::access::Scope],
) -> hodei_domain::access::AccessToken {
    hodei_domain::access::AccessToken {
        id: id.into(),
        tenant: tenant.map(|tenant| TenantId::parse(tenant).unwrap()),
        name: "n".into(),
        scopes: scopes.iter().copied().collect(),
        digest: [7; 32],
        created_at_ms: 30,
        expires_at_ms: None,
        created_by: "admin".into(),
    }
}

#[test]
fn tokens_go_with_their_tenant_the_first_starts_is_issued_once_and_all_survive_a_snapshot() {
    let (mut state, _events) = populated();
    let scopes = [hodei_domain::access::Scope::Submit];
    let issued = apply(
        &mut state,
        CommandV1::IssueToken(command::IssueToken {
            token: access_token("t1", Some("acme"), &scopes),
            bootstrap: false,
        }),
    );
    assert!(issued.is_ok(), "{issued:?}");
    let first = apply(
        &mut state,
        CommandV1::IssueToken(command::IssueToken {
            token: access_token("a1", None, &[]),
            bootstrap: true,
        }),
    );
    assert!(first.is_ok(), "{first:?}");
    let again = apply(
        &mut state,
        CommandV1::IssueToken(command::IssueToken {
            token: access_token("a2", None, &[]),
            bootstrap: true,
        }),
    );
    assert!(again.is_err(), "a second first-start token: {again:?}");
    // A snapshot carries the tokens and the first start's mark.
    let mut restored = HodeiState::new(broadcast::channel(4).0);
    restored
        .restore(&state.snapshot().unwrap(), &mut WriteBatch::new())
        .unwrap();
    assert!(restored.access_token("t1").is_some() && restored.admin_token_issued());
    // Deleting the tenant drops its tokens: a tenant created again under the id has none.
    let deleted = apply(
        &mut state,
        CommandV1::DeleteTenant(command::DeleteTenant {
            id: acme(),
            cascade: true,
            at_ms: 50,
        }),
    );
    assert!(deleted.is_ok(), "{deleted:?}");
    assert!(state.access_token("t1").is_none());
    assert!(state.access_token("a1").is_some());
}

#[test]
fn every_refused_command_changes_nothing() {
    for (name, corrupt, command) in refused_commands() {
        let (mut state, mut events) = populated();
        corrupt(&mut state);
        let result = apply_expecting_no_change(&mut state, &mut events, command);
        assert!(
            result.is_err(),
            "{name}: expected a refusal, got {result:?}"
        );
    }
    for (name, corrupt, command) in wholly_refused_batches() {
        let (mut state, mut events) = populated();
        corrupt(&mut state);
        let result = apply_expecting_no_change(&mut state, &mut events, command);
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    // Bytes no version can read.
    let (mut state, _events) = populated();
    let before = fingerprint(&state);
    let mut writes = WriteBatch::new();
    StateMachine::apply(&mut state, 1, b"\x01\xff\xff\xff", &mut writes);
    assert!(writes.is_empty());
    assert!(fingerprint(&state) == before);
}

/// A command drawn from a small universe of ids, valid or not.
fn any_command() -> impl Strategy<Value = CommandV1> {
    let job_id = prop::sample::select(vec!["pending", "assigned", "running", "done", "j0", "j1"]);
    let worker_id = prop::sample::select(vec!["w0", "w1", "w2"]);
    let pool_id = prop::sample::select(vec!["p", "d", "nope"]);
    prop_oneof![
        (job_id.clone(), 50u64..1_500).prop_map(|(id, cpu_m)| CommandV1::SubmitJobs(
            command::SubmitJobs {
                jobs: vec![job(id, cpu_m, 1)],
                max_burst_percent: None,
            }
        )),
        (job_id.clone(), worker_id.clone()).prop_map(|(job, worker)| CommandV1::AssignJobs(
            command::AssignJobs {
                assignments: vec![Assignment {
                    job: job.into(),
                    worker: worker.into(),
                    burst: false,
                }],
                at_ms: 40,
                sla_changes: Vec::new(),
            }
        )),
        (job_id.clone(), worker_id.clone(), 1u32..3).prop_map(|(job, worker, attempt)| {
            CommandV1::JobStarted(command::JobStarted {
                job: job.into(),
                attempt,
                worker: worker.into(),
                at_ms: 41,
            })
        }),
        (job_id.clone(), worker_id.clone()).prop_map(|(job, worker)| CommandV1::JobFinished(
            command::JobFinished {
                report: report(job, worker),
            }
        )),
        job_id
            .clone()
            .prop_map(|id| CommandV1::CancelJob(command::CancelJob {
                id: id.into(),
                cancelled_by: "prop".into(),
                at_ms: 42,
            })),
        worker_id
            .clone()
            .prop_map(|worker| CommandV1::WorkerLost(command::WorkerLost {
                worker: worker.into(),
                reason: "prop".into(),
                at_ms: 43,
            })),
        (worker_id.clone(), pool_id.clone()).prop_map(|(worker, pool)| {
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: registration(worker, pool),
                at_ms: 44,
                provisioned_at_ms: None,
            })
        }),
        worker_id.prop_map(|worker| CommandV1::StopWorker(command::StopWorker {
            worker: worker.into(),
            reason: "prop".into(),
            at_ms: 45,
        })),
        pool_id
            .clone()
            .prop_map(|pool| CommandV1::ReleasePool(command::ReleasePool {
                pool: pool.into(),
                reason: "prop".into(),
                at_ms: 46,
            })),
        (pool_id.clone(), 0u32..4).prop_map(|(pool, healthy)| CommandV1::PoolHealth(
            command::PoolHealth {
                pool: pool.into(),
                healthy,
                at_ms: 47,
            }
        )),
        (pool_id, prop::sample::select(PoolAction::ALL.to_vec())).prop_map(|(pool, action)| {
            CommandV1::PoolLifecycle(command::PoolLifecycle {
                pool: pool.into(),
                action,
                by: "prop".into(),
                reason: "prop".into(),
                at_ms: 48,
            })
        }),
        any::<bool>().prop_map(|cascade| CommandV1::DeleteTenant(command::DeleteTenant {
            id: acme(),
            cascade,
            at_ms: 49,
        })),
        prop::sample::select(vec!["p", "d", "nope"])
            .prop_map(|id| CommandV1::DeletePool(command::DeletePool { id: id.into() })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever sequence of commands arrives, each one refused leaves the state, the batch
    /// and the event stream as they were.
    #[test]
    fn no_sequence_lets_a_refusal_change_anything(
        commands in proptest::collection::vec(any_command(), 1..40),
        corrupt_at in proptest::option::of(0usize..40),
    ) {
        let (mut state, mut events) = populated();
        for (step, command) in commands.into_iter().enumerate() {
            if corrupt_at == Some(step) {
                forget_usage_of_acme(&mut state);
            }
            drain(&mut events);
            let before = fingerprint(&state);
            let mut writes = WriteBatch::new();
            let result = apply_into(&mut state, command.clone(), &mut writes);
            if result.is_err() {
                prop_assert!(writes.is_empty(), "{:?} refused with writes", command);
                prop_assert!(fingerprint(&state) == before, "{:?} refused but changed the state", command);
                prop_assert!(matches!(events.try_recv(), Err(TryRecvError::Empty)), "{:?} refused but emitted", command);
            }
        }
    }
}
