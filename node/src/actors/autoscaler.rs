//! The leader's scaling loop (US-09.4): every `autoscaling.evaluation_interval_s` it reads
//! each dynamic pool that has scaling rules, measures it from the replicated state, asks
//! the domain's [`decide`] what size it should have, and proposes the decision through
//! Raft (`ScalePool`: apply re-checks it against the pool as it is then). The pool actor
//! then starts or stops workers towards the new desired size, idle ones only on the way
//! down. The loop also settles decisions in progress (the pool reached its size, or the
//! provisioning timed out).
//!
//! What the loop keeps in memory, and a new leader starts without: the recommendations of
//! the stabilisation window and the consecutive counts of threshold triggers. Both only
//! make a new leader more cautious (no scale-down before a window of its own, no threshold
//! trigger before its count is reached again). Everything else is replicated.

use std::collections::BTreeMap;

use tracing::{debug, info, warn};

use crate::actors::gateway::propose;
use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::{CommandOutcome, CommandV1, HodeiState};
use hodei_domain::autoscale::{
    DEFAULT_TOLERANCE, Decision, DecisionInput, Observed, PoolScaling, Proposal, ScalingMetric,
    ScalingOutcome, ScalingRecord, SlaWaiting, TriggerKind, decide,
};
use hodei_domain::pool::{Pool, PoolState, PoolType};
use hodei_domain::resources::Resources;

/// What the loop remembers of one pool between evaluations (leader-local).
#[derive(Debug, Default, Clone)]
pub struct PoolMemory {
    /// (at_ms, recommended) of the evaluations of the stabilisation window.
    pub recent: Vec<(u64, u32)>,
    /// Consecutive evaluations each threshold trigger's condition held.
    pub streaks: BTreeMap<String, u32>,
    /// When the schedule triggers were last looked at.
    pub last_evaluated_ms: Option<u64>,
    /// When this view began watching the pool (its stabilisation window is full after).
    pub watching_since_ms: Option<u64>,
}

/// The pool's measures now, from the replicated state.
pub fn observe(
    state: &HodeiState,
    pool: &Pool,
    now_ms: u64,
    targets: &hodei_domain::sla::SlaTargets,
) -> Observed {
    let live: Vec<_> = state
        .workers()
        .filter(|worker| worker.pool == pool.id && worker.is_live())
        .collect();
    let capacity = live
        .iter()
        .map(|worker| worker.capacity)
        .fold(Resources::ZERO, Resources::saturating_add);
    let used = live
        .iter()
        .map(|worker| worker.used)
        .fold(Resources::ZERO, Resources::saturating_add);
    let utilization = hodei_domain::dispatch::dominant_share(used, capacity);
    let queues: Vec<&str> = state
        .queues()
        .filter(|queue| queue.pools.iter().any(|candidate| candidate == &pool.id))
        .map(|queue| queue.id.as_str())
        .collect();
    let mut pending_jobs = 0u64;
    let mut pending_cpu_m = 0u64;
    let mut sla_at_risk = 0u64;
    let mut sla_waiting = Vec::new();
    let mut sla_resources = Resources::ZERO;
    let mut dispatched_per_s = 0.0;
    for queue in &queues {
        dispatched_per_s += state.dispatch_rate(queue, now_ms, 60_000);
        // Pending ids are in submit order (uuid v7): a job's place is the jobs before it.
        for job in state.pending_in(queue) {
            pending_jobs += 1;
            pending_cpu_m = pending_cpu_m.saturating_add(job.spec.resources.cpu_m);
            if matches!(
                job.sla_status(),
                Some(hodei_domain::sla::SlaStatus::AtRisk | hodei_domain::sla::SlaStatus::Critical)
            ) {
                sla_at_risk += 1;
            }
            if let Some(sla) = &job.spec.sla {
                let target = sla.start_target_ms(job.submitted_at_ms, targets);
                sla_waiting.push(SlaWaiting {
                    ahead: pending_jobs,
                    remaining_ms: target.saturating_sub(now_ms),
                });
                sla_resources = sla_resources.saturating_add(job.spec.resources);
            }
        }
    }
    let workers = u32::try_from(live.len()).unwrap_or(u32::MAX);
    // How many of the waiting SLA jobs (of their mean size) one worker of the pool runs.
    let jobs_per_worker = if sla_waiting.is_empty() {
        1
    } else {
        let count = sla_waiting.len() as u64;
        let mean = Resources {
            cpu_m: sla_resources.cpu_m / count,
            memory_mb: sla_resources.memory_mb / count,
            gpu: sla_resources.gpu / count,
        };
        [
            (pool.worker_shape.cpu_m, mean.cpu_m),
            (pool.worker_shape.memory_mb, mean.memory_mb),
            (pool.worker_shape.gpu, mean.gpu),
        ]
        .into_iter()
        .filter(|(_, need)| *need > 0)
        .map(|(room, need)| room / need)
        .min()
        .unwrap_or(1)
        .clamp(1, u64::from(u32::MAX)) as u32
    };
    // The waits of the last five minutes: an old burst's waits do not hold the pool up.
    let mut waits = state.pool_waits_since(&pool.id, now_ms.saturating_sub(300_000));
    waits.sort_unstable();
    let wait_p95_ms = crate::actors::gateway_reports::percentile(&waits, 0.95);
    Observed {
        workers,
        utilization,
        pending_jobs,
        pending_cpu_m,
        wait_p95_ms,
        sla_at_risk,
        sla_waiting,
        dispatch_per_worker_per_s: if workers == 0 {
            0.0
        } else {
            dispatched_per_s / f64::from(workers)
        },
        jobs_per_worker,
    }
}

