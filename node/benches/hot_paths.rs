//! The pure hot paths: quota admission, the dispatch decision at scale, applying a batch
//! of commands to the state machine, cost accrual, a 30-day cost report, and the pending
//! jobs counted by reason at a scrape. `cargo bench -p hodei-node --bench hot_paths`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hodei_cluster::{StateMachine, WriteBatch};
use hodei_domain::admission::{AdmissionInput, JobRequest, admit};
use hodei_domain::cost::{Pricing, run_cost_nanos};
use hodei_domain::dispatch::{
    DispatchProblem, PendingJob, TenantSnapshot, Urgency, WorkerSlot, next_assignments,
};
use hodei_domain::job::Priority;
use hodei_domain::queue::QueuePolicy;
use hodei_domain::quota::{Quota, Usage};
use hodei_domain::resources::Resources;
use hodei_domain::tenant::{NewTenant, TenantId, Tier};
use hodei_node::state::command;
use hodei_node::state::{Command, CommandV1, HodeiState};

fn admission(criterion: &mut Criterion) {
    let quota = Quota::default();
    let usage = Usage {
        running: Resources::new(3_000, 6_000, 0),
        running_jobs: 6,
        pending_jobs: 20,
        running_by_pool: BTreeMap::new(),
    };
    let request = JobRequest {
        resources: Resources::new(500, 1_024, 0),
        pool: None,
    };
    criterion.bench_function("admission/one_decision", |bencher| {
        bencher.iter(|| {
            admit(black_box(&AdmissionInput {
                quota: &quota,
                usage: &usage,
                tenant_active: true,
                active_burst_percent: Some(150),
                max_burst_percent: Some(150),
                largest_worker: Some(Resources::new(8_000, 16_384, 0)),
                request: &request,
            }))
        })
    });
}

/// 100,000 pending jobs from 1,000 tenants, 500 workers of 8 cores: one decision that
/// places as many jobs as fit (8,000 of 500 m: 16 per worker).
fn dispatch(criterion: &mut Criterion) {
    let tenants: BTreeMap<TenantId, TenantSnapshot> = (0..1_000)
        .map(|index| {
            let snapshot = TenantSnapshot {
                quota: Quota {
                    cpu_m: 16_000,
                    memory_mb: 32_768,
                    max_concurrent_jobs: 64,
                    ..Quota::default()
                },
                usage: Usage::default(),
                active: true,
                burst_percent: None,
                weight: 1.0 + (index % 5) as f64,
                running_in_pools: Resources::ZERO,
                boosted: false,
            };
            (
                TenantId::parse(&format!("tenant-{index}")).unwrap(),
                snapshot,
            )
        })
        .collect();
    let ids: Vec<TenantId> = tenants.keys().cloned().collect();
    let pending: Vec<PendingJob> = (0..100_000u64)
        .map(|index| PendingJob {
            id: format!("job-{index:06}"),
            tenant: ids[(index % 1_000) as usize].clone(),
            resources: Resources::new(500, 512, 0),
            submitted_at_ms: index,
            pools: Vec::new(),
            priority: Priority::ALL[(index % 5) as usize],
            urgency: Urgency::OnTrack,
            deadline_ms: None,
        })
        .collect();
    let workers: Vec<WorkerSlot> = (0..500)
        .map(|index| WorkerSlot {
            id: format!("worker-{index}"),
            pool: "pool-default".to_string(),
            capacity: Resources::new(8_000, 16_384, 0),
            used: Resources::ZERO,
            schedulable: true,
        })
        .collect();
    let capacity = Resources::new(8_000 * 500, 16_384 * 500, 0);
    let mut group = criterion.benchmark_group("dispatch");
    group.sample_size(10);
    for policy in QueuePolicy::ALL {
        let problem = DispatchProblem {
            policy,
            pending: &pending,
            workers: &workers,
            tenants: &tenants,
            capacity,
            limit: usize::MAX,
        };
        let placed = next_assignments(&problem).len();
        println!(
            "dispatch/{}/100k_pending_1k_tenants_500_workers places {placed} jobs per decision",
            policy.as_str()
        );
        group.bench_function(
            format!("{}/100k_pending_1k_tenants_500_workers", policy.as_str()),
            |bencher| bencher.iter(|| next_assignments(black_box(&problem))),
        );
    }
    group.finish();
}

/// Applying one Raft entry's worth of commands (1,000 tenant creations) to the state.
fn apply_batch(criterion: &mut Criterion) {
    let commands: Vec<Vec<u8>> = (0..1_000)
        .map(|index| {
            let tenant = NewTenant {
                id: TenantId::parse(&format!("bench-{index}")).unwrap(),
                display_name: None,
                tier: Tier::Standard,
                weight: None,
                labels: Default::default(),
                quota: Quota::default(),
            }
            .into_tenant(1)
            .unwrap();
            Command::V1(CommandV1::CreateTenant(command::CreateTenant { tenant })).encode()
        })
        .collect();
    criterion.bench_function("state/apply_batch_of_1000_commands", |bencher| {
        bencher.iter_batched(
            || HodeiState::new(tokio::sync::broadcast::channel(16).0),
            |mut state| {
                let mut writes = WriteBatch::new();
                for (index, command) in commands.iter().enumerate() {
                    black_box(StateMachine::apply(
                        &mut state,
                        index as u64 + 1,
                        command,
                        &mut writes,
                    ));
                }
                writes
            },
            BatchSize::LargeInput,
        )
    });
}

