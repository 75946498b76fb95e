//! Apply of autoscaling and prices: a decision sets the desired size and replaces the one
//! in progress, the history stays bounded, and everything (prices too) survives a
//! snapshot and a reload (what a new leader or a member joining by snapshot reads).

use std::sync::Arc;

use hodei_cluster::{SledStorage, StateMachine, Storage, WriteBatch};
use tokio::sync::broadcast;

use crate::state::command::{self, CommandOutcome, CommandResult, ScalingChange};
use crate::state::hodei_state::HodeiState;
use crate::state::{Command, CommandV1};
use hodei_domain::autoscale::{
    Cooldown, HISTORY_KEPT, PolicyKind, ScalingMetric, ScalingOutcome, ScalingPolicy, ScalingRecord,
};
use hodei_domain::pool::{Pool, PoolProvider, PoolType};
use hodei_domain::quota::Quota;
use hodei_domain::resources::Resources;

fn apply(state: &mut HodeiState, command: CommandV1, writes: &mut WriteBatch) -> CommandResult {
    let response = StateMachine::apply(state, 1, &Command::V1(command).encode(), writes);
    crate::state::decode_result(&response).unwrap()
}

fn record(from: u32, to: u32, at_ms: u64, outcome: ScalingOutcome) -> ScalingRecord {
    ScalingRecord {
        seq: 0,
        at_ms,
        source: "evaluation".into(),
        forced: false,
        metrics: vec![("utilization".into(), 0.9)],
        from,
        to,
        recommended: to,
        proposals: Vec::new(),
        reason: "test".into(),
        outcome,
        error: None,
        reached_at_ms: None,
        settled_at_ms: None,
    }
}

fn scale(state: &mut HodeiState, record: ScalingRecord, writes: &mut WriteBatch) -> CommandResult {
    apply(
        state,
        CommandV1::ScalePool(command::ScalePool {
            pool: "dyn".into(),
            record,
            fired_schedules: Vec::new(),
        }),
        writes,
    )
}

#[test]
fn decisions_set_the_size_replace_the_one_in_progress_and_survive_snapshot_and_reload() {
    let storage = SledStorage::temporary().unwrap();
    let keyspace: Arc<dyn hodei_cluster::Keyspace> = storage.keyspace("state").unwrap();
    let mut state = super::jobs_tests::setup(Quota::default(), 0);
    let mut writes = WriteBatch::new();
    let pool = Pool::new(
        "dyn",
        PoolType::Dynamic,
        PoolProvider::Simulated,
        Resources::new(1_000, 1_000, 0),
        1,
        10,
        0,
    );
    apply(
        &mut state,
        CommandV1::CreatePool(command::CreatePool { pool }),
        &mut writes,
    )
    .unwrap();
    let policy = ScalingPolicy {
        id: "util".into(),
        kind: PolicyKind::TargetTracking {
            metric: ScalingMetric::Utilization,
            target: 0.6,
        },
        enabled: true,
        created_at_ms: 1,
    };
    for change in [
        ScalingChange::PutPolicy(policy.clone()),
        ScalingChange::Cooldown(Cooldown {
            scale_up_s: 5,
            ..Cooldown::default()
        }),
    ] {
        apply(
            &mut state,
            CommandV1::SetScaling(command::SetScaling {
                pool: "dyn".into(),
                change,
            }),
            &mut writes,
        )
        .unwrap();
    }
    let Ok(CommandOutcome::Scaled { seq, pool }) = scale(
        &mut state,
        record(1, 4, 100, ScalingOutcome::InProgress),
        &mut writes,
    ) else {
        panic!("the first decision applies");
    };
    assert_eq!((seq, pool.desired_size), (1, 4));
    // Held back: recorded, the size unchanged.
    let held = scale(
        &mut state,
        record(4, 4, 110, ScalingOutcome::BlockedByCooldown),
        &mut writes,
    );
    assert!(
        matches!(held, Ok(CommandOutcome::Scaled { seq: 2, ref pool }) if pool.desired_size == 4),
        "{held:?}"
    );
    scale(
        &mut state,
        record(4, 6, 120, ScalingOutcome::InProgress),
        &mut writes,
    )
    .unwrap();
    let scaling = state.scaling("dyn").unwrap().clone();
    let outcomes: Vec<ScalingOutcome> = scaling.history.iter().map(|kept| kept.outcome).collect();
    assert_eq!(
        outcomes,
        [
            ScalingOutcome::Cancelled,
            ScalingOutcome::BlockedByCooldown,
            ScalingOutcome::InProgress
        ]
    );
    assert_eq!(scaling.memory.last_scale_up_ms, Some(120));
    assert_eq!(scaling.memory.added, [(100, 3), (120, 2)]);
    apply(
        &mut state,
        CommandV1::SettleScaling(command::SettleScaling {
            pool: "dyn".into(),
            seq: 3,
            outcome: ScalingOutcome::Succeeded,
            error: None,
            reached_at_ms: Some(125),
            at_ms: 130,
        }),
        &mut writes,
    )
    .unwrap();
    let settled_twice = apply(
        &mut state,
        CommandV1::SettleScaling(command::SettleScaling {
            pool: "dyn".into(),
            seq: 3,
            outcome: ScalingOutcome::Failed,
            error: None,
            reached_at_ms: None,
            at_ms: 131,
        }),
        &mut writes,
    );
    assert!(settled_twice.is_err(), "{settled_twice:?}");

    apply(
        &mut state,
        CommandV1::SetPoolPricing(command::SetPoolPricing {
            pool: "dyn".into(),
            changes: hodei_domain::cost::PricingChanges {
                cpu_core_hour_micros: Some(80_000),
                ..Default::default()
            },
            tiers: None,
            at_ms: 140,
        }),
        &mut writes,
    )
    .unwrap();
    assert_eq!(
        state.pool("dyn").unwrap().pricing.cpu_core_hour_micros,
        80_000
    );
    assert_eq!(state.prices("dyn").unwrap().periods.len(), 2);

    // A snapshot carries it to a member that joins by snapshot.
    let mut joined = HodeiState::new(broadcast::channel(16).0);
    joined
        .restore(&state.snapshot().unwrap(), &mut WriteBatch::new())
        .unwrap();
    assert_eq!(joined.scaling("dyn"), state.scaling("dyn"));
    assert_eq!(joined.pool("dyn").unwrap().desired_size, 6);
    assert_eq!(joined.prices("dyn"), state.prices("dyn"));
    // What apply wrote loads back (a restart, a new leader).
    keyspace.write(writes).unwrap();
    let loaded = HodeiState::load(keyspace.as_ref(), broadcast::channel(16).0).unwrap();
    assert_eq!(loaded.scaling("dyn"), state.scaling("dyn"));
    assert_eq!(loaded.scaling("dyn").unwrap().policies, [policy]);
    assert_eq!(loaded.prices("dyn"), state.prices("dyn"));

    // The history keeps its newest records.
    let mut writes = WriteBatch::new();
    let mut size = 6;
    for round in 0..(HISTORY_KEPT as u64 + 20) {
        let next = if size == 6 { 7 } else { 6 };
        scale(
            &mut state,
            record(size, next, 1_000 + round, ScalingOutcome::InProgress),
            &mut writes,
        )
        .unwrap();
        size = next;
    }
    let history = &state.scaling("dyn").unwrap().history;
    assert_eq!(history.len(), HISTORY_KEPT);
    assert_eq!(history.last().unwrap().seq, 3 + HISTORY_KEPT as u64 + 20);
}

