//! `hodei.v1.WorkerService`: the stream a worker agent holds to the leader. The first
//! message registers the worker (one committed command); after it, heartbeats refresh
//! the session, and run reports become `JobStarted` / `JobFinished` commands, each
//! acknowledged once committed so the worker can forget it.

use std::pin::Pin;

use hodei_proto::v1 as pb;
use hodei_proto::v1::worker_service_server::WorkerService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

use crate::actors::gateway::propose;
use crate::actors::workers::hub::{Outbound, WorkerHub, cancel_message};
use crate::actors::{NodeContext, now_ms};
use crate::gateway::GatewayError;
use crate::state::command;
use crate::state::{CommandOutcome, CommandV1};
use std::collections::{BTreeMap, BTreeSet};

use hodei_domain::job::JobState;
use hodei_domain::labels::Labels;
use hodei_domain::resources::Resources;
use hodei_domain::run::{RunOutcome, RunReport, WorkerRegistration};

pub struct WorkerGrpc {
    node: NodeContext,
    hub: WorkerHub,
    /// Checks a registration's join token.
    authenticator: crate::actors::authenticator::Authenticator,
}

impl WorkerGrpc {
    pub fn new(
        node: NodeContext,
        hub: WorkerHub,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            node,
            hub,
            authenticator,
        }
    }
}

fn message(kind: pb::server_message::Kind) -> Result<pb::ServerMessage, tonic::Status> {
    Ok(pb::ServerMessage { kind: Some(kind) })
}

/// Where a worker finds the leader: its public gRPC address.
fn leader_addr(node: &NodeContext) -> Option<String> {
    node.raft.leader_api_addr()
}

fn parse_outcome(raw: &str) -> Result<RunOutcome, tonic::Status> {
    match raw {
        "succeeded" => Ok(RunOutcome::Succeeded),
        "failed" => Ok(RunOutcome::Failed),
        "timed_out" => Ok(RunOutcome::TimedOut),
        "cancelled" => Ok(RunOutcome::Cancelled),
        other => Err(tonic::Status::invalid_argument(format!(
            "outcome: must be succeeded, failed, timed_out or cancelled, got `{other}`"
        ))),
    }
}

/// Proposes a run report and acknowledges it once committed. A report that fails to
/// commit is not acknowledged: the worker sends it again after it reconnects.
fn report(
    node: &NodeContext,
    outbound: &Outbound,
    report_id: u64,
    command: CommandV1,
) -> tokio::task::JoinHandle<()> {
    let node = node.clone();
    let outbound = outbound.clone();
    tokio::spawn(async move {
        match propose(&node, command).await {
            Ok(_) => {
                let _ = outbound
                    .send(message(pb::server_message::Kind::Ack(report_id)))
                    .await;
            }
            Err(error) => {
                warn!(%error, report_id, "run report not committed; the worker will resend it")
            }
        }
    })
}