/// The metric values a record keeps.
fn metric_values(observed: &Observed) -> Vec<(String, f64)> {
    let mut values: Vec<(String, f64)> = ScalingMetric::ALL
        .into_iter()
        .filter_map(|metric| {
            observed
                .value(metric)
                .map(|value| (metric.as_str().to_string(), value))
        })
        .collect();
    values.push(("workers".to_string(), f64::from(observed.workers)));
    values.push(("pending_jobs".to_string(), observed.pending_jobs as f64));
    values
}

/// One evaluation of a pool: the decision and the record it would leave, plus the
/// schedule triggers that fired. `fired` adds proposals (a manual trigger).
pub struct Evaluation {
    pub decision: Decision,
    pub record: ScalingRecord,
    pub fired_schedules: Vec<(String, u64)>,
    pub observed: Observed,
}

#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    state: &HodeiState,
    pool: &Pool,
    scaling: &PoolScaling,
    memory: &mut PoolMemory,
    extra: Option<(Proposal, bool)>,
    targets: &hodei_domain::sla::SlaTargets,
    interval_ms: u64,
    now: u64,
) -> Evaluation {
    let observed = observe(state, pool, now, targets);
    let mut fired = Vec::new();
    let mut fired_schedules = Vec::new();
    for trigger in scaling.triggers.iter().filter(|trigger| trigger.enabled) {
        let source = format!("trigger:{}", trigger.id);
        match &trigger.kind {
            TriggerKind::Threshold {
                metric,
                operator,
                value,
                for_evaluations,
            } => {
                let holds = observed
                    .value(*metric)
                    .is_some_and(|actual| operator.holds(actual, *value));
                let streak = memory.streaks.entry(trigger.id.clone()).or_default();
                *streak = if holds { streak.saturating_add(1) } else { 0 };
                if *streak >= *for_evaluations {
                    fired.push(Proposal {
                        source,
                        desired: trigger.action.applied_to(pool.desired_size),
                        reason: format!(
                            "{} {} {value} for {streak} evaluations",
                            metric.as_str(),
                            operator.as_str()
                        ),
                    });
                }
            }
            TriggerKind::Schedule { schedule } => {
                // Fires once, for the latest occurrence since it last fired (or since this
                // leader's last look, or within the last interval): missed ones are not
                // replayed one by one.
                let since = trigger
                    .last_fired_ms
                    .into_iter()
                    .chain(memory.last_evaluated_ms)
                    .max()
                    .unwrap_or(now.saturating_sub(interval_ms));
                if let Some(at) = schedule.latest_within(since, now) {
                    fired_schedules.push((trigger.id.clone(), at));
                    fired.push(Proposal {
                        source,
                        desired: trigger.action.applied_to(pool.desired_size),
                        reason: format!(
                            "schedule {:?} ({}) fired",
                            schedule.cron, schedule.timezone
                        ),
                    });
                }
            }
            TriggerKind::Manual => {}
        }
    }
    let force = extra.as_ref().is_some_and(|(_, force)| *force);
    let stabilization_ms = scaling.cooldown.scale_down_stabilization_s * 1_000;
    let source = match &extra {
        Some((proposal, _)) => proposal.source.clone(),
        None => fired
            .first()
            .map(|proposal| proposal.source.clone())
            .unwrap_or_else(|| "evaluation".to_string()),
    };
    if let Some((proposal, _)) = extra {
        fired.push(proposal);
    }
    memory
        .recent
        .retain(|(at, _)| now.saturating_sub(*at) < stabilization_ms);
    // Until this view has watched the pool for a whole window, it does not know what was
    // wanted before: the size now stands in for it (a new leader, an evaluation on demand).
    let watching_since = *memory.watching_since_ms.get_or_insert(now);
    let mut recent = memory.recent.clone();
    if now.saturating_sub(watching_since) < stabilization_ms {
        recent.push((watching_since, pool.desired_size));
    }
    let decision = decide(&DecisionInput {
        min: pool.min_size,
        max: pool.max_size,
        current: pool.desired_size,
        observed: &observed,
        policies: &scaling.policies,
        fired: &fired,
        cooldown: scaling.cooldown,
        memory: &scaling.memory,
        tolerance: DEFAULT_TOLERANCE,
        recent: &recent,
        stabilization_ms,
        force,
        now_ms: now,
    });
    memory.recent.push((now, decision.recommended));
    memory.last_evaluated_ms = Some(now);
    let record = ScalingRecord {
        seq: 0,
        at_ms: now,
        source,
        forced: force,
        metrics: metric_values(&observed),
        from: decision.from,
        to: decision.desired,
        recommended: decision.recommended,
        proposals: decision.proposals.clone(),
        reason: decision.reason.clone(),
        outcome: if decision.changes() {
            ScalingOutcome::InProgress
        } else if decision.blocked_by.is_some() {
            ScalingOutcome::BlockedByCooldown
        } else {
            ScalingOutcome::NoChange
        },
        error: None,
        reached_at_ms: None,
        settled_at_ms: None,
    };
    Evaluation {
        decision,
        record,
        fired_schedules,
        observed,
    }
}

