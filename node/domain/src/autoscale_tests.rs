use proptest::prelude::*;

use super::*;

fn policy(id: &str, kind: PolicyKind) -> ScalingPolicy {
    ScalingPolicy {
        id: id.to_string(),
        kind,
        enabled: true,
        created_at_ms: 0,
    }
}

fn utilization(target: f64) -> ScalingPolicy {
    policy(
        "util",
        PolicyKind::TargetTracking {
            metric: ScalingMetric::Utilization,
            target,
        },
    )
}

struct Run<'a> {
    min: u32,
    max: u32,
    policies: &'a [ScalingPolicy],
    cooldown: Cooldown,
}

impl Run<'_> {
    fn decide(
        &self,
        current: u32,
        observed: &Observed,
        memory: &CooldownState,
        recent: &[(u64, u32)],
        now_ms: u64,
    ) -> Decision {
        decide(&DecisionInput {
            min: self.min,
            max: self.max,
            current,
            observed,
            policies: self.policies,
            fired: &[],
            cooldown: self.cooldown,
            memory,
            tolerance: DEFAULT_TOLERANCE,
            recent,
            stabilization_ms: DEFAULT_STABILIZATION_MS,
            force: false,
            now_ms,
        })
    }
}

/// A pool of workers of 1,000 m running `busy_m` millicores of work that fits anywhere.
fn busy(workers: u32, busy_m: u64) -> Observed {
    let capacity = u64::from(workers) * 1_000;
    Observed {
        workers,
        utilization: if capacity == 0 {
            0.0
        } else {
            (busy_m.min(capacity)) as f64 / capacity as f64
        },
        pending_jobs: busy_m.saturating_sub(capacity) / 100,
        jobs_per_worker: 10,
        ..Observed::default()
    }
}