/// Cost accrual: pricing 10,000 ended runs (mixed shapes, some under burst) and adding each
/// to its tenant's and its pool's ledger, as a cost report over them does.
fn cost_accrual(criterion: &mut Criterion) {
    let pricing = Pricing::default();
    let runs: Vec<(String, String, Resources, u64, bool)> = (0..10_000u64)
        .map(|index| {
            (
                format!("tenant-{}", index % 100),
                format!("pool-{}", index % 4),
                Resources::new(100 + index % 8 * 250, 64 + index % 5 * 512, index % 50 / 49),
                1_000 + index * 37 % 600_000,
                index % 10 == 0,
            )
        })
        .collect();
    criterion.bench_function("cost/accrue_10k_runs", |bencher| {
        bencher.iter(|| {
            let mut by_tenant: BTreeMap<&str, u64> = BTreeMap::new();
            let mut by_pool: BTreeMap<&str, u64> = BTreeMap::new();
            for (tenant, pool, resources, run_ms, burst) in &runs {
                let cost = run_cost_nanos(*resources, &pricing, *run_ms, *burst);
                *by_tenant.entry(tenant).or_default() += cost;
                *by_pool.entry(pool).or_default() += cost;
            }
            black_box((by_tenant, by_pool))
        })
    });
}

fn apply_ok(state: &mut HodeiState, command: CommandV1) {
    let mut writes = WriteBatch::new();
    StateMachine::apply(state, 1, &Command::V1(command).encode(), &mut writes);
}

/// A state with the tenants `t0..` (each quota from `quota_of(index)`) and queue `q` over
/// pool `p` of 10 live workers of 16 cores and 64 GiB, all from `start`.
fn state_with_pool(
    tenants: usize,
    quota_of: impl Fn(usize) -> Quota,
    policy: QueuePolicy,
    start: u64,
) -> (HodeiState, Vec<TenantId>) {
    use hodei_domain::run::WorkerRegistration;
    let mut state = HodeiState::new(tokio::sync::broadcast::channel(16).0);
    let ids: Vec<TenantId> = (0..tenants)
        .map(|index| TenantId::parse(&format!("t{index}")).unwrap())
        .collect();
    for (index, id) in ids.iter().enumerate() {
        let tenant = NewTenant {
            id: id.clone(),
            display_name: None,
            tier: Tier::Standard,
            weight: None,
            labels: Default::default(),
            quota: quota_of(index),
        }
        .into_tenant(start)
        .unwrap();
        apply_ok(
            &mut state,
            CommandV1::CreateTenant(command::CreateTenant { tenant }),
        );
    }
    let pool = hodei_domain::pool::Pool::new(
        "p",
        hodei_domain::pool::PoolType::Static,
        hodei_domain::pool::PoolProvider::Static,
        Resources::new(16_000, 65_536, 0),
        0,
        10,
        start,
    );
    let queue = hodei_domain::queue::Queue {
        id: "q".into(),
        pools: vec!["p".into()],
        policy,
        created_at_ms: start,
        updated_at_ms: start,
    };
    apply_ok(
        &mut state,
        CommandV1::EnsureQueuesAndPools(command::EnsureQueuesAndPools {
            pools: vec![pool],
            queues: vec![queue],
        }),
    );
    for worker in 0..10 {
        apply_ok(
            &mut state,
            CommandV1::RegisterWorker(command::RegisterWorker {
                registration: WorkerRegistration {
                    id: format!("w{worker}"),
                    pool: "p".into(),
                    capacity: Resources::new(16_000, 65_536, 0),
                    labels: Default::default(),
                    simulated: false,
                    running: Vec::new(),
                },
                at_ms: start,
                provisioned_at_ms: None,
            }),
        );
    }
    (state, ids)
}