/// Whether an evaluation leaves a record: a change, or a proposal held back (once for
/// the same held-back size: the history does not fill with one wait).
pub fn worth_recording(scaling: &PoolScaling, evaluation: &Evaluation) -> bool {
    let decision = &evaluation.decision;
    if decision.changes() {
        return true;
    }
    if decision.blocked_by.is_none() || decision.recommended == decision.from {
        return false;
    }
    !scaling.history.last().is_some_and(|last| {
        last.outcome == ScalingOutcome::BlockedByCooldown
            && last.from == decision.from
            && last.recommended == decision.recommended
    })
}

/// Whether the loop scales this pool.
pub fn scales(pool: &Pool, scaling: &PoolScaling) -> bool {
    pool.pool_type == PoolType::Dynamic
        && scaling.enabled
        && matches!(pool.state, PoolState::Active | PoolState::Degraded)
        && (!scaling.policies.is_empty() || !scaling.triggers.is_empty())
}

pub async fn run(node: NodeContext) {
    let interval = node.limits.autoscaling.evaluation_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut memory: BTreeMap<String, PoolMemory> = BTreeMap::new();
    loop {
        ticker.tick().await;
        if !node.raft.is_leader() {
            memory.clear();
            continue;
        }
        let now = now_ms();
        seed(&node).await;
        settle(&node, now).await;
        if !node.limits.autoscaling.enabled {
            continue;
        }
        let targets = node.limits.sla_targets;
        let evaluations: Vec<(String, Evaluation)> = node.read(|state| {
            let mut evaluations = Vec::new();
            for pool in state.pools() {
                let Some(scaling) = state.scaling(&pool.id) else {
                    continue;
                };
                if !scales(pool, scaling) || node.limits.autoscaling.pools_off.contains(&pool.id) {
                    continue;
                }
                let remembered = memory.entry(pool.id.clone()).or_default();
                let evaluation = evaluate(
                    state,
                    pool,
                    scaling,
                    remembered,
                    None,
                    &targets,
                    interval.as_millis() as u64,
                    now,
                );
                if worth_recording(scaling, &evaluation) || !evaluation.fired_schedules.is_empty() {
                    evaluations.push((pool.id.clone(), evaluation));
                }
            }
            evaluations
        });
        for (pool, evaluation) in evaluations {
            // A refusal (the size changed meanwhile) is logged; the next tick evaluates again.
            let _ = record(&node, &pool, evaluation).await;
        }
    }
}