/// A worker shutting down: recorded `terminated` (its runs re-queued), then told to stop.
/// Not committed, it is not acknowledged: the worker says it again on its next session,
/// or, gone, is declared lost after its heartbeats.
fn leave(
    node: &NodeContext,
    outbound: &Outbound,
    worker_id: &str,
    leaving: pb::WorkerLeaving,
    earlier: Vec<tokio::task::JoinHandle<()>>,
) {
    let node = node.clone();
    let outbound = outbound.clone();
    let worker = worker_id.to_string();
    tokio::spawn(async move {
        for proposal in earlier {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), proposal).await;
        }
        let reason = if leaving.reason.is_empty() {
            "the worker shut down".to_string()
        } else {
            leaving.reason
        };
        let command = CommandV1::WorkerLeft(command::WorkerLeft {
            worker: worker.clone(),
            reason,
            at_ms: now_ms(),
        });
        match propose(&node, command).await {
            Ok(_) => {
                info!(%worker, "worker left its pool");
                let _ = outbound
                    .send(message(pb::server_message::Kind::Ack(leaving.report_id)))
                    .await;
                let _ = outbound
                    .send(message(pb::server_message::Kind::Stop(
                        "left the pool".to_string(),
                    )))
                    .await;
            }
            Err(error) => warn!(%worker, %error, "a worker's departure was not committed"),
        }
    });
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ServerMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for WorkerGrpc {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: tonic::Request<tonic::Streaming<pb::WorkerMessage>>,
    ) -> Result<tonic::Response<SessionStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| tonic::Status::invalid_argument("the stream ended before `register`"))?;
        let Some(pb::worker_message::Kind::Register(register)) = first.kind else {
            return Err(tonic::Status::invalid_argument(
                "the first message must be `register`",
            ));
        };
        // Before anything else, on every node: a worker without the pool's join token
        // learns nothing, not even where the leader is.
        if let Err(error) = self
            .authenticator
            .admit_worker(Some(register.join_token.as_str()), &register.pool)
        {
            warn!(worker = %register.worker_id, pool = %register.pool, "a worker without a valid join token refused");
            return Err(error.to_status());
        }
        let (outbound, receiver) = mpsc::channel(4096);
        if !self.node.raft.is_leader() {
            let _ = outbound
                .send(message(pb::server_message::Kind::NotLeader(
                    pb::NotLeader {
                        leader_addr: leader_addr(&self.node),
                    },
                )))
                .await;
            return Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
                receiver,
            ))));
        }
        let worker_id = register.worker_id.clone();
        let instance = register.instance.clone();
        let labels = Labels::from_iter(register.labels);
        hodei_domain::labels::validate_labels("labels", &labels)
            .map_err(|error| GatewayError::from(error).to_status())?;
        if instance.is_empty() {
            return Err(GatewayError::invalid(
                "instance",
                "an agent names its instance: a random id it keeps for its life (it binds the worker id to the agent)",
            )
            .to_status());
        }
        if !self.hub.reserve(&worker_id, &instance) {
            warn!(worker = %worker_id, "a second registration of a connected worker refused");
            return Err(tonic::Status::already_exists(format!(
                "worker `{worker_id}` is connected on another session that is alive: a second agent under its id is refused, never a takeover (stop the other agent, or wait until it misses its heartbeats)"
            )));
        }
        let registration = WorkerRegistration {
            id: register.worker_id,
            pool: register.pool,
            capacity: Resources::new(register.cpu_m, register.memory_mb, register.gpu),
            labels,
            simulated: false,
            running: register.running,
        };
        let command = CommandV1::RegisterAgentWorker(command::RegisterAgentWorker {
            register: command::RegisterWorker {
                registration,
                at_ms: now_ms(),
                // A process this leader started: paid for from its start.
                provisioned_at_ms: self.node.processes.started_at_ms(&worker_id),
            },
            agent: hex::encode(crate::gateway::credentials::digest(&instance)),
        });
        let keep = match propose(&self.node, command).await {
            Ok(CommandOutcome::WorkerRegistered {
                keep,
                requeued,
                worker,
            }) => {
                info!(worker = %worker.id, pool = %worker.pool, requeued, "worker registered");
                keep
            }
            Ok(other) => {
                self.hub.release(&worker_id, &instance);
                return Err(tonic::Status::internal(format!(
                    "unexpected state machine outcome: {other:?}"
                )));
            }
            Err(error) => {
                self.hub.release(&worker_id, &instance);
                return Err(error.to_status());
            }
        };
        let number = self.hub.attach(&worker_id, &instance, outbound.clone());
        let _ = outbound
            .send(message(pb::server_message::Kind::Registered(
                pb::Registered {
                    worker_id: worker_id.clone(),
                    keep,
                    heartbeat_interval_ms: self.hub.heartbeat.interval.as_millis() as u64,
                    lease_ms: self.hub.heartbeat.lease().as_millis() as u64,
                },
            )))
            .await;

        self.hub.deliver_now(&self.node, &worker_id);
        follow_session(
            self.node.clone(),
            self.hub.clone(),
            worker_id,
            number,
            inbound,
            outbound,
        );
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(
            receiver,
        ))))
    }
}

