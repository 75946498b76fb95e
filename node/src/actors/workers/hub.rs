//! The leader's side of the worker agents: one session per connected worker (its outbound
//! stream), delivery of assignments and cancellations, and lost-worker detection.
//!
//! Delivery does not trust events alone (a lagging receiver may miss some): each pass
//! compares the jobs the state says a worker holds with what this session already sent,
//! and sends the difference. The same pass runs on every event and on a timer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hodei_proto::v1 as pb;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::actors::{NodeContext, now_ms};
use crate::state::command;
use crate::state::{CommandV1, DomainEvent};
use hodei_domain::job::{Job, JobState};

/// How often workers heartbeat and how many beats may be missed before a worker is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatSettings {
    pub interval: Duration,
    pub missed_beats: u32,
}

impl HeartbeatSettings {
    pub fn lost_after(&self) -> Duration {
        self.interval * self.missed_beats
    }

    /// How long a worker's jobs may run after it sent a beat this leader echoed: one beat
    /// fewer than the leader waits before declaring it lost (`missed_heartbeats` is at
    /// least 3), so its runs have ended before they are re-queued.
    pub fn lease(&self) -> Duration {
        self.interval * self.missed_beats.saturating_sub(1).max(1)
    }

    /// A beat is echoed only if a quorum confirmed this node's leadership at most this
    /// long before. A newer leader was elected after that confirmation, so it declares
    /// the worker lost no sooner than `lost_after` past it: with the lease one beat
    /// shorter, half a beat is left for the runs to be killed.
    pub fn confirmation_age(&self) -> Duration {
        self.interval / 2
    }
}

struct Session {
    number: u64,
    outbound: mpsc::Sender<Result<pb::ServerMessage, tonic::Status>>,
    last_seen: Instant,
    /// (job, attempt) already sent to this session.
    sent: BTreeSet<(String, u32)>,
    /// The agent process behind it (its registration's `instance`).
    instance: String,
}

#[derive(Default)]
struct HubState {
    sessions: HashMap<String, Session>,
    next_session: u64,
    /// When this node last became leader: no worker is judged before a full timeout
    /// has passed since then.
    leading_since: Option<Instant>,
    /// Workers whose loss is being proposed.
    losing: BTreeSet<String>,
    /// Registrations being proposed: the worker, the agent instance and since when.
    registering: HashMap<String, (String, Instant)>,
    /// When the last check of this node's leadership that a quorum confirmed began.
    confirmed_at: Option<Instant>,
}

#[derive(Clone)]
pub struct WorkerHub {
    state: Arc<Mutex<HubState>>,
    pub heartbeat: HeartbeatSettings,
}

pub type Outbound = mpsc::Sender<Result<pb::ServerMessage, tonic::Status>>;

/// A job's variables as its process gets them: sealed secrets opened. One that does not
/// open (the cluster secret changed since it was sealed) is left out, and said so.
fn opened_env(
    job: &Job,
    sealer: Option<&crate::gateway::secrets::Sealer>,
) -> Vec<(String, String)> {
    let tenant = job.spec.tenant.as_str();
    job.spec
        .command
        .env
        .iter()
        .filter_map(|(name, value)| {
            if !crate::gateway::secrets::is_sealed(value) {
                return Some((name.clone(), value.clone()));
            }
            let opened = sealer.and_then(|sealer| sealer.open(tenant, name, value));
            if opened.is_none() {
                tracing::error!(job = %job.id, variable = %name, "a secret variable does not open with this cluster's secret: the job runs without it");
            }
            opened.map(|value| (name.clone(), value))
        })
        .collect()
}

fn assignment_message(
    job: &Job,
    sealer: Option<&crate::gateway::secrets::Sealer>,
) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Assign(pb::RunAssignment {
            job_id: job.id.clone(),
            attempt: job.attempt,
            command: Some(pb::JobCommand {
                argv: job.spec.command.argv.clone(),
                env: opened_env(job, sealer).into_iter().collect(),
                secret_env: Default::default(),
                working_dir: job.spec.command.working_dir.clone(),
                timeout_s: job.spec.command.timeout_s,
            }),
            resources: Some(pb::JobResources {
                cpu_m: job.spec.resources.cpu_m,
                memory_mb: job.spec.resources.memory_mb,
                gpu: job.spec.resources.gpu,
            }),
        })),
    }
}