/// Gives each configured pool that has no autoscaling yet what the config says (one
/// command each, refused in apply once the pool has autoscaling).
async fn seed(node: &NodeContext) {
    let due: Vec<(String, crate::actors::SeededScaling)> = node.read(|state| {
        node.catalog
            .scaling
            .iter()
            .filter(|(pool, _)| {
                state
                    .pool(pool)
                    .is_some_and(|found| found.pool_type == PoolType::Dynamic)
                    && state.scaling(pool).is_none()
            })
            .map(|(pool, seeded)| (pool.clone(), seeded.clone()))
            .collect()
    });
    for (pool, seeded) in due {
        let created_at_ms = now_ms();
        let policies = seeded
            .policies
            .into_iter()
            .map(|mut policy| {
                policy.created_at_ms = created_at_ms;
                policy
            })
            .collect();
        let command = CommandV1::SetScaling(command::SetScaling {
            pool: pool.clone(),
            change: command::ScalingChange::Seed {
                policies,
                cooldown: seeded.cooldown,
            },
        });
        match propose(node, command).await {
            Ok(_) => info!(pool, "the pool's autoscaling was seeded from the config"),
            Err(error) => debug!(pool, %error, "the pool's autoscaling was not seeded"),
        }
    }
}

/// Proposes an evaluation's record (and its desired size, unless held back).
pub async fn record(
    node: &NodeContext,
    pool: &str,
    evaluation: Evaluation,
) -> Result<(u64, Pool), crate::gateway::GatewayError> {
    let outcome_name = evaluation.record.outcome.as_str();
    let (from, to) = (evaluation.record.from, evaluation.record.to);
    let reason = evaluation.record.reason.clone();
    let command = CommandV1::ScalePool(command::ScalePool {
        pool: pool.to_string(),
        record: evaluation.record,
        fired_schedules: evaluation.fired_schedules,
    });
    match propose(node, command).await {
        Ok(CommandOutcome::Scaled { seq, pool: scaled }) => {
            node.metrics.scaling_decision(pool, outcome_name);
            if from != to {
                info!(pool, from, to, seq, %reason, "pool scaled");
            } else {
                debug!(pool, seq, %reason, "scaling held back");
            }
            Ok((seq, scaled))
        }
        Ok(other) => Err(crate::actors::gateway::unexpected(other)),
        Err(error) => {
            warn!(pool, %error, "a scaling decision was not recorded");
            Err(error)
        }
    }
}

/// Settles the decisions in progress: succeeded once the pool has the size, failed or
/// partial when a scale-up's workers did not all register in twice the provision timeout,
/// partial when a scale-down's busy workers still run after that long.
async fn settle(node: &NodeContext, now: u64) {
    let due: Vec<command::SettleScaling> = node.read(|state| {
        let mut due = Vec::new();
        for pool in state.pools() {
            let Some(record) = state.scaling(&pool.id).and_then(PoolScaling::in_progress) else {
                continue;
            };
            let live = state
                .workers()
                .filter(|worker| worker.pool == pool.id && worker.is_live())
                .count() as u32;
            let reached = if record.to >= record.from {
                live >= record.to
            } else {
                live <= record.to
            };
            let deadline = record
                .at_ms
                .saturating_add(pool.dynamic_settings.provision_timeout_s.saturating_mul(2_000));
            let (outcome, error) = if reached {
                (ScalingOutcome::Succeeded, None)
            } else if now < deadline {
                continue;
            } else if record.to > record.from {
                let outcome = if live > record.from {
                    ScalingOutcome::Partial
                } else {
                    ScalingOutcome::Failed
                };
                (
                    outcome,
                    Some(format!(
                        "{live} of {} workers live {} s after the decision",
                        record.to,
                        now.saturating_sub(record.at_ms) / 1_000
                    )),
                )
            } else {
                let busy = state
                    .workers()
                    .filter(|worker| worker.pool == pool.id && worker.is_live() && !worker.jobs.is_empty())
                    .count();
                (
                    ScalingOutcome::Partial,
                    Some(format!(
                        "{live} workers still live ({busy} running jobs, which a scale-down never stops)"
                    )),
                )
            };
            // A scale-up reached its size when the `to`-th live worker registered.
            let reached_at_ms = reached.then(|| {
                let mut registered: Vec<u64> = state
                    .workers()
                    .filter(|worker| worker.pool == pool.id && worker.is_live())
                    .map(|worker| worker.registered_at_ms)
                    .collect();
                registered.sort_unstable();
                let nth = (record.to as usize).checked_sub(1).and_then(|index| registered.get(index));
                match nth {
                    Some(at) if record.to > record.from => (*at).max(record.at_ms),
                    _ => now,
                }
            });
            due.push(command::SettleScaling {
                pool: pool.id.clone(),
                seq: record.seq,
                outcome,
                error,
                reached_at_ms,
                at_ms: now,
            });
        }
        due
    });
    for settle in due {
        let (pool, outcome) = (settle.pool.clone(), settle.outcome);
        match propose(node, CommandV1::SettleScaling(settle)).await {
            Ok(_) => node.metrics.scaling_decision(&pool, outcome.as_str()),
            Err(error) => debug!(pool, %error, "a scaling decision was not settled"),
        }
    }
}
