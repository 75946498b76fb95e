//! The worker agent (`hodei worker`): registers with a pool, holds one stream to the
//! leader (following it after a failover), runs each assigned job as a child process and
//! reports its start and end. Reports wait in an outbox until the leader acknowledges
//! that they are committed, so none is lost across a failover.
//!
//! Fencing: the agent holds a lease on its jobs. It runs for `Registered.lease_ms` (one
//! beat fewer than the leader waits before declaring the worker lost) from when the agent
//! sent a heartbeat that the leader echoed, and the leader echoes a beat only while a
//! quorum has confirmed its leadership within half a beat. When the lease ends the agent
//! stops every run (silently: the control plane re-queues them once it declares the
//! worker lost, or when the agent registers again without them), and the fence process
//! (`worker::fence`) kills their process groups at the same deadline if the agent cannot
//! (stopped, killed). So a job's run has ended before the leader gives it to another
//! worker: a job never runs twice at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hodei_proto::v1 as pb;
use hodei_proto::v1::worker_service_client::WorkerServiceClient;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::worker::fence::Fence;
use crate::worker::process::{OutputSnapshot, OutputTail};
use crate::worker::process::{ProcessEnd, ProcessSpec, run_process};
use hodei_domain::labels::Labels;
use hodei_domain::resources::Resources;
use hodei_domain::run::RunOutcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    pub worker_id: String,
    pub pool: String,
    /// gRPC addresses of the nodes (any of them; the leader is found from there).
    pub servers: Vec<String>,
    pub capacity: Resources,
    pub labels: Labels,
    /// Where jobs run unless they name a working directory.
    pub work_dir: PathBuf,
    /// Asked to stop, how long running jobs may go on before they are killed.
    pub shutdown_grace: Duration,
    /// How a job runs: its command as a child process, or (for benchmarks of the
    /// scheduler itself) no process at all.
    pub runner: Runner,
    /// Whether jobs start with kernel limits from their request (`--enforce-limits`).
    pub enforce_limits: bool,
    /// A random id of this agent process, sent with every registration: the leader
    /// gives a session back to the same instance and refuses another one.
    pub instance: String,
    /// The pool's join token (`--join-token`, `HODEI_JOIN_TOKEN`), sent with every
    /// registration; a node with `server.auth: token` refuses a worker without one.
    pub join_token: Option<String>,
    /// With TLS: the CA (PEM) the nodes' certificates are checked against; the agent
    /// then speaks https to them.
    pub ca_pem: Option<Vec<u8>>,
    /// Where and as whom jobs run (`--allowed-dir`, `--run-as`); the work directory is
    /// always allowed.
    pub confinement: crate::worker::process::Confinement,
    /// The local address connections to the nodes leave from (`--source-addr`).
    pub source_addr: Option<std::net::IpAddr>,
}

/// How the agent runs a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runner {
    /// The job's command, as a child process (what production uses).
    #[default]
    Process,
    /// No process: the run starts and succeeds at once (`--runner instant`), or after
    /// the given time (`--runner sleep:MS`). For measuring the scheduler, the worker
    /// stream and the reports without the cost of spawning processes.
    Simulated(Duration),
}

impl Runner {
    /// `process`, `instant` or `sleep:MS`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "process" => Ok(Runner::Process),
            "instant" => Ok(Runner::Simulated(Duration::ZERO)),
            other => other
                .strip_prefix("sleep:")
                .and_then(|millis| millis.parse::<u64>().ok())
                .map(|millis| Runner::Simulated(Duration::from_millis(millis)))
                .ok_or_else(|| {
                    format!("must be process, instant or sleep:MS (milliseconds), got `{other}`")
                }),
        }
    }
}

struct Run {
    attempt: u32,
    cancel: Option<oneshot::Sender<()>>,
    /// The leader cancelled the job: its end (and output) is reported as `cancelled`.
    cancelled_by_leader: bool,
    /// Stopped when the lease ended: its end is not reported and it is no longer listed
    /// as running (the leader re-queues it).
    fenced: bool,
}