pub fn cancel_message(job: &str) -> pb::ServerMessage {
    pb::ServerMessage {
        kind: Some(pb::server_message::Kind::Cancel(pb::CancelRun {
            job_id: job.to_string(),
        })),
    }
}

impl WorkerHub {
    pub fn new(heartbeat: HeartbeatSettings) -> Self {
        Self {
            state: Arc::new(Mutex::new(HubState::default())),
            heartbeat,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `worker`'s id for a registration by agent `instance`, unless another
    /// instance holds it: a session heard from within the loss threshold (the interval
    /// times the beats a worker may miss), or a registration of its own in flight. The
    /// same instance reconnecting (its stream broke, the old session not yet noticed)
    /// gets its id back. Checked and reserved under one lock, so two registrations at
    /// once cannot both pass. An empty instance matches none.
    pub fn reserve(&self, worker: &str, instance: &str) -> bool {
        let threshold = self.heartbeat.lost_after();
        let mut hub = self.lock();
        let other = |held: &str| held.is_empty() || instance.is_empty() || held != instance;
        let held_by_session = hub.sessions.get(worker).is_some_and(|session| {
            session.last_seen.elapsed() < threshold && other(&session.instance)
        });
        let held_by_registration = hub
            .registering
            .get(worker)
            .is_some_and(|(held, since)| since.elapsed() < threshold && other(held));
        if held_by_session || held_by_registration {
            return false;
        }
        hub.registering
            .insert(worker.to_string(), (instance.to_string(), Instant::now()));
        true
    }

    /// Gives up a reservation whose registration was not committed.
    pub fn release(&self, worker: &str, instance: &str) {
        let mut hub = self.lock();
        if hub
            .registering
            .get(worker)
            .is_some_and(|(held, _)| held == instance)
        {
            hub.registering.remove(worker);
        }
    }

    /// A worker registered on this stream by agent `instance`; a previous session of it
    /// is replaced (the same instance reconnecting, or one no longer alive).
    pub fn attach(&self, worker: &str, instance: &str, outbound: Outbound) -> u64 {
        let mut hub = self.lock();
        hub.next_session += 1;
        let number = hub.next_session;
        hub.registering.remove(worker);
        hub.sessions.insert(
            worker.to_string(),
            Session {
                number,
                outbound,
                last_seen: Instant::now(),
                sent: BTreeSet::new(),
                instance: instance.to_string(),
            },
        );
        hub.losing.remove(worker);
        number
    }

    /// The stream of session `number` ended.
    pub fn detach(&self, worker: &str, number: u64) {
        let mut hub = self.lock();
        if hub
            .sessions
            .get(worker)
            .is_some_and(|session| session.number == number)
        {
            hub.sessions.remove(worker);
        }
    }

    /// Records that session `number` of `worker` was heard from; false if it is no
    /// longer the worker's attached session (replaced, or closed when leadership went).
    pub fn seen(&self, worker: &str, number: u64) -> bool {
        match self
            .lock()
            .sessions
            .get_mut(worker)
            .filter(|session| session.number == number)
        {
            Some(session) => {
                session.last_seen = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Whether a quorum confirmed this node's leadership within `confirmation_age`: only
    /// then are workers' beats echoed (which renews their lease).
    pub fn leadership_confirmed(&self) -> bool {
        self.lock()
            .confirmed_at
            .is_some_and(|at| at.elapsed() < self.heartbeat.confirmation_age())
    }

    /// Confirms this node's leadership with a quorum (a Raft read-index round) four
    /// times per `confirmation_age`, for as long as the node runs.
    pub async fn confirm_leadership(self, node: NodeContext) {
        let every = (self.heartbeat.confirmation_age() / 4).max(Duration::from_millis(20));
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !node.raft.is_leader() {
                continue;
            }
            let began = Instant::now();
            let confirmed = tokio::time::timeout(
                self.heartbeat.confirmation_age(),
                node.raft.confirm_leadership(),
            )
            .await
            .unwrap_or(false);
            if confirmed {
                let mut hub = self.lock();
                if hub.confirmed_at.is_none_or(|at| at < began) {
                    hub.confirmed_at = Some(began);
                }
            }
        }
    }

    pub fn connected(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Sends each connected worker the assignments it holds and has not been sent.
    fn deliver(&self, node: &NodeContext, only: Option<&BTreeSet<String>>) {
        let mut hub = self.lock();
        let workers: Vec<String> = hub
            .sessions
            .keys()
            .filter(|worker| only.is_none_or(|only| only.contains(*worker)))
            .cloned()
            .collect();
        for worker in workers {
            let held: Vec<Job> = node.read(|state| {
                state
                    .jobs_of_worker(&worker)
                    .into_iter()
                    .filter(|job| job.state == JobState::Assigned)
                    .cloned()
                    .collect()
            });
            let session = hub.sessions.get_mut(&worker).expect("listed above");
            for job in held {
                let sent_key = (job.id.clone(), job.attempt);
                if session.sent.contains(&sent_key) {
                    continue;
                }
                match session
                    .outbound
                    .try_send(Ok(assignment_message(&job, node.secrets.as_deref())))
                {
                    Ok(()) => {
                        session.sent.insert(sent_key);
                    }
                    // Full: the next pass sends it. Closed: the session is going away.
                    Err(_) => break,
                }
            }
        }
    }

    /// Sends one worker what it has not been sent yet (right after it registers).
    pub fn deliver_now(&self, node: &NodeContext, worker: &str) {
        self.deliver(node, Some(&BTreeSet::from([worker.to_string()])));
    }

    /// Tells the worker to stop a job (best effort: its heartbeat reconciles too).
    fn cancel(&self, worker: &str, job: &str) {
        if let Some(session) = self.lock().sessions.get(worker) {
            let _ = session.outbound.try_send(Ok(cancel_message(job)));
        }
    }

    /// Tells a stopped worker to exit.
    fn stop(&self, worker: &str) {
        if let Some(session) = self.lock().sessions.get(worker) {
            let _ = session.outbound.try_send(Ok(pb::ServerMessage {
                kind: Some(pb::server_message::Kind::Stop(
                    "stopped by its pool".to_string(),
                )),
            }));
        }
    }

    /// Closes every session: this node no longer leads, so workers must find the leader
    /// (`leader`, when known): each is told at once, and re-registers there within its
    /// lease, keeping its runs. A detached session's stream echoes nothing more
    /// (`seen` answers false) and ends at the worker's next message.
    fn drop_all(&self, leader: Option<String>) {
        let mut hub = self.lock();
        if !hub.sessions.is_empty() {
            info!(
                sessions = hub.sessions.len(),
                "not leading: closing worker sessions"
            );
        }
        for session in hub.sessions.values() {
            let _ = session.outbound.try_send(Ok(pb::ServerMessage {
                kind: Some(pb::server_message::Kind::NotLeader(pb::NotLeader {
                    leader_addr: leader.clone(),
                })),
            }));
        }
        hub.sessions.clear();
        hub.leading_since = None;
        hub.losing.clear();
        hub.confirmed_at = None;
    }

    /// Workers to declare lost now: registered real workers not seen for the timeout,
    /// each with the time of the registration judged (if an agent registered it).
    fn overdue(&self, node: &NodeContext) -> Vec<(String, Option<u64>)> {
        let lost_after = self.heartbeat.lost_after();
        let mut hub = self.lock();
        let leading_since = *hub.leading_since.get_or_insert_with(Instant::now);
        if leading_since.elapsed() < lost_after {
            return Vec::new();
        }
        let live: Vec<(String, Option<u64>)> = node.read(|state| {
            state
                .workers()
                .filter(|worker| worker.is_live() && !worker.simulated)
                .map(|worker| (worker.id.clone(), state.worker_session(&worker.id)))
                .collect()
        });
        let mut overdue = Vec::new();
        for (worker, session) in live {
            // A registration in flight or just committed (not attached yet) is not
            // judged on the session it replaces.
            if hub
                .registering
                .get(&worker)
                .is_some_and(|(_, since)| since.elapsed() < lost_after)
            {
                continue;
            }
            let silent = hub
                .sessions
                .get(&worker)
                .is_none_or(|session| session.last_seen.elapsed() >= lost_after);
            if silent && hub.losing.insert(worker.clone()) {
                overdue.push((worker, session));
            }
        }
        overdue
    }

    fn lost_done(&self, worker: &str) {
        self.lock().losing.remove(worker);
    }

    /// The leader's loop: delivery on events and timer; lost detection on the timer.
    pub async fn run(self, node: NodeContext) {
        let mut events = node.read(|state| state.subscribe());
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let only = tokio::select! {
                event = events.recv() => match event {
                    Ok(DomainEvent::JobsAssigned(workers)) => Some(workers),
                    Ok(DomainEvent::JobCancelled { job, worker }) => {
                        self.cancel(&worker, &job);
                        continue;
                    }
                    Ok(DomainEvent::WorkerStopped { worker }) => {
                        self.stop(&worker);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if !node.raft.is_leader() {
                        self.drop_all(node.raft.leader_api_addr());
                        continue;
                    }
                    for (worker, session) in self.overdue(&node) {
                        let node = node.clone();
                        let hub = self.clone();
                        tokio::spawn(async move {
                            let missed = hub.heartbeat.missed_beats;
                            warn!(%worker, missed, "worker missed its heartbeats; declaring it lost");
                            let lost = command::WorkerLost {
                                worker: worker.clone(),
                                reason: format!("worker missed {missed} heartbeats"),
                                at_ms: now_ms(),
                            };
                            // Lost only if it has not registered since it was judged.
                            let command = match session {
                                Some(session_ms) => CommandV1::WorkerLostSince(command::WorkerLostSince { lost, session_ms }),
                                None => CommandV1::WorkerLost(lost),
                            };
                            match crate::actors::gateway::propose(&node, command).await {
                                Ok(_) => {
                                    let pool = node.read(|state| state.worker(&worker).map(|found| found.pool.clone()));
                                    node.metrics.worker_lost(&pool.unwrap_or_default());
                                }
                                Err(error) => warn!(%worker, %error, "could not declare the worker lost; will retry"),
                            }
                            hub.lost_done(&worker);
                        });
                    }
                    None
                }
            };
            if node.raft.is_leader() {
                self.deliver(&node, only.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod reservation_tests {
    use super::*;

    fn hub() -> WorkerHub {
        WorkerHub::new(HeartbeatSettings {
            interval: Duration::from_secs(5),
            missed_beats: 3,
        })
    }

    #[test]
    fn sessions_closed_with_the_leadership_are_sent_to_the_leader_and_echo_no_more() {
        let hub = hub();
        let (outbound, mut receiver) = mpsc::channel(4);
        let number = hub.attach("w1", "agent-a", outbound);
        assert!(hub.seen("w1", number), "the attached session");
        hub.drop_all(Some("127.0.0.1:9090".to_string()));
        let told = receiver
            .try_recv()
            .expect("a message")
            .expect("not an error");
        assert_eq!(
            told.kind,
            Some(pb::server_message::Kind::NotLeader(pb::NotLeader {
                leader_addr: Some("127.0.0.1:9090".to_string())
            }))
        );
        assert!(
            !hub.seen("w1", number),
            "a detached session's beats are not echoed"
        );
        assert!(!hub.leadership_confirmed());
    }

    #[test]
    fn a_live_session_is_given_back_to_its_own_agent_and_refused_to_another() {
        let hub = hub();
        assert!(hub.reserve("w1", "agent-a"));
        // Another agent while the first registration is in flight: refused.
        assert!(!hub.reserve("w1", "agent-b"));
        let (outbound, _receiver) = mpsc::channel(1);
        hub.attach("w1", "agent-a", outbound);
        assert!(
            !hub.reserve("w1", "agent-b"),
            "a live session is not taken over"
        );
        assert!(
            !hub.reserve("w1", ""),
            "an agent without an instance matches none"
        );
        assert!(hub.reserve("w1", "agent-a"), "its own agent reconnects");
        // A refused registration gives its reservation up.
        hub.release("w1", "agent-a");
        assert!(hub.reserve("w2", "agent-c"));
        hub.release("w2", "agent-c");
        assert!(hub.reserve("w2", "agent-d"));
    }
}