proptest! {
    /// Whatever the policies propose, a pool within its bounds stays within them and
    /// grows by no more than the per-minute cap.
    #[test]
    fn the_decision_stays_within_bounds_and_the_cap(
        min in 0u32..10,
        span in 0u32..50,
        current_offset in 0u32..60,
        busy_m in 0u64..100_000,
        pending in 0u64..5_000,
        cap in 1u32..20,
        added_before in 0u32..20,
        target in 0.05f64..1.0,
        exact in 0i64..200,
        now_ms in 60_000u64..10_000_000,
    ) {
        let max = min + span;
        let current = (min + current_offset).min(max);
        let policies = [
            utilization(target),
            policy("step", PolicyKind::StepScaling {
                metric: ScalingMetric::PendingJobsPerWorker,
                adjustment_type: AdjustmentType::ExactCapacity,
                steps: vec![Step { lower: Some(1.0), upper: None, adjustment: exact }],
            }),
        ];
        let cooldown = Cooldown { scale_up_s: 0, scale_down_s: 0, max_added_per_minute: cap, ..Cooldown::default() };
        let memory = CooldownState {
            added: vec![(now_ms - 30_000, added_before)],
            ..CooldownState::default()
        };
        let mut observed = busy(current, busy_m);
        observed.pending_jobs = pending;
        let decision = Run { min, max, policies: &policies, cooldown }
            .decide(current, &observed, &memory, &[], now_ms);
        prop_assert!(decision.desired >= min && decision.desired <= max, "{decision:?}");
        let room = cap.saturating_sub(added_before);
        prop_assert!(decision.desired <= current + room, "{decision:?}");
    }

    /// With a steady load, target tracking settles at a size that puts utilization within
    /// the tolerance of its target, and stays there.
    #[test]
    fn target_tracking_converges(busy_m in 1_000u64..40_000, target in 0.3f64..0.9, start in 1u32..60) {
        let policies = [utilization(target)];
        let run = Run { min: 1, max: 200, policies: &policies, cooldown: Cooldown { scale_up_s: 0, scale_down_s: 0, max_added_per_minute: 1_000, ..Cooldown::default() } };
        let mut size = start;
        let mut memory = CooldownState::default();
        let mut sizes = Vec::new();
        // Utilization saturates at 1 when overloaded, so each step grows by at most
        // 1 / target: from one worker that takes a few dozen evaluations.
        for round in 0..60u64 {
            let now = 1_000_000 + round * 400_000;
            let decision = run.decide(size, &busy(size, busy_m), &memory, &[], now);
            memory.record(size, decision.desired, now);
            size = decision.desired;
            sizes.push(size);
        }
        let settled = &sizes[50..];
        prop_assert!(settled.windows(2).all(|pair| pair[0] == pair[1]), "{sizes:?}");
        let final_utilization = busy(size, busy_m).utilization;
        // Not overloaded, and not more than a worker beyond the size at the band's floor.
        prop_assert!(final_utilization <= target * (1.0 + DEFAULT_TOLERANCE) + 1e-9, "{sizes:?} at {final_utilization}");
        let roomiest = (busy_m as f64 / (1_000.0 * target * (1.0 - DEFAULT_TOLERANCE))).ceil() as u32 + 1;
        prop_assert!(size <= roomiest.max(1), "{sizes:?}, at most {roomiest}");
    }

    /// A load that swings between idle and overloaded faster than the cooldowns changes
    /// the size no more often than the cooldowns allow.
    #[test]
    fn an_oscillating_load_is_held_by_the_cooldowns(period in 1u64..6, up_s in 30u64..200, down_s in 30u64..300) {
        let policies = [utilization(0.6)];
        let cooldown = Cooldown { scale_up_s: up_s, scale_down_s: down_s, max_added_per_minute: 1_000, ..Cooldown::default() };
        let run = Run { min: 1, max: 50, policies: &policies, cooldown };
        let mut size = 5;
        let mut memory = CooldownState::default();
        let mut recent: Vec<(u64, u32)> = Vec::new();
        let mut ups = 0u64;
        let mut downs = 0u64;
        let evaluations = 600u64;
        let tick_ms = 10_000;
        for round in 0..evaluations {
            let now = 1_000_000 + round * tick_ms;
            let load = if (round / period) % 2 == 0 { 40_000 } else { 0 };
            let decision = run.decide(size, &busy(size, load), &memory, &recent, now);
            recent.push((now, decision.recommended));
            if decision.desired > size { ups += 1; }
            if decision.desired < size { downs += 1; }
            memory.record(size, decision.desired, now);
            size = decision.desired;
        }
        let span_s = evaluations * tick_ms / 1_000;
        prop_assert!(ups <= span_s / up_s + 1, "{ups} scale-ups in {span_s} s with a {up_s} s cooldown");
        prop_assert!(downs <= span_s / down_s + 1, "{downs} scale-downs in {span_s} s with a {down_s} s cooldown");
    }
}

#[test]
fn a_scale_up_within_the_cooldown_is_blocked_unless_forced() {
    let policies = [utilization(0.5)];
    let run = Run {
        min: 1,
        max: 20,
        policies: &policies,
        cooldown: Cooldown::default(),
    };
    let mut memory = CooldownState::default();
    memory.record(2, 4, 1_000_000);
    let observed = busy(4, 4_000);
    let blocked = run.decide(4, &observed, &memory, &[], 1_030_000);
    assert_eq!(blocked.desired, 4);
    assert_eq!(
        blocked.blocked_by,
        Some(Blocked::ScaleUpCooldown {
            until_ms: 1_060_000
        })
    );
    assert!(
        blocked.reason.contains("scale-up cooldown: 30 s left"),
        "{}",
        blocked.reason
    );
    let after = run.decide(4, &observed, &memory, &[], 1_060_000);
    assert_eq!(after.desired, 8);
    let forced = decide(&DecisionInput {
        min: 1,
        max: 20,
        current: 4,
        observed: &observed,
        policies: &[],
        fired: &[Proposal {
            source: "trigger:manual".into(),
            desired: 9,
            reason: "fired".into(),
        }],
        cooldown: Cooldown::default(),
        memory: &memory,
        tolerance: DEFAULT_TOLERANCE,
        recent: &[],
        stabilization_ms: DEFAULT_STABILIZATION_MS,
        force: true,
        now_ms: 1_030_000,
    });
    assert_eq!((forced.desired, forced.blocked_by), (9, None));
}