#[derive(Default)]
struct AgentState {
    runs: BTreeMap<String, Run>,
    /// Reports not yet acknowledged, by report id.
    outbox: BTreeMap<u64, pb::WorkerMessage>,
    next_report: u64,
    /// The leader's heartbeat interval (from the last registration).
    heartbeat_interval: Duration,
    /// Runs (job, attempt) this agent has started, most recent last: an assignment sent
    /// again after a failover (its start not yet committed) must not run a second time.
    started: std::collections::VecDeque<(String, u32)>,
    started_index: std::collections::HashSet<(String, u32)>,
    /// Shutting down: no new run starts.
    leaving: bool,
    /// How long runs may go on after a beat (or registration) the leader answered was sent.
    lease: Duration,
    /// When the lease ends (none before the first registration).
    lease_until: Option<Instant>,
    /// Beats sent and not yet echoed: their number and when they were sent.
    beats: std::collections::VecDeque<(u64, Instant)>,
    next_beat: u64,
}

/// Beats remembered while their echo is awaited (older ones cannot renew the lease
/// further than a newer echo would).
const BEATS_REMEMBERED: usize = 64;

impl AgentState {
    /// When the lease ends as the agent counts it: a tenth of the lease (at most 100 ms)
    /// before the fence does, so that a renewal the agent still accepts reaches the fence
    /// in time, and a run the fence kills is one the agent already counts as out of its
    /// lease (never reported as the job's own end). None before the first registration.
    fn lease_end(&self) -> Option<Instant> {
        let margin = (self.lease / 10).min(Duration::from_millis(100));
        self.lease_until
            .map(|until| until.checked_sub(margin).unwrap_or(until))
    }

    fn lease_ended(&self) -> bool {
        self.lease_end().is_none_or(|end| Instant::now() >= end)
    }
}

/// How often a running job's output is reported while it changes.
const OUTPUT_INTERVAL: Duration = Duration::from_secs(2);