/// Reads a worker's stream until it ends: heartbeats (answered, and runs the state no
/// longer gives the worker are cancelled) and run reports (proposed, acknowledged once
/// committed).
fn follow_session(
    node: NodeContext,
    hub: WorkerHub,
    worker_id: String,
    number: u64,
    mut inbound: tonic::Streaming<pb::WorkerMessage>,
    outbound: Outbound,
) {
    tokio::spawn(async move {
        // Report proposals not yet done: a departure is proposed after them, so that no
        // end the worker reported before leaving commits after its jobs were re-queued.
        let mut in_flight: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        // Running jobs of this worker its beats left out, and in how many beats in a row.
        let mut missing: BTreeMap<(String, u32), u32> = BTreeMap::new();
        loop {
            in_flight.retain(|proposal| !proposal.is_finished());
            let next = match inbound.message().await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(error) => {
                    info!(worker = %worker_id, %error, "worker stream broke");
                    break;
                }
            };
            let attached = hub.seen(&worker_id, number);
            match next.kind {
                // A detached session (this node stopped leading, or the worker has a
                // newer session): nothing echoed; the worker is sent to the leader.
                Some(pb::worker_message::Kind::Heartbeat(_)) if !attached => {
                    let _ = outbound.try_send(message(pb::server_message::Kind::NotLeader(
                        pb::NotLeader {
                            leader_addr: leader_addr(&node),
                        },
                    )));
                    break;
                }
                Some(pb::worker_message::Kind::Heartbeat(beat)) => {
                    // Runs the state no longer gives this worker (cancelled, or
                    // re-queued while it was away) are stopped.
                    let stale = stale_runs(&node, &worker_id, &beat.running);
                    for job in stale {
                        let _ = outbound.try_send(Ok(cancel_message(&job)));
                    }
                    // And runs the state gives it that it no longer runs are lost.
                    let vanished = vanished_runs(&node, &worker_id, &beat.running, &mut missing);
                    if !vanished.is_empty()
                        && let Some(session_ms) =
                            node.read(|state| state.worker_session(&worker_id))
                    {
                        in_flight.push(lose_vanished(&node, &worker_id, session_ms, vanished));
                    }
                    // The beat is echoed while a quorum confirms this node leads: the
                    // worker's lease runs on from when it sent it (fencing, `hub.rs`).
                    if hub.leadership_confirmed() {
                        let _ =
                            outbound.try_send(message(pb::server_message::Kind::Beat(beat.seq)));
                    }
                }
                Some(pb::worker_message::Kind::Started(started)) => in_flight.push(report(
                    &node,
                    &outbound,
                    started.report_id,
                    CommandV1::JobStarted(command::JobStarted {
                        job: started.job_id,
                        attempt: started.attempt,
                        worker: worker_id.clone(),
                        at_ms: now_ms(),
                    }),
                )),
                Some(pb::worker_message::Kind::Finished(finished)) => {
                    let outcome = match parse_outcome(&finished.outcome) {
                        Ok(outcome) => outcome,
                        Err(error) => {
                            warn!(worker = %worker_id, %error, "bad run report");
                            continue;
                        }
                    };
                    in_flight.push(report(
                        &node,
                        &outbound,
                        finished.report_id,
                        CommandV1::JobFinished(command::JobFinished {
                            report: RunReport {
                                job: finished.job_id,
                                attempt: finished.attempt,
                                worker: worker_id.clone(),
                                outcome,
                                exit_code: finished.exit_code,
                                output_tail: finished.output_tail,
                                at_ms: now_ms(),
                                usage: finished.usage.map(|usage| hodei_domain::usage::RunUsage {
                                    cpu_ms: usage.cpu_ms,
                                    peak_rss_mb: usage.peak_rss_mb,
                                }),
                            },
                        }),
                    ));
                }
                Some(pb::worker_message::Kind::Output(output)) => in_flight.push(report(
                    &node,
                    &outbound,
                    output.report_id,
                    CommandV1::RunOutput(command::RunOutput {
                        job: output.job_id,
                        attempt: output.attempt,
                        worker: worker_id.clone(),
                        seq: output.seq,
                        combined: output.combined,
                        stdout: output.stdout,
                        stderr: output.stderr,
                    }),
                )),
                Some(pb::worker_message::Kind::Leaving(leaving)) => {
                    let earlier = std::mem::take(&mut in_flight);
                    leave(&node, &outbound, &worker_id, leaving, earlier);
                }
                Some(pb::worker_message::Kind::Register(_)) | None => {
                    warn!(worker = %worker_id, "unexpected message on an open session");
                }
            }
        }
        hub.detach(&worker_id, number);
    });
}