#[test]
fn a_scale_down_waits_for_the_stabilisation_window() {
    let policies = [utilization(0.5)];
    let run = Run {
        min: 1,
        max: 20,
        policies: &policies,
        cooldown: Cooldown {
            scale_up_s: 0,
            scale_down_s: 0,
            max_added_per_minute: 100,
            ..Cooldown::default()
        },
    };
    let memory = CooldownState::default();
    // Eight workers were wanted two minutes ago; now the load is gone.
    let recent = [(880_000, 8)];
    let quiet = run.decide(8, &busy(8, 0), &memory, &recent, 1_000_000);
    assert_eq!(quiet.recommended, 1);
    assert_eq!(quiet.desired, 8);
    let later = run.decide(8, &busy(8, 0), &memory, &recent, 1_200_000);
    assert_eq!(later.desired, 1);
}

#[test]
fn proposals_combine_as_the_largest() {
    let policies = [
        utilization(0.5),
        policy(
            "queue",
            PolicyKind::TargetTracking {
                metric: ScalingMetric::PendingJobsPerWorker,
                target: 2.0,
            },
        ),
    ];
    let run = Run {
        min: 0,
        max: 100,
        policies: &policies,
        cooldown: Cooldown::default(),
    };
    let mut observed = busy(4, 1_000);
    observed.pending_jobs = 40;
    let decision = run.decide(4, &observed, &CooldownState::default(), &[], 1_000_000);
    // Utilization alone would shrink to 2; the backlog asks for 20.
    assert_eq!(decision.proposals.len(), 2);
    assert_eq!(decision.desired, 14, "{decision:?}");
    assert!(
        decision.reason.contains("capped at 10 added per minute"),
        "{}",
        decision.reason
    );
}

#[test]
fn a_scheduled_window_sets_size_and_bounds_while_open() {
    // Every day at 09:00 in Madrid (08:00 UTC in winter) for an hour.
    let scheduled = policy(
        "office",
        PolicyKind::Scheduled {
            schedule: Schedule {
                cron: "0 9 * * *".into(),
                timezone: "Europe/Madrid".into(),
            },
            duration_s: 3_600,
            min: 5,
            max: 8,
            desired: 6,
        },
    );
    scheduled.kind.validate("policy").unwrap();
    // 2026-11-28T08:30:00Z, in the window; 07:59:00Z before it.
    let inside = 1_795_854_600_000;
    let before = inside - 31 * 60_000;
    let policies = [scheduled];
    let run = Run {
        min: 1,
        max: 20,
        policies: &policies,
        cooldown: Cooldown::default(),
    };
    let memory = CooldownState::default();
    let open = run.decide(2, &busy(2, 0), &memory, &[], inside);
    assert_eq!((open.min, open.max, open.desired), (5, 8, 6), "{open:?}");
    let closed = run.decide(2, &busy(2, 0), &memory, &[], before);
    assert_eq!((closed.min, closed.max, closed.desired), (1, 20, 2));
    assert!(closed.proposals.is_empty());
}

#[test]
fn sla_headroom_asks_for_workers_to_start_each_job_in_time() {
    let policies = [policy("sla", PolicyKind::SlaHeadroom { headroom: 0.5 })];
    let run = Run {
        min: 0,
        max: 1_000,
        policies: &policies,
        cooldown: Cooldown {
            max_added_per_minute: 1_000,
            ..Cooldown::default()
        },
    };
    // 2 starts/s per worker; the 600th job ahead has 60 s left, half of it usable:
    // 600 / (2 x 30) = 10 workers.
    let observed = Observed {
        workers: 2,
        dispatch_per_worker_per_s: 2.0,
        sla_waiting: vec![
            SlaWaiting {
                ahead: 10,
                remaining_ms: 60_000,
            },
            SlaWaiting {
                ahead: 600,
                remaining_ms: 60_000,
            },
        ],
        jobs_per_worker: 4,
        ..Observed::default()
    };
    let decision = run.decide(2, &observed, &CooldownState::default(), &[], 1_000_000);
    assert_eq!(decision.desired, 10, "{decision:?}");
    // Nothing started yet: a slot per waiting job.
    let cold = Observed {
        dispatch_per_worker_per_s: 0.0,
        ..observed
    };
    assert_eq!(
        run.decide(2, &cold, &CooldownState::default(), &[], 1_000_000)
            .desired,
        1
    );
}

