//! The gauges of the node's state (Raft, tenants, quotas, bursts, jobs, pools, workers,
//! SLA), registered once on the `MetricsHub` and read from the state at each scrape.

use std::collections::BTreeMap;

use opentelemetry::KeyValue;

use crate::actors::NodeContext;
use hodei_domain::burst::BurstStatus;
use hodei_domain::resources::Resources;
use hodei_domain::tenant::TenantStatus;

use crate::actors::metrics::{MetricsHub, PoolSizes};

impl MetricsHub {
    /// Gauges read from the node's state at each scrape.
    pub fn observe_node(&mut self, node: &NodeContext) {
        self.node = Some(node.clone());
        self.observe_jobs(node);
        self.observe_job_ends(node);
        let raft = node.raft.clone();
        self.meter
            .u64_observable_gauge("hodei_raft_term")
            .with_description("The Raft term this node is in")
            .with_callback(move |observer| observer.observe(raft.status().term, &[]))
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_gauge("hodei_raft_is_leader")
            .with_description("1 while this node is the Raft leader")
            .with_callback(move |observer| observer.observe(u64::from(raft.is_leader()), &[]))
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_gauge("hodei_raft_index")
            .with_description("Raft log indexes of this node: last_log, applied, snapshot")
            .with_callback(move |observer| {
                let status = raft.status();
                for (kind, index) in [
                    ("last_log", status.last_log_index),
                    ("applied", status.last_applied_index),
                    ("snapshot", status.snapshot_index),
                ] {
                    observer.observe(index.unwrap_or(0), &[KeyValue::new("kind", kind)]);
                }
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_gauge("hodei_raft_replication_lag_entries")
            .with_description("Entries each follower is behind the leader (reported by the leader)")
            .with_callback(move |observer| {
                let status = raft.status();
                for member in status
                    .members
                    .iter()
                    .filter(|member| member.node_id != status.node_id)
                {
                    if let Some(lag) = member.lag {
                        observer.observe(
                            lag,
                            &[KeyValue::new("follower", member.node_id.to_string())],
                        );
                    }
                }
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_counter("hodei_raft_applied_commands")
            .with_description("Commands applied to this node's state machine")
            .with_callback(move |observer| observer.observe(raft.apply_stats().commands, &[]))
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_counter("hodei_raft_applied_entries")
            .with_description("Raft entries applied to this node's state machine")
            .with_callback(move |observer| observer.observe(raft.apply_stats().entries, &[]))
            .build();
        let raft = node.raft.clone();
        self.meter
            .f64_observable_counter("hodei_raft_apply_seconds")
            .with_description(
                "Time spent applying entries; divided by applied entries, the mean apply latency",
            )
            .with_callback(move |observer| {
                observer.observe(raft.apply_stats().apply_micros as f64 / 1e6, &[])
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_gauge("hodei_raft_last_snapshot_bytes")
            .with_description(
                "Size of the latest snapshot this node built or installed (0 before the first)",
            )
            .with_callback(move |observer| {
                observer.observe(raft.apply_stats().last_snapshot_bytes, &[])
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .f64_observable_gauge("hodei_raft_last_snapshot_seconds")
            .with_description(
                "Time the latest snapshot took to build or install (0 before the first)",
            )
            .with_callback(move |observer| {
                observer.observe(raft.apply_stats().last_snapshot_micros as f64 / 1e6, &[])
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .f64_observable_gauge("hodei_raft_leader_quorum_ack_age_seconds")
            .with_description(
                "On the leader only: time since a majority last acknowledged it (a leader cut off from the others keeps its role while this grows)",
            )
            .with_callback(move |observer| {
                if let Some(age_ms) = raft.status().quorum_ack_age_ms {
                    observer.observe(age_ms as f64 / 1e3, &[])
                }
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_counter("hodei_raft_snapshots")
            .with_description("Snapshots built by this node or installed from the leader")
            .with_callback(move |observer| {
                let stats = raft.apply_stats();
                observer.observe(stats.snapshots_built, &[KeyValue::new("kind", "built")]);
                observer.observe(
                    stats.snapshots_installed,
                    &[KeyValue::new("kind", "installed")],
                );
            })
            .build();
        let raft = node.raft.clone();
        self.meter
            .u64_observable_gauge("hodei_cluster_members")
            .with_description("Cluster members by role (voter, learner)")
            .with_callback(move |observer| {
                let members = raft.status().members;
                let voters = members.iter().filter(|member| member.voter).count() as u64;
                observer.observe(voters, &[KeyValue::new("role", "voter")]);
                observer.observe(
                    members.len() as u64 - voters,
                    &[KeyValue::new("role", "learner")],
                );
            })
            .build();
        self.observe_tenants(node);
    }

    /// Quota violations by tenant and reason, from the replicated state.
    fn observe_violations(&self, node: &NodeContext) {
        let state = node.clone();
        self.meter
            .u64_observable_counter("hodei_quota_violations")
            .with_description(
                "Quota decisions that refused a submit or held a job (at submit or dispatch), \
                 by tenant and reason: recorded by apply, so cluster-wide and the same on every \
                 node (count one node's); zero from a tenant's creation",
            )
            .with_callback(move |observer| {
                let (tenants, counts) = state.read(|hodei| {
                    let counts: std::collections::BTreeMap<(String, String), u64> = hodei
                        .violation_counts(None)
                        .into_iter()
                        .map(|(tenant, reason, count)| ((tenant, reason), count))
                        .collect();
                    (hodei.tenant_ids(), counts)
                });
                for tenant in &tenants {
                    for reason in hodei_domain::admission::ReasonCode::ALL {
                        let key = (tenant.to_string(), reason.as_str().to_string());
                        observer.observe(
                            counts.get(&key).copied().unwrap_or(0),
                            &[
                                KeyValue::new("tenant", tenant.to_string()),
                                KeyValue::new("reason", reason.as_str()),
                            ],
                        );
                    }
                }
            })
            .build();
    }

    /// Tenants by status, quota usage and burst sessions, read from the state at each scrape.
    fn observe_tenants(&self, node: &NodeContext) {
        self.observe_violations(node);
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_tenants")
            .with_description("Tenants by status")
            .with_callback(move |observer| {
                let (active, suspended) = state.read(|hodei| {
                    hodei
                        .tenant_ids()
                        .iter()
                        .filter_map(|id| hodei.tenant(id))
                        .fold((0u64, 0u64), |(active, suspended), tenant| {
                            match tenant.status {
                                TenantStatus::Active => (active + 1, suspended),
                                TenantStatus::Suspended => (active, suspended + 1),
                            }
                        })
                });
                observer.observe(active, &[KeyValue::new("status", "active")]);
                observer.observe(suspended, &[KeyValue::new("status", "suspended")]);
            })
            .build();
        let state = node.clone();
        self.meter
            .f64_observable_gauge("hodei_quota_usage_ratio")
            .with_description("Running usage over quota, per tenant and dimension (1.0 = at quota)")
            .with_callback(move |observer| {
                let ratios: Vec<(String, &'static str, f64)> = state.read(|hodei| {
                    hodei
                        .tenant_ids()
                        .iter()
                        .filter_map(|id| hodei.tenant(id).map(|tenant| (tenant, hodei.usage(id))))
                        .flat_map(|(tenant, usage)| {
                            let quota = tenant.quota.resources();
                            let mut ratios: Vec<(String, &'static str, f64)> = usage
                                .running
                                .dimensions()
                                .into_iter()
                                .zip(quota.dimensions())
                                .filter(|(_, (_, limit))| *limit > 0)
                                .map(|((dimension, used), (_, limit))| {
                                    (
                                        tenant.id.to_string(),
                                        dimension.as_str(),
                                        used as f64 / limit as f64,
                                    )
                                })
                                .collect();
                            if tenant.quota.max_concurrent_jobs > 0 {
                                ratios.push((
                                    tenant.id.to_string(),
                                    "concurrent_jobs",
                                    usage.running_jobs as f64
                                        / tenant.quota.max_concurrent_jobs as f64,
                                ));
                            }
                            ratios
                        })
                        .collect()
                });
                for (tenant, dimension, ratio) in ratios {
                    observer.observe(
                        ratio,
                        &[
                            KeyValue::new("tenant", tenant),
                            KeyValue::new("dimension", dimension),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_burst_sessions")
            .with_description("Open burst sessions by status (active, awaiting_approval)")
            .with_callback(move |observer| {
                let (active, awaiting) = state.read(|hodei| {
                    hodei
                        .tenant_ids()
                        .iter()
                        .flat_map(|id| hodei.burst_sessions(id).iter())
                        .fold((0u64, 0u64), |(active, awaiting), session| {
                            match session.status {
                                BurstStatus::Active => (active + 1, awaiting),
                                BurstStatus::AwaitingApproval => (active, awaiting + 1),
                                BurstStatus::Ended => (active, awaiting),
                            }
                        })
                });
                observer.observe(active, &[KeyValue::new("status", "active")]);
                observer.observe(awaiting, &[KeyValue::new("status", "awaiting_approval")]);
            })
            .build();
    }

    /// Jobs and workers, read from the state at each scrape, and the wait and run time
    /// histograms fed by the state's events.
    fn observe_jobs(&self, node: &NodeContext) {
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_jobs")
            .with_description(
                "Jobs not yet final, by queue, tenant and state (pending, assigned, running)",
            )
            .with_callback(move |observer| {
                let live: Vec<(String, String, &'static str, u64)> = state.read(|hodei| {
                    hodei
                        .job_tally()
                        .iter()
                        .filter(|((_, _, job_state), _)| !job_state.is_final())
                        .map(|((queue, tenant, job_state), count)| {
                            (
                                queue.clone(),
                                tenant.to_string(),
                                job_state.as_str(),
                                *count,
                            )
                        })
                        .collect()
                });
                for (queue, tenant, job_state, count) in live {
                    observer.observe(
                        count,
                        &[
                            KeyValue::new("queue", queue),
                            KeyValue::new("tenant", tenant),
                            KeyValue::new("state", job_state),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_jobs_pending_by_reason")
            .with_description(
                "Pending jobs by queue and the first reason each waits for (the codes of GET /jobs/{id}/position; in_line: nothing but its turn; not_examined: beyond the 20,000 job shapes one scrape checks)",
            )
            .with_callback(move |observer| {
                let burst = crate::actors::gateway_jobs::max_burst_percent(&state);
                let tally = state.read(|hodei| {
                    crate::actors::gateway_reports::pending_reason_tally(hodei, burst)
                });
                for ((queue, reason), count) in tally {
                    observer.observe(
                        count,
                        &[
                            KeyValue::new("queue", queue),
                            KeyValue::new("reason", reason),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_counter("hodei_jobs_finished")
            .with_description("Jobs that reached a final state, by tenant and state (succeeded, failed, timed_out, cancelled)")
            .with_callback(move |observer| {
                let finished: BTreeMap<(String, &'static str), u64> = state.read(|hodei| {
                    let mut finished = BTreeMap::new();
                    for ((_, tenant, job_state), count) in hodei.job_tally() {
                        if job_state.is_final() {
                            *finished.entry((tenant.to_string(), job_state.as_str())).or_default() += count;
                        }
                    }
                    finished
                });
                for ((tenant, job_state), count) in finished {
                    observer.observe(
                        count,
                        &[KeyValue::new("tenant", tenant), KeyValue::new("state", job_state)],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_counter("hodei_jobs_submitted")
            .with_description("Jobs accepted, by tenant")
            .with_callback(move |observer| {
                let submitted: BTreeMap<String, u64> = state.read(|hodei| {
                    let mut submitted = BTreeMap::new();
                    for ((_, tenant, _), count) in hodei.job_tally() {
                        *submitted.entry(tenant.to_string()).or_default() += count;
                    }
                    submitted
                });
                for (tenant, count) in submitted {
                    observer.observe(count, &[KeyValue::new("tenant", tenant)]);
                }
            })
            .build();
        self.observe_pools(node);
        self.observe_sla(node);
        self.observe_cost(node);
        self.observe_fair_share(node);
    }

    /// Each queue's fair share against what each tenant got over the fair-share window,
    /// whether it is backlogged, and Jain's index (what the "below half its fair share"
    /// alert and the queue dashboards read).
    fn observe_fair_share(&self, node: &NodeContext) {
        type Shares = Vec<(String, Vec<(String, f64, f64, bool)>, Option<f64>)>;
        // Each of the four series computes the report itself. A report cached across them
        // for 200 ms made a test's scrape miss the series of a queue that had run jobs
        // (not understood yet), so it is not cached: four reads of the share ledger per
        // scrape.
        let read = |node: &NodeContext| -> std::sync::Arc<Shares> {
            let window_ms = node.limits.fair_share_window.as_millis() as u64;
            let now = crate::actors::now_ms();
            std::sync::Arc::new(node.read(|hodei| {
                hodei
                    .queues()
                    .map(|queue| {
                        let view =
                            crate::actors::queue_reports::fair_share(hodei, queue, now, window_ms);
                        let tenants = view
                            .tenants
                            .into_iter()
                            .map(|share| {
                                (
                                    share.tenant,
                                    share.fair_share,
                                    share.actual_share,
                                    share.backlogged,
                                )
                            })
                            .collect();
                        (view.queue, tenants, view.jain_index)
                    })
                    .collect()
            }))
        };
        let read = std::sync::Arc::new(read);
        let (state, shares) = (node.clone(), read.clone());
        self.meter
            .f64_observable_gauge("hodei_tenant_fair_share_ratio")
            .with_description("A tenant's fair share of its queue's pools (its weight over the backlogged tenants' weights), 0..1")
            .with_callback(move |observer| {
                for (queue, tenants, _) in shares(&state).iter() {
                    for (tenant, fair, _, _) in tenants {
                        observer.observe(
                            *fair,
                            &[KeyValue::new("queue", queue.clone()), KeyValue::new("tenant", tenant.clone())],
                        );
                    }
                }
            })
            .build();
        let (state, shares) = (node.clone(), read.clone());
        self.meter
            .f64_observable_gauge("hodei_tenant_actual_share_ratio")
            .with_description("What a tenant held of its queue's pools over the fair-share window (dominant resource), 0..1")
            .with_callback(move |observer| {
                for (queue, tenants, _) in shares(&state).iter() {
                    for (tenant, _, actual, _) in tenants {
                        observer.observe(
                            *actual,
                            &[KeyValue::new("queue", queue.clone()), KeyValue::new("tenant", tenant.clone())],
                        );
                    }
                }
            })
            .build();
        let (state, shares) = (node.clone(), read.clone());
        self.meter
            .u64_observable_gauge("hodei_tenant_backlogged")
            .with_description("1 while a tenant has jobs pending in the queue")
            .with_callback(move |observer| {
                for (queue, tenants, _) in shares(&state).iter() {
                    for (tenant, _, _, backlogged) in tenants {
                        observer.observe(
                            u64::from(*backlogged),
                            &[
                                KeyValue::new("queue", queue.clone()),
                                KeyValue::new("tenant", tenant.clone()),
                            ],
                        );
                    }
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_queue_live_workers")
            .with_description("Live workers (idle or busy) of the pools a queue dispatches to, in pools that take work")
            .with_callback(move |observer| {
                let live: Vec<(String, u64)> = state.read(|hodei| {
                    // Live workers per accepting pool, once; then summed per queue.
                    let mut per_pool: BTreeMap<&str, u64> = BTreeMap::new();
                    for worker in hodei.workers().filter(|worker| worker.is_live()) {
                        *per_pool.entry(worker.pool.as_str()).or_default() += 1;
                    }
                    per_pool.retain(|pool, _| hodei.pool(pool).is_some_and(|found| found.accepts_work()));
                    per_queue(hodei, &per_pool)
                });
                for (queue, count) in live {
                    observer.observe(count, &[KeyValue::new("queue", queue)]);
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_queue_provisioning_workers")
            .with_description("Workers the dynamic pools of a queue are bringing up (desired size beyond the live workers), in pools that take work")
            .with_callback(move |observer| {
                let coming: Vec<(String, u64)> = state.read(|hodei| {
                    let per_pool: BTreeMap<&str, u64> = hodei
                        .pools()
                        .filter(|pool| {
                            pool.pool_type == hodei_domain::pool::PoolType::Dynamic
                                && pool.accepts_work()
                        })
                        .map(|pool| {
                            let (_, _, desired) = pool.shown_sizes();
                            let live = hodei.live_workers_of(&pool.id) as u64;
                            (pool.id.as_str(), u64::from(desired).saturating_sub(live))
                        })
                        .collect();
                    per_queue(hodei, &per_pool)
                });
                for (queue, count) in coming {
                    observer.observe(count, &[KeyValue::new("queue", queue)]);
                }
            })
            .build();
        let (state, shares) = (node.clone(), read);
        self.meter
            .f64_observable_gauge("hodei_queue_jain_index")
            .with_description("Jain's fairness index of the queue's tenants' normalized shares (1: perfectly fair)")
            .with_callback(move |observer| {
                for (queue, _, jain) in shares(&state).iter() {
                    if let Some(jain) = jain {
                        observer.observe(*jain, &[KeyValue::new("queue", queue.clone())]);
                    }
                }
            })
            .build();
    }

    /// What runs billed, what pools left idle, and each tenant's budget use today.
    fn observe_cost(&self, node: &NodeContext) {
        let state = node.clone();
        self.meter
            .u64_observable_counter("hodei_cost_nanodollars")
            .with_description(
                "What runs billed, by tenant and pool, nano-dollars (running runs up to now)",
            )
            .with_callback(move |observer| {
                let now = crate::actors::now_ms();
                let billed = state.read(|hodei| hodei.billed_counters(now));
                for ((tenant, pool), nanos) in billed {
                    observer.observe(
                        nanos,
                        &[KeyValue::new("tenant", tenant), KeyValue::new("pool", pool)],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_counter("hodei_pool_idle_cost_nanodollars")
            .with_description("What a pool's provisioned workers cost that no run used, nano-dollars at list prices (live workers and running runs up to now)")
            .with_callback(move |observer| {
                let now = crate::actors::now_ms();
                let idle = state.read(|hodei| hodei.idle_counters(now));
                for (pool, nanos) in idle {
                    observer.observe(nanos, &[KeyValue::new("pool", pool)]);
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .f64_observable_gauge("hodei_tenant_budget_used_ratio")
            .with_description("A tenant's spending today (UTC) over its daily cost budget (tenants with a budget)")
            .with_callback(move |observer| {
                let now = crate::actors::now_ms();
                let ratios: Vec<(String, f64)> = state.read(|hodei| {
                    hodei
                        .tenant_ids()
                        .into_iter()
                        .filter_map(|tenant| {
                            crate::actors::gateway_limits::budget_view(hodei, &tenant, now)
                                .map(|budget| (tenant.to_string(), budget.used_ratio))
                        })
                        .collect()
                });
                for (tenant, ratio) in ratios {
                    observer.observe(ratio, &[KeyValue::new("tenant", tenant)]);
                }
            })
            .build();
    }

    /// Workers and pools: sizes, utilisation, lifecycle states, jobs running on burst.
    fn observe_pools(&self, node: &NodeContext) {
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_workers")
            .with_description("Registered workers by pool and state (idle, busy, lost)")
            .with_callback(move |observer| {
                let workers: BTreeMap<(String, &'static str), u64> = state.read(|hodei| {
                    let mut workers = BTreeMap::new();
                    for worker in hodei.workers() {
                        *workers
                            .entry((worker.pool.clone(), worker.state.as_str()))
                            .or_default() += 1;
                    }
                    workers
                });
                for ((pool, worker_state), count) in workers {
                    observer.observe(
                        count,
                        &[
                            KeyValue::new("pool", pool),
                            KeyValue::new("state", worker_state),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_pool_size")
            .with_description("Pool sizes: live workers (current), desired, min and max, by pool")
            .with_callback(move |observer| {
                let sizes: Vec<(String, PoolSizes, &'static str)> = state.read(|hodei| {
                    hodei
                        .pools()
                        .map(|pool| {
                            let (min, max, desired) = pool.shown_sizes();
                            (
                                pool.id.clone(),
                                [
                                    ("current", hodei.live_workers_of(&pool.id) as u64),
                                    ("desired", u64::from(desired)),
                                    ("min", u64::from(min)),
                                    ("max", u64::from(max)),
                                ],
                                pool.state.as_str(),
                            )
                        })
                        .collect()
                });
                for (pool, values, _) in sizes {
                    for (kind, value) in values {
                        observer.observe(
                            value,
                            &[
                                KeyValue::new("pool", pool.clone()),
                                KeyValue::new("kind", kind),
                            ],
                        );
                    }
                }
            })
            .build();
        self.observe_pool_use(node);
    }

    /// Pools' utilisation, jobs running on burst capacity, and lifecycle states.
    fn observe_pool_use(&self, node: &NodeContext) {
        let state = node.clone();
        self.meter
            .f64_observable_gauge("hodei_pool_utilization_ratio")
            .with_description(
                "Used over capacity of a pool's live workers, by pool and resource (cpu, memory)",
            )
            .with_callback(move |observer| {
                let ratios: Vec<(String, &'static str, f64)> = state.read(|hodei| {
                    hodei
                        .pools()
                        .flat_map(|pool| {
                            let (used, capacity) = hodei
                                .workers()
                                .filter(|worker| worker.pool == pool.id && worker.is_live())
                                .fold(
                                    (Resources::ZERO, Resources::ZERO),
                                    |(used, capacity), worker| {
                                        (
                                            used.saturating_add(worker.used),
                                            capacity.saturating_add(worker.capacity),
                                        )
                                    },
                                );
                            [
                                ("cpu", used.cpu_m, capacity.cpu_m),
                                ("memory", used.memory_mb, capacity.memory_mb),
                            ]
                            .into_iter()
                            .filter(|(_, _, total)| *total > 0)
                            .map(|(resource, used, total)| {
                                (pool.id.clone(), resource, used as f64 / total as f64)
                            })
                            .collect::<Vec<_>>()
                        })
                        .collect()
                });
                for (pool, resource, ratio) in ratios {
                    observer.observe(
                        ratio,
                        &[
                            KeyValue::new("pool", pool),
                            KeyValue::new("resource", resource),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_jobs_burst")
            .with_description(
                "Jobs assigned or running under a burst session (above quota), by tenant",
            )
            .with_callback(move |observer| {
                let bursting: BTreeMap<String, u64> = state.read(|hodei| {
                    let mut bursting = BTreeMap::new();
                    for worker in hodei.workers() {
                        for job in hodei.jobs_of_worker(&worker.id) {
                            if job.burst {
                                *bursting.entry(job.spec.tenant.to_string()).or_default() += 1;
                            }
                        }
                    }
                    bursting
                });
                for (tenant, count) in bursting {
                    observer.observe(count, &[KeyValue::new("tenant", tenant)]);
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_pool_state")
            .with_description("1 for the pool's lifecycle state, by pool and state")
            .with_callback(move |observer| {
                let states: Vec<(String, &'static str)> = state.read(|hodei| {
                    hodei
                        .pools()
                        .map(|pool| (pool.id.clone(), pool.state.as_str()))
                        .collect()
                });
                for (pool, pool_state) in states {
                    observer.observe(
                        1,
                        &[
                            KeyValue::new("pool", pool),
                            KeyValue::new("state", pool_state),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .f64_observable_gauge("hodei_scaling_cooldown_remaining_seconds")
            .with_description(
                "Seconds until an autoscaled pool may scale again, by pool and direction (up, down)",
            )
            .with_callback(move |observer| {
                let now = crate::actors::now_ms();
                let remaining: Vec<(String, u64, u64)> = state.read(|hodei| {
                    hodei
                        .pools()
                        .filter_map(|pool| hodei.scaling(&pool.id))
                        .map(|scaling| {
                            let memory = &scaling.memory;
                            let left = |last: Option<u64>, seconds: u64| {
                                last.map_or(0, |at| (at + seconds * 1_000).saturating_sub(now))
                            };
                            let last_change =
                                memory.last_scale_up_ms.max(memory.last_scale_down_ms);
                            (
                                scaling.pool.clone(),
                                left(memory.last_scale_up_ms, scaling.cooldown.scale_up_s),
                                left(last_change, scaling.cooldown.scale_down_s),
                            )
                        })
                        .collect()
                });
                for (pool, up_ms, down_ms) in remaining {
                    for (direction, left_ms) in [("up", up_ms), ("down", down_ms)] {
                        observer.observe(
                            left_ms as f64 / 1_000.0,
                            &[
                                KeyValue::new("pool", pool.clone()),
                                KeyValue::new("direction", direction),
                            ],
                        );
                    }
                }
            })
            .build();
    }

    /// SLA: jobs by SLA level and status, and the compliance ratio.
    fn observe_sla(&self, node: &NodeContext) {
        let state = node.clone();
        self.meter
            .u64_observable_gauge("hodei_sla_jobs")
            .with_description("Jobs with an SLA by tenant, level and last status (on_track, at_risk, critical, violated, met)")
            .with_callback(move |observer| {
                let counts: Vec<(String, &'static str, &'static str, u64)> = state.read(|hodei| {
                    hodei
                        .sla_tally()
                        .iter()
                        .map(|((tenant, level, status), count)| {
                            (tenant.to_string(), level.as_str(), status.as_str(), *count)
                        })
                        .collect()
                });
                for (tenant, level, status, count) in counts {
                    observer.observe(
                        count,
                        &[
                            KeyValue::new("tenant", tenant),
                            KeyValue::new("level", level),
                            KeyValue::new("status", status),
                        ],
                    );
                }
            })
            .build();
        let state = node.clone();
        self.meter
            .f64_observable_gauge("hodei_sla_compliance_ratio")
            .with_description(
                "Met over met plus violated, by tenant and SLA level (jobs with a verdict)",
            )
            .with_callback(move |observer| {
                let verdicts: BTreeMap<(String, &'static str), (u64, u64)> = state.read(|hodei| {
                    let mut verdicts = BTreeMap::new();
                    for ((tenant, level, status), count) in hodei.sla_tally() {
                        let entry: &mut (u64, u64) = verdicts
                            .entry((tenant.to_string(), level.as_str()))
                            .or_default();
                        match status {
                            hodei_domain::sla::SlaStatus::Met => entry.0 += count,
                            hodei_domain::sla::SlaStatus::Violated => entry.1 += count,
                            _ => {}
                        }
                    }
                    verdicts
                });
                for ((tenant, level), (met, violated)) in verdicts {
                    if met + violated == 0 {
                        continue;
                    }
                    observer.observe(
                        met as f64 / (met + violated) as f64,
                        &[
                            KeyValue::new("tenant", tenant),
                            KeyValue::new("level", level),
                        ],
                    );
                }
            })
            .build();
    }

    /// The wait and run time histograms, fed from apply with every job end (not from the
    /// event stream, which a slow reader overflows).
    fn observe_job_ends(&self, node: &NodeContext) {
        let metrics = self.metrics.clone();
        node.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe_job_ends(std::sync::Arc::new(move |end| {
                metrics.job_ended(&end.queue, end.state.as_str(), end.wait_ms, end.run_ms);
            }));
    }
}

/// A count per pool, summed over each queue's pools.
fn per_queue(
    state: &crate::state::HodeiState,
    per_pool: &BTreeMap<&str, u64>,
) -> Vec<(String, u64)> {
    state
        .queues()
        .map(|queue| {
            let count = queue
                .pools
                .iter()
                .filter_map(|pool| per_pool.get(pool.as_str()))
                .sum();
            (queue.id.clone(), count)
        })
        .collect()
}