/// Beats in a row that must leave out a running job before its run counts as vanished
/// (a beat lists every run the agent has not fenced and every end not yet acknowledged,
/// so one beat would do; three ride out a beat composed just before a change).
const BEATS_TO_VANISH: u32 = 3;

/// The runs the state gives this worker as running that its last `BEATS_TO_VANISH`
/// beats left out (`missing` counts, per run, the beats in a row).
fn vanished_runs(
    node: &NodeContext,
    worker_id: &str,
    running: &[String],
    missing: &mut BTreeMap<(String, u32), u32>,
) -> Vec<(String, u32)> {
    let listed: BTreeSet<&str> = running.iter().map(String::as_str).collect();
    let unlisted: Vec<(String, u32)> = node.read(|state| {
        state
            .worker(worker_id)
            .into_iter()
            .flat_map(|worker| worker.jobs.iter())
            .filter_map(|id| state.job(id))
            .filter(|job| {
                job.state == JobState::Running
                    && job.worker.as_deref() == Some(worker_id)
                    && !listed.contains(job.id.as_str())
            })
            .map(|job| (job.id.clone(), job.attempt))
            .collect()
    });
    missing.retain(|run, _| unlisted.contains(run));
    let mut vanished = Vec::new();
    for run in unlisted {
        let beats = missing.entry(run.clone()).or_default();
        *beats += 1;
        if *beats >= BEATS_TO_VANISH {
            vanished.push(run);
        }
    }
    for run in &vanished {
        missing.remove(run);
    }
    vanished
}

/// Proposes that the worker's vanished runs are lost (re-queued or failed).
fn lose_vanished(
    node: &NodeContext,
    worker_id: &str,
    session_ms: u64,
    runs: Vec<(String, u32)>,
) -> tokio::task::JoinHandle<()> {
    let node = node.clone();
    let worker = worker_id.to_string();
    tokio::spawn(async move {
        let command = CommandV1::RunsVanished(command::RunsVanished {
            worker: worker.clone(),
            session_ms,
            runs: runs.clone(),
            at_ms: now_ms(),
        });
        match propose(&node, command).await {
            Ok(outcome) => {
                warn!(%worker, ?runs, ?outcome, "runs the worker no longer lists were lost")
            }
            Err(error) => info!(%worker, ?runs, %error, "vanished runs not lost"),
        }
    })
}

/// The runs a worker reports that the state no longer gives it (cancelled, ended, or
/// re-queued while it was away).
fn stale_runs(node: &NodeContext, worker_id: &str, running: &[String]) -> Vec<String> {
    node.read(|state| {
        running
            .iter()
            .filter(|job| {
                state.job(job).is_none_or(|found| {
                    found.worker.as_deref() != Some(worker_id) || found.state.is_final()
                })
            })
            .cloned()
            .collect()
    })
}