#[test]
fn a_finished_run_lands_in_the_cost_ledger_hour_by_hour_and_survives_snapshot_and_reload() {
    use hodei_domain::job::{CommandSpec, Job, JobSpec, JobState, Priority};
    let storage = SledStorage::temporary().unwrap();
    let keyspace: Arc<dyn hodei_cluster::Keyspace> = storage.keyspace("state").unwrap();
    let mut state = super::jobs_tests::setup(Quota::default(), 0);
    let hour = hodei_domain::cost::HOUR_MS;
    let mut job = Job::new(
        "billed".into(),
        JobSpec {
            tenant: hodei_domain::tenant::TenantId::parse("acme").unwrap(),
            queue: "q".into(),
            priority: Priority::Normal,
            resources: Resources::new(750, 300, 0),
            command: CommandSpec::default(),
            simulate: None,
            labels: Default::default(),
            max_retries: 0,
            idempotency_key: None,
            pool_selector: Vec::new(),
            sla: None,
        },
        hour,
    );
    job.pool = Some("p".into());
    let (start, end) = (hour + 1_234, 3 * hour + 56_789);
    job.transition(JobState::Assigned, hour + 1_000, None)
        .unwrap();
    job.transition(JobState::Running, start, None).unwrap();
    job.transition(JobState::Succeeded, end, None).unwrap();
    let cost = state.run_cost(&job, start, end);
    job.cost_nanos = Some(cost);
    let mut writes = WriteBatch::new();
    state.store_job(job, &mut writes);
    let lines = state.cost_lines(0, u64::MAX);
    let hours: Vec<u64> = lines.iter().map(|(key, _)| key.0).collect();
    assert_eq!(hours, [hour, 2 * hour, 3 * hour]);
    let billed: u64 = lines.iter().map(|(_, line)| line.billed_nanos).sum();
    assert_eq!(billed, cost, "the hours add up to the job's cost");
    assert_eq!(lines.iter().map(|(_, line)| line.runs).sum::<u64>(), 1);
    // A snapshot and a reload carry it; a purge drops the hours before its cutoff.
    let mut joined = HodeiState::new(broadcast::channel(16).0);
    joined
        .restore(&state.snapshot().unwrap(), &mut WriteBatch::new())
        .unwrap();
    assert_eq!(joined.cost_lines(0, u64::MAX), lines);
    keyspace.write(writes).unwrap();
    let loaded = HodeiState::load(keyspace.as_ref(), broadcast::channel(16).0).unwrap();
    assert_eq!(loaded.cost_lines(0, u64::MAX), lines);
    let mut writes = WriteBatch::new();
    let purged = apply(
        &mut state,
        CommandV1::PurgeCostLedger(command::PurgeCostLedger {
            before_ms: 2 * hour,
        }),
        &mut writes,
    );
    assert!(
        matches!(purged, Ok(CommandOutcome::Purged { count: 1 })),
        "{purged:?}"
    );
    assert_eq!(state.oldest_cost_hour(), Some(2 * hour));
}