#[test]
fn invalid_rules_name_their_field() {
    let error = PolicyKind::TargetTracking {
        metric: ScalingMetric::Utilization,
        target: 1.5,
    }
    .validate("policy")
    .unwrap_err();
    assert!(error.to_string().contains("policy.target"), "{error}");
    let error = PolicyKind::Scheduled {
        schedule: Schedule {
            cron: "61 * * * *".into(),
            timezone: "UTC".into(),
        },
        duration_s: 60,
        min: 0,
        max: 1,
        desired: 1,
    }
    .validate("policy")
    .unwrap_err();
    assert!(error.to_string().contains("policy.cron"), "{error}");
    let error = Schedule {
        cron: "* * * * *".into(),
        timezone: "Mars/Olympus".into(),
    }
    .validate("trigger")
    .unwrap_err();
    assert!(error.to_string().contains("trigger.timezone"), "{error}");
    assert!(ScalingMetric::parse("metric", "queue_depth").is_err());
}

#[test]
fn a_forced_trigger_sets_the_size_even_below_what_the_policies_want() {
    let policies = [utilization(0.5)];
    let mut memory = CooldownState::default();
    memory.record(4, 6, 1_000_000);
    let decision = decide(&DecisionInput {
        min: 1,
        max: 20,
        current: 6,
        observed: &busy(6, 6_000),
        policies: &policies,
        fired: &[Proposal {
            source: "trigger:down".into(),
            desired: 3,
            reason: "fired".into(),
        }],
        cooldown: Cooldown::default(),
        memory: &memory,
        tolerance: DEFAULT_TOLERANCE,
        recent: &[(1_000_000, 12)],
        stabilization_ms: DEFAULT_STABILIZATION_MS,
        force: true,
        now_ms: 1_010_000,
    });
    assert_eq!(
        (decision.desired, decision.blocked_by),
        (3, None),
        "{decision:?}"
    );
}

#[test]
fn a_schedule_names_whole_seconds_and_a_missed_run_fires_once() {
    let every_minute = Schedule {
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
    };
    // From 12:00:00.345 the next minute is 12:01:00.000, not 12:00:00.345 again.
    let noon = 1_795_867_200_000;
    assert_eq!(
        every_minute.next_at_or_after(noon + 345),
        Some(noon + 60_000)
    );
    assert_eq!(every_minute.next_at_or_after(noon), Some(noon));
    // Ten minutes missed: the latest occurrence only.
    assert_eq!(
        every_minute.latest_within(noon, noon + 600_500),
        Some(noon + 600_000)
    );
    assert_eq!(every_minute.latest_within(noon, noon + 59_999), None);
    assert_eq!(every_minute.latest_within(noon - 1, noon), Some(noon));
}

#[test]
fn adjustments_beyond_any_pool_are_refused_and_never_overflow() {
    let error = PolicyKind::StepScaling {
        metric: ScalingMetric::PendingJobsPerWorker,
        adjustment_type: AdjustmentType::ChangeInCapacity,
        steps: vec![Step {
            lower: None,
            upper: None,
            adjustment: i64::MAX,
        }],
    }
    .validate("policy")
    .unwrap_err();
    assert!(
        error.to_string().contains("policy.steps[0].adjustment"),
        "{error}"
    );
    assert_eq!(TriggerAction::Adjust(i64::MAX).applied_to(5), u32::MAX);
    assert_eq!(TriggerAction::Adjust(i64::MIN).applied_to(5), 0);
}
