//! The MetricsActor owns the OpenTelemetry meter provider and its Prometheus exporter; it
//! answers scrapes of `metrics.prometheus.path` on `metrics.prometheus.port`. The rest of
//! the node reports through [`Metrics`], shared instruments that take no lock on the
//! request path; gauges of state (Raft, tenants, burst sessions) are read at scrape time.
//!
//! Every series is `hodei_*` in base units, counters end in `_total`, and labels are
//! bounded (route, method, status, operation, code, tenant, reason, role, actor): never a
//! job or request id.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Instruments the node reports to. Cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    api_requests: Counter<u64>,
    api_duration: Histogram<f64>,
    gateway_requests: Counter<u64>,
    gateway_duration: Histogram<f64>,
    actor_restarts: Counter<u64>,
    burst_refusals: Counter<u64>,
    job_wait: Histogram<f64>,
    job_run: Histogram<f64>,
    dispatch_plans: Counter<u64>,
    dispatch_assignments: Counter<u64>,
    dispatch_duration: Histogram<f64>,
    dispatch_latency: Histogram<f64>,
    workers_lost: Counter<u64>,
    pool_provisioning: Counter<u64>,
    scaling_decisions: Counter<u64>,
    connections_refused: Counter<u64>,
    connections_open: UpDownCounter<i64>,
}

/// The ports whose connections are limited (`server.limits.max_connections`).
const PORTS: [&str; 3] = ["rest", "grpc", "peer"];

/// The kinds an actor restart is counted under (root children, controllers, loops).
const ACTOR_KINDS: [&str; 7] = [
    "gateway", "metrics", "control", "tenant", "queue", "pool", "loop",
];