/// How many started runs an agent remembers for de-duplication.
const STARTED_MEMORY: usize = 100_000;

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<AgentState>>,
    /// Rung when the outbox grows.
    reports: Arc<Notify>,
    /// The process that kills the runs' groups when the lease ends and the agent cannot.
    fence: Option<Fence>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, AgentState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues what a run wrote so far, replacing an earlier output of the same run not yet
    /// acknowledged (each carries the whole tails: the newest is all that matters).
    fn queue_output(&self, job: &str, attempt: u32, output: OutputSnapshot) {
        let mut state = self.lock();
        state.outbox.retain(|_, report| {
            !matches!(&report.kind, Some(pb::worker_message::Kind::Output(earlier))
                if earlier.job_id == job && earlier.attempt == attempt)
        });
        state.next_report += 1;
        let id = state.next_report;
        state.outbox.insert(
            id,
            pb::WorkerMessage {
                kind: Some(pb::worker_message::Kind::Output(pb::RunOutput {
                    report_id: id,
                    job_id: job.to_string(),
                    attempt,
                    seq: output.version,
                    combined: output.combined,
                    stdout: output.stdout,
                    stderr: output.stderr,
                })),
            },
        );
        drop(state);
        self.reports.notify_one();
    }

    fn queue_report(&self, build: impl FnOnce(u64) -> pb::worker_message::Kind) {
        let mut state = self.lock();
        state.next_report += 1;
        let id = state.next_report;
        state.outbox.insert(
            id,
            pb::WorkerMessage {
                kind: Some(build(id)),
            },
        );
        drop(state);
        self.reports.notify_one();
    }

    /// The lease runs on to `sent` plus its length: something sent then was answered by
    /// a leader that a quorum confirmed.
    fn renew(&self, sent: Instant) {
        let mut state = self.lock();
        let until = match crate::defects::active(crate::defects::Defect::SkipFencing) {
            true => sent + Duration::from_secs(86_400),
            false => sent + state.lease,
        };
        if state.lease_until.is_some_and(|current| current >= until) {
            return;
        }
        state.lease_until = Some(until);
        drop(state);
        if let Some(fence) = &self.fence {
            fence.renew(until);
        }
    }

    /// Whether the lease has ended, as the agent counts it (`AgentState::lease_end`).
    fn lease_ended(&self) -> bool {
        self.lock().lease_ended()
    }

    /// Stops every run because the lease ended: their ends are not reported and they are
    /// no longer listed as running.
    fn fence_runs(&self) -> usize {
        let mut state = self.lock();
        let mut stopped = 0;
        for run in state.runs.values_mut() {
            if !run.fenced {
                run.fenced = true;
                stopped += 1;
            }
            if let Some(cancel) = run.cancel.take() {
                let _ = cancel.send(());
            }
        }
        stopped
    }

    /// The jobs this worker answers for: runs in progress, and finished runs whose end
    /// the leader has not acknowledged yet (their report is still to be committed; the
    /// leader must not take them for lost).
    fn running(&self) -> Vec<String> {
        let state = self.lock();
        let mut jobs: BTreeSet<String> = state
            .runs
            .iter()
            .filter(|(_, run)| !run.fenced)
            .map(|(job, _)| job.clone())
            .collect();
        for report in state.outbox.values() {
            if let Some(pb::worker_message::Kind::Finished(finished)) = &report.kind {
                jobs.insert(finished.job_id.clone());
            }
        }
        jobs.into_iter().collect()
    }

    /// Stops runs; their ends are not reported.
    fn stop_runs(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut state = self.lock();
        let mut stopped = 0;
        for (job, run) in state.runs.iter_mut() {
            if !keep(job)
                && let Some(cancel) = run.cancel.take()
            {
                let _ = cancel.send(());
                stopped += 1;
            }
        }
        stopped
    }
}

fn outcome_name(outcome: RunOutcome) -> &'static str {
    match outcome {
        RunOutcome::Succeeded => "succeeded",
        RunOutcome::Failed => "failed",
        RunOutcome::TimedOut => "timed_out",
        RunOutcome::Cancelled => "cancelled",
    }
}