/// A 30-day cost report by tenant, per day, over a dense ledger: 100 tenants, 10 workers
/// live the whole month in one pool, and a run of every tenant every hour (72,000 runs,
/// so 72,000 ledger lines, and 7,200 worker-hours of pool cost for the idle line).
fn cost_report(criterion: &mut Criterion) {
    use hodei_domain::cost::HOUR_MS;
    use hodei_domain::dispatch::Assignment;
    use hodei_domain::job::{CommandSpec, Job, JobSpec};
    use hodei_domain::run::{RunOutcome, RunReport};
    use hodei_node::state::cost_report::{CostGroup, CostQuery};
    let start = 1_700_000_000_000 / (24 * HOUR_MS) * (24 * HOUR_MS);
    let quota_of = |_| Quota {
        cpu_m: 1_000_000,
        memory_mb: 1_000_000,
        max_concurrent_jobs: 1_000,
        max_pending_jobs: 1_000,
        ..Quota::default()
    };
    let (mut state, tenants) = state_with_pool(100, quota_of, QueuePolicy::Fifo, start);
    for hour in 0..720u64 {
        let at = start + hour * HOUR_MS;
        for (index, tenant) in tenants.iter().enumerate() {
            let id = format!("j{hour}-{index}");
            let job = Job::new(
                id.clone(),
                JobSpec {
                    tenant: tenant.clone(),
                    queue: "q".into(),
                    priority: Priority::Normal,
                    resources: Resources::new(1_000, 1_024, 0),
                    command: CommandSpec {
                        argv: vec!["true".into()],
                        ..CommandSpec::default()
                    },
                    simulate: None,
                    labels: Default::default(),
                    max_retries: 0,
                    idempotency_key: None,
                    pool_selector: Vec::new(),
                    sla: None,
                },
                at,
            );
            let worker = format!("w{}", index % 10);
            apply_ok(
                &mut state,
                CommandV1::SubmitJobs(command::SubmitJobs {
                    jobs: vec![job],
                    max_burst_percent: None,
                }),
            );
            apply_ok(
                &mut state,
                CommandV1::AssignJobs(command::AssignJobs {
                    assignments: vec![Assignment {
                        job: id.clone(),
                        worker: worker.clone(),
                        burst: false,
                    }],
                    at_ms: at + 1_000,
                    sla_changes: Vec::new(),
                }),
            );
            apply_ok(
                &mut state,
                CommandV1::JobStarted(command::JobStarted {
                    job: id.clone(),
                    attempt: 1,
                    worker: worker.clone(),
                    at_ms: at + 1_000,
                }),
            );
            apply_ok(
                &mut state,
                CommandV1::JobFinished(command::JobFinished {
                    report: RunReport {
                        job: id,
                        attempt: 1,
                        worker,
                        outcome: RunOutcome::Succeeded,
                        exit_code: Some(0),
                        output_tail: String::new(),
                        at_ms: at + 1_000 + 600_000,
                        usage: None,
                    },
                }),
            );
        }
    }
    let now = start + 720 * HOUR_MS;
    let query = CostQuery {
        from_ms: start,
        to_ms: now,
        step_ms: 24 * HOUR_MS,
        group: CostGroup::Tenant,
        tenant: None,
        now_ms: now,
    };
    let report = state.cost_report(&query, &[]);
    assert_eq!(
        report.rows.iter().filter(|row| row.group == "t0").count(),
        30
    );
    criterion.bench_function("cost/report_30_days_by_tenant_100_tenants", |bencher| {
        bencher.iter(|| black_box(state.cost_report(&query, &[])))
    });
}

/// The scrape-time count of pending jobs by their first reason
/// (`hodei_jobs_pending_by_reason`): 100,000 pending jobs of 100 tenants in one queue,
/// in 4 shapes each (400 shapes to check), beside 10 workers. Apply keeps the count per
/// shape, so the cost follows the shapes, not the jobs.
fn pending_reasons(criterion: &mut Criterion) {
    use hodei_domain::job::{CommandSpec, Job, JobSpec};
    let start = 1_700_000_000_000u64;
    // A tenant in ten has a quota that holds back its larger jobs.
    let quota_of = |index: usize| Quota {
        cpu_m: if index.is_multiple_of(10) {
            10_000
        } else {
            10_000_000
        },
        memory_mb: 10_000_000,
        max_concurrent_jobs: 1_000,
        max_pending_jobs: 1_000,
        ..Quota::default()
    };
    let (mut state, tenants) = state_with_pool(100, quota_of, QueuePolicy::WeightedFair, start);
    for tenant in &tenants {
        let jobs = (0..1_000u64)
            .map(|index| {
                Job::new(
                    format!("{tenant}-{index}"),
                    JobSpec {
                        tenant: tenant.clone(),
                        queue: "q".into(),
                        priority: Priority::Normal,
                        // Four shapes, one larger than any worker.
                        resources: Resources::new(1_000 + (index % 4) * 5_000, 1_024, 0),
                        command: CommandSpec {
                            argv: vec!["true".into()],
                            ..CommandSpec::default()
                        },
                        simulate: None,
                        labels: Default::default(),
                        max_retries: 0,
                        idempotency_key: None,
                        pool_selector: Vec::new(),
                        sla: None,
                    },
                    start + index,
                )
            })
            .collect();
        apply_ok(
            &mut state,
            CommandV1::SubmitJobs(command::SubmitJobs {
                jobs,
                max_burst_percent: None,
            }),
        );
    }
    let tally = hodei_node::actors::gateway_reports::pending_reason_tally(&state, None);
    println!("metrics/pending_reason_tally_100k_pending counts {tally:?}");
    criterion.bench_function("metrics/pending_reason_tally_100k_pending", |bencher| {
        bencher.iter(|| {
            black_box(hodei_node::actors::gateway_reports::pending_reason_tally(
                &state, None,
            ))
        })
    });
}

criterion_group!(
    benches,
    admission,
    dispatch,
    apply_batch,
    cost_accrual,
    cost_report,
    pending_reasons
);
criterion_main!(benches);