/// A pool's sizes by kind (current, desired, min, max).
pub(super) type PoolSizes = [(&'static str, u64); 4];

/// Job wait and run time buckets in seconds, from 10 ms to a day.
const JOB_TIME_BUCKETS: [f64; 15] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
    86400.0,
];

/// REST latency buckets in seconds (by route and method: few buckets, many routes).
const API_BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Latency buckets in seconds, from 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Fine buckets for the dispatch latency, whose target is counted in milliseconds.
const DISPATCH_LATENCY_BUCKETS: [f64; 19] = [
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
    2.5, 5.0, 10.0,
];

impl Metrics {
    fn new(meter: &Meter) -> Self {
        Self {
            api_requests: meter
                .u64_counter("hodei_api_requests")
                .with_description("REST requests by route template, method and status")
                .build(),
            api_duration: meter
                .f64_histogram("hodei_api_request_duration_seconds")
                .with_description("REST request latency by route template and method")
                .with_boundaries(API_BUCKETS.to_vec())
                .build(),
            gateway_requests: meter
                .u64_counter("hodei_gateway_requests")
                .with_description(
                    "Gateway operations (REST and gRPC alike) by operation and outcome code",
                )
                .build(),
            gateway_duration: meter
                .f64_histogram("hodei_gateway_request_duration_seconds")
                .with_description(
                    "Gateway operation latency, including Raft commit or read barrier",
                )
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            actor_restarts: meter
                .u64_counter("hodei_actor_restarts")
                .with_description("Actors restarted by their supervisor, by actor kind")
                .build(),
            burst_refusals: meter
                .u64_counter("hodei_burst_refusals")
                .with_description("Burst requests refused, by tenant and governance rule")
                .build(),
            job_wait: meter
                .f64_histogram("hodei_job_wait_seconds")
                .with_description("From submission to the start of the run that ended the job, by queue")
                .with_boundaries(JOB_TIME_BUCKETS.to_vec())
                .build(),
            job_run: meter
                .f64_histogram("hodei_job_run_seconds")
                .with_description("Duration of the run that ended the job, by queue and final state")
                .with_boundaries(JOB_TIME_BUCKETS.to_vec())
                .build(),
            dispatch_plans: meter
                .u64_counter("hodei_dispatch_plans")
                .with_description("Dispatch plans proposed by the leader, by queue")
                .build(),
            dispatch_assignments: meter
                .u64_counter("hodei_dispatch_assignments")
                .with_description(
                    "Planned assignments by queue and outcome (assigned, or rejected by the state machine's re-check)",
                )
                .build(),
            dispatch_duration: meter
                .f64_histogram("hodei_dispatch_decision_duration_seconds")
                .with_description("Time to read the snapshot and decide one dispatch plan, by queue")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            dispatch_latency: meter
                .f64_histogram("hodei_dispatch_latency_seconds")
                .with_description(
                    "From a run's end freeing room while jobs wait to the commit of the \
                     assignment that fills it, by queue (observed by the leader)",
                )
                .with_boundaries(DISPATCH_LATENCY_BUCKETS.to_vec())
                .build(),
            pool_provisioning: meter
                .u64_counter("hodei_pool_provisioning")
                .with_description("Worker starts by pool and outcome (succeeded, failed, timed_out) (leader)")
                .build(),
            scaling_decisions: meter
                .u64_counter("hodei_scaling_decisions")
                .with_description(
                    "Autoscaling decisions by pool and outcome (in_progress when made, then how each settled: succeeded, failed, partial, cancelled; blocked_by_cooldown) (leader)",
                )
                .build(),
            workers_lost: meter
                .u64_counter("hodei_workers_lost")
                .with_description("Workers declared lost after missed heartbeats, by pool (leader)")
                .build(),
            connections_refused: meter
                .u64_counter("hodei_connections_refused")
                .with_description("Connections closed on accept because the port held server.limits.max_connections, by port (rest, grpc, peer)")
                .build(),
            connections_open: meter
                .i64_up_down_counter("hodei_connections_open")
                .with_description("Connections open on each port (rest, grpc, peer), of server.limits.max_connections")
                .build(),
        }
    }

    pub fn job_ended(
        &self,
        queue: &str,
        state: &'static str,
        wait_ms: Option<u64>,
        run_ms: Option<u64>,
    ) {
        let queue = KeyValue::new("queue", queue.to_string());
        if let Some(wait_ms) = wait_ms {
            self.job_wait
                .record(wait_ms as f64 / 1000.0, std::slice::from_ref(&queue));
        }
        if let Some(run_ms) = run_ms {
            self.job_run.record(
                run_ms as f64 / 1000.0,
                &[queue, KeyValue::new("state", state)],
            );
        }
    }

    pub fn dispatch_plan(&self, queue: &str, seconds: f64) {
        let queue = KeyValue::new("queue", queue.to_string());
        self.dispatch_plans.add(1, std::slice::from_ref(&queue));
        self.dispatch_duration.record(seconds, &[queue]);
    }

    pub fn dispatch_latency(&self, queue: &str, seconds: f64) {
        self.dispatch_latency
            .record(seconds, &[KeyValue::new("queue", queue.to_string())]);
    }

    pub fn dispatch_outcome(&self, queue: &str, assigned: usize, rejected: usize) {
        for (outcome, count) in [("assigned", assigned), ("rejected", rejected)] {
            self.dispatch_assignments.add(
                count as u64,
                &[
                    KeyValue::new("queue", queue.to_string()),
                    KeyValue::new("outcome", outcome),
                ],
            );
        }
    }

    pub fn scaling_decision(&self, pool: &str, outcome: &'static str) {
        self.scaling_decisions.add(
            1,
            &[
                KeyValue::new("pool", pool.to_string()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    pub fn pool_provisioning(&self, pool: &str, outcome: &'static str) {
        self.count_provisioning(pool, outcome, 1);
    }

    /// A pool's provisioning series exist, at zero, from the start of its actor (not from
    /// its first start of a worker, which may come at any time).
    pub fn pool_provisioning_declared(&self, pool: &str) {
        for outcome in ["succeeded", "failed", "timed_out"] {
            self.count_provisioning(pool, outcome, 0);
        }
    }

    fn count_provisioning(&self, pool: &str, outcome: &'static str, count: u64) {
        self.pool_provisioning.add(
            count,
            &[
                KeyValue::new("pool", pool.to_string()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// Counters whose labels the replicated state names (tenants, queues, pools) and the
    /// actor kinds exist at zero before their first event, so that `rate()` and
    /// `increase()` see that first event (a series that appears at 1 loses it).
    pub fn declare_zero_series(&self, node: &crate::actors::NodeContext) {
        let (tenants, queues, pools) = node.read(|hodei| {
            (
                hodei
                    .tenant_ids()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                hodei
                    .queues()
                    .map(|queue| queue.id.clone())
                    .collect::<Vec<_>>(),
                hodei
                    .pools()
                    .map(|pool| pool.id.clone())
                    .collect::<Vec<_>>(),
            )
        });
        for actor in ACTOR_KINDS {
            self.actor_restarts.add(0, &[KeyValue::new("actor", actor)]);
        }
        for port in PORTS {
            self.connections_refused
                .add(0, &[KeyValue::new("port", port)]);
            self.connections_open.add(0, &[KeyValue::new("port", port)]);
        }
        for tenant in &tenants {
            let tenant = KeyValue::new("tenant", tenant.clone());
            for rule in hodei_domain::burst::BurstRule::ALL {
                self.burst_refusals
                    .add(0, &[tenant.clone(), KeyValue::new("rule", rule.as_str())]);
            }
        }
        for queue in queues {
            self.dispatch_plans
                .add(0, &[KeyValue::new("queue", queue.clone())]);
            self.dispatch_outcome(&queue, 0, 0);
        }
        for pool in pools {
            self.workers_lost
                .add(0, &[KeyValue::new("pool", pool.clone())]);
            self.pool_provisioning_declared(&pool);
        }
    }

    /// A connection on `port` opened (`1`) or closed (`-1`).
    pub fn connection_open(&self, port: &'static str, change: i64) {
        self.connections_open
            .add(change, &[KeyValue::new("port", port)]);
    }

    pub fn connection_refused(&self, port: &'static str) {
        self.connections_refused
            .add(1, &[KeyValue::new("port", port)]);
    }

    pub fn worker_lost(&self, pool: &str) {
        self.workers_lost
            .add(1, &[KeyValue::new("pool", pool.to_string())]);
    }

    /// Instruments that record nowhere (metrics disabled, unit tests).
    pub fn disabled() -> Self {
        Self::new(&SdkMeterProvider::builder().build().meter("hodei"))
    }

    pub fn api_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = [
            KeyValue::new("route", route.to_string()),
            KeyValue::new("method", method.to_string()),
        ];
        self.api_duration.record(seconds, &labels);
        let [route, method] = labels;
        self.api_requests.add(
            1,
            &[route, method, KeyValue::new("status", i64::from(status))],
        );
    }

    pub fn gateway_request(&self, operation: &'static str, code: &'static str, seconds: f64) {
        self.gateway_requests.add(
            1,
            &[
                KeyValue::new("operation", operation),
                KeyValue::new("code", code),
            ],
        );
        self.gateway_duration
            .record(seconds, &[KeyValue::new("operation", operation)]);
    }

    pub fn actor_restarted(&self, actor: &'static str) {
        self.actor_restarts.add(1, &[KeyValue::new("actor", actor)]);
    }

    pub fn burst_refused(&self, tenant: &str, rule: &str) {
        self.burst_refusals.add(
            1,
            &[
                KeyValue::new("tenant", tenant.to_string()),
                KeyValue::new("rule", rule.to_string()),
            ],
        );
    }
}

/// The provider, its registry and the instruments; built before the actors so that
/// every actor can be given the instruments.
#[derive(Clone)]
pub struct MetricsHub {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    pub(super) meter: Meter,
    pub metrics: Metrics,
    /// The node, once built: its replicated state names the zero series.
    pub(super) node: Option<crate::actors::NodeContext>,
}

/// How this node's metrics endpoint has been scraped: what `/observability/health` shows
/// for it. Updated by the scrape handler, read by the gateway.
#[derive(Debug, Default)]
pub struct ScrapeLog {
    address: std::sync::OnceLock<String>,
    scrapes: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_at_ms: std::sync::atomic::AtomicU64,
    last_micros: std::sync::atomic::AtomicU64,
    last_bytes: std::sync::atomic::AtomicU64,
}

/// A reading of the [`ScrapeLog`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrapeReading {
    pub address: Option<String>,
    pub scrapes: u64,
    pub failed: u64,
    /// The last successful scrape: when, how long it took, how many bytes it served.
    pub last: Option<(u64, u64, u64)>,
}

impl ScrapeLog {
    /// The address the endpoint listens on, once bound.
    pub fn listening_on(&self, address: String) {
        let _ = self.address.set(address);
    }

    pub fn served(&self, at_ms: u64, took: std::time::Duration, bytes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_at_ms.store(at_ms, Relaxed);
        self.last_micros.store(took.as_micros() as u64, Relaxed);
        self.last_bytes.store(bytes as u64, Relaxed);
        self.scrapes.fetch_add(1, Relaxed);
    }

    pub fn failed(&self) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn read(&self) -> ScrapeReading {
        use std::sync::atomic::Ordering::Relaxed;
        let scrapes = self.scrapes.load(Relaxed);
        ScrapeReading {
            address: self.address.get().cloned(),
            scrapes,
            failed: self.failed.load(Relaxed),
            last: (scrapes > 0).then(|| {
                (
                    self.last_at_ms.load(Relaxed),
                    self.last_micros.load(Relaxed),
                    self.last_bytes.load(Relaxed),
                )
            }),
        }
    }
}

/// Raft's timings as histograms: apply calls, entries from proposal to applied on the
/// leader (commit latency), snapshots built or installed.
struct RaftHistograms {
    apply: Histogram<f64>,
    commit: Histogram<f64>,
    snapshot: Histogram<f64>,
}

/// Apply and commit times in seconds, from 50 µs to 10 s (an apply call of a few
/// commands takes well under a millisecond).
const RAFT_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Snapshot build and install times in seconds, from 10 ms to 10 minutes.
const SNAPSHOT_BUCKETS: [f64; 11] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0,
];

impl RaftHistograms {
    fn new(meter: &Meter) -> Self {
        Self {
            apply: meter
                .f64_histogram("hodei_raft_apply_duration_seconds")
                .with_description("Time of each apply call of the state machine (one or more entries)")
                .with_boundaries(RAFT_BUCKETS.to_vec())
                .build(),
            commit: meter
                .f64_histogram("hodei_raft_commit_duration_seconds")
                .with_description(
                    "Entries this node proposed as leader: from proposal until a majority stored them and this node applied them",
                )
                .with_boundaries(RAFT_BUCKETS.to_vec())
                .build(),
            snapshot: meter
                .f64_histogram("hodei_raft_snapshot_duration_seconds")
                .with_description("Snapshots built here or installed from the leader, by kind (built, installed)")
                .with_boundaries(SNAPSHOT_BUCKETS.to_vec())
                .build(),
        }
    }
}

impl hodei_cluster::RaftTimings for RaftHistograms {
    fn applied(&self, _entries: u64, took: std::time::Duration) {
        self.apply.record(took.as_secs_f64(), &[]);
    }

    fn committed(&self, _commands: u64, took: std::time::Duration) {
        self.commit.record(took.as_secs_f64(), &[]);
    }

    fn snapshot(&self, installed: bool, _bytes: u64, took: std::time::Duration) {
        let kind = if installed { "installed" } else { "built" };
        self.snapshot
            .record(took.as_secs_f64(), &[KeyValue::new("kind", kind)]);
    }
}

impl MetricsHub {
    /// Histograms of Raft's apply, commit and snapshot times, for
    /// `RaftNode::report_timings_to`.
    pub fn raft_timings(&self) -> std::sync::Arc<dyn hodei_cluster::RaftTimings> {
        std::sync::Arc::new(RaftHistograms::new(&self.meter))
    }

    pub fn new() -> Result<Self, String> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .map_err(|error| error.to_string())?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("hodei");
        let metrics = Metrics::new(&meter);
        Ok(Self {
            provider,
            registry,
            meter,
            metrics,
            node: None,
        })
    }

    fn encode(&self) -> Result<String, String> {
        if let Some(node) = &self.node {
            self.metrics.declare_zero_series(node);
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .map_err(|error| error.to_string())?;
        String::from_utf8(text).map_err(|error| error.to_string())
    }
}

pub enum MetricsMsg {
    /// The Prometheus text exposition of every series.
    Scrape(RpcReplyPort<Result<String, String>>),
}

pub struct MetricsActor;

impl Actor for MetricsActor {
    type Msg = MetricsMsg;
    type State = MetricsHub;
    type Arguments = MetricsHub;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        hub: MetricsHub,
    ) -> Result<MetricsHub, ActorProcessingErr> {
        Ok(hub)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: MetricsMsg,
        hub: &mut MetricsHub,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            MetricsMsg::Scrape(reply) => {
                let _ = reply.send(hub.encode());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        hub: &mut MetricsHub,
    ) -> Result<(), ActorProcessingErr> {
        let _ = hub.provider.shutdown();
        Ok(())
    }
}