fn start_run(shared: &Shared, settings: &AgentSettings, assignment: pb::RunAssignment) {
    let mut state = shared.lock();
    let run_key = (assignment.job_id.clone(), assignment.attempt);
    if state.leaving
        || state.lease_ended()
        || state.runs.contains_key(&assignment.job_id)
        || state.started_index.contains(&run_key)
    {
        // Leaving: the job is re-queued when the departure is recorded; out of lease:
        // when this worker registers again (without it) or is declared lost.
        return;
    }
    state.started.push_back(run_key.clone());
    state.started_index.insert(run_key);
    if state.started.len() > STARTED_MEMORY
        && let Some(oldest) = state.started.pop_front()
    {
        state.started_index.remove(&oldest);
    }
    let (cancel, cancelled) = oneshot::channel();
    state.runs.insert(
        assignment.job_id.clone(),
        Run {
            attempt: assignment.attempt,
            cancel: Some(cancel),
            cancelled_by_leader: false,
            fenced: false,
        },
    );
    drop(state);
    let runner = settings.runner;
    let command = assignment.command.unwrap_or_default();
    let working_dir = match command.working_dir {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => settings.work_dir.join(dir),
        None => settings.work_dir.clone(),
    };
    // An assignment without resources (none is sent so today) runs without limits rather
    // than with a zero-sized one.
    let limits = assignment
        .resources
        .filter(|_| settings.enforce_limits)
        .map(|resources| {
            crate::worker::process::JobLimits::of(
                resources.memory_mb,
                resources.cpu_m,
                command.timeout_s,
            )
        });
    // The job learns which run it is (its own variables cannot override these).
    let mut env: BTreeMap<String, String> = command.env.into_iter().collect();
    env.insert("HODEI_JOB_ID".to_string(), assignment.job_id.clone());
    env.insert(
        "HODEI_JOB_ATTEMPT".to_string(),
        assignment.attempt.to_string(),
    );
    env.insert("HODEI_WORKER_ID".to_string(), settings.worker_id.clone());
    let spec = ProcessSpec {
        argv: command.argv,
        env,
        working_dir,
        timeout: command.timeout_s.map(Duration::from_secs),
        limits,
        confinement: settings.confinement.clone(),
    };
    let fence = shared.fence.clone();
    let shared = shared.clone();
    let job = assignment.job_id;
    let attempt = assignment.attempt;
    tokio::spawn(async move {
        info!(%job, attempt, "starting run");
        let on_start = {
            let shared = shared.clone();
            let job = job.clone();
            move || {
                shared.queue_report(|report_id| {
                    pb::worker_message::Kind::Started(pb::RunStarted {
                        report_id,
                        job_id: job,
                        attempt,
                        at_ms: now_ms(),
                    })
                })
            }
        };
        // What it writes is reported every few seconds while it changes, and once more
        // before its end is (so `hodei job logs -f` follows it).
        let tail = OutputTail::default();
        let (ended, stop_reporting) = oneshot::channel::<()>();
        let reporter = tokio::spawn(report_output(
            shared.clone(),
            tail.clone(),
            job.clone(),
            attempt,
            stop_reporting,
        ));
        let end = match runner {
            Runner::Process => run_process(spec, cancelled, on_start, tail, fence).await,
            Runner::Simulated(run_for) => simulated_process(run_for, cancelled, on_start).await,
        };
        let _ = ended.send(());
        let _ = reporter.await;
        // Ended once the lease had: killed by the fence (perhaps before the agent saw
        // its lease end) or fenced by the agent. Its end is not reported: the leader
        // re-queues the job, as it would have had the agent not come back.
        let out_of_lease = shared.lease_ended();
        let (still_ours, cancelled_by_leader) = shared
            .lock()
            .runs
            .remove(&job)
            .filter(|run| run.attempt == attempt && !run.fenced && !out_of_lease)
            .map_or((false, false), |run| (true, run.cancelled_by_leader));
        let end = match end {
            // Cancelled by the leader: its output is reported, the job stays cancelled.
            ProcessEnd::Cancelled { output_tail } if cancelled_by_leader => ProcessEnd::Finished {
                outcome: RunOutcome::Cancelled,
                exit_code: None,
                output_tail,
                usage: None,
            },
            other => other,
        };
        match end {
            ProcessEnd::Finished {
                outcome,
                exit_code,
                output_tail,
                usage,
            } if still_ours => {
                info!(%job, attempt, outcome = outcome_name(outcome), ?exit_code, "run ended");
                shared.queue_report(|report_id| {
                    pb::worker_message::Kind::Finished(pb::RunFinished {
                        report_id,
                        job_id: job,
                        attempt,
                        outcome: outcome_name(outcome).to_string(),
                        exit_code,
                        output_tail,
                        at_ms: now_ms(),
                        usage: usage.map(|usage| pb::RunUsage {
                            cpu_ms: usage.cpu_ms,
                            peak_rss_mb: usage.peak_rss_mb,
                        }),
                    })
                });
            }
            _ => info!(%job, attempt, "run stopped"),
        }
    });
}

/// The benchmark runner's stand-in for a process: started at once, succeeded after
/// `run_for` with no output, or stopped first; its end is reported as a process's is.
async fn simulated_process(
    run_for: Duration,
    cancelled: oneshot::Receiver<()>,
    on_start: impl FnOnce(),
) -> ProcessEnd {
    on_start();
    tokio::select! {
        _ = tokio::time::sleep(run_for) => ProcessEnd::Finished {
            outcome: RunOutcome::Succeeded,
            exit_code: Some(0),
            output_tail: String::new(),
            usage: None,
        },
        _ = cancelled => ProcessEnd::Cancelled {
            output_tail: String::new(),
        },
    }
}

/// Queues a run's output every `OUTPUT_INTERVAL` while it changes, and once more when
/// `stop` fires (the run ended).
async fn report_output(
    shared: Shared,
    tail: OutputTail,
    job: String,
    attempt: u32,
    mut stop: oneshot::Receiver<()>,
) {
    let mut sent = 0u64;
    let mut every = tokio::time::interval(OUTPUT_INTERVAL);
    loop {
        let done = tokio::select! {
            _ = every.tick() => false,
            _ = &mut stop => true,
        };
        // The tails (up to 3 x 64 KiB) are copied only when something was written.
        if tail.version() != sent {
            let output = tail.snapshot();
            sent = output.version;
            shared.queue_output(&job, attempt, output);
        }
        if done {
            return;
        }
    }
}

enum SessionEnd {
    /// Connect to this address next (the leader, as a follower said).
    Redirect(Option<String>),
    Broken(String),
    /// The pool stopped this worker: exit.
    Stopped(String),
}

/// Runs the agent until `shutdown` resolves; then stops every run. With a `fence`, the
/// runs' process groups are also killed by it when the lease ends or the agent dies.
pub async fn run(
    settings: AgentSettings,
    fence: Option<Fence>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let shared = Shared {
        state: Arc::new(Mutex::new(AgentState {
            heartbeat_interval: Duration::from_secs(5),
            lease: Duration::from_secs(10),
            ..AgentState::default()
        })),
        reports: Arc::new(Notify::new()),
        fence,
    };
    let connection = connect_forever(&settings, &shared);
    tokio::pin!(connection);
    tokio::select! {
        _ = &mut connection => {
            shared.stop_runs(|_| false);
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        _ = shutdown => {}
    }
    // Asked to stop: no new run starts; running ones have the grace period to end (their
    // ends reported as usual), then are killed; once none is left the control plane is
    // told, so that it records this worker `terminated` and re-queues what was killed
    // now rather than after the heartbeats are missed.
    info!(
        grace_s = settings.shutdown_grace.as_secs(),
        "worker shutting down: letting its runs end, then leaving its pool"
    );
    shared.lock().leaving = true;
    tokio::select! {
        _ = &mut connection => return,
        _ = no_runs_left(&shared, settings.shutdown_grace) => {}
    }
    let stopped = shared.stop_runs(|_| false);
    if stopped > 0 {
        warn!(
            stopped,
            "runs still going at the end of the grace period: killed"
        );
        tokio::select! {
            _ = &mut connection => return,
            _ = no_runs_left(&shared, Duration::from_secs(5)) => {}
        }
    }
    shared.queue_report(|report_id| {
        pb::worker_message::Kind::Leaving(pb::WorkerLeaving {
            report_id,
            reason: "the worker was asked to stop".to_string(),
        })
    });
    if tokio::time::timeout(LEAVE_TIMEOUT, &mut connection)
        .await
        .is_err()
    {
        warn!(
            "the control plane did not record the departure in time; it will find the worker lost"
        );
    }
}

/// Waits until no run is left (each has ended and queued its report), at most `limit`.
async fn no_runs_left(shared: &Shared, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !shared.lock().runs.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a stopping worker waits for the control plane to record its departure.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect_forever(settings: &AgentSettings, shared: &Shared) {
    let mut next_server = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let addr = match hint.take() {
            Some(addr) => addr,
            None => {
                let addr = settings.servers[next_server % settings.servers.len()].clone();
                next_server += 1;
                addr
            }
        };
        let end = session(settings, shared, &addr).await;
        match end {
            SessionEnd::Redirect(leader) => {
                hint = leader;
                backoff = Duration::from_millis(100);
            }
            SessionEnd::Stopped(reason) => {
                info!(%reason, "stopped by the control plane; exiting");
                return;
            }
            SessionEnd::Broken(reason) => {
                warn!(server = %addr, %reason, "no session with the leader; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        if shared.lease_ended() {
            let stopped = shared.fence_runs();
            if stopped > 0 {
                warn!(
                    stopped,
                    "no leader answered within the lease: stopped every run (the control plane re-queues them)"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn endpoint(addr: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match addr.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{addr}"),
    }
}

/// Acts on one message of the leader; `Some` when the session ends with it.
fn serve(
    shared: &Shared,
    settings: &AgentSettings,
    message: Option<pb::server_message::Kind>,
) -> Option<SessionEnd> {
    match message {
        Some(pb::server_message::Kind::Assign(assignment)) => {
            start_run(shared, settings, assignment);
        }
        Some(pb::server_message::Kind::Cancel(cancel)) => {
            let job = cancel.job_id;
            if let Some(run) = shared.lock().runs.get_mut(&job) {
                run.cancelled_by_leader = true;
            }
            if shared.stop_runs(|running| running != job) > 0 {
                info!(%job, "run cancelled by the leader");
            }
        }
        Some(pb::server_message::Kind::Ack(report_id)) => {
            shared.lock().outbox.remove(&report_id);
        }
        Some(pb::server_message::Kind::Beat(seq)) => {
            let sent = {
                let mut state = shared.lock();
                let sent = state
                    .beats
                    .iter()
                    .find(|(beat, _)| *beat == seq)
                    .map(|(_, sent)| *sent);
                state.beats.retain(|(beat, _)| *beat > seq);
                sent
            };
            // An echo that comes after the lease ended (as the agent counts it) renews
            // nothing: the runs are being stopped and the session is ending.
            if let Some(sent) = sent
                && !shared.lease_ended()
            {
                shared.renew(sent);
            }
        }
        Some(pb::server_message::Kind::NotLeader(not_leader)) => {
            return Some(SessionEnd::Redirect(not_leader.leader_addr));
        }
        Some(pb::server_message::Kind::Stop(reason)) => {
            return Some(SessionEnd::Stopped(reason));
        }
        Some(pb::server_message::Kind::Registered(_)) | None => {}
    }
    None
}

/// One session: register, then serve assignments and send reports until the stream
/// breaks or the node turns out not to lead.
async fn session(settings: &AgentSettings, shared: &Shared, addr: &str) -> SessionEnd {
    let channel =
        match tonic::transport::Endpoint::from_shared(endpoint(addr, settings.ca_pem.is_some())) {
            Ok(endpoint) => endpoint
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .local_address(settings.source_addr),
            Err(error) => return SessionEnd::Broken(format!("bad address `{addr}`: {error}")),
        };
    let channel = match &settings.ca_pem {
        Some(ca) => match channel.tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
        ) {
            Ok(channel) => channel,
            Err(error) => return SessionEnd::Broken(format!("TLS for `{addr}`: {error}")),
        },
        None => channel,
    };
    let channel = match channel.connect().await {
        Ok(channel) => channel,
        Err(error) => return SessionEnd::Broken(error.to_string()),
    };
    let mut client = WorkerServiceClient::new(channel);
    let (outbound, receiver) = mpsc::channel::<pb::WorkerMessage>(1024);
    let register = pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Register(pb::RegisterWorker {
            worker_id: settings.worker_id.clone(),
            pool: settings.pool.clone(),
            cpu_m: settings.capacity.cpu_m,
            memory_mb: settings.capacity.memory_mb,
            gpu: settings.capacity.gpu,
            labels: settings.labels.clone().into_iter().collect(),
            running: shared.running(),
            instance: settings.instance.clone(),
            join_token: settings.join_token.clone().unwrap_or_default(),
        })),
    };
    let register_sent = Instant::now();
    let _ = outbound.send(register).await;
    let mut inbound = match client.session(ReceiverStream::new(receiver)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return SessionEnd::Broken(status.message().to_string()),
    };
    let first = match inbound.message().await {
        Ok(Some(first)) => first,
        Ok(None) => return SessionEnd::Broken("the node closed the stream".to_string()),
        Err(status) => return SessionEnd::Broken(status.message().to_string()),
    };
    match first.kind {
        Some(pb::server_message::Kind::Registered(registered)) => {
            let keep: BTreeSet<String> = registered.keep.into_iter().collect();
            let stopped = shared.stop_runs(|job| keep.contains(job));
            if stopped > 0 {
                warn!(
                    stopped,
                    "the leader no longer gives this worker some runs; stopped them"
                );
            }
            {
                let mut state = shared.lock();
                state.heartbeat_interval =
                    Duration::from_millis(registered.heartbeat_interval_ms.max(100));
                // A leader that names no lease: two beats (it declares a worker lost at
                // three by default).
                state.lease = match registered.lease_ms {
                    0 => state.heartbeat_interval * 2,
                    lease_ms => Duration::from_millis(lease_ms),
                };
            }
            // The registration was committed: the lease runs from when it was sent.
            shared.renew(register_sent);
            info!(server = %addr, worker = %settings.worker_id, pool = %settings.pool, "registered with the leader");
        }
        Some(pb::server_message::Kind::NotLeader(not_leader)) => {
            return SessionEnd::Redirect(not_leader.leader_addr);
        }
        _ => return SessionEnd::Broken("unexpected first message".to_string()),
    }

    let mut sent_up_to = 0u64;
    let heartbeat_interval = shared.lock().heartbeat_interval;
    let mut heartbeat = tokio::time::interval(heartbeat_interval);
    loop {
        let lease_until = shared.lock().lease_end();
        // Send every report not sent on this session yet (all of them after a reconnect).
        let pending: Vec<(u64, pb::WorkerMessage)> = shared
            .lock()
            .outbox
            .range(sent_up_to + 1..)
            .map(|(id, report)| (*id, report.clone()))
            .collect();
        for (id, report) in pending {
            if outbound.send(report).await.is_err() {
                return SessionEnd::Broken("the stream closed".to_string());
            }
            sent_up_to = id;
        }
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => {
                    if let Some(end) = serve(shared, settings, message.kind) {
                        return end;
                    }
                }
                Ok(None) => return SessionEnd::Broken("the leader closed the stream".to_string()),
                Err(status) => return SessionEnd::Broken(status.message().to_string()),
            },
            _ = async {
                match lease_until {
                    Some(until) => tokio::time::sleep_until(until.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                if shared.lease_ended() {
                    let stopped = shared.fence_runs();
                    let lease = shared.lock().lease;
                    if stopped > 0 {
                        warn!(stopped, ?lease, "no heartbeat answered by a confirmed leader within the lease: stopped every run (the control plane re-queues them)");
                    }
                    return SessionEnd::Broken(format!(
                        "no heartbeat answered by a confirmed leader within the lease ({lease:?})"
                    ));
                }
            }
            _ = heartbeat.tick() => {
                let seq = {
                    let mut state = shared.lock();
                    state.next_beat += 1;
                    let seq = state.next_beat;
                    state.beats.push_back((seq, Instant::now()));
                    if state.beats.len() > BEATS_REMEMBERED {
                        state.beats.pop_front();
                    }
                    seq
                };
                let beat = pb::WorkerMessage {
                    kind: Some(pb::worker_message::Kind::Heartbeat(pb::WorkerHeartbeat {
                        running: shared.running(),
                        seq,
                    })),
                };
                if outbound.send(beat).await.is_err() {
                    return SessionEnd::Broken("the stream closed".to_string());
                }
            }
            _ = shared.reports.notified() => {}
        }
    }
}
